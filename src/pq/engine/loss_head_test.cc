// The chunked loss head against the unchunked one: per-token NLL, dL/dn, lm_head's weight
// gradient and the probe's lm_head statistics and prices (rows seen chunk by chunk), and on a
// trained model with an MTP head the runner's loss, boundary gradient and every Linear's weight
// gradient. Forcing 64-row vocabulary chunks (the smallest) on vocabularies of 300 and 512.
#include "pq/engine/loss_head.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "pq/compute/ops.h"
#include "pq/engine/probe_observer.h"
#include "pq/engine/runner.h"
#include "pq/formats/act_quant.h"

namespace pq::engine {
namespace {

using formats::FormatId;

// Tolerances: the chunked log-sum-exp combines float chunk results in double (one float
// rounding of each chunk's lse), and dL/dn sums the chunks' products in another order.
constexpr double kNllTol = 2e-6;   // relative to max |nll|
constexpr double kGradTol = 1e-5;  // relative to max |gradient|
constexpr double kCostTol = 1e-5;  // relative, per candidate price and statistic

double MaxRelDiff(std::span<const float> a, std::span<const float> b) {
  double m = 0, d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(static_cast<double>(b[i])));
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return m > 0 ? d / m : d;
}

// lm_head's weight gradient assembled from whole calls or row slices (dW rows = dyᵀ x).
class HeadGrad : public model::LinearObserver {
 public:
  void OnLinear(const model::LinearWeights& l, std::span<const float> x, std::span<const float> dy,
                int64_t rows) override {
    OnLinearRows(l, 0, l.rows, x, dy, rows);
  }
  void OnLinearRows(const model::LinearWeights& l, int64_t row0, int64_t n,
                    std::span<const float> x, std::span<const float> dy, int64_t rows) override {
    auto& g = grads[l.module];
    g.resize(static_cast<size_t>(l.rows * l.cols), 0.0f);
    ++calls;
    compute::ref::MatMulBackward(
        dy, x,
        std::span<const float>(l.w).subspan(static_cast<size_t>(row0 * l.cols),
                                            static_cast<size_t>(n * l.cols)),
        {},
        std::span(g).subspan(static_cast<size_t>(row0 * l.cols), static_cast<size_t>(n * l.cols)),
        {}, rows, l.cols, n);
  }
  std::map<std::string, std::vector<float>> grads;
  int calls = 0;
};

struct Case {
  model::LinearWeights head;
  std::vector<std::vector<float>> n;      // per sample [T, D]
  std::vector<std::vector<int32_t>> tgt;  // per sample [T]
  int64_t t = 0;
};

Case MakeCase(FormatId act, std::mt19937& rng) {
  Case c;
  const int64_t v = 300, d = 32;
  c.t = 9;
  std::normal_distribution<float> g(0, 1);
  c.head.module = "lm_head";
  c.head.rows = v;
  c.head.cols = d;
  c.head.w.resize(static_cast<size_t>(v * d));
  for (float& w : c.head.w) w = 0.3f * g(rng);
  c.head.act_format = act;
  if (act == FormatId::kNVFP4) c.head.input_global_scale = formats::NvFp4InputGlobalScale(4.0f);
  std::uniform_int_distribution<int32_t> id(-1, static_cast<int32_t>(v - 1));
  for (int s = 0; s < 3; ++s) {
    std::vector<float> n(static_cast<size_t>(c.t * d));
    for (float& x : n) x = g(rng);
    std::vector<int32_t> tg(static_cast<size_t>(c.t));
    for (int32_t& x : tg) x = id(rng);
    tg[0] = 0;                            // first chunk
    tg[1] = static_cast<int32_t>(v - 1);  // the ragged last chunk
    c.n.push_back(std::move(n));
    c.tgt.push_back(std::move(tg));
  }
  return c;
}

struct Outcome {
  std::vector<float> nll, dn, dw;
  std::vector<LinearResult> priced;
  int calls = 0;
};

Outcome RunHead(const Case& c, uint64_t chunk_bytes) {
  Outcome out;
  LossHeadOptions o{chunk_bytes, 0.25f};
  HeadGrad grad;
  ProbeObserverOptions po;
  po.formats = {FormatId::kNVFP4, FormatId::kNVFP4A16, FormatId::kMXFP8,
                FormatId::kFP8,   FormatId::kINT8,     FormatId::kBF16};
  po.total_tokens = c.t * static_cast<int64_t>(c.n.size());
  po.cache_bytes = 0;  // re-quantized per call: row slices quantized alone
  ProbeObserver probe(po);
  for (const auto& n : c.n) probe.OnLinearInput(c.head, n, c.t);
  EXPECT_TRUE(probe.BeginLayer({&c.head}).ok());
  for (size_t s = 0; s < c.n.size(); ++s) {
    std::vector<float> nll(static_cast<size_t>(c.t)), dn(c.n[s].size(), 0.0f);
    ChunkedCrossEntropy(c.head, c.n[s], c.tgt[s], c.t, o, nll, dn, &grad);
    std::vector<float> nll2(nll.size()), dn2(dn.size(), 0.0f);
    ChunkedCrossEntropy(c.head, c.n[s], c.tgt[s], c.t, o, nll2, dn2, &probe);
    EXPECT_EQ(nll, nll2);
    EXPECT_EQ(dn, dn2);
    out.nll.insert(out.nll.end(), nll.begin(), nll.end());
    out.dn.insert(out.dn.end(), dn.begin(), dn.end());
  }
  auto priced = probe.FinishLayer();
  EXPECT_TRUE(priced.ok()) << priced.status().ToString();
  if (priced.ok()) out.priced = std::move(*priced);
  out.dw = grad.grads["lm_head"];
  out.calls = grad.calls;
  return out;
}

void ExpectSameHead(const Outcome& a, const Outcome& b) {
  EXPECT_LE(MaxRelDiff(a.nll, b.nll), kNllTol);
  EXPECT_LE(MaxRelDiff(a.dn, b.dn), kGradTol);
  EXPECT_LE(MaxRelDiff(a.dw, b.dw), kGradTol);
  ASSERT_EQ(a.priced.size(), 1u);
  ASSERT_EQ(b.priced.size(), 1u);
  const LinearResult &x = a.priced[0], &y = b.priced[0];
  EXPECT_EQ(x.samples, y.samples);
  EXPECT_EQ(x.tokens, y.tokens);
  EXPECT_NEAR(x.fisher_trace, y.fisher_trace, kCostTol * std::fabs(y.fisher_trace));
  EXPECT_LE(MaxRelDiff(x.g2_out, y.g2_out), kCostTol);
  EXPECT_EQ(x.x2_in, y.x2_in);  // the inputs are counted once per sample, not per chunk
  ASSERT_EQ(x.candidates.size(), y.candidates.size());
  for (size_t i = 0; i < x.candidates.size(); ++i) {
    const CandidateResult &p = x.candidates[i], &q = y.candidates[i];
    EXPECT_EQ(p.weight_mse, q.weight_mse) << formats::Spec(p.format).name;
    for (size_t e = 0; e < p.cost.size(); ++e)
      EXPECT_NEAR(p.cost[e], q.cost[e], kCostTol * std::fabs(q.cost[e]) + 1e-12)
          << formats::Spec(p.format).name << " estimator " << e;
  }
}

TEST(LossHead, ChunkRowsFitTheBudget) {
  EXPECT_EQ(VocabChunkRows(1024, 248320, 64ull << 20), 16384);  // 64 MiB / 4 KiB per row
  EXPECT_EQ(VocabChunkRows(4, 300, 64ull << 20), 300);          // all of it fits
  EXPECT_EQ(VocabChunkRows(1 << 20, 248320, 1), 64);            // never below 64 rows
}

TEST(LossHead, ChunkedEqualsUnchunkedWithWeightOnlyAndQuantizedInputs) {
  std::mt19937 rng(7);
  for (FormatId act : {FormatId::kBF16, FormatId::kNVFP4, FormatId::kMXFP8}) {
    SCOPED_TRACE(formats::Spec(act).name);
    const Case c = MakeCase(act, rng);
    const Outcome whole = RunHead(c, 1ull << 30), chunked = RunHead(c, 1);
    EXPECT_EQ(whole.calls, 3);        // one OnLinear per sample
    EXPECT_EQ(chunked.calls, 3 * 5);  // 300 rows in chunks of 64: 4 whole + 1 ragged
    ExpectSameHead(chunked, whole);
  }
}

// A planted error fails the comparison: the checks above can fail.
TEST(LossHead, ComparisonSeesAWrongChunk) {
  std::mt19937 rng(7);
  Case c = MakeCase(FormatId::kBF16, rng);
  const Outcome whole = RunHead(c, 1ull << 30);
  c.head.w[static_cast<size_t>(250 * c.head.cols)] += 0.5f;  // a row in the last chunks
  const Outcome chunked = RunHead(c, 1);
  EXPECT_GT(MaxRelDiff(chunked.nll, whole.nll), kNllTol);
  EXPECT_GT(MaxRelDiff(chunked.dw, whole.dw), kGradTol);
}

// On a trained model with an MTP head (vocab 512): the runner's losses, the gradient at the
// last boundary and every Linear's weight gradient of the reverse sweep.
TEST(LossHead, RunnerChunkedEqualsUnchunkedOnATrainedModel) {
  auto src = model::WeightSource::Open(std::string(PQ_SOURCE_DIR) + "/models/trained/qwen3_5_moe");
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  std::vector<Sequence> seqs(2);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> id(0, 511);
  for (auto& s : seqs) {
    for (int i = 0; i < 24; ++i) s.ids.push_back(id(rng));
    s.targets.assign(s.ids.begin() + 1, s.ids.end());
    s.targets.push_back(-1);
  }
  struct Sweep {
    double nll = 0, mtp_nll = 0;
    std::vector<float> grad;
    std::map<std::string, std::vector<float>> dw;
  };
  auto sweep = [&](uint64_t chunk_bytes) {
    RunnerOptions ro;
    ro.progress = false;
    ro.head_chunk_bytes = chunk_bytes;
    Runner r(**src, seqs, ro);
    Sweep out;
    EXPECT_TRUE(r.Forward(true).ok());
    HeadGrad g;
    auto h = r.Head(nullptr, true, 0.01, &g);
    EXPECT_TRUE(h.ok());
    out.nll = h->nll_sum;
    auto m = r.Mtp(nullptr, true, 0.01, &g);
    EXPECT_TRUE(m.ok());
    out.mtp_nll = m->nll_sum;
    out.grad = r.head_grad();
    EXPECT_TRUE(r.Backward(&g, [](int64_t, std::span<const float>) { return Status::Ok(); }).ok());
    out.dw = g.grads;
    return out;
  };
  const Sweep whole = sweep(1ull << 30), chunked = sweep(1);
  EXPECT_NEAR(chunked.nll, whole.nll, kNllTol * std::fabs(whole.nll));
  EXPECT_NEAR(chunked.mtp_nll, whole.mtp_nll, kNllTol * std::fabs(whole.mtp_nll));
  EXPECT_LE(MaxRelDiff(chunked.grad, whole.grad), kGradTol);
  ASSERT_EQ(chunked.dw.size(), whole.dw.size());
  EXPECT_GT(whole.dw.size(), 10u);
  for (const auto& [name, g] : whole.dw)
    EXPECT_LE(MaxRelDiff(chunked.dw.at(name), g), kGradTol) << name;
}

}  // namespace
}  // namespace pq::engine
