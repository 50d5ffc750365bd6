// Calibration statistics through the observer: against direct formulas on hand data, and on
// stories260K a batched run (batch_tokens = 1) must see each sample separately, exactly as
// running every sequence on its own.
#include "pq/engine/linear_stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "pq/engine/runner.h"

namespace pq::engine {
namespace {

TEST(LinearStats, MatchesFormulasOnHandData) {
  model::LinearWeights l;
  l.module = "m";
  l.rows = 2;
  l.cols = 3;
  l.w.assign(6, 0.0f);
  const std::vector<float> x1 = {1, 2, 3, 0, -1, 2};  // sample 1: 2 rows of K=3
  const std::vector<float> g1 = {1, 0, 2, 1};         // 2 rows of N=2
  const std::vector<float> x2 = {1, 1, 1};            // sample 2: 1 row
  const std::vector<float> g2 = {-1, 3};
  LinearStatsObserver obs;
  obs.OnLinear(l, x1, g1, 2);
  obs.OnLinear(l, x2, g2, 1);
  const LinearStats& s = obs.stats().at("m");
  // Gamma_1 = g1^T x1, row o = sum_t g[t,o] x[t,:]:
  //   o=0: 1*[1,2,3] + 2*[0,-1,2] = [1,0,7];  o=1: 0*[1,2,3] + 1*[0,-1,2] = [0,-1,2]
  //   ||Gamma_1||^2 = 1 + 49 + 1 + 4 = 55.  Gamma_2 = [[-1,-1,-1],[3,3,3]] -> 3 + 27 = 30.
  EXPECT_DOUBLE_EQ(s.fisher_sum, 85.0);
  EXPECT_EQ(s.samples, 2);
  EXPECT_EQ(s.tokens, 3);
  EXPECT_EQ(s.g2_out, (std::vector<double>{1 + 4 + 1, 0 + 1 + 9}));
  EXPECT_EQ(s.x2_in, (std::vector<double>{1 + 0 + 1, 4 + 1 + 1, 9 + 4 + 1}));
}

TEST(LinearStats, EachSampleSeenSeparately) {
  auto src = model::WeightSource::Open(std::string(PQ_SOURCE_DIR) + "/models/stories260K");
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  std::vector<Sequence> seqs(3);
  std::mt19937 rng(3);
  for (auto& s : seqs) {
    for (int i = 0; i < 17; ++i) s.ids.push_back(static_cast<int32_t>(rng() % 512));
    s.targets.assign(s.ids.begin() + 1, s.ids.end());
    s.targets.push_back(-1);
  }
  // The per-sample Fisher of a 3-sequence run equals the sum of three single-sequence runs
  // (it would not if two samples' rows reached one OnLinear call).
  RunnerOptions o;
  o.batch_tokens = 1;
  o.progress = false;
  Runner all(**src, seqs, o);
  LinearStatsObserver obs;
  ASSERT_TRUE(all.Forward(true).ok());
  ASSERT_TRUE(all.Head({}, true, 1.0, &obs).ok());
  ASSERT_TRUE(all.Backward(&obs, {}).ok());
  double fisher_alone = 0;
  const std::string m = "model.layers.2.mlp.down_proj";
  for (const auto& s : seqs) {
    Runner one(**src, std::span(&s, 1), o);
    LinearStatsObserver o1;
    ASSERT_TRUE(one.Forward(true).ok());
    ASSERT_TRUE(one.Head({}, true, 1.0, &o1).ok());
    ASSERT_TRUE(one.Backward(&o1, {}).ok());
    fisher_alone += o1.stats().at(m).fisher_sum;
  }
  const LinearStats& st = obs.stats().at(m);
  EXPECT_EQ(st.samples, 3);
  EXPECT_EQ(st.tokens, 51);
  EXPECT_GT(st.fisher_sum, 0.0);
  EXPECT_NEAR(st.fisher_sum, fisher_alone, 1e-5 * fisher_alone);
  EXPECT_EQ(obs.stats().at("lm_head").samples, 3);
}

}  // namespace
}  // namespace pq::engine
