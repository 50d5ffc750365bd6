// Scale search: per group never worse than its input on the hdiag-weighted error (RTN and
// GPTQ inputs, every format), kept groups keep their bytes, chosen scales stored as is.
#include "pq/quant/scale_search.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "pq/core/minifloat.h"
#include "pq/formats/quantize_with_scales.h"
#include "pq/quant/gptq.h"
#include "pq/quant/quant_test_util.h"

namespace pq::quant {
namespace {

using formats::FormatId;

// Weights with one outlier (x6) in 100.
std::vector<float> RandomWeights(int64_t n, int64_t k, uint32_t seed) {
  return testing::RandomWeights(n, k, seed, 100, 6.0f);
}

std::vector<float> RandomDiag(int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.5f);
  std::vector<float> d(static_cast<size_t>(k));
  for (float& v : d) v = std::exp(g(rng));
  return d;
}

std::vector<FormatId> Quantized() {
  std::vector<FormatId> ids;
  for (const auto& f : formats::AllFormats())
    if (f.id != FormatId::kBF16) ids.push_back(f.id);
  return ids;
}

int64_t Group(FormatId id, int64_t k) {
  const auto& s = formats::Spec(id);
  return s.scale_layout == formats::ScaleLayout::kGroup ? s.group_size : k;
}

// err of every group: sum_i hdiag[i] (w - w_hat)^2, as scale_search.h defines it.
std::vector<double> GroupErrors(const std::vector<float>& w, const std::vector<float>& w_hat,
                                const std::vector<float>& hd, int64_t n, int64_t k, int64_t g) {
  std::vector<double> e;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; j += g) {
      double s = 0.0;
      for (int64_t i = j; i < j + g; ++i) {
        const double d = static_cast<double>(w[static_cast<size_t>(r * k + i)]) -
                         static_cast<double>(w_hat[static_cast<size_t>(r * k + i)]);
        s += static_cast<double>(hd[static_cast<size_t>(i)]) * d * d;
      }
      e.push_back(s);
    }
  return e;
}

std::vector<formats::QTensor> Input(FormatId id, const std::vector<float>& w, int64_t n, int64_t k,
                                    bool gptq) {
  if (gptq) {
    std::vector<float> h(static_cast<size_t>(k * k), 0.0f);
    for (int64_t i = 0; i < k; ++i)  // a smooth, strongly correlated H
      for (int64_t j = 0; j < k; ++j)
        h[static_cast<size_t>(i * k + j)] = std::pow(0.9f, static_cast<float>(std::abs(i - j)));
    GptqOptions o;
    if (id == FormatId::kNVFP4) o.input_global_scale = 50.0f;
    auto g = GptqQuantize(id, w, h, n, k, o);
    EXPECT_TRUE(g.ok());
    return g->tensors;
  }
  formats::QuantizeOptions o;
  if (id == FormatId::kNVFP4) o.input_global_scale = 50.0f;
  auto q = formats::QuantizeRtn(id, w, n, k, o);
  EXPECT_TRUE(q.ok());
  return *q;
}

TEST(ScaleSearch, EveryGroupNeverWorseThanItsInput) {
  const int64_t n = 12, k = 256;
  for (bool gptq : {false, true}) {
    const auto w = RandomWeights(n, k, gptq ? 1 : 2);
    const auto hd = RandomDiag(k, 3);
    for (FormatId id : Quantized()) {
      const std::string what = std::string(formats::Spec(id).name) + (gptq ? " gptq" : " rtn");
      const auto in = Input(id, w, n, k, gptq);
      auto w_in = formats::Dequantize(id, formats::Views(in), n, k);
      ASSERT_TRUE(w_in.ok());
      ScaleSearchOptions o;
      o.num_threads = 2;
      auto s = ScaleSearch(id, w, formats::Views(in), hd, n, k, o);
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      const int64_t g = Group(id, k);
      const auto before = GroupErrors(w, *w_in, hd, n, k, g);
      const auto after = GroupErrors(w, s->w_hat, hd, n, k, g);
      double sum_before = 0.0, sum_after = 0.0;
      for (size_t i = 0; i < before.size(); ++i) {
        EXPECT_LE(after[i], before[i]) << what << " group " << i;
        sum_before += before[i];
        sum_after += after[i];
      }
      EXPECT_NEAR(s->error_before, sum_before, 1e-9 * sum_before) << what;
      EXPECT_NEAR(s->error_after, sum_after, 1e-9 * sum_before) << what;
      // What is written is what it reports.
      auto d = formats::Dequantize(id, formats::Views(s->tensors), n, k);
      ASSERT_TRUE(d.ok());
      EXPECT_EQ(*d, s->w_hat) << what;
      // The 4-bit grids have room to improve on RTN's max-based scale.
      if (!gptq && formats::Spec(id).element_bits == 4) {
        EXPECT_GT(s->groups_changed, 0) << what;
        EXPECT_LT(sum_after, sum_before) << what;
      }
    }
  }
}

