// The probe observer against a direct computation with the formats layer: every candidate's
// cost by every estimator, for weight-only and activation-quantizing formats, with fused
// siblings sharing the NVFP4 global scales.
#include "pq/engine/probe_observer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "pq/core/minifloat.h"
#include "pq/formats/act_quant.h"

namespace pq::engine {
namespace {

using formats::FormatId;

model::LinearWeights RandomLinear(const std::string& name, int64_t n, int64_t k, float scale,
                                  std::mt19937& rng) {
  std::normal_distribution<float> g(0, scale);
  model::LinearWeights l;
  l.module = name;
  l.rows = n;
  l.cols = k;
  l.w.resize(static_cast<size_t>(n * k));
  for (float& v : l.w) v = g(rng);
  return l;
}

struct Sample {
  std::vector<float> x, dy;
  int64_t rows;
};

// Direct computation of one candidate's costs from the samples (double accumulation).
std::array<double, quant::kNumEstimators> DirectCosts(const model::LinearWeights& l,
                                                      const std::vector<Sample>& samples,
                                                      FormatId f, float wgs, float igs,
                                                      int64_t t_total) {
  const int64_t n = l.rows, k = l.cols;
  std::vector<float> wb(l.w.size());
  for (size_t i = 0; i < wb.size(); ++i) wb[i] = RoundBf16(l.w[i]);
  std::vector<float> w_hat = wb;
  if (f != FormatId::kBF16) {
    formats::QuantizeOptions q;
    q.weight_global_scale = wgs;
    q.input_global_scale = igs;
    auto tensors = formats::QuantizeRtn(f, wb, n, k, q);
    EXPECT_TRUE(tensors.ok());
    w_hat = *formats::Dequantize(f, formats::Views(*tensors), n, k);
  }
  const bool act = formats::Spec(f).quantizes_activations;
  std::vector<double> g2(n, 0), x2(k, 0), dx2(k, 0), h(k * k, 0), ew(n, 0), ea(n, 0), eo(n, 0);
  double fisher = 0, token = 0;  // token: Σ_t Σ_o dy[t,o]² · ΔY[t,o]²
  for (const Sample& s : samples) {
    std::vector<float> xq = s.x;
    if (act) {
      EXPECT_TRUE(formats::FakeQuantizeActivations(f, xq, s.rows, k, igs).ok());
    }
    std::vector<double> gamma(n * k, 0);
    for (int64_t t = 0; t < s.rows; ++t) {
      const float* x = &s.x[t * k];
      const float* xa = &xq[t * k];
      const float* g = &s.dy[t * n];
      for (int64_t i = 0; i < k; ++i) {
        x2[i] += double(x[i]) * x[i];
        dx2[i] += (double(x[i]) - xa[i]) * (double(x[i]) - xa[i]);
        for (int64_t j = 0; j < k; ++j) h[i * k + j] += double(x[i]) * x[j];
      }
      for (int64_t o = 0; o < n; ++o) {
        g2[o] += double(g[o]) * g[o];
        double y = 0, yw = 0, ya = 0, yo = 0;
        for (int64_t i = 0; i < k; ++i) {
          gamma[o * k + i] += double(g[o]) * x[i];
          y += double(x[i]) * l.w[o * k + i];
          yw += double(x[i]) * w_hat[o * k + i];
          ya += double(xa[i]) * l.w[o * k + i];
          yo += double(xa[i]) * w_hat[o * k + i];
        }
        ew[o] += (y - yw) * (y - yw);
        ea[o] += (y - ya) * (y - ya);
        eo[o] += (y - yo) * (y - yo);
        const double dy_out = act ? y - yo : y - yw;
        token += double(g[o]) * g[o] * dy_out * dy_out;
      }
    }
    for (double v : gamma) fisher += v * v;
  }
  // Weight-only terms by the reference estimator code, with H = XᵀX.
  std::vector<float> hf(h.begin(), h.end());
  const quant::CostInputs in{n, k, t_total, fisher, g2, x2, hf};
  std::array<double, quant::kNumEstimators> c{};
  c[0] = *quant::PredictedLossIncrease(quant::CostEstimator::kTrace, in, l.w, w_hat);
  c[1] = *quant::PredictedLossIncrease(quant::CostEstimator::kChannel, in, l.w, w_hat);
  c[2] = *quant::PredictedLossIncrease(quant::CostEstimator::kHessian, in, l.w, w_hat);
  const double t2 = double(t_total) * double(t_total);
  double act_h = 0, act_c = 0, out = 0, w2 = 0, sum_x2 = 0, sum_dx2 = 0;
  for (int64_t o = 0; o < n; ++o) {
    act_h += g2[o] * ea[o];
    out += g2[o] * (act ? eo[o] : ew[o]);
    for (int64_t i = 0; i < k; ++i) {
      act_c += g2[o] * dx2[i] * double(l.w[o * k + i]) * l.w[o * k + i];
      w2 += double(l.w[o * k + i]) * l.w[o * k + i];
    }
  }
  for (int64_t i = 0; i < k; ++i) sum_x2 += x2[i], sum_dx2 += dx2[i];
  if (act) {
    c[0] += 0.5 * (fisher / double(t_total)) * (w2 / double(n * k)) * (sum_dx2 / sum_x2);
    c[1] += 0.5 * act_c / t2;
    c[2] += 0.5 * act_h / t2;
  }
  c[3] = 0.5 * out / t2;
  c[4] = c[2];  // block: the hessian value where no block rerun priced the Linear
  c[5] = 0.5 * token / double(t_total);
  return c;
}

TEST(ProbeObserver, CostsEqualDirectComputation) {
  std::mt19937 rng(7);
  const int64_t k = 64, t_total = 90;  // T >= K: the H route pays (per_token off)
  // q and k are fused siblings (one unit), o stands alone. Without per-token errors q/k (56
  // outputs of K = 64) take the activation error from ΔXᵀΔX, o (32) keeps (X − Q(X))·Wᵀ.
  model::LinearWeights q = RandomLinear("q", 48, k, 0.05f, rng);
  model::LinearWeights kp = RandomLinear("k", 8, k, 0.2f, rng);
  model::LinearWeights o = RandomLinear("o", 32, k, 0.1f, rng);
  const std::vector<FormatId> fmts = {FormatId::kBF16,  FormatId::kNVFP4, FormatId::kNVFP4A16,
                                      FormatId::kMXFP8, FormatId::kMXFP4, FormatId::kFP8,
                                      FormatId::kINT4,  FormatId::kINT8};
  // Cached and recomputed candidates; without per-token errors, e_weight from the priced H
  // (shared by the fused q/k) where it fits the cache budget, else from X·ΔWᵀ.
  for (const auto& [cache, per_token] : std::vector<std::pair<uint64_t, bool>>{
           {uint64_t{1} << 30, true}, {0, true}, {uint64_t{1} << 30, false}, {0, false}}) {
    SCOPED_TRACE(std::to_string(cache) + (per_token ? " per token" : " H route"));
    ProbeObserverOptions po;
    po.formats = fmts;
    po.unit_of = {{"q", "qk"}, {"k", "qk"}, {"o", "o"}};
    po.total_tokens = t_total;
    po.cache_bytes = cache;
    po.per_token = per_token;
    if (!per_token && cache > 0) po.routed = {"o"};  // a routed expert keeps X·ΔWᵀ
    ProbeObserver probe(po);
    std::mt19937 srng(3);
    std::normal_distribution<float> g(0, 1);
    std::map<std::string, std::vector<Sample>> samples;
    for (const auto* l : {&q, &kp, &o})
      for (int64_t rows : {33, 17, 40}) {
        Sample s{std::vector<float>(rows * k), std::vector<float>(rows * l->rows), rows};
        for (float& v : s.x) v = g(srng) * (1 + 3 * (g(srng) > 2.0f));  // a few outliers
        if (l == &kp) s.x = samples["q"][samples["k"].size()].x;        // fused: q's inputs
        for (float& v : s.dy) v = 0.01f * g(srng);
        samples[l->module].push_back(s);
        probe.OnLinearInput(*l, s.x, rows);  // forward sweep: input amax
      }
    ASSERT_TRUE(probe.BeginLayer({&q, &kp, &o}).ok());
    for (const auto* l : {&q, &kp, &o})
      for (const Sample& s : samples[l->module]) probe.OnLinear(*l, s.x, s.dy, s.rows);
    auto results = probe.FinishLayer();
    ASSERT_TRUE(results.ok()) << results.status().ToString();
    ASSERT_EQ(results->size(), 3u);
    // Unit-wide scales: max over q and k.
    auto amax_w = [](const model::LinearWeights& l) {
      float m = 0;
      for (float v : l.w) m = std::max(m, std::fabs(RoundBf16(v)));
      return m;
    };
    const auto& ia = probe.input_amax();
    const float wgs_qk = formats::NvFp4GlobalScale(std::max(amax_w(q), amax_w(kp)));
    const float igs_qk = formats::NvFp4InputGlobalScale(std::max(ia.at("q"), ia.at("k")));
    const float wgs_o = formats::NvFp4GlobalScale(amax_w(o));
    const float igs_o = formats::NvFp4InputGlobalScale(ia.at("o"));
    for (const LinearResult& r : *results) {
      const auto& l = r.module == "q" ? q : r.module == "k" ? kp : o;
      const bool qk = r.module != "o";
      EXPECT_EQ(r.samples, 3);
      EXPECT_EQ(r.tokens, 90);
      ASSERT_EQ(r.candidates.size(), 7u) << "INT4 needs K % 128 == 0";
      for (const CandidateResult& c : r.candidates) {
        const auto want = DirectCosts(l, samples[r.module], c.format, qk ? wgs_qk : wgs_o,
                                      qk ? igs_qk : igs_o, t_total);
        EXPECT_EQ(c.bytes, formats::BytesOnDisk(c.format, l.rows, l.cols));
        for (int e = 0; e < quant::kNumEstimators; ++e) {
          if (!per_token && quant::NeedsPerTokenError(static_cast<quant::CostEstimator>(e))) {
            EXPECT_TRUE(std::isnan(c.cost[e])) << "not recorded: NaN";
            continue;
          }
          EXPECT_NEAR(c.cost[e], want[e], 2e-5 * std::fabs(want[e]) + 1e-15)
              << r.module << " " << formats::Spec(c.format).name << " estimator " << e;
        }
      }
      // Activation quantization makes NVFP4 cost more than NVFP4A16 (same weights).
      const int est = per_token ? 3 : 2;  // output, or hessian (weight + activation error)
      EXPECT_GT(r.candidates[1].cost[est], r.candidates[2].cost[est]);
    }
  }
}

// A massive activation on few tokens whose output gradient is small (SmolLM2's attention
// sink): the factorised estimators (hessian, output) multiply the mean gradient by the error
// energy those tokens dominate and over-predict; token weights each token's error by its own
// gradient and equals the direct per-token sum.
TEST(ProbeObserver, TokenWeightsEachTokensErrorByItsOwnGradient) {
  std::mt19937 rng(11);
  const int64_t k = 128, n = 16, rows = 64;
  model::LinearWeights l = RandomLinear("down", n, k, 0.05f, rng);
  ProbeObserverOptions po;
  po.formats = {FormatId::kINT4, FormatId::kNVFP4A16};
  po.total_tokens = rows;
  ProbeObserver probe(po);
  std::normal_distribution<float> g(0, 1);
  Sample s{std::vector<float>(rows * k), std::vector<float>(rows * n), rows};
  for (int64_t t = 0; t < rows; ++t) {
    const bool sink = t == 0;  // first token: |x| ~ 1000 on a few channels, tiny gradient
    for (int64_t i = 0; i < k; ++i) s.x[t * k + i] = g(rng) * (sink && i < 4 ? 1000.f : 1.f);
    for (int64_t o = 0; o < n; ++o) s.dy[t * n + o] = g(rng) * (sink ? 1e-3f : 1.f);
  }
  probe.OnLinearInput(l, s.x, rows);
  ASSERT_TRUE(probe.BeginLayer({&l}).ok());
  probe.OnLinear(l, s.x, s.dy, rows);
  auto results = probe.FinishLayer();
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  const auto tok = static_cast<size_t>(quant::CostEstimator::kToken);
  const auto hes = static_cast<size_t>(quant::CostEstimator::kHessian);
  const float wgs = formats::NvFp4GlobalScale([&] {
    float m = 0;
    for (float v : l.w) m = std::max(m, std::fabs(RoundBf16(v)));
    return m;
  }());
  for (const CandidateResult& c : (*results)[0].candidates) {
    const auto want = DirectCosts(l, {s}, c.format, wgs, 1.f, rows);
    EXPECT_NEAR(c.cost[tok], want[5], 1e-5 * want[5]) << formats::Spec(c.format).name;
    EXPECT_GT(c.cost[hes], 10 * c.cost[tok]) << formats::Spec(c.format).name;
  }
}

TEST(ProbeObserver, UnseenLinearHasZeroStatistics) {
  std::mt19937 rng(1);
  model::LinearWeights e = RandomLinear("expert", 8, 32, 0.1f, rng);
  ProbeObserverOptions po;
  po.formats = {FormatId::kBF16, FormatId::kMXFP8};
  po.total_tokens = 10;
  ProbeObserver probe(po);
  ASSERT_TRUE(probe.BeginLayer({&e}).ok());
  auto r = probe.FinishLayer();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].samples, 0);
  for (const auto& c : (*r)[0].candidates)
    for (double v : c.cost) EXPECT_EQ(v, 0.0);
}

}  // namespace
}  // namespace pq::engine
