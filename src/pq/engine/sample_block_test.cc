// Sample blocks of the runner (RunnerOptions::sample_block, DESIGN §7): batches never cross a
// block, on_block_end runs after each block's last sequence (last = the runner's last block)
// in Forward, Head, ObserveLayer and BackwardFrom, the head's NLL comes per block, and a
// Hessian folded over the blocks (dist::BlockFold) is bit for bit the left fold of the blocks
// run apart — what ranks that each own some blocks compute.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "pq/dist/block_fold.h"
#include "pq/engine/hessian_observer.h"
#include "pq/engine/runner.h"

namespace pq::engine {
namespace {

std::vector<Sequence> RandomSequences(int n, int t, int vocab, uint32_t seed) {
  std::vector<Sequence> seqs(static_cast<size_t>(n));
  std::mt19937 rng(seed);
  for (auto& s : seqs) {
    for (int i = 0; i < t; ++i) s.ids.push_back(static_cast<int32_t>(rng() % vocab));
    s.targets.assign(s.ids.begin() + 1, s.ids.end());
    s.targets.push_back(-1);
  }
  return seqs;
}

std::unique_ptr<model::WeightSource> Llama() {
  auto src = model::WeightSource::Open(std::string(PQ_SOURCE_DIR) + "/tests/golden/llama/model");
  EXPECT_TRUE(src.ok()) << src.status().ToString();
  return src.ok() ? std::move(*src) : nullptr;
}

// Rows of each forward-input call of one module, and the calls seen at each block end.
struct RowLog : model::LinearObserver {
  std::string module;
  std::vector<int64_t> rows;
  void OnLinear(const model::LinearWeights& l, std::span<const float>, std::span<const float>,
                int64_t n) override {
    if (l.module == module) rows.push_back(n);
  }
  void OnLinearInput(const model::LinearWeights& l, std::span<const float>, int64_t n) override {
    if (l.module == module) rows.push_back(n);
  }
};

TEST(SampleBlocks, BatchesStopAtBlocksAndEachBlockEnds) {
  auto src = Llama();
  ASSERT_TRUE(src);
  // Local sequences 0..4 are samples 1..5 of a run cut in blocks of 2: {1} {2,3} {4,5}.
  const auto seqs = RandomSequences(5, 8, static_cast<int>(src->config().vocab), 3);
  RowLog log;
  std::vector<std::pair<size_t, bool>> ends;  // (calls logged so far, last)
  RunnerOptions ro;
  ro.progress = false;
  ro.batch_tokens = 1;
  ro.sample_block = 2;
  ro.first_sample = 1;
  ro.on_block_end = [&](bool last) { ends.emplace_back(log.rows.size(), last); };
  Runner runner(*src, seqs, ro);
  ASSERT_TRUE(runner.Forward(true).ok());
  const size_t layers = static_cast<size_t>(src->config().num_layers);
  EXPECT_EQ(ends.size(), 3 * layers);  // every layer pass of the forward sweep
  ends.clear();
  auto w = src->LoadLayer(0);
  ASSERT_TRUE(w.ok());
  log.module = w->q.module;
  ASSERT_TRUE(runner.ObserveLayer(0, *w, log, /*batch_tokens=*/1000).ok());
  EXPECT_EQ(log.rows, (std::vector<int64_t>{8, 16, 16}));  // one batch per block, not one
  EXPECT_EQ(ends, (std::vector<std::pair<size_t, bool>>{{1, false}, {2, false}, {3, true}}));

  ends.clear();
  auto hr = runner.Head(nullptr, true, 1.0);
  ASSERT_TRUE(hr.ok());
  ASSERT_EQ(hr->block_nll.size(), 3u);
  EXPECT_NEAR((hr->block_nll[0] + hr->block_nll[1]) + hr->block_nll[2], hr->nll_sum,
              1e-12 * hr->nll_sum);
  EXPECT_EQ(ends.size(), 3u);

  ends.clear();
  log.rows.clear();
  ASSERT_TRUE(runner.Backward(&log, nullptr).ok());
  ASSERT_EQ(ends.size(), 3 * layers);
  for (size_t i = 0; i < ends.size(); ++i) EXPECT_EQ(ends[i].second, i % 3 == 2) << i;
}

TEST(SampleBlocks, OneBlockIsTheRunningSum) {
  auto src = Llama();
  ASSERT_TRUE(src);
  const auto seqs = RandomSequences(3, 8, static_cast<int>(src->config().vocab), 4);
  RunnerOptions ro;
  ro.progress = false;
  Runner runner(*src, seqs, ro);
  ASSERT_TRUE(runner.Forward(false).ok());
  auto hr = runner.Head(nullptr, false, 1.0);
  ASSERT_TRUE(hr.ok());
  ASSERT_EQ(hr->block_nll.size(), 1u);
  EXPECT_EQ(std::memcmp(&hr->block_nll[0], &hr->nll_sum, sizeof(double)), 0);
}

// H of q (and its group) over samples 0..4 in blocks of 2, folded by BlockFold through the
// hook, against the blocks run by separate runners (as separate ranks would) folded by hand.
TEST(SampleBlocks, FoldedHessianIsTheLeftFoldOfTheBlocksRunApart) {
  auto src = Llama();
  ASSERT_TRUE(src);
  const auto seqs = RandomSequences(5, 8, static_cast<int>(src->config().vocab), 5);
  auto w = src->LoadLayer(1);
  ASSERT_TRUE(w.ok());
  const model::LinearWeights& q = w->q;
  const auto hessian = [&](std::span<const Sequence> part, int64_t block, bool fold) {
    HessianObserver h;
    h.Want(q, "qkv");
    dist::Sums sums;
    h.AddSums(sums);
    dist::BlockFold bf;
    RunnerOptions ro;
    ro.progress = false;
    ro.sample_block = block;
    if (fold) ro.on_block_end = [&](bool last) { bf.EndBlock(sums, last); };
    Runner runner(*src, part, ro);
    EXPECT_TRUE(runner.Forward(true).ok());
    EXPECT_TRUE(runner.ObserveLayer(1, *w, h, 4096).ok());
    if (fold) {
      EXPECT_TRUE(bf.Finish(sums, true).ok());
    }
    return h.Find(q.module)->h;
  };
  const std::vector<float> folded = hessian(seqs, 2, true);
  std::vector<float> want;
  for (size_t b = 0; b < seqs.size(); b += 2) {
    const auto part = std::span(seqs).subspan(b, std::min<size_t>(2, seqs.size() - b));
    const std::vector<float> p = hessian(part, 0, false);
    if (want.empty()) {
      want = p;
    } else {
      for (size_t i = 0; i < want.size(); ++i) want[i] += p[i];
    }
  }
  ASSERT_EQ(folded.size(), want.size());
  EXPECT_EQ(std::memcmp(folded.data(), want.data(), want.size() * sizeof(float)), 0);
  // ... and not the one-block Hessian (the fixture tells the orders apart).
  const std::vector<float> one = hessian(seqs, 0, false);
  EXPECT_NE(std::memcmp(one.data(), want.data(), want.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace pq::engine
