// PerturbedEval (the source run once, each perturbation from its own layer on) against the
// plain way: Evaluate of the perturbed model from scratch with the source as reference. The
// identity perturbation gives the source's NLL and KL = 0 exactly; a perturbed Linear of any
// layer (run-time activation quantization included) and a perturbed lm_head give Evaluate's
// NLL and KL (the source's probabilities are kept as float here, double there).
#include "pq/engine/perturbed_eval.h"

#include <gtest/gtest.h>

#include <random>

#include "pq/engine/eval.h"

namespace pq::engine {
namespace {

struct Case {
  std::unique_ptr<model::WeightSource> src, ref;
  std::vector<std::vector<int32_t>> docs;
  EvalOptions eo;
};

Case Make(const std::string& model) {
  Case c;
  c.src = model::WeightSource::Open(std::string(PQ_SOURCE_DIR) + model).value();
  c.ref = model::WeightSource::Open(std::string(PQ_SOURCE_DIR) + model).value();
  std::mt19937 rng(7);
  for (int d = 0; d < 5; ++d) {
    std::vector<int32_t> doc(static_cast<size_t>(20 + 9 * d));
    for (auto& t : doc) t = static_cast<int32_t>(3 + rng() % 90);
    c.docs.push_back(doc);
  }
  c.eo.ctx = 32;  // the longer documents take two windows
  c.eo.runner.progress = false;
  c.eo.runner.batch_tokens = 64;
  return c;
}

// Scales every weight of `module` by 1.2 and quantizes its input as FP8 does at run time.
PerturbedEval::ReplaceFn Perturb(const std::string& module) {
  return [module](model::LinearWeights& l) {
    if (l.module != module) return Status::Ok();
    for (float& x : l.w) x *= 1.2f;
    l.act_format = formats::FormatId::kFP8;
    return Status::Ok();
  };
}

void ExpectAsEvaluate(Case& c, int64_t layer, const std::string& module) {
  auto windows = MakeEvalWindows(*c.src, c.docs, c.eo);
  ASSERT_TRUE(windows.ok());
  PerturbedEvalOptions po;
  po.runner = c.eo.runner;
  po.layer_cache_bytes = 0;  // every layer loaded again: the uncached path
  auto pe = PerturbedEval::Create(*c.src, windows->windows, po);
  ASSERT_TRUE(pe.ok()) << pe.status().ToString();
  auto base = Evaluate(*c.src, nullptr, c.docs, c.eo);
  ASSERT_TRUE(base.ok());
  EXPECT_EQ((*pe)->scored(), base->tokens);
  EXPECT_NEAR((*pe)->base_nll_sum() / static_cast<double>(base->tokens), base->mean_nll, 1e-12);

  auto same = (*pe)->Measure(layer, [](model::LinearWeights&) { return Status::Ok(); });
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->kl, 0.0) << "the identity perturbation must give KL 0 exactly";
  EXPECT_EQ(same->nll, (*pe)->base_nll_sum());

  auto m = (*pe)->Measure(layer, Perturb(module));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  c.src->set_linear_hook(Perturb(module));
  auto e = Evaluate(*c.src, c.ref.get(), c.docs, c.eo);
  c.src->set_linear_hook(nullptr);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  const auto t = static_cast<double>(e->tokens);
  EXPECT_NEAR(m->nll / t, e->mean_nll, 1e-9) << module;
  ASSERT_GT(*e->mean_kl, 1e-5) << module << ": the perturbation must move the output";
  EXPECT_NEAR(m->kl / t, *e->mean_kl, 1e-5 * *e->mean_kl) << module;
}

TEST(PerturbedEval, EqualsEvaluatingThePerturbedModel) {
  Case c = Make("/models/stories260K");
  ExpectAsEvaluate(c, 0, "model.layers.0.self_attn.q_proj");
  ExpectAsEvaluate(c, 2, "model.layers.2.mlp.down_proj");
  ExpectAsEvaluate(c, 4, "model.layers.4.mlp.up_proj");
  ExpectAsEvaluate(c, 5, "lm_head");
}

TEST(PerturbedEval, EqualsEvaluatingThePerturbedModelWithRouting) {
  Case c = Make("/tests/golden/qwen3_moe/model");
  ExpectAsEvaluate(c, 0, "model.layers.0.mlp.experts.1.down_proj");
  ExpectAsEvaluate(c, 1, "model.layers.1.self_attn.o_proj");
}

TEST(PerturbedEval, RefusesABadLayerAndTooManyTokens) {
  Case c = Make("/models/stories260K");
  auto windows = MakeEvalWindows(*c.src, c.docs, c.eo);
  ASSERT_TRUE(windows.ok());
  PerturbedEvalOptions po;
  po.runner = c.eo.runner;
  auto pe = PerturbedEval::Create(*c.src, windows->windows, po);
  ASSERT_TRUE(pe.ok());
  EXPECT_FALSE((*pe)->Measure(-1, nullptr).ok());
  EXPECT_FALSE((*pe)->Measure(6, nullptr).ok());
  po.max_probs_bytes = 1000;
  auto big = PerturbedEval::Create(*c.src, windows->windows, po);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("--max-docs"), std::string::npos);
}

}  // namespace
}  // namespace pq::engine
