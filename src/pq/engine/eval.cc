#include "pq/engine/eval.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "pq/core/log.h"
#include "pq/dist/comm.h"

namespace pq::engine {
namespace {

// log-softmax of logits[V] into out[V].
void LogSoftmax(std::span<const float> logits, std::span<double> out) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x - mx));
  const double lse = mx + std::log(sum);
  for (size_t i = 0; i < logits.size(); ++i) out[i] = logits[i] - lse;
}

struct ChunkStats {
  double nll = 0, kl = 0;
  int64_t scored = 0;
  double mtp_nll = 0;
  int64_t mtp_scored = 0, mtp_agree = 0;
};

// Index of the largest logit of each row of logits [R, v] (the first of equal ones).
void ArgmaxRows(std::span<const float> logits, size_t v, std::span<int32_t> out) {
  for (size_t i = 0; i < out.size(); ++i) {
    const auto row = logits.subspan(i * v, v);
    out[i] = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
  }
}

// Reference log-probs of every scored position of a chunk, in order.
Result<std::vector<double>> ReferenceLogProbs(const model::WeightSource& ref,
                                              std::span<const Sequence> chunk,
                                              const RunnerOptions& ro) {
  Runner r(ref, chunk, ro);
  PQ_RETURN_IF_ERROR(r.Forward(false));
  const auto v = static_cast<size_t>(ref.config().vocab);
  std::vector<double> out;
  std::vector<double> lp(v);
  PQ_RETURN_IF_ERROR(r.Head(
                          [&](size_t s, int64_t row0, std::span<const float> logits) -> Status {
                            const auto& tg = chunk[s].targets;
                            for (size_t i = 0; i < logits.size() / v; ++i) {
                              if (tg[static_cast<size_t>(row0) + i] < 0) continue;
                              LogSoftmax(logits.subspan(i * v, v), lp);
                              out.insert(out.end(), lp.begin(), lp.end());
                            }
                            return Status::Ok();
                          },
                          false, 1.0)
                         .status());
  return out;
}

Result<ChunkStats> RunChunk(const model::WeightSource& src, const model::WeightSource* ref,
                            std::span<const Sequence> chunk, const RunnerOptions& ro, bool mtp) {
  std::vector<double> ref_lp;
  if (ref) {
    PQ_ASSIGN_OR_RETURN(ref_lp, ReferenceLogProbs(*ref, chunk, ro));
  }
  Runner r(src, chunk, ro);
  PQ_RETURN_IF_ERROR(r.Forward(false));
  const auto v = static_cast<size_t>(src.config().vocab);
  ChunkStats st;
  size_t k = 0;
  std::vector<double> lp(v);
  std::vector<std::vector<int32_t>> greedy(chunk.size());  // with mtp: argmax of each row
  auto on_logits = [&](size_t s, int64_t row0, std::span<const float> logits) -> Status {
    if (mtp) {
      greedy[s].resize(chunk[s].ids.size());
      ArgmaxRows(logits, v,
                 std::span(greedy[s]).subspan(static_cast<size_t>(row0), logits.size() / v));
    }
    if (!ref) return Status::Ok();
    const auto& tg = chunk[s].targets;
    for (size_t i = 0; i < logits.size() / v; ++i) {
      if (tg[static_cast<size_t>(row0) + i] < 0) continue;
      LogSoftmax(logits.subspan(i * v, v), lp);
      const double* q = ref_lp.data() + k * v;
      for (size_t j = 0; j < v; ++j) st.kl += std::exp(q[j]) * (q[j] - lp[j]);
      ++k;
    }
    return Status::Ok();
  };
  PQ_ASSIGN_OR_RETURN(HeadResult hr, r.Head(on_logits, false, 1.0));
  st.nll = hr.nll_sum;
  st.scored = hr.scored;
  if (!mtp) return st;
  // MTP row t predicts token t+2 (target t+1), as the main head's row t+1 does.
  std::vector<int32_t> draft;
  auto on_mtp = [&](size_t s, int64_t row0, std::span<const float> logits) -> Status {
    draft.resize(logits.size() / v);
    ArgmaxRows(logits, v, draft);
    for (size_t i = 0; i < draft.size(); ++i) {
      const size_t t = static_cast<size_t>(row0) + i;
      if (chunk[s].targets[t + 1] < 0) continue;
      st.mtp_agree += draft[i] == greedy[s][t + 1];
    }
    return Status::Ok();
  };
  PQ_ASSIGN_OR_RETURN(HeadResult mr, r.Mtp(on_mtp, false, 1.0));
  st.mtp_nll = mr.nll_sum;
  st.mtp_scored = mr.scored;
  return st;
}

}  // namespace

