// Windowing of eval documents: every token after the first scored exactly once, windows no
// longer than ctx, each scored token with at least ctx - stride tokens of context past the
// first window; bad settings refused.
#include "pq/engine/eval.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "pq/engine/runner.h"
#include "pq/model/weights.h"

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

namespace pq::engine {
namespace {

// eval --mtp against the same quantities computed here from Runner::Head and Runner::Mtp's
// logits: MTP row t predicts token t+2, and agrees when its argmax is the main head's argmax
// at row t+1; only positions whose token t+2 is scored count.
TEST(EvalMtp, NllAndAcceptanceEqualADirectComputation) {
  auto src = model::WeightSource::Open(std::string(PQ_SOURCE_DIR) + "/models/trained/qwen3_5_moe");
  ASSERT_TRUE(src.ok()) << src.status().message();
  ASSERT_TRUE((*src)->layout().has_mtp());
  const auto vocab = static_cast<int32_t>((*src)->config().vocab);
  std::mt19937 rng(7);
  std::vector<std::vector<int32_t>> docs(3);
  for (auto& d : docs)
    for (int i = 0; i < 37; ++i) d.push_back(static_cast<int32_t>(rng() % vocab));
  EvalOptions o;
  o.ctx = 16;
  o.stride = 8;
  o.mtp = true;
  o.runner.progress = false;
  auto r = Evaluate(**src, nullptr, docs, o);
  ASSERT_TRUE(r.ok()) << r.status().message();

  auto windows = MakeWindows(docs, 16, 8);
  ASSERT_TRUE(windows.ok());
  RunnerOptions ro;
  ro.progress = false;
  Runner run(**src, *windows, ro);
  ASSERT_TRUE(run.Forward(false).ok());
  const auto v = static_cast<size_t>(vocab);
  auto argmax = [&](std::span<const float> row) {
    return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
  };
  std::vector<std::vector<int32_t>> main_top(windows->size());
  ASSERT_TRUE(run.Head(
                     [&](size_t s, int64_t row0, std::span<const float> logits) {
                       auto& top = main_top[s];
                       top.resize((*windows)[s].ids.size());
                       for (size_t i = 0; i < logits.size() / v; ++i)
                         top[static_cast<size_t>(row0) + i] = argmax(logits.subspan(i * v, v));
                       return Status::Ok();
                     },
                     false, 1.0)
                  .ok());
  int64_t positions = 0, agree = 0;
  auto mr = run.Mtp(
      [&](size_t s, int64_t row0, std::span<const float> logits) {
        for (size_t i = 0; i < logits.size() / v; ++i) {
          const size_t t = static_cast<size_t>(row0) + i;
          if ((*windows)[s].targets[t + 1] < 0) continue;
          ++positions;
          agree += argmax(logits.subspan(i * v, v)) == main_top[s][t + 1];
        }
        return Status::Ok();
      },
      false, 1.0);
  ASSERT_TRUE(mr.ok());
  ASSERT_GT(positions, 0);
  EXPECT_EQ(r->mtp_tokens, positions);
  EXPECT_EQ(mr->scored, positions);
  EXPECT_DOUBLE_EQ(*r->mtp_nll, mr->nll_sum / static_cast<double>(mr->scored));
  EXPECT_DOUBLE_EQ(*r->mtp_accept, static_cast<double>(agree) / static_cast<double>(positions));
  EXPECT_GT(agree, 0);  // the trained head agrees somewhere: the comparison is not vacuous
}

TEST(EvalMtp, RefusesAModelWithoutAnMtpHead) {
  auto src = model::WeightSource::Open(std::string(PQ_SOURCE_DIR) + "/models/stories260K");
  ASSERT_TRUE(src.ok());
  EvalOptions o;
  o.mtp = true;
  o.runner.progress = false;
  auto r = Evaluate(**src, nullptr, {{1, 2, 3, 4, 5}}, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no MTP head"), std::string::npos);
}

}  // namespace
}  // namespace pq::engine
