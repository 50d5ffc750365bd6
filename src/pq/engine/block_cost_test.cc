// Block-output pricing (block_cost.h) against a direct computation: layer 0 of the golden
// Qwen3-MoE fixture, its router rewritten so that quantizing o_proj (INT8, RTN) must flip one
// token's top-k choice. The estimator equals ½ Σ dy² (ŷ − y)² / T computed from two plain
// DecoderLayerForward calls, counts exactly the tokens whose expert set changed, and — what the
// router rerun is for — is far above the same quantity with the routing frozen, so pricing that
// did not re-run the router would fail the equality.
#include "pq/engine/block_cost.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "pq/model/decoder.h"
#include "pq/quant/cost.h"
#include "pq/quant/rtn_candidate.h"

namespace pq::engine {
namespace {

using formats::FormatId;

constexpr int kSeqs = 3, kLen = 24;

std::vector<Sequence> RandomSequences(int vocab) {
  std::vector<Sequence> seqs(kSeqs);
  std::mt19937 rng(7);
  for (auto& s : seqs) {
    for (int i = 0; i < kLen; ++i) s.ids.push_back(static_cast<int32_t>(rng() % vocab));
    s.targets.assign(s.ids.begin() + 1, s.ids.end());
    s.targets.push_back(-1);
  }
  return seqs;
}

double Dot(std::span<const float> a, std::span<const float> b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// The layer run directly on x (all sequences in one call); acts keep the routing.
std::vector<float> Forward(const model::ModelConfig& c, const model::LayerWeights& w,
                           std::span<const float> x, model::LayerActs& acts,
                           std::span<const int32_t> fixed = {}) {
  const std::vector<int64_t> lens(kSeqs, kLen);
  const model::RopeCache rope = model::RopeCache::Make(c, kLen);
  std::vector<float> y(x.size());
  model::DecoderLayerForward(c, w, rope, x, y, lens, &acts, nullptr, fixed);
  return y;
}

int64_t ChangedTokens(const std::vector<int32_t>& a, const std::vector<int32_t>& b, int64_t k) {
  int64_t n = 0;
  for (size_t t = 0; t < a.size(); t += static_cast<size_t>(k)) {
    std::vector<int32_t> sa(a.begin() + t, a.begin() + t + k), sb(b.begin() + t, b.begin() + t + k);
    std::sort(sa.begin(), sa.end());
    std::sort(sb.begin(), sb.end());
    n += sa != sb;
  }
  return n;
}

class BlockCostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s =
        model::WeightSource::Open(std::string(PQ_SOURCE_DIR) + "/tests/golden/qwen3_moe/model");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    src_ = std::move(*s);
    const model::ModelConfig& c = src_->config();
    ASSERT_EQ(c.num_experts, 4);
    ASSERT_EQ(c.top_k, 2);
    RunnerOptions ro;
    ro.progress = false;
    runner_ = std::make_unique<Runner>(*src_, RandomSequences(static_cast<int>(c.vocab)), ro);
    ASSERT_TRUE(runner_->Forward(true).ok());
    x_.resize(static_cast<size_t>(runner_->total_tokens() * c.hidden));
    ASSERT_TRUE(runner_->Boundary(0, x_).ok());
    auto lw = src_->LoadLayer(0);
    ASSERT_TRUE(lw.ok());
    w_ = std::move(*lw);
    for (const auto& l : {&w_.o}) cands_[l->module] = Int8(*l);
    for (const auto& e : w_.experts)
      for (const auto* l : {&e.gate, &e.up, &e.down}) cands_[l->module] = Int8(*l);
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    dy_.resize(x_.size());
    for (float& v : dy_) v = nd(rng);
  }

  static std::vector<float> Int8(const model::LinearWeights& l) {
    auto w = quant::RtnCandidate(FormatId::kINT8, l.w, l.rows, l.cols, 1, 1);
    EXPECT_TRUE(w.ok());
    return *w;
  }

  // The layer's weights with o_proj replaced by its INT8 candidate (act format INT8: none).
  model::LayerWeights Quantized() const {
    model::LayerWeights q = w_;
    q.o.w = cands_.at(q.o.module);
    q.o.act_format = FormatId::kINT8;
    return q;
  }