Result<std::vector<Sequence>> MakeWindows(const std::vector<std::vector<int32_t>>& docs,
                                          int64_t ctx, int64_t stride) {
  if (ctx < 2) return InvalidArgument("--ctx must be at least 2");
  if (stride < 1 || stride >= ctx)
    return InvalidArgument("--stride must be in [1, ctx - 1] (got " + std::to_string(stride) + ")");
  std::vector<Sequence> out;
  for (const auto& doc : docs) {
    const auto n = static_cast<int64_t>(doc.size());
    int64_t begin = 0, scored_from = 1;  // first target index not yet scored
    while (scored_from < n) {
      const int64_t end = std::min(begin + ctx, n);
      Sequence s;
      s.ids.assign(doc.begin() + begin, doc.begin() + end);
      s.targets.assign(s.ids.size(), -1);
      for (int64_t j = std::max(scored_from, begin + 1); j < end; ++j)
        s.targets[static_cast<size_t>(j - 1 - begin)] = doc[static_cast<size_t>(j)];
      scored_from = end;
      out.push_back(std::move(s));
      if (end == n) break;
      begin = end - (ctx - stride);  // next window: its last `stride` targets are new
    }
  }
  return out;
}

Result<EvalWindows> MakeEvalWindows(const model::WeightSource& model,
                                    const std::vector<std::vector<int32_t>>& docs,
                                    const EvalOptions& o) {
  const int64_t max_pos = model.config().max_positions;
  const int64_t ctx = o.ctx > 0 ? o.ctx : (max_pos > 0 ? std::min<int64_t>(max_pos, 4096) : 2048);
  if (max_pos > 0 && ctx > max_pos)
    return InvalidArgument(
        "--ctx " + std::to_string(ctx) + " exceeds the model's " + "max_position_embeddings " +
        std::to_string(max_pos) +
        " (positions beyond it were never trained); use --ctx <= " + std::to_string(max_pos));
  const int64_t stride = o.stride > 0 ? o.stride : std::max<int64_t>(ctx / 2, 1);
  PQ_ASSIGN_OR_RETURN(std::vector<Sequence> windows, MakeWindows(docs, ctx, stride));
  return EvalWindows{std::move(windows), ctx, stride};
}

Result<EvalResult> Evaluate(const std::string& model_path,
                            const std::vector<std::vector<int32_t>>& docs, const EvalOptions& o) {
  ScopedExecContext exec_scope(o.exec);
  PQ_ASSIGN_OR_RETURN(auto src, model::WeightSource::Open(model_path));
  std::unique_ptr<model::WeightSource> ref;
  if (!o.reference.empty()) {
    PQ_ASSIGN_OR_RETURN(ref, model::WeightSource::Open(o.reference));
  }
  if (o.weights_only) {
    src->set_linear_hook([](model::LinearWeights& l) {
      l.act_format = formats::FormatId::kBF16;
      l.input_global_scale.reset();
      return Status::Ok();
    });
  }
  return Evaluate(*src, ref.get(), docs, o);
}

