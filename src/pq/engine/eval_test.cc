// Windowing of eval documents: every token after the first scored exactly once, windows no
// longer than ctx, each scored token with at least ctx - stride tokens of context past the
// first window; bad settings refused.
#include "pq/engine/eval.h"

#include <gtest/gtest.h>

#include <map>

namespace pq::engine {
namespace {

TEST(EvalWindows, EveryTokenScoredOnceWithContext) {
  for (int64_t n : {1, 2, 5, 16, 17, 40, 100}) {
    for (auto [ctx, stride] : {std::pair<int64_t, int64_t>{16, 8}, {16, 15}, {16, 1}, {7, 3}}) {
      std::vector<int32_t> doc(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) doc[static_cast<size_t>(i)] = static_cast<int32_t>(1000 + i);
      auto w = MakeWindows({doc}, ctx, stride);
      ASSERT_TRUE(w.ok());
      std::map<int32_t, int> scored;
      for (const auto& s : *w) {
        EXPECT_LE(static_cast<int64_t>(s.ids.size()), ctx);
        ASSERT_EQ(s.ids.size(), s.targets.size());
        for (size_t i = 0; i < s.ids.size(); ++i) {
          if (s.targets[i] < 0) continue;
          EXPECT_EQ(s.targets[i], s.ids[i] + 1) << "target must be the next token of the document";
          ++scored[s.targets[i]];
          // Context = tokens of this window up to and including position i.
          if (n > ctx && &s != &w->front()) {
            EXPECT_GE(static_cast<int64_t>(i + 1), ctx - stride);
          }
        }
      }
      EXPECT_EQ(static_cast<int64_t>(scored.size()), std::max<int64_t>(n - 1, 0))
          << n << " " << ctx;
      for (const auto& [tok, count] : scored) EXPECT_EQ(count, 1) << tok;
    }
  }
}

TEST(EvalWindows, RejectsBadSettings) {
  EXPECT_FALSE(MakeWindows({{1, 2, 3}}, 1, 1).ok());
  EXPECT_FALSE(MakeWindows({{1, 2, 3}}, 8, 8).ok());
  EXPECT_FALSE(MakeWindows({{1, 2, 3}}, 8, 0).ok());
}

}  // namespace
}  // namespace pq::engine
