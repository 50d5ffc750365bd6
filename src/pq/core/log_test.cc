#include "pq/core/log.h"

#include <gtest/gtest.h>

namespace pq {
namespace {

TEST(Log, FormatDurationReadsLikeAClock) {
  EXPECT_EQ(FormatDuration(0.25), "0.2s");
  EXPECT_EQ(FormatDuration(42.7), "42s");
  EXPECT_EQ(FormatDuration(65), "1m05s");
  EXPECT_EQ(FormatDuration(3 * 3600 + 12 * 60 + 59), "3h12m");
  EXPECT_EQ(FormatDuration(-1), "0.0s");
}

TEST(Log, ProgressLineEstimatesTheTimeLeftFromTheRateSoFar) {
  // 10 of 40 layers in 100 s: 30 more at 10 s each.
  EXPECT_EQ(FormatProgressLine("backward", 10, 40, 100, false),
            "backward  10/40   25%  elapsed 1m40s  eta 5m00s");
  // No estimate before the first unit, none on the final line.
  EXPECT_EQ(FormatProgressLine("forward", 0, 40, 3, false), "forward  0/40    0%  elapsed 3.0s");
  EXPECT_EQ(FormatProgressLine("forward", 40, 40, 400, true),
            "forward  40/40  100%  elapsed 6m40s");
}

}  // namespace
}  // namespace pq