Result<EvalResult> Evaluate(const model::WeightSource& model, const model::WeightSource* ref,
                            const std::vector<std::vector<int32_t>>& docs, const EvalOptions& o) {
  ScopedExecContext exec_scope(o.exec);
  const model::WeightSource* src = &model;
  if (o.mtp && !src->layout().has_mtp())
    return InvalidArgument("--mtp: the model has no MTP head (mtp.* tensors)");
  if (ref && ref->config().vocab != src->config().vocab)
    return InvalidArgument("--reference has vocab " + std::to_string(ref->config().vocab) +
                           ", the model has " + std::to_string(src->config().vocab));
  PQ_ASSIGN_OR_RETURN(EvalWindows ew, MakeEvalWindows(*src, docs, o));
  std::vector<Sequence>& windows = ew.windows;
  EvalResult res;
  res.docs = static_cast<int64_t>(docs.size());
  res.windows = static_cast<int64_t>(windows.size());
  res.ctx = ew.ctx;
  res.stride = ew.stride;
  // Chunks of windows: the unit of work of a rank, and of the sums (added in chunk order).
  std::vector<std::pair<size_t, size_t>> chunks;  // [first, end) window
  for (size_t i = 0; i < windows.size();) {
    size_t j = i;
    int64_t tokens = 0;
    while (j < windows.size() &&
           (j == i || tokens + static_cast<int64_t>(windows[j].ids.size()) <= o.chunk_tokens))
      tokens += static_cast<int64_t>(windows[j++].ids.size());
    chunks.emplace_back(i, j);
    i = j;
  }
  // Across MPI ranks each takes consecutive chunks; rank 0 adds every chunk's sums in order,
  // as one process does, so the result does not depend on the number of ranks.
  const bool split = !o.this_rank_only && dist::Size() > 1;
  const auto ranks = split ? static_cast<size_t>(dist::Size()) : size_t{1};
  const auto rank = split ? static_cast<size_t>(dist::Rank()) : size_t{0};
  const auto first_chunk = [&](size_t r) { return (chunks.size() * r + ranks - 1) / ranks; };
  const size_t c0 = first_chunk(rank), c1 = first_chunk(rank + 1);  // rank 0 never idle
  RunnerOptions ro = o.runner;
  ro.progress = false;
  Progress progress("eval", c0 < c1 ? chunks[c1 - 1].second - chunks[c0].first : 0);
  std::vector<double> mine;  // nll, kl, scored of each chunk (scored exact below 2^53)
  for (size_t c = c0; c < c1; ++c) {
    const auto [i, j] = chunks[c];
    PQ_ASSIGN_OR_RETURN(ChunkStats st,
                        RunChunk(*src, ref, std::span(windows).subspan(i, j - i), ro, o.mtp));
    mine.insert(mine.end(),
                {st.nll, st.kl, static_cast<double>(st.scored), st.mtp_nll,
                 static_cast<double>(st.mtp_scored), static_cast<double>(st.mtp_agree)});
    progress.Advance(j - i);
  }
  progress.Finish();
  std::vector<double> all;
  if (split) {
    PQ_RETURN_IF_ERROR(dist::Gather(std::span<const double>(mine), all, 0));
  } else {
    all = std::move(mine);
  }
  // nll, kl, scored, mtp nll, mtp scored, mtp agreeing: per chunk, added in chunk order
  // (the counts are exact below 2^53).
  constexpr size_t kPerChunk = 6;
  double sums[kPerChunk] = {};
  for (size_t c = 0; c + kPerChunk <= all.size(); c += kPerChunk)
    for (size_t k = 0; k < kPerChunk; ++k) sums[k] += all[c + k];
  if (split) PQ_RETURN_IF_ERROR(dist::Broadcast(std::as_writable_bytes(std::span(sums)), 0));
  const double nll = sums[0], kl = sums[1];
  res.tokens = static_cast<int64_t>(sums[2]);
  if (o.mtp) {
    res.mtp_tokens = static_cast<int64_t>(sums[4]);
    if (res.mtp_tokens == 0) return InvalidArgument("no MTP positions to score (windows < 3)");
    res.mtp_nll = sums[3] / sums[4];
    res.mtp_accept = sums[5] / sums[4];
  }
  if (res.tokens == 0) return InvalidArgument("no tokens to score (is the text empty?)");
  res.mean_nll = nll / static_cast<double>(res.tokens);
  res.ppl = std::exp(res.mean_nll);
  if (ref) res.mean_kl = kl / static_cast<double>(res.tokens);
  // Weights are checked when loaded; a non-finite result (an overflow inside the model) must
  // still never look like success.
  if (!std::isfinite(res.mean_nll) || (res.mean_kl && !std::isfinite(*res.mean_kl)))
    return DataLoss("the model's NLL" + std::string(res.mean_kl ? " or KL" : "") +
                    " is not finite (an overflow inside the model: activations beyond float "
                    "range); the result is meaningless");
  return res;
}

nlohmann::json EvalResult::ToJson() const {
  nlohmann::json j = {{"docs", docs},     {"windows", windows},   {"tokens", tokens}, {"ctx", ctx},
                      {"stride", stride}, {"mean_nll", mean_nll}, {"ppl", ppl}};
  if (mean_kl) j["mean_kl"] = *mean_kl;
  if (mtp_nll) {
    j["mtp_tokens"] = mtp_tokens;
    j["mtp_nll"] = *mtp_nll;
    j["mtp_accept"] = mtp_accept.value_or(0);
  }
  return j;
}

}  // namespace pq::engine
