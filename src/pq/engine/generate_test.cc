// Generation on models/stories260K: greedy is deterministic and picks the argmax of the
// Runner's logits, seeded sampling is reproducible and seed-dependent, -n / EOS / max
// positions stop it, streamed and resident layers agree; the sampler on hand-made logits.
#include "pq/engine/generate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "pq/engine/runner.h"

namespace pq::engine {
namespace {

const model::WeightSource& Stories() {
  static const auto* src = [] {
    auto s = model::WeightSource::Open(std::string(PQ_SOURCE_DIR) + "/models/stories260K");
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s).release() : nullptr;
  }();
  return *src;
}

// BOS + "Once upon a time" in stories260K's tokenizer (any ids would do).
const std::vector<int32_t> kPrompt = {1, 403, 407, 261, 378};

GenerateOptions Opts(int64_t n) {
  GenerateOptions o;
  o.max_new_tokens = n;
  o.eos_ids = {-1};  // never stop at EOS unless a test asks
  return o;
}

std::vector<int32_t> Tokens(const GenerateOptions& o, std::vector<int32_t> prompt = kPrompt) {
  auto r = Generate(Stories(), prompt, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r->tokens : std::vector<int32_t>{};
}

TEST(Generate, GreedyIsDeterministicAndRespectsN) {
  const auto a = Tokens(Opts(24));
  EXPECT_EQ(a.size(), 24u);
  EXPECT_EQ(a, Tokens(Opts(24)));
  // A shorter run is a prefix of the longer one; n = 0 generates nothing.
  const auto b = Tokens(Opts(7));
  ASSERT_EQ(b.size(), 7u);
  EXPECT_TRUE(std::equal(b.begin(), b.end(), a.begin()));
  EXPECT_TRUE(Tokens(Opts(0)).empty());
}

TEST(Generate, StreamedLayersEqualResident) {
  GenerateOptions o = Opts(12);
  auto resident = Generate(Stories(), kPrompt, o);
  o.resident_bytes = 0;
  auto streamed = Generate(Stories(), kPrompt, o);
  ASSERT_TRUE(resident.ok() && streamed.ok());
  EXPECT_TRUE(resident->resident);
  EXPECT_FALSE(streamed->resident);
  EXPECT_EQ(resident->tokens, streamed->tokens);
  EXPECT_EQ(resident->nll, streamed->nll);
}

TEST(Generate, GreedyPicksArgmaxOfRunnerLogitsAndReportsItsNll) {
  Sequence s;
  s.ids = kPrompt;
  s.targets.assign(s.ids.size(), -1);
  RunnerOptions ro;
  ro.progress = false;
  Runner runner(Stories(), std::span(&s, 1), ro);
  ASSERT_TRUE(runner.Forward(false).ok());
  const auto v = static_cast<size_t>(Stories().config().vocab);
  std::vector<float> last;
  auto head = runner.Head(
      [&](size_t, int64_t, std::span<const float> logits) {
        last.assign(logits.end() - static_cast<std::ptrdiff_t>(v), logits.end());
        return Status::Ok();
      },
      false, 1.0);
  ASSERT_TRUE(head.ok());
  ASSERT_EQ(last.size(), v);
  const auto want = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
  // The runner-up must be clearly below, or float noise could decide the argmax.
  std::vector<float> sorted = last;
  std::sort(sorted.rbegin(), sorted.rend());
  ASSERT_GT(sorted[0] - sorted[1], 1e-3f);

  auto r = Generate(Stories(), kPrompt, Opts(1));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->tokens.size(), 1u);
  EXPECT_EQ(r->tokens[0], want);
  double lse = 0;
  for (float x : last) lse += std::exp(static_cast<double>(x) - sorted[0]);
  lse = sorted[0] + std::log(lse);
  EXPECT_NEAR(r->nll[0], lse - last[static_cast<size_t>(want)], 1e-5);
  EXPECT_NEAR(r->mean_nll, r->nll[0], 1e-12);
}

TEST(Generate, SeededSamplingIsReproducibleAndSeedDependent) {
  GenerateOptions o = Opts(32);
  o.temperature = 1.0;
  o.seed = 7;
  const auto a = Tokens(o);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a, Tokens(o));
  o.seed = 8;
  EXPECT_NE(a, Tokens(o));
  o.top_p = 0.9;
  const auto c = Tokens(o);
  EXPECT_EQ(c, Tokens(o));
  // Top-p this small keeps only the most probable token: greedy.
  o.top_p = 1e-9;
  EXPECT_EQ(Tokens(o), Tokens(Opts(32)));
}