  // Rewrites the router: expert 0 logit 0 everywhere; at token t0, expert 2 far ahead (+8),
  // expert 3 far behind (−8), and expert 1 just behind expert 0 before o_proj is quantized
  // (−m) and just ahead after (+m) — so t0's top-2 must change from {2, 0} to {2, 1}.
  void PlantFlip(int64_t t0) {
    const model::ModelConfig& c = src_->config();
    const auto d = static_cast<size_t>(c.hidden);
    model::LayerActs a0, a1;
    Forward(c, w_, x_, a0);
    Forward(c, Quantized(), x_, a1);
    const std::span<const float> n(a0.n2.data() + t0 * d, d);
    std::vector<float> delta(d);
    for (size_t i = 0; i < d; ++i) delta[i] = a1.n2[t0 * d + i] - n[i];
    const double nn = Dot(n, n), dn = Dot(delta, n);
    std::vector<double> perp(d);  // delta without its component along n
    for (size_t i = 0; i < d; ++i) perp[i] = delta[i] - dn / nn * n[i];
    double pp = 0, pd = 0;
    for (size_t i = 0; i < d; ++i) pp += perp[i] * perp[i], pd += perp[i] * delta[i];
    ASSERT_GT(pp, 0) << "quantizing o_proj must move the router input";
    const double m = 0.05 * std::sqrt(pp);  // the planted margin, both ways
    // v = a·perp − (m/nn)·n: v·n = −m; v·(n + delta) = a·pd − m − m·dn/nn = +m.
    const double alpha = (2 * m + m * dn / nn) / pd;
    auto& r = w_.router.w;
    for (size_t i = 0; i < d; ++i) {
      r[0 * d + i] = 0;
      r[1 * d + i] = static_cast<float>(alpha * perp[i] - m / nn * n[i]);
      r[2 * d + i] = static_cast<float>(8 * n[i] / nn);
      r[3 * d + i] = static_cast<float>(-8 * n[i] / nn);
    }
  }

  ReplacementFn Replace() const {
    return
        [this](const std::string& m, FormatId, std::vector<float>&) -> Result<LinearReplacement> {
          return LinearReplacement{cands_.at(m), 1};
        };
  }

