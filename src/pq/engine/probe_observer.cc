#include "pq/engine/probe_observer.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "pq/compute/ops.h"
#include "pq/core/byte_blob.h"
#include "pq/core/exec_context.h"
#include "pq/core/minifloat.h"
#include "pq/core/thread_pool.h"
#include "pq/dist/comm.h"
#include "pq/dist/share.h"
#include "pq/formats/act_quant.h"
#include "pq/formats/tensor_blob.h"
#include "pq/quant/rtn_candidate.h"

namespace pq::engine {
namespace {

namespace ops = compute::cpu;
using formats::FormatId;

// fn(o0, o1) over column ranges of [0, n) on the exec threads. Every column is summed by one
// call, over the tokens in order, so the sums do not depend on the thread count.
void ForColumns(int64_t t, int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  const int threads =
      static_cast<int>(std::min<int64_t>(ExecThreads(), std::max<int64_t>(1, t * n >> 16)));
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  ParallelFor(static_cast<size_t>(n), threads,
              [&](size_t b, size_t e) { fn(static_cast<int64_t>(b), static_cast<int64_t>(e)); });
}

// acc[o] += Σ_t a[t, o]²  for a: [T, N]
void AddSquares(std::span<const float> a, int64_t t, int64_t n, std::span<double> acc) {
  ForColumns(t, n, [&](int64_t o0, int64_t o1) {
    for (int64_t r = 0; r < t; ++r)
      for (int64_t o = o0; o < o1; ++o) {
        const double d = a[static_cast<size_t>(r * n + o)];
        acc[static_cast<size_t>(o)] += d * d;
      }
  });
}

// acc[o] += Σ_t g[t, o]² · a[t, o]²  for a, g: [T, N]
void AddWeightedSquares(std::span<const float> a, std::span<const float> g, int64_t t, int64_t n,
                        std::span<double> acc) {
  ForColumns(t, n, [&](int64_t o0, int64_t o1) {
    for (int64_t r = 0; r < t; ++r)
      for (int64_t o = o0; o < o1; ++o) {
        const auto j = static_cast<size_t>(r * n + o);
        const double d = static_cast<double>(a[j]) * g[j];
        acc[static_cast<size_t>(o)] += d * d;
      }
  });
}

// y [T, N] = x [T, K] · w [N, K]ᵀ into y (resized; reused across candidates).
void MatMulNoBias(std::span<const float> x, std::span<const float> w, int64_t t, int64_t k,
                  int64_t n, std::vector<float>& y) {
  y.resize(static_cast<size_t>(t * n));
  ops::MatMul(x, w, {}, y, t, k, n);
}

// dw = w − w_hat; false when it is zero everywhere (the candidate is W itself, e.g. BF16 of a
// bf16 checkpoint: every energy term it would add is exactly 0).
bool WeightDelta(std::span<const float> w, std::span<const float> w_hat, std::vector<float>& dw) {
  bool any = false;
  for (size_t j = 0; j < dw.size(); ++j) {
    dw[j] = w[j] - w_hat[j];
    any |= dw[j] != 0.0f;
  }
  return any;
}

// e[o] = D_o H D_oᵀ for D [N, K] and a symmetric H [K, K] (summed in double).
void RowQuadraticForms(std::span<const float> d, std::span<const float> h, int64_t n, int64_t k,
                       std::span<double> e) {
  std::vector<float> dh;
  MatMulNoBias(d, h, n, k, k, dh);  // D H (H = Hᵀ)
  ParallelFor(static_cast<size_t>(n), static_cast<int>(ExecThreads()), [&](size_t o0, size_t o1) {
    for (size_t o = o0; o < o1; ++o) {
      double s = 0;
      for (int64_t i = 0; i < k; ++i) {
        const size_t j = o * static_cast<size_t>(k) + static_cast<size_t>(i);
        s += static_cast<double>(d[j]) * dh[j];
      }
      e[o] = s;
    }
  });
}

}  // namespace

ProbeObserver::ProbeObserver(ProbeObserverOptions o) : opt_(std::move(o)) {}

void ProbeObserver::OnLinearInput(const model::LinearWeights& l, std::span<const float> x,
                                  int64_t rows) {
  float m = 0;
  for (size_t i = 0; i < static_cast<size_t>(rows * l.cols); ++i) m = std::max(m, std::fabs(x[i]));
  float& a = amax_[l.module];
  a = std::max(a, m);
}

std::string ProbeObserver::UnitOf(const std::string& module) const {
  auto it = opt_.unit_of.find(module);
  return it == opt_.unit_of.end() ? module : it->second;
}

void ProbeObserver::ChooseHRoute(std::vector<Active>& acts) {
  priced_h_ = HessianObserver();
  act_h_.clear();
  if (opt_.per_token) return;
  std::map<std::string, int64_t> group_rows;  // the outputs one input group feeds
  for (const Active& a : acts) group_rows[UnitOf(a.linear->module)] += a.linear->rows;
  struct Route {
    bool h = false, act = false;
  };
  std::map<std::string, Route> group_on;  // one H_p (and ΔH per format) per input group
  uint64_t used = 0;                      // in the layer's order, within cache_bytes
  for (Active& a : acts) {
    const model::LinearWeights& l = *a.linear;
    const std::string g = UnitOf(l.module);
    if (!group_on.count(g)) {
      const uint64_t bytes = static_cast<uint64_t>(l.cols * l.cols) * sizeof(float);
      const bool eligible = !opt_.routed.count(l.module) && l.cols <= opt_.total_tokens;
      const auto act_formats = static_cast<uint64_t>(std::count_if(
          a.cands.begin(), a.cands.end(),
          [](const Candidate& c) { return formats::Spec(c.format).quantizes_activations; }));
      Route r;
      r.h = eligible && used + bytes <= opt_.cache_bytes;
      if (r.h) used += bytes;
      // ΔXᵀΔX costs K² per token, the products 2 × rows × K: moments only where K < 2 × rows.
      r.act = eligible && act_formats > 0 && l.cols < 2 * group_rows[g] &&
              used + act_formats * bytes <= opt_.cache_bytes;
      if (r.act) used += act_formats * bytes;
      group_on[g] = r;
    }
    a.h_route = group_on[g].h;
    a.act_route = group_on[g].act;
    if (a.h_route) priced_h_.Want(l, g);
    if (!a.act_route) continue;
    for (const Candidate& c : a.cands)
      if (formats::Spec(c.format).quantizes_activations) act_h_[c.format].Want(l, g);
  }
}

Status ProbeObserver::BeginLayer(const std::vector<const model::LinearWeights*>& linears,
                                 const HessianObserver* hessians,
                                 std::span<const formats::FormatId> formats) {
  if (formats.empty()) formats = opt_.formats;
  order_.clear();
  active_.clear();
  // Unit-wide amaxes: fused siblings share one weight and one input global scale.
  std::map<std::string, float> unit_w, unit_x;
  for (const auto* l : linears) {
    const float m = quant::Bf16AbsMax(l->w);
    unit_w[UnitOf(l->module)] = std::max(unit_w[UnitOf(l->module)], m);
    auto it = amax_.find(l->module);
    unit_x[UnitOf(l->module)] =
        std::max(unit_x[UnitOf(l->module)], it == amax_.end() ? 0.f : it->second);
  }
  uint64_t cache_need = 0;
  for (const auto* l : linears) cache_need += l->w.size() * sizeof(float) * formats.size();
  const bool cache = cache_need <= opt_.cache_bytes;
  std::vector<Active> acts;
  for (const auto* l : linears) {
    Active a;
    a.linear = l;
    a.weight_global_scale = formats::NvFp4GlobalScale(unit_w[UnitOf(l->module)]);
    a.input_global_scale = formats::NvFp4InputGlobalScale(unit_x[UnitOf(l->module)]);
    for (FormatId f : formats) {
      if (!formats::CheckShape(f, l->rows, l->cols).ok()) continue;
      Candidate c{f, {}, {}, {}};
      c.e.e_weight.assign(static_cast<size_t>(l->rows), 0.0);
      if (opt_.per_token) c.e.e_token.assign(static_cast<size_t>(l->rows), 0.0);
      if (formats::Spec(f).quantizes_activations) {
        c.e.e_act.assign(static_cast<size_t>(l->rows), 0.0);
        if (opt_.per_token) c.e.e_out.assign(static_cast<size_t>(l->rows), 0.0);
        c.e.dx2.assign(static_cast<size_t>(l->cols), 0.0);
      }
      a.cands.push_back(std::move(c));
    }
    acts.push_back(std::move(a));
  }
  ChooseHRoute(acts);
  PQ_RETURN_IF_ERROR(PrepareCandidates(acts, cache, hessians));
  for (Active& a : acts) {
    order_.push_back(a.linear->module);
    active_.emplace(a.linear->module, std::move(a));
  }
  error_ = Status::Ok();
  return Status::Ok();
}

// Ŵ: bf16(W) quantized by RTN exactly as export writes it, then dequantized.
Result<std::vector<float>> ProbeObserver::CandidateWeight(const Active& a, FormatId f) const {
  const model::LinearWeights& l = *a.linear;
  auto d = quant::RtnCandidate(f, l.w, l.rows, l.cols, a.weight_global_scale, a.input_global_scale);
  if (!d.ok()) return d.status().WithContext(l.module);
  return d;
}

Result<quant::QuantizedLinear> ProbeObserver::ExportCandidate(
    const Active& a, FormatId f, const HessianObserver& hessians,
    quant::GptqFactorCache* factors) const {
  const model::LinearWeights& l = *a.linear;
  std::vector<float> wb(l.w.size());
  for (size_t i = 0; i < wb.size(); ++i) wb[i] = RoundBf16(l.w[i]);
  quant::LinearQuantizeOptions o{opt_.passes, opt_.min_tokens, opt_.gptq, {}, l.module};
  o.qo.num_threads = ExecThreads();
  o.measure_error = false;  // error_ratio is not used here
  o.gptq.factor_cache = factors;
  if (f == FormatId::kNVFP4 || f == FormatId::kNVFP4A16)
    o.qo.weight_global_scale = a.weight_global_scale;
  if (f == FormatId::kNVFP4) o.qo.input_global_scale = a.input_global_scale;
  const HessianObserver::Entry* h = hessians.Find(l.module);
  auto q = quant::QuantizeLinear(f, wb, l.rows, l.cols, h ? h->h : std::span<const float>(),
                                 h ? h->rows : 0, o);
  if (!q.ok()) return q.status().WithContext(l.module);
  return q;
}

// Candidates cached as dequantized weights when `cache`; otherwise RTN ones are re-quantized
// on every use and export-aware ones keep their packed tensors.
Status ProbeObserver::PrepareCandidate(const Active& a, Candidate& c, bool cache,
                                       const HessianObserver* hessians,
                                       quant::GptqFactorCache* factors) const {
  if (opt_.passes == quant::Passes::kRtn || !hessians) {
    if (cache) {
      PQ_ASSIGN_OR_RETURN(c.w_hat, CandidateWeight(a, c.format));
    }
    return Status::Ok();
  }
  PQ_ASSIGN_OR_RETURN(quant::QuantizedLinear q, ExportCandidate(a, c.format, *hessians, factors));
  if (cache) {
    c.w_hat = std::move(q.w_hat);
  } else {
    c.packed = std::move(q.tensors);
  }
  return Status::Ok();
}

// Across MPI ranks the export-aware candidates (scale search + GPTQ, the costly part) are
// shared out: each has one owner rank (dist::AssignOwners, cost rows x cols^2), which
// quantizes it and broadcasts what the others would have computed (Ŵ or the packed tensors),
// bit for bit the same on every rank; RTN candidates are cheap and made by every rank.
Status ProbeObserver::PrepareCandidates(std::vector<Active>& acts, bool cache,
                                        const HessianObserver* hessians) const {
  quant::GptqFactorCache factors;  // one factorisation per H, not per (Linear, format)
  const bool share = dist::Size() > 1 && hessians && opt_.passes != quant::Passes::kRtn;
  std::vector<std::pair<size_t, size_t>> jobs;  // (Linear, candidate)
  std::vector<double> cost;
  for (size_t i = 0; i < acts.size(); ++i)
    for (size_t j = 0; j < acts[i].cands.size(); ++j) {
      const model::LinearWeights& l = *acts[i].linear;
      jobs.emplace_back(i, j);
      cost.push_back(static_cast<double>(l.rows) * static_cast<double>(l.cols) *
                     static_cast<double>(l.cols));
    }
  const std::vector<int> owner = dist::AssignOwners(cost, share ? dist::Size() : 1);
  for (size_t k = 0; k < jobs.size(); ++k) {
    if (owner[k] != dist::Rank()) continue;
    Active& a = acts[jobs[k].first];
    PQ_RETURN_IF_ERROR(PrepareCandidate(a, a.cands[jobs[k].second], cache, hessians, &factors));
  }
  if (!share) return Status::Ok();
  for (size_t k = 0; k < jobs.size(); ++k) {
    Candidate& c = acts[jobs[k].first].cands[jobs[k].second];
    BlobWriter w;
    if (owner[k] == dist::Rank()) {
      w.PutArray(std::span<const float>(c.w_hat));
      formats::PutTensors(w, c.packed);
    }
    PQ_RETURN_IF_ERROR(dist::BroadcastBlob(w.blob(), owner[k]));
    if (owner[k] == dist::Rank()) continue;
    BlobReader r(w.blob());
    PQ_RETURN_IF_ERROR(r.GetArray(c.w_hat));
    PQ_RETURN_IF_ERROR(formats::GetTensors(r, c.packed));
    if (!r.done()) return DataLoss("probe: a rank's candidate has trailing bytes");
  }
  return Status::Ok();
}

Result<std::span<const float>> ProbeObserver::WeightOf(const Active& a, const Candidate& c,
                                                       std::vector<float>& fresh, int64_t row0,
                                                       int64_t n) const {
  const model::LinearWeights& l = *a.linear;
  const bool all = n < 0 || (row0 == 0 && n == l.rows);
  if (n < 0) n = l.rows;
  const auto slice = [&](std::span<const float> w) {
    return w.subspan(static_cast<size_t>(row0 * l.cols), static_cast<size_t>(n * l.cols));
  };
  if (!c.w_hat.empty()) return slice(c.w_hat);
  if (!c.packed.empty()) {
    PQ_ASSIGN_OR_RETURN(fresh,
                        formats::Dequantize(c.format, formats::Views(c.packed), l.rows, l.cols));
    return slice(fresh);
  }
  if (all) {
    PQ_ASSIGN_OR_RETURN(fresh, CandidateWeight(a, c.format));
    return std::span<const float>(fresh);
  }
  auto d = quant::RtnCandidate(c.format, slice(l.w), n, l.cols, a.weight_global_scale,
                               a.input_global_scale);
  if (!d.ok()) return d.status().WithContext(l.module);
  fresh = std::move(*d);
  return std::span<const float>(fresh);
}

Status ProbeObserver::EnergiesFromMoments(const Active& a, std::span<const float> w_hat,
                                          Candidate& c) const {
  const model::LinearWeights& l = *a.linear;
  if (a.h_route) {
    const HessianObserver::Entry* h = priced_h_.Find(l.module);
    if (!h) return Internal("probe: no priced H for " + l.module);
    std::fill(c.e.e_weight.begin(), c.e.e_weight.end(), 0.0);
    std::vector<float> dw(l.w.size());
    if (h->rows > 0 && WeightDelta(l.w, w_hat, dw))
      RowQuadraticForms(dw, h->h, l.rows, l.cols, c.e.e_weight);  // ΔW_o H_p ΔW_oᵀ
  }
  if (!a.act_route || !formats::Spec(c.format).quantizes_activations) return Status::Ok();
  const auto moments = act_h_.find(c.format);
  const HessianObserver::Entry* h =
      moments == act_h_.end() ? nullptr : moments->second.Find(l.module);
  if (!h) return Internal("probe: no activation-error moments for " + l.module);
  std::fill(c.e.e_act.begin(), c.e.e_act.end(), 0.0);
  if (h->rows > 0) RowQuadraticForms(l.w, h->h, l.rows, l.cols, c.e.e_act);  // W_o ΔH W_oᵀ
  for (int64_t i = 0; i < l.cols; ++i)
    c.e.dx2[static_cast<size_t>(i)] = h->h[static_cast<size_t>(i * l.cols + i)];
  return Status::Ok();
}

Status ProbeObserver::AccumulateActMoments(const Active& a, std::span<const float> x,
                                           int64_t rows) {
  const model::LinearWeights& l = *a.linear;
  std::vector<float> dx;
  for (const Candidate& c : a.cands) {
    if (!formats::Spec(c.format).quantizes_activations) continue;
    HessianObserver& h = act_h_.at(c.format);
    if (!h.Leads(l.module)) continue;  // a sibling accumulates the group's (same X, same scale)
    dx.assign(x.begin(), x.begin() + rows * l.cols);
    PQ_RETURN_IF_ERROR(
        formats::FakeQuantizeActivations(c.format, dx, rows, l.cols, a.input_global_scale));
    for (size_t j = 0; j < dx.size(); ++j) dx[j] = x[j] - dx[j];
    h.OnLinearInput(l, dx, rows);
  }
  return Status::Ok();
}

Result<ProbeObserver::PricedCandidate> ProbeObserver::Priced(const std::string& module, FormatId f,
                                                             std::vector<float>& scratch) const {
  auto it = active_.find(module);
  if (it == active_.end()) return NotFound("probe: " + module + " is not in the current layer");
  for (const Candidate& c : it->second.cands) {
    if (c.format != f) continue;
    PQ_ASSIGN_OR_RETURN(const std::span<const float> w_hat, WeightOf(it->second, c, scratch));
    return PricedCandidate{w_hat, it->second.input_global_scale};
  }
  return NotFound("probe: " + module + " has no " + std::string(formats::Spec(f).name) +
                  " candidate");
}

// Energies from differences computed before the matmul (X·ΔWᵀ, ΔX·Wᵀ), not as differences of
// two large outputs, so near-exact candidates (BF16: ΔW ≈ 2⁻⁹ W) keep their precision.
// e_token: the output error ΔY[t, o] weighted by dY[t, o]² token by token.
Status ProbeObserver::Accumulate(Active& a, std::span<const float> x, std::span<const float> dy,
                                 int64_t t, int64_t row0, int64_t n) {
  const model::LinearWeights& l = *a.linear;
  const int64_t k = l.cols;
  const auto w = std::span<const float>(l.w).subspan(static_cast<size_t>(row0 * k),
                                                     static_cast<size_t>(n * k));
  const auto rows = [&](std::vector<double>& acc) {
    return std::span(acc).subspan(static_cast<size_t>(row0), static_cast<size_t>(n));
  };
  std::vector<float> dw(w.size()), xq, dx, act_err, weight_err, w_err;
  for (Candidate& c : a.cands) {
    std::vector<float> fresh;
    PQ_ASSIGN_OR_RETURN(const std::span<const float> w_hat, WeightOf(a, c, fresh, row0, n));
    const bool has_dw = WeightDelta(w, w_hat, dw);  // no ΔW: its terms are 0, skipped
    if (has_dw && !a.h_route) {                     // else ΔW H_p ΔWᵀ at FinishLayer
      MatMulNoBias(x, dw, t, k, n, weight_err);     // X ΔWᵀ
      AddSquares(weight_err, t, n, rows(c.e.e_weight));
    }
    if (!formats::Spec(c.format).quantizes_activations) {
      if (has_dw && opt_.per_token) AddWeightedSquares(weight_err, dy, t, n, rows(c.e.e_token));
      continue;
    }
    if (a.act_route) continue;  // e_act and dx2 from act_h_ at FinishLayer
    xq.assign(x.begin(), x.begin() + t * k);
    PQ_RETURN_IF_ERROR(formats::FakeQuantizeActivations(c.format, xq, t, k, a.input_global_scale));
    dx.resize(xq.size());
    for (size_t j = 0; j < xq.size(); ++j) {
      dx[j] = x[j] - xq[j];
      if (row0 == 0) c.e.dx2[j % static_cast<size_t>(k)] += static_cast<double>(dx[j]) * dx[j];
    }
    MatMulNoBias(dx, w, t, k, n, act_err);  // (X − Q(X)) Wᵀ
    AddSquares(act_err, t, n, rows(c.e.e_act));
    if (!opt_.per_token) continue;
    // Y − Q(X) Ŵᵀ = (X − Q(X)) Wᵀ + Q(X) ΔWᵀ
    if (has_dw) {
      MatMulNoBias(xq, dw, t, k, n, w_err);
      for (size_t j = 0; j < act_err.size(); ++j) act_err[j] += w_err[j];
    }
    AddSquares(act_err, t, n, rows(c.e.e_out));
    AddWeightedSquares(act_err, dy, t, n, rows(c.e.e_token));
  }
  return Status::Ok();
}

void ProbeObserver::OnLinear(const model::LinearWeights& l, std::span<const float> x,
                             std::span<const float> dy, int64_t rows) {
  OnLinearRows(l, 0, l.rows, x, dy, rows);
}

void ProbeObserver::OnLinearRows(const model::LinearWeights& l, int64_t row0, int64_t n,
                                 std::span<const float> x, std::span<const float> dy,
                                 int64_t rows) {
  auto it = active_.find(l.module);
  if (it == active_.end() || !error_.ok()) return;  // not probed (e.g. the router)
  stats_.OnLinearRows(l, row0, n, x, dy, rows);
  if (it->second.h_route && row0 == 0) priced_h_.OnLinearInput(l, x, rows);
  Status s =
      it->second.act_route && row0 == 0 ? AccumulateActMoments(it->second, x, rows) : Status::Ok();
  if (s.ok()) s = Accumulate(it->second, x, dy, rows, row0, n);
  if (!s.ok()) error_ = s.WithContext("probe " + l.module);
}

Result<std::vector<LinearResult>> ProbeObserver::FinishLayer() {
  PQ_RETURN_IF_ERROR(error_);
  const int64_t t = opt_.total_tokens;
  if (t <= 0) return InvalidArgument("probe: no calibration tokens");
  std::vector<LinearResult> out;
  for (const std::string& m : order_) {
    Active& a = active_.at(m);
    const model::LinearWeights& l = *a.linear;
    LinearStats st = stats_.Take(m);
    LinearResult r;
    r.module = m;
    r.rows = l.rows;
    r.cols = l.cols;
    r.samples = st.samples;
    r.tokens = st.tokens;
    r.input_amax = amax_.count(m) ? amax_.at(m) : 0.f;
    if (st.samples == 0) {  // never reached (an expert no calibration token chose)
      st.g2_out.assign(static_cast<size_t>(l.rows), 0.0);
      st.x2_in.assign(static_cast<size_t>(l.cols), 0.0);
    }
    r.fisher_trace = st.fisher_sum / static_cast<double>(t);
    for (double v : st.g2_out) r.g2_out.push_back(static_cast<float>(v / static_cast<double>(t)));
    for (double v : st.x2_in) r.x2_in.push_back(static_cast<float>(v / static_cast<double>(t)));
    const quant::CostInputs in{l.rows, l.cols, t, st.fisher_sum, st.g2_out, st.x2_in, {}};
    for (Candidate& c : a.cands) {
      std::vector<float> fresh;
      PQ_ASSIGN_OR_RETURN(const std::span<const float> w_hat, WeightOf(a, c, fresh));
      CandidateResult cr{c.format, formats::BytesOnDisk(c.format, l.rows, l.cols), 0, {}, {}};
      double dw2 = 0;
      for (size_t j = 0; j < l.w.size(); ++j) {
        const double d = static_cast<double>(l.w[j]) - w_hat[j];
        dw2 += d * d;
      }
      cr.weight_mse = dw2 / static_cast<double>(l.w.size());
      PQ_RETURN_IF_ERROR(EnergiesFromMoments(a, w_hat, c));
      for (int e = 0; e < quant::kNumEstimators; ++e) {
        const auto est = static_cast<quant::CostEstimator>(e);
        if (!opt_.per_token && quant::NeedsPerTokenError(est)) {
          cr.cost[static_cast<size_t>(e)] = std::nan("");
          continue;
        }
        PQ_ASSIGN_OR_RETURN(cr.cost[static_cast<size_t>(e)],
                            quant::CandidateCost(est, in, c.e, l.w, w_hat));
      }
      r.candidates.push_back(cr);
    }
    out.push_back(std::move(r));
  }
  order_.clear();
  active_.clear();
  return out;
}

}  // namespace pq::engine