TEST(Generate, StopsAtEos) {
  const auto greedy = Tokens(Opts(16));
  ASSERT_EQ(greedy.size(), 16u);
  GenerateOptions o = Opts(16);
  o.eos_ids = {greedy[5]};
  auto r = Generate(Stories(), kPrompt, o);
  ASSERT_TRUE(r.ok());
  const size_t first = static_cast<size_t>(std::find(greedy.begin(), greedy.end(), greedy[5]) -
                                           greedy.begin());
  EXPECT_EQ(r->stop, StopReason::kEos);
  EXPECT_EQ(r->tokens, std::vector<int32_t>(greedy.begin(), greedy.begin() + first + 1));
  EXPECT_EQ(r->nll.size(), r->tokens.size());
  // Without eos_ids the model's own (stories260K: 2) is used.
  EXPECT_EQ(Stories().config().eos_id, 2);
}

TEST(Generate, StopsAtMaxPositionsAndRejectsBadInput) {
  const int64_t max_pos = Stories().config().max_positions;
  ASSERT_GT(max_pos, 2);
  std::vector<int32_t> prompt(static_cast<size_t>(max_pos - 2), 300);
  prompt[0] = 1;
  auto r = Generate(Stories(), prompt, Opts(10));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tokens.size(), 2u);
  EXPECT_EQ(r->stop, StopReason::kMaxPositions);
  prompt.resize(static_cast<size_t>(max_pos + 1), 300);
  EXPECT_FALSE(Generate(Stories(), prompt, Opts(1)).ok());
  EXPECT_FALSE(Generate(Stories(), {}, Opts(1)).ok());
  GenerateOptions o = Opts(1);
  o.temperature = -1;
  EXPECT_FALSE(Generate(Stories(), kPrompt, o).ok());
  o.temperature = 1;
  o.top_p = 0;
  EXPECT_FALSE(Generate(Stories(), kPrompt, o).ok());
  EXPECT_FALSE(Generate(Stories(), std::vector<int32_t>{1, 100000}, Opts(1)).ok());
}

TEST(ChooseToken, GreedyTakesTheFirstMaximum) {
  uint64_t rng = 5;
  EXPECT_EQ(ChooseToken(std::vector<float>{0, 3, 1, 3}, 0, 1, rng), 1);
  EXPECT_EQ(rng, 5u) << "greedy draws no random number";
}

TEST(ChooseToken, RandomStreamIsPinned) {
  // splitmix64 seeded with 0 first returns 0xe220a8397b1dcdaf: u = 0.8833..., and over 16
  // equal logits the draw picks floor(16 u) = 14 on every platform.
  uint64_t rng = 0;
  EXPECT_EQ(ChooseToken(std::vector<float>(16, 0.5f), 1.0, 1.0, rng), 14);
  EXPECT_EQ(rng, 0x9e3779b97f4a7c15ull);
}

TEST(ChooseToken, SamplesTheTemperedSoftmax) {
  // p = softmax(logits / T): {0, log 3} at T = 1 gives 1/4, 3/4; at T = 0.5 gives 1/10, 9/10.
  const std::vector<float> logits = {0, static_cast<float>(std::log(3.0))};
  for (auto [t, p1] : {std::pair{1.0, 0.75}, {0.5, 0.9}}) {
    uint64_t rng = 123;
    int ones = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) ones += ChooseToken(logits, t, 1.0, rng);
    EXPECT_NEAR(static_cast<double>(ones) / n, p1, 0.015) << t;
  }
}

TEST(ChooseToken, TopPKeepsTheSmallestSetReachingP) {
  // p = 0.5, 0.3, 0.2 (ids 2, 0, 1): top_p 0.45 keeps only id 2; 0.6 keeps ids 2 and 0.
  const std::vector<float> logits = {static_cast<float>(std::log(0.3)),
                                     static_cast<float>(std::log(0.2)),
                                     static_cast<float>(std::log(0.5))};
  uint64_t rng = 1;
  for (int i = 0; i < 200; ++i) EXPECT_EQ(ChooseToken(logits, 1.0, 0.45, rng), 2);
  int seen[3] = {0, 0, 0};
  for (int i = 0; i < 4000; ++i) ++seen[ChooseToken(logits, 1.0, 0.6, rng)];
  EXPECT_EQ(seen[1], 0);
  EXPECT_NEAR(seen[2] / 4000.0, 0.5 / 0.8, 0.03);
}

}  // namespace
}  // namespace pq::engine
