#include "pq/dist/block_fold.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "pq/dist/comm.h"

namespace pq::dist {
namespace {

// Accumulates block b's contributions into the accumulators the way a run would.
struct Acc {
  std::vector<double> d = std::vector<double>(2, 0.0);
  std::vector<float> f = std::vector<float>(1, 0.0f);
  int64_t n = 0;
  Sums sums() {
    Sums s;
    s.Add(std::span(d));
    s.Add(std::span(f));
    s.Add(n);
    return s;
  }
};

bool SameBits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TEST(BlockFold, OneBlockIsTheRunningSumBitForBit) {
  ASSERT_EQ(Size(), 1);
  Acc a;
  for (double x : {0.1, 0.2, 0.3}) a.d[0] += x;
  a.f[0] = -0.0f;
  a.n = 7;
  const double want = a.d[0];
  BlockFold fold;
  fold.EndBlock(a.sums(), /*last=*/true);
  ASSERT_TRUE(fold.Finish(a.sums(), true).ok());
  EXPECT_TRUE(SameBits(a.d[0], want));
  EXPECT_TRUE(std::signbit(a.f[0]));  // p_0 itself, not 0 + p_0
  EXPECT_EQ(a.n, 7);
}

TEST(BlockFold, FoldsBlockPartialsLeftInBlockOrder) {
  // Three blocks whose partials are 1e16 + 1 ... : the fold ((p0 + p1) + p2) differs from the
  // running sum over the samples, so the test sees which one was computed.
  const std::vector<std::vector<double>> blocks = {{1e16, 1.0}, {1.0, 1.0}, {-1e16, 3.0}};
  Acc a;
  const Sums s = a.sums();
  BlockFold fold;
  std::vector<double> partial;
  for (size_t b = 0; b < blocks.size(); ++b) {
    double p = 0;
    for (double x : blocks[b]) {
      a.d[1] += x;
      p += x;
    }
    partial.push_back(p);
    a.f[0] += 1.5f;
    ++a.n;
    fold.EndBlock(s, b + 1 == blocks.size());
    if (b + 1 < blocks.size()) {
      EXPECT_EQ(a.d[1], 0.0) << "zeroed after block " << b;
    }
  }
  ASSERT_TRUE(fold.Finish(s, false).ok());
  const double want = (partial[0] + partial[1]) + partial[2];
  double running = 0;
  for (const auto& blk : blocks)
    for (double x : blk) running += x;
  ASSERT_NE(want, running);  // the fixture tells the two orders apart
  EXPECT_TRUE(SameBits(a.d[1], want)) << a.d[1] << " vs " << want;
  EXPECT_EQ(a.f[0], 4.5f);
  EXPECT_EQ(a.n, 3);
}

TEST(BlockFold, FinishWithoutTheLastBlockFails) {
  Acc a;
  BlockFold fold;
  fold.EndBlock(a.sums(), false);
  EXPECT_FALSE(fold.Finish(a.sums(), true).ok());
}

TEST(RankSamples, WholeConsecutiveBlocksCoverEverySample) {
  for (int64_t samples : {1, 6, 7, 64}) {
    for (int64_t block : {0, 1, 2, 5}) {
      const int64_t blocks = block ? (samples + block - 1) / block : 1;
      for (int ranks = 1; ranks <= 4; ++ranks) {
        auto first = RankSamples(samples, block, 0, ranks);
        if (blocks < ranks) {
          EXPECT_FALSE(first.ok()) << samples << " " << block << " " << ranks;
          continue;
        }
        int64_t next = 0;
        for (int r = 0; r < ranks; ++r) {
          auto range = RankSamples(samples, block, r, ranks);
          ASSERT_TRUE(range.ok());
          EXPECT_EQ(range->first, next);
          EXPECT_GT(range->count, 0);
          if (block) {
            EXPECT_EQ(range->first % block, 0);
          }
          next += range->count;
        }
        EXPECT_EQ(next, samples);
      }
    }
  }
}

}  // namespace
}  // namespace pq::dist
