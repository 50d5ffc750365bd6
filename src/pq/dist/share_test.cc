#include "pq/dist/share.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "pq/dist/comm.h"

namespace pq::dist {
namespace {

std::vector<double> Loads(const std::vector<double>& costs, const std::vector<int>& owner,
                          int ranks) {
  std::vector<double> load(static_cast<size_t>(ranks), 0.0);
  for (size_t j = 0; j < costs.size(); ++j) load[static_cast<size_t>(owner[j])] += costs[j];
  return load;
}

TEST(AssignOwners, OneRankOwnsEverything) {
  const std::vector<double> costs = {3, 1, 4, 1, 5};
  EXPECT_EQ(AssignOwners(costs, 1), std::vector<int>(5, 0));
}

TEST(AssignOwners, LongestFirstToTheLeastLoaded) {
  // 8 to rank 0, 7 to rank 1, 6 to rank 1 (7 < 8: 13), 5 to rank 0 (8 < 13: 13), 4 to
  // rank 0 (13 = 13: the lower rank).
  const std::vector<double> costs = {4, 8, 5, 7, 6};
  EXPECT_EQ(AssignOwners(costs, 2), (std::vector<int>{0, 0, 0, 1, 1}));
}

TEST(AssignOwners, ExpertsOfALayerSpreadEvenly) {
  // 64 equal experts x 3 Linears with gate/up cheaper than down: every rank gets a share
  // within one job of the mean.
  std::vector<double> costs;
  for (int e = 0; e < 64; ++e) costs.insert(costs.end(), {1.0, 1.0, 2.0});
  for (int ranks : {2, 3, 5, 7}) {
    const std::vector<int> owner = AssignOwners(costs, ranks);
    const std::vector<double> load = Loads(costs, owner, ranks);
    const double mean = 256.0 / ranks;
    for (double l : load) EXPECT_LE(std::abs(l - mean), 2.0) << "ranks " << ranks;
  }
}

TEST(AssignOwners, SameAnswerEveryCall) {
  std::vector<double> costs;
  for (int i = 0; i < 100; ++i) costs.push_back((i * 37) % 11);
  EXPECT_EQ(AssignOwners(costs, 3), AssignOwners(costs, 3));
  const std::vector<int> owner = AssignOwners(costs, 3);
  EXPECT_TRUE(std::all_of(owner.begin(), owner.end(), [](int r) { return r >= 0 && r < 3; }));
}

TEST(BroadcastBlob, OneRankKeepsItsBlob) {
  ASSERT_EQ(Size(), 1);
  std::vector<std::byte> blob = {std::byte{1}, std::byte{2}};
  ASSERT_TRUE(BroadcastBlob(blob, 0).ok());
  EXPECT_EQ(blob.size(), 2u);
  EXPECT_EQ(blob[1], std::byte{2});
}

}  // namespace
}  // namespace pq::dist
