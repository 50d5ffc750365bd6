// Kneedle knee detection on synthetic Pareto curves with a known knee.
#include "pq/alloc/knee.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace pq::alloc {
namespace {

TEST(Knee, FindsTheCornerOfAPiecewiseCurve) {
  // Normalised: 1 - x - y = 0, .55, .4, .2, 0 -> index 1.
  const std::vector<double> x = {0, 1, 2, 3, 4}, y = {10, 2, 1, 0.5, 0};
  EXPECT_EQ(KneeIndex(x, y), 1);
  // Same points in another order: the index refers to the input order.
  const std::vector<double> xs = {3, 0, 4, 1, 2}, ys = {0.5, 10, 0, 2, 1};
  EXPECT_EQ(KneeIndex(xs, ys), 3);
  // Scale and offset of either axis do not matter.
  std::vector<double> x2, y2;
  for (size_t i = 0; i < x.size(); ++i) {
    x2.push_back(4.25 + 0.5 * x[i]);
    y2.push_back(1e-3 + 7e-5 * y[i]);
  }
  EXPECT_EQ(KneeIndex(x2, y2), 1);
}

TEST(Knee, MatchesTheAnalyticKneeOfAnExponentialDecay) {
  // y = exp(-k x) on [0, 1]: 1 - x - ŷ(x) peaks where k e^{-kx} = 1 - e^{-k}.
  for (double k : {3.0, 6.0, 12.0}) {
    std::vector<double> x, y;
    for (int i = 0; i <= 1000; ++i) {
      x.push_back(i / 1000.0);
      y.push_back(std::exp(-k * x.back()));
    }
    const double expected = std::log(k / (1.0 - std::exp(-k))) / k;
    const std::optional<int> knee = KneeIndex(x, y);
    ASSERT_TRUE(knee.has_value());
    EXPECT_NEAR(x[*knee], expected, 1.5e-3) << k;
  }
}

TEST(Knee, NoKneeForDegenerateCurves) {
  EXPECT_EQ(KneeIndex(std::vector<double>{}, std::vector<double>{}), std::nullopt);
  EXPECT_EQ(KneeIndex(std::vector<double>{1, 2}, std::vector<double>{2, 1}), std::nullopt);
  EXPECT_EQ(KneeIndex(std::vector<double>{1, 2, 3}, std::vector<double>{2, 1}), std::nullopt);
  // Straight line, concave curve, flat y, constant x, NaN.
  EXPECT_EQ(KneeIndex(std::vector<double>{1, 2, 3}, std::vector<double>{3, 2, 1}), std::nullopt);
  EXPECT_EQ(KneeIndex(std::vector<double>{0, 1, 2}, std::vector<double>{4, 3.5, 0}), std::nullopt);
  EXPECT_EQ(KneeIndex(std::vector<double>{0, 1, 2}, std::vector<double>{1, 1, 1}), std::nullopt);
  EXPECT_EQ(KneeIndex(std::vector<double>{1, 1, 1}, std::vector<double>{3, 2, 1}), std::nullopt);
  EXPECT_EQ(KneeIndex(std::vector<double>{0, 1, 2}, std::vector<double>{3, std::nan(""), 1}),
            std::nullopt);
  // Three points is enough.
  EXPECT_EQ(KneeIndex(std::vector<double>{0, 1, 2}, std::vector<double>{4, 0.5, 0}), 1);
}

TEST(Knee, ChordJoinsTheActualEndpoints) {
  // The last point rises again: its chord is not y = 1 - x. Normalised y = 1, .070, .012, 0,
  // .895; below the chord 1 - .105 x by .904, .936, .922 (1 - x - y would pick index 1).
  const std::vector<double> x = {0, 1, 2, 3, 4}, y = {10, 2, 1.5, 1.4, 9};
  EXPECT_EQ(KneeIndex(x, y), 2);
}

TEST(Knee, TiesGoToTheSmallerX) {
  // Points 1 and 2 are equally far below the chord.
  const std::vector<double> x = {0, 1, 2, 3}, y = {3, 1, 0, 0};
  // Normalised x = 0, 1/3, 2/3, 1; y = 1, 1/3, 0, 0; 1-x-y = 0, 1/3, 1/3, 0.
  EXPECT_EQ(KneeIndex(x, y), 1);
}

}  // namespace
}  // namespace pq::alloc