  std::unique_ptr<model::WeightSource> src_;
  std::unique_ptr<Runner> runner_;
  std::vector<float> x_, dy_;
  model::LayerWeights w_;
  std::map<std::string, std::vector<float>> cands_;
};

TEST_F(BlockCostTest, EqualsTheDirectRerunAndSeesThePlantedRoutingFlip) {
  const int64_t t0 = 30;
  PlantFlip(t0);
  const model::ModelConfig& c = src_->config();
  const int64_t k = c.top_k, tokens = kSeqs * (kLen - 1);
  // Direct: the layer run twice on its stored input, as loaded and with o_proj quantized.
  model::LayerActs a0, a1, a_frozen;
  const std::vector<float> y0 = Forward(c, w_, x_, a0);
  const std::vector<float> y1 = Forward(c, Quantized(), x_, a1);
  const std::vector<float> y_frozen = Forward(c, Quantized(), x_, a_frozen, a0.topk_idx);
  std::vector<int32_t> before(a0.topk_idx.begin() + t0 * k, a0.topk_idx.begin() + (t0 + 1) * k);
  std::vector<int32_t> after(a1.topk_idx.begin() + t0 * k, a1.topk_idx.begin() + (t0 + 1) * k);
  std::sort(before.begin(), before.end());
  std::sort(after.begin(), after.end());
  ASSERT_EQ(before, (std::vector<int32_t>{0, 2})) << "the planted router";
  ASSERT_EQ(after, (std::vector<int32_t>{1, 2}));
  const int64_t changed = ChangedTokens(a0.topk_idx, a1.topk_idx, k);
  double direct = 0, direct_frozen = 0;
  for (size_t i = 0; i < y0.size(); ++i) {
    const double g2 = static_cast<double>(dy_[i]) * dy_[i];
    direct += g2 * (static_cast<double>(y1[i]) - y0[i]) * (static_cast<double>(y1[i]) - y0[i]);
    direct_frozen += g2 * (static_cast<double>(y_frozen[i]) - y0[i]) *
                     (static_cast<double>(y_frozen[i]) - y0[i]);
  }
  direct *= 0.5 / static_cast<double>(tokens);
  direct_frozen *= 0.5 / static_cast<double>(tokens);
  // The flip dominates: a pricing that kept the routing would be off by this much.
  EXPECT_GT(direct, 10 * direct_frozen);

  std::vector<std::string> experts;
  for (const auto& e : w_.experts)
    for (const auto* l : {&e.gate, &e.up, &e.down}) experts.push_back(l->module);
  const std::vector<BlockUnitSpec> units = {{"o", {w_.o.module}, {FormatId::kINT8}},
                                            {"experts", experts, {FormatId::kINT8}}};
  BlockPricingOptions o;
  o.total_tokens = tokens;
  auto r = PriceBlockUnits(*runner_, {0, {&w_}, dy_}, units, Replace(), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  const BlockCandidateCost& oc = (*r)[0].candidates.at(0);
  EXPECT_NEAR(oc.cost, direct, 1e-6 * direct);
  EXPECT_EQ(oc.routing_changes, changed);
  EXPECT_GE(oc.routing_changes, 1);
  EXPECT_EQ(oc.cost, quant::BlockCost(oc.energy, tokens));
  // The experts sit after the router: quantizing them cannot change its choice.
  EXPECT_EQ((*r)[1].candidates.at(0).routing_changes, 0);
  EXPECT_GT((*r)[1].candidates.at(0).cost, 0);
  // The weights handed in are unchanged (candidates are swapped in and out of a copy).
  EXPECT_EQ(w_.o.act_format, FormatId::kBF16);

  // The ablation: routing frozen to the unquantized layer's choice.
  o.reroute = false;
  auto frozen = PriceBlockUnits(*runner_, {0, {&w_}, dy_}, units, Replace(), o);
  ASSERT_TRUE(frozen.ok()) << frozen.status().ToString();
  const BlockCandidateCost& of = (*frozen)[0].candidates.at(0);
  EXPECT_NEAR(of.cost, direct_frozen, 1e-6 * direct_frozen);
  EXPECT_EQ(of.routing_changes, 0);
  EXPECT_NEAR((*frozen)[1].candidates.at(0).cost, (*r)[1].candidates.at(0).cost,
              1e-9 * (*r)[1].candidates.at(0).cost);
}

// Re-running only the first samples prices on their tokens alone.
TEST_F(BlockCostTest, ASubsetOfSamplesPricesOnItsTokens) {
  PlantFlip(30);  // in the second sequence
  const model::ModelConfig& c = src_->config();
  model::LayerActs a0, a1;
  const std::vector<float> y0 = Forward(c, w_, x_, a0);
  const std::vector<float> y1 = Forward(c, Quantized(), x_, a1);
  const size_t first = static_cast<size_t>(kLen * c.hidden);  // the first sequence's rows
  double direct = 0;
  for (size_t i = 0; i < first; ++i) {
    const double e = static_cast<double>(y1[i]) - y0[i];
    direct += static_cast<double>(dy_[i]) * dy_[i] * e * e;
  }
  direct *= 0.5 / (kLen - 1);
  const std::vector<BlockUnitSpec> units = {{"o", {w_.o.module}, {FormatId::kINT8}}};
  BlockPricingOptions o;
  o.total_tokens = kLen - 1;
  o.samples = 1;
  auto r = PriceBlockUnits(*runner_, {0, {&w_}, dy_}, units, Replace(), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const BlockCandidateCost& oc = (*r)[0].candidates.at(0);
  EXPECT_NEAR(oc.cost, direct, 1e-6 * direct);
  EXPECT_EQ(
      oc.routing_changes,
      ChangedTokens(std::vector<int32_t>(a0.topk_idx.begin(), a0.topk_idx.begin() + 2 * kLen),
                    std::vector<int32_t>(a1.topk_idx.begin(), a1.topk_idx.begin() + 2 * kLen), 2));
}

// Swapping candidates into the layer itself (no copy) prices the same bits and leaves the layer
// as loaded — also when a candidate fails halfway through a unit.
TEST_F(BlockCostTest, SwappingIntoTheLayerPricesTheSameAndRestoresIt) {
  PlantFlip(30);
  std::vector<std::string> experts;
  for (const auto& e : w_.experts)
    for (const auto* l : {&e.gate, &e.up, &e.down}) experts.push_back(l->module);
  const std::vector<BlockUnitSpec> units = {
      {"o", {w_.o.module}, {FormatId::kINT8, FormatId::kNVFP4A16}},
      {"experts", experts, {FormatId::kINT8}}};
  BlockPricingOptions o;
  o.total_tokens = 2 * (kLen - 1);
  const model::LayerWeights before = w_;
  auto copied = PriceBlockUnits(*runner_, {0, {&w_}, dy_}, units, Replace(), o);
  auto swapped = PriceBlockUnits(*runner_, {0, {&w_}, dy_, &w_}, units, Replace(), o);
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  ASSERT_TRUE(swapped.ok()) << swapped.status().ToString();
  ASSERT_EQ(copied->size(), swapped->size());
  for (size_t u = 0; u < copied->size(); ++u)
    for (size_t f = 0; f < (*copied)[u].candidates.size(); ++f) {
      EXPECT_EQ((*copied)[u].candidates[f].energy, (*swapped)[u].candidates[f].energy)
          << u << " " << f;
      EXPECT_EQ((*copied)[u].candidates[f].routing_changes,
                (*swapped)[u].candidates[f].routing_changes);
    }
  const auto same_as_loaded = [&] {
    bool same = true;
    model::LayerWeights now = w_;
    std::vector<const model::LinearWeights*> a, b;
    model::ForEachLinear(before, [&](const model::LinearWeights& l) { a.push_back(&l); });
    model::ForEachLinear(now, [&](const model::LinearWeights& l) { b.push_back(&l); });
    for (size_t i = 0; i < a.size(); ++i)
      same = same && a[i]->w == b[i]->w && a[i]->act_format == b[i]->act_format &&
             a[i]->input_global_scale == b[i]->input_global_scale;
    return same && a.size() == b.size();
  };
  EXPECT_TRUE(same_as_loaded());
  // A replacement that fails on the third expert Linear: the two swapped in are put back.
  int calls = 0;
  const ReplacementFn failing = [&](const std::string& m, FormatId f,
                                    std::vector<float>& scratch) -> Result<LinearReplacement> {
    if (++calls == 3) return Internal("planted failure");
    return Replace()(m, f, scratch);
  };
  const std::vector<BlockUnitSpec> experts_only = {{"experts", experts, {FormatId::kINT8}}};
  EXPECT_FALSE(PriceBlockUnits(*runner_, {0, {&w_}, dy_, &w_}, experts_only, failing, o).ok());
  EXPECT_TRUE(same_as_loaded());
  // A writable layer that is not the window's first is refused.
  model::LayerWeights other = w_;
  EXPECT_FALSE(PriceBlockUnits(*runner_, {0, {&w_}, dy_, &other}, units, Replace(), o).ok());
}

TEST(BlockCost, RoutingChangesIgnoreTheOrderWithinTheTopK) {
  const std::vector<int32_t> a = {0, 1, 2, 3, 1, 2}, b = {1, 0, 2, 1, 2, 1};
  EXPECT_EQ(CountRoutingChanges(a, b, 2), 1);  // token 1: {2,3} -> {1,2}
  EXPECT_EQ(CountRoutingChanges(a, a, 2), 0);
}

TEST(BlockCost, RefusesAGradientOfTheWrongSize) {
  auto src =
      model::WeightSource::Open(std::string(PQ_SOURCE_DIR) + "/tests/golden/qwen3_moe/model");
  ASSERT_TRUE(src.ok());
  RunnerOptions ro;
  ro.progress = false;
  Runner runner(**src, RandomSequences(static_cast<int>((*src)->config().vocab)), ro);
  ASSERT_TRUE(runner.Forward(true).ok());
  auto w = (*src)->LoadLayer(0);
  ASSERT_TRUE(w.ok());
  BlockPricingOptions o;
  o.total_tokens = 10;
  std::vector<float> dy(5);
  EXPECT_FALSE(PriceBlockUnits(runner, {0, {&*w}, dy}, {}, {}, o).ok());
}

}  // namespace
}  // namespace pq::engine
