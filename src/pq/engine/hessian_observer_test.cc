// The one Hessian observer: H = XᵀX against hand data, groups share one H (accumulated once by
// the group's first wanted member), unwanted Linears are ignored.
#include "pq/engine/hessian_observer.h"

#include <gtest/gtest.h>

namespace pq::engine {
namespace {

model::LinearWeights Linear(const std::string& module, int64_t k) {
  model::LinearWeights l;
  l.module = module;
  l.rows = 2;
  l.cols = k;
  l.w.assign(static_cast<size_t>(2 * k), 0.0f);
  return l;
}

TEST(HessianObserver, MatchesXtXOnHandData) {
  const model::LinearWeights l = Linear("m", 3);
  HessianObserver obs;
  obs.Want(l, "m");
  obs.OnLinearInput(l, std::vector<float>{1, 2, 3, 0, -1, 2}, 2);  // 2 rows of K = 3
  obs.OnLinearInput(l, std::vector<float>{1, 1, 1}, 1);
  const HessianObserver::Entry* e = obs.Find("m");
  ASSERT_NE(e, nullptr);
  // X = [[1,2,3],[0,-1,2],[1,1,1]]: XᵀX.
  EXPECT_EQ(e->h, (std::vector<float>{2, 3, 4, 3, 6, 5, 4, 5, 14}));
  EXPECT_EQ(e->rows, 3);
}

TEST(HessianObserver, GroupMembersShareOneHAccumulatedOnce) {
  const model::LinearWeights q = Linear("q", 2), k = Linear("k", 2), o = Linear("o", 2);
  HessianObserver obs;
  obs.Want(q, "qkv");
  obs.Want(k, "qkv");
  const std::vector<float> x = {1, 2};
  // Both siblings see the same input; only the leader adds it.
  obs.OnLinearInput(q, x, 1);
  obs.OnLinearInput(k, x, 1);
  obs.OnLinearInput(o, x, 1);  // not wanted
  ASSERT_NE(obs.Find("k"), nullptr);
  EXPECT_EQ(obs.Find("q"), obs.Find("k"));
  EXPECT_EQ(obs.Find("k")->h, (std::vector<float>{1, 2, 2, 4}));
  EXPECT_EQ(obs.Find("k")->rows, 1);
  EXPECT_EQ(obs.Find("o"), nullptr);
}

}  // namespace
}  // namespace pq::engine
