// The forward sweep's per-step hooks (runner.h SweepHooks): steps come in layer order with the
// layer's Linears; an observer returned by Observe sees the step's inputs computed from the
// current boundary; weights changed by Replace produce the next boundary (so later steps see
// the replaced prefix); MtpForward's fc step sees exactly the MTP inputs Runner::Mtp uses.
// (Hessian accumulation on these hooks: hessian_observer_test; export bytes: the interop and
// byte-regression checks.)
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "pq/engine/runner.h"

namespace pq::engine {
namespace {

std::vector<Sequence> RandomSequences(int n, int t, int vocab, uint32_t seed) {
  std::vector<Sequence> seqs(static_cast<size_t>(n));
  std::mt19937 rng(seed);
  for (auto& s : seqs) {
    for (int i = 0; i < t; ++i) s.ids.push_back(static_cast<int32_t>(rng() % vocab));
    s.targets.assign(s.ids.begin() + 1, s.ids.end());
    s.targets.push_back(-1);
  }
  return seqs;
}

std::unique_ptr<model::WeightSource> Open(const std::string& rel) {
  auto src = model::WeightSource::Open(std::string(PQ_SOURCE_DIR) + "/" + rel);
  EXPECT_TRUE(src.ok()) << src.status().ToString();
  return src.ok() ? std::move(*src) : nullptr;
}

// Records every Linear's forward input rows, concatenated per module.
struct InputRecorder : model::LinearObserver {
  std::map<std::string, std::vector<float>> x;
  void OnLinear(const model::LinearWeights&, std::span<const float>, std::span<const float>,
                int64_t) override {}
  void OnLinearInput(const model::LinearWeights& l, std::span<const float> in,
                     int64_t rows) override {
    auto& v = x[l.module];
    v.insert(v.end(), in.begin(), in.begin() + rows * l.cols);
  }
};

// Halves every Linear of `layer` in Replace; records the steps and per-step inputs.
struct HalvingHooks : SweepHooks {
  int64_t layer = 0;
  std::vector<std::pair<int64_t, bool>> steps;  // (layer, mtp_fc) of every Observe
  std::vector<std::vector<std::string>> modules;
  std::map<int64_t, InputRecorder> seen;
  model::LinearObserver* Observe(const SweepStep& step) override {
    steps.emplace_back(step.layer, step.mtp_fc);
    modules.emplace_back();
    for (const auto* l : step.linears) modules.back().push_back(l->module);
    return &seen[step.mtp_fc ? -1 : step.layer];
  }
  Status Replace(const SweepStep& step) override {
    if (step.layer == layer && !step.mtp_fc)
      for (auto* l : step.linears)
        for (float& v : l->w) v *= 0.5f;
    return Status::Ok();
  }
};

TEST(SweepHooks, StepsInOrderWithTheLayersLinears) {
  auto src = Open("models/stories260K");
  ASSERT_TRUE(src);
  const auto seqs = RandomSequences(3, 9, 512, 1);
  RunnerOptions o;
  o.progress = false;
  Runner r(*src, seqs, o);
  HalvingHooks hooks;
  hooks.layer = -1;  // replace nothing
  ASSERT_TRUE(r.Forward(false, nullptr, &hooks).ok());
  const int64_t layers = src->config().num_layers;
  ASSERT_EQ(hooks.steps.size(), static_cast<size_t>(layers));
  for (int64_t l = 0; l < layers; ++l) {
    EXPECT_EQ(hooks.steps[static_cast<size_t>(l)], std::make_pair(l, false));
    auto w = src->LoadLayer(l);
    ASSERT_TRUE(w.ok());
    std::vector<std::string> want;
    model::ForEachLinear(*w, [&](const model::LinearWeights& lw) { want.push_back(lw.module); });
    EXPECT_EQ(hooks.modules[static_cast<size_t>(l)], want);
  }
  // Nothing replaced: the last boundary equals a sweep without hooks.
  Runner plain(*src, seqs, o);
  ASSERT_TRUE(plain.Forward(false).ok());
  const auto n = static_cast<size_t>(r.total_tokens() * src->config().hidden);
  std::vector<float> a(n), b(n);
  ASSERT_TRUE(r.Boundary(layers, a).ok());
  ASSERT_TRUE(plain.Boundary(layers, b).ok());
  EXPECT_EQ(a, b);
}

TEST(SweepHooks, ReplacedWeightsProduceTheNextBoundary) {
  auto src = Open("models/stories260K");
  ASSERT_TRUE(src);
  const model::ModelConfig& c = src->config();
  const auto seqs = RandomSequences(2, 11, 512, 2);
  RunnerOptions o;
  o.progress = false;
  Runner r(*src, seqs, o);
  HalvingHooks hooks;
  hooks.layer = 1;
  ASSERT_TRUE(r.Forward(/*keep_all=*/true, nullptr, &hooks).ok());
  const auto n = static_cast<size_t>(r.total_tokens() * c.hidden);
  std::vector<float> b1(n), b2(n), want(n), plain2(n);
  ASSERT_TRUE(r.Boundary(1, b1).ok());
  ASSERT_TRUE(r.Boundary(2, b2).ok());
  // Boundary 2 = layer 1 with halved weights on boundary 1 (same batch: both sequences).
  auto w = src->LoadLayer(1);
  ASSERT_TRUE(w.ok());
  const auto rope = model::RopeCache::Make(c, 11);
  const std::vector<int64_t> lens = {11, 11};
  model::DecoderLayerForward(c, *w, rope, b1, plain2, lens, nullptr);
  model::ForEachLinear(*w, [](model::LinearWeights& l) {
    for (float& v : l.w) v *= 0.5f;
  });
  InputRecorder direct;
  model::DecoderLayerForward(c, *w, rope, b1, want, lens, nullptr, &direct);
  EXPECT_EQ(b2, want);
  EXPECT_NE(b2, plain2);  // the replacement mattered
  // Observe ran before Replace: layer 1's observer saw its inputs from boundary 1 (weights as
  // loaded: the inputs of q/k/v do not depend on the layer's own weights).
  const std::string q = "model.layers.1.self_attn.q_proj";
  EXPECT_EQ(hooks.seen[1].x.at(q), direct.x.at(q));
  // Layer 2's observer saw the replaced prefix: its q input equals the direct computation on b2.
  auto w2 = src->LoadLayer(2);
  ASSERT_TRUE(w2.ok());
  InputRecorder next;
  std::vector<float> out(n);
  model::DecoderLayerForward(c, *w2, rope, b2, out, lens, nullptr, &next);
  const std::string q2 = "model.layers.2.self_attn.q_proj";
  EXPECT_EQ(hooks.seen[2].x.at(q2), next.x.at(q2));
}

TEST(SweepHooks, MtpForwardStepsFcThenTheMtpLayerOnMtpInputs) {
  auto src = Open("models/trained/qwen3_5_moe");
  ASSERT_TRUE(src);
  ASSERT_TRUE(src->layout().has_mtp());
  const auto seqs = RandomSequences(2, 10, static_cast<int>(src->config().vocab), 3);
  RunnerOptions o;
  o.progress = false;
  Runner r(*src, seqs, o);
  ASSERT_TRUE(r.Forward(false).ok());
  HalvingHooks hooks;
  hooks.layer = -1;
  ASSERT_TRUE(r.MtpForward(hooks).ok());
  const int64_t mtp = src->config().num_layers;
  ASSERT_EQ(hooks.steps.size(), 2u);
  EXPECT_EQ(hooks.steps[0], std::make_pair(mtp, true));
  EXPECT_EQ(hooks.steps[1], std::make_pair(mtp, false));
  ASSERT_EQ(hooks.modules[0].size(), 1u);
  // The fc and MTP-layer inputs equal what Runner::Mtp (the probe's MTP pass) feeds them.
  InputRecorder probe;
  ASSERT_TRUE(r.Mtp(nullptr, false, 1.0, &probe).ok());
  const std::string fc = hooks.modules[0][0];
  EXPECT_EQ(hooks.seen[-1].x.at(fc), probe.x.at(fc));
  // The MTP layer's inputs: fc runs on all sequences' rows at once here and per sequence in
  // Mtp, so the GEMM's blocking may round differently (last bits).
  for (const std::string& m : hooks.modules[1]) {  // an expert no token reached has no entry
    const auto &a = hooks.seen[mtp].x[m], &b = probe.x[m];
    ASSERT_EQ(a.size(), b.size()) << m;
    for (size_t i = 0; i < a.size(); ++i)
      ASSERT_NEAR(a[i], b[i], 1e-5f * (1 + std::fabs(b[i]))) << m;
  }
  EXPECT_FALSE(hooks.seen[mtp].x.empty());
}

}  // namespace
}  // namespace pq::engine