TEST(ScaleSearch, KeepsBytesWhenNothingIsBetter) {
  const int64_t n = 4, k = 256;
  const auto w = RandomWeights(n, k, 4);
  const std::vector<float> zero(static_cast<size_t>(k), 0.0f);
  for (FormatId id : Quantized()) {
    const auto in = Input(id, w, n, k, true);
    auto s = ScaleSearch(id, w, formats::Views(in), zero, n, k);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->groups_changed, 0);
    ASSERT_EQ(s->tensors.size(), in.size());
    for (size_t i = 0; i < in.size(); ++i) EXPECT_EQ(s->tensors[i].bytes, in[i].bytes);
  }
}

TEST(ScaleSearch, ChangedGroupsStoreTheChosenScaleUnchangedOnesTheirBytes) {
  const int64_t n = 16, k = 256;
  const auto w = RandomWeights(n, k, 5);
  const auto hd = RandomDiag(k, 6);
  for (FormatId id : {FormatId::kNVFP4A16, FormatId::kMXFP4, FormatId::kINT4}) {
    const auto in = Input(id, w, n, k, true);
    auto s = ScaleSearch(id, w, formats::Views(in), hd, n, k);
    ASSERT_TRUE(s.ok());
    auto a = formats::UnpackCodes(id, formats::Views(in), n, k);
    auto b = formats::UnpackCodes(id, formats::Views(s->tensors), n, k);
    ASSERT_TRUE(a.ok() && b.ok());
    auto codec = formats::GroupCodec::Create(id, k, a->weight_global_scale);
    ASSERT_TRUE(codec.ok());
    const int64_t g = codec->group_size();
    int64_t changed = 0;
    for (size_t j = 0; j < a->scales.size(); ++j) {
      const auto first = static_cast<std::ptrdiff_t>(j * static_cast<size_t>(g));
      const bool same = a->scales[j] == b->scales[j] &&
                        std::equal(a->codes.begin() + first, a->codes.begin() + first + g,
                                   b->codes.begin() + first);
      if (same) continue;
      ++changed;
      // A changed group is exactly the original weights re-quantized with its new scale.
      for (int64_t i = 0; i < g; ++i)
        EXPECT_EQ(b->codes[static_cast<size_t>(first + i)],
                  codec->Encode(w[static_cast<size_t>(first + i)], b->scales[j]));
      if (id == FormatId::kMXFP4) {
        const float r = b->scales[j] / a->scales[j];
        EXPECT_TRUE(r == 0.5f || r == 1.0f || r == 2.0f) << r;
      }
    }
    EXPECT_EQ(changed, s->groups_changed) << formats::Spec(id).name;
  }
}

TEST(ScaleSearch, RejectsBadInput) {
  const int64_t n = 2, k = 32;
  const auto w = RandomWeights(n, k, 7);
  const auto in = Input(FormatId::kMXFP8, w, n, k, false);
  const auto hd = RandomDiag(k, 8);
  ScaleSearchOptions o;
  o.candidates = 0;
  EXPECT_FALSE(ScaleSearch(FormatId::kMXFP8, w, formats::Views(in), hd, n, k, o).ok());
  auto neg = hd;
  neg[3] = -1.0f;
  EXPECT_FALSE(ScaleSearch(FormatId::kMXFP8, w, formats::Views(in), neg, n, k).ok());
  // Tensors of another format.
  EXPECT_FALSE(ScaleSearch(FormatId::kMXFP4, w, formats::Views(in), hd, n, k).ok());
  EXPECT_FALSE(ScaleSearch(FormatId::kMXFP8, w, formats::Views(in), hd, n, 64).ok());
}

}  // namespace
}  // namespace pq::quant
