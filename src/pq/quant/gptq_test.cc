// GPTQ: never worse than RTN in output error on correlated Hessians, exactly RTN with H = I,
// writes what it reconstructs, dead inputs, damping retries and the RTN fallback.
// (tests/quant/run.sh compares it with an independent PyTorch implementation.)
#include "pq/quant/gptq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "pq/core/minifloat.h"
#include "pq/formats/formats_test_util.h"
#include "pq/formats/quantize_with_scales.h"
#include "pq/quant/quant_test_util.h"
#include "pq/quant/scale_search.h"

namespace pq::quant {
namespace {

using formats::FormatId;
using formats::testing::ExpectSameBytes;

// Weights with one outlier (x8) in 200.
std::vector<float> RandomWeights(int64_t n, int64_t k, uint32_t seed) {
  return testing::RandomWeights(n, k, seed, 200, 8.0f);
}

// H = X^T X for X [t, k] with correlated columns: an AR(1) chain across inputs plus three
// shared factors, and per-input scales spanning ~two orders of magnitude.
std::vector<float> CorrelatedHessian(int64_t k, int64_t t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<double> scale(static_cast<size_t>(k)), load(static_cast<size_t>(3 * k));
  for (double& s : scale) s = std::exp(1.2 * g(rng));
  for (double& l : load) l = g(rng);
  std::vector<double> x(static_cast<size_t>(t * k));
  for (int64_t r = 0; r < t; ++r) {
    const double f[3] = {g(rng), g(rng), g(rng)};
    double prev = 0.0;
    for (int64_t i = 0; i < k; ++i) {
      prev = 0.7 * prev + g(rng);
      double v = prev;
      for (int j = 0; j < 3; ++j) v += f[j] * load[static_cast<size_t>(j * k + i)];
      x[static_cast<size_t>(r * k + i)] = v * scale[static_cast<size_t>(i)];
    }
  }
  std::vector<float> h(static_cast<size_t>(k * k));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0.0;
      for (int64_t r = 0; r < t; ++r)
        s += x[static_cast<size_t>(r * k + i)] * x[static_cast<size_t>(r * k + j)];
      h[static_cast<size_t>(i * k + j)] = h[static_cast<size_t>(j * k + i)] = static_cast<float>(s);
    }
  return h;
}

std::vector<float> Identity(int64_t k) {
  std::vector<float> h(static_cast<size_t>(k * k), 0.0f);
  for (int64_t i = 0; i < k; ++i) h[static_cast<size_t>(i * k + i)] = 1.0f;
  return h;
}

std::vector<FormatId> Quantized() {
  std::vector<FormatId> ids;
  for (const auto& f : formats::AllFormats())
    if (f.id != FormatId::kBF16) ids.push_back(f.id);
  return ids;
}

GptqOptions Options(FormatId id) {
  GptqOptions o;
  if (id == FormatId::kNVFP4) o.input_global_scale = 100.0f;
  return o;
}

formats::QuantizeOptions RtnOptions(FormatId id) {
  formats::QuantizeOptions o;
  if (id == FormatId::kNVFP4) o.input_global_scale = 100.0f;
  return o;
}

std::vector<float> Rtn(FormatId id, const std::vector<float>& w, int64_t n, int64_t k) {
  auto q = formats::QuantizeRtn(id, w, n, k, RtnOptions(id));
  EXPECT_TRUE(q.ok());
  auto d = formats::Dequantize(id, formats::Views(*q), n, k);
  EXPECT_TRUE(d.ok());
  return *d;
}

TEST(Gptq, NeverWorseThanRtnOnCorrelatedHessians) {
  const int64_t n = 24, k = 256;
  for (uint32_t seed = 0; seed < 3; ++seed) {
    const auto w = RandomWeights(n, k, seed);
    const auto h = CorrelatedHessian(k, 384, seed + 100);
    for (FormatId id : Quantized()) {
      const double rtn = OutputError(w, Rtn(id, w, n, k), h, n, k);
      for (bool act_order : {false, true}) {
        GptqOptions o = Options(id);
        o.act_order = act_order;
        auto g = GptqQuantize(id, w, h, n, k, o);
        ASSERT_TRUE(g.ok()) << g.status().ToString();
        EXPECT_TRUE(g->fallback.ok());
        const double gptq = OutputError(w, g->w_hat, h, n, k);
        EXPECT_LE(gptq, rtn) << formats::Spec(id).name << " act_order " << act_order;
        // On these problems GPTQ is far better, not just equal.
        EXPECT_LT(gptq, 0.8 * rtn) << formats::Spec(id).name << " act_order " << act_order;
      }
    }
  }
}

TEST(Gptq, IdentityHessianGivesRtnBytes) {
  const int64_t n = 9, k = 384;
  const auto w = RandomWeights(n, k, 7);
  for (FormatId id : Quantized()) {
    auto rtn = formats::QuantizeRtn(id, w, n, k, RtnOptions(id));
    ASSERT_TRUE(rtn.ok());
    for (bool act_order : {false, true}) {
      GptqOptions o = Options(id);
      o.act_order = act_order;
      o.num_threads = 2;
      auto g = GptqQuantize(id, w, Identity(k), n, k, o);
      ASSERT_TRUE(g.ok()) << g.status().ToString();
      ExpectSameBytes(g->tensors, *rtn, std::string(formats::Spec(id).name));
    }
  }
}

TEST(Gptq, WritesWhatItReconstructsInRtnLayout) {
  const int64_t n = 8, k = 256;
  const auto w = RandomWeights(n, k, 3);
  const auto h = CorrelatedHessian(k, 300, 4);
  for (FormatId id : Quantized()) {
    auto g = GptqQuantize(id, w, h, n, k, Options(id));
    ASSERT_TRUE(g.ok());
    auto d = formats::Dequantize(id, formats::Views(g->tensors), n, k);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(*d, g->w_hat);
    auto rtn = formats::QuantizeRtn(id, w, n, k, RtnOptions(id));
    ASSERT_EQ(g->tensors.size(), rtn->size());
    for (size_t i = 0; i < rtn->size(); ++i) {
      EXPECT_EQ(g->tensors[i].suffix, (*rtn)[i].suffix);
      EXPECT_EQ(g->tensors[i].shape, (*rtn)[i].shape);
      EXPECT_EQ(g->tensors[i].dtype, (*rtn)[i].dtype);
    }
  }
}

TEST(Gptq, SameBytesOnAnyThreadCount) {
  // Several blocks of rows and of the Cholesky panels, split unevenly by 3 and 5 threads.
  const int64_t n = 200, k = 384;
  const auto w = RandomWeights(n, k, 5);
  const auto h = CorrelatedHessian(k, 500, 6);
  for (FormatId id : {FormatId::kNVFP4A16, FormatId::kINT4, FormatId::kFP8}) {
    GptqOptions o = Options(id);
    auto a = GptqQuantize(id, w, h, n, k, o);
    ASSERT_TRUE(a.ok());
    for (int threads : {2, 3, 5}) {
      o.num_threads = threads;
      auto b = GptqQuantize(id, w, h, n, k, o);
      ASSERT_TRUE(b.ok());
      ExpectSameBytes(a->tensors, b->tensors,
                      std::string(formats::Spec(id).name) + " threads " + std::to_string(threads));
    }
  }
}

// A factor cache shared by every format (and two row counts, as fused siblings) on one H
// gives the bytes of uncached calls, factorises once per (H, damp, act_order), and keeps the
// retried damping of an H that needed it.
TEST(Gptq, FactorCacheGivesTheUncachedBytes) {
  const int64_t n = 96, k = 256;
  const auto h = CorrelatedHessian(k, 400, 7);
  GptqFactorCache cache;
  int64_t calls = 0;
  for (bool act_order : {false, true})
    for (int64_t rows : {n, n / 2})
      for (FormatId id : {FormatId::kNVFP4A16, FormatId::kINT4, FormatId::kFP8, FormatId::kMXFP8}) {
        const auto w = RandomWeights(rows, k, 9);
        GptqOptions o = Options(id);
        o.act_order = act_order;
        auto a = GptqQuantize(id, w, h, rows, k, o);
        o.factor_cache = &cache;
        auto b = GptqQuantize(id, w, h, rows, k, o);
        ASSERT_TRUE(a.ok() && b.ok());
        ++calls;
        ExpectSameBytes(a->tensors, b->tensors, std::string(formats::Spec(id).name));
        EXPECT_EQ(a->damp_used, b->damp_used);
      }
  EXPECT_EQ(cache.hits(), calls - 2);                          // one factorisation per act_order
  std::vector<float> bad(static_cast<size_t>(32 * 32), 0.0f);  // needs damp 0.1 (see below)
  for (int64_t i = 0; i < 32; i += 2) {
    bad[static_cast<size_t>(i * 32 + i)] = bad[static_cast<size_t>((i + 1) * 32 + i + 1)] = 1.0f;
    bad[static_cast<size_t>(i * 32 + i + 1)] = bad[static_cast<size_t>((i + 1) * 32 + i)] = 1.05f;
  }
  GptqOptions o = Options(FormatId::kNVFP4A16);
  o.factor_cache = &cache;
  for (int pass = 0; pass < 2; ++pass) {
    auto g = GptqQuantize(FormatId::kNVFP4A16, RandomWeights(4, 32, 12), bad, 4, 32, o);
    ASSERT_TRUE(g.ok());
    EXPECT_NEAR(g->damp_used, 0.1, 1e-12);
  }
}

TEST(Gptq, BlockSizeOnlyChangesRounding) {
  // Lazy block updates are an exact reordering of the same arithmetic: any block size gives
  // the same codes up to floating-point ties.
  const int64_t n = 32, k = 256;
  const auto w = RandomWeights(n, k, 8);
  const auto h = CorrelatedHessian(k, 400, 9);
  GptqOptions o;
  o.block = 16;
  auto a = GptqQuantize(FormatId::kNVFP4A16, w, h, n, k, o);
  o.block = 256;
  auto b = GptqQuantize(FormatId::kNVFP4A16, w, h, n, k, o);
  ASSERT_TRUE(a.ok() && b.ok());
  size_t diff = 0;
  for (size_t i = 0; i < a->w_hat.size(); ++i) diff += a->w_hat[i] != b->w_hat[i];
  EXPECT_LE(diff, a->w_hat.size() / 1000) << diff << " of " << a->w_hat.size();
}

TEST(Gptq, DeadInputsAreZeroed) {
  const int64_t n = 6, k = 64;
  const auto w = RandomWeights(n, k, 10);
  auto h = CorrelatedHessian(k, 200, 11);
  for (int64_t dead : {0, 17, 63})
    for (int64_t j = 0; j < k; ++j)
      h[static_cast<size_t>(dead * k + j)] = h[static_cast<size_t>(j * k + dead)] = 0.0f;
  for (bool act_order : {false, true}) {
    GptqOptions o;
    o.act_order = act_order;
    auto g = GptqQuantize(FormatId::kMXFP4, w, h, n, k, o);
    ASSERT_TRUE(g.ok());
    for (int64_t r = 0; r < n; ++r)
      for (int64_t dead : {0, 17, 63}) EXPECT_EQ(g->w_hat[static_cast<size_t>(r * k + dead)], 0.0f);
    EXPECT_LE(OutputError(w, g->w_hat, h, n, k),
              OutputError(w, Rtn(FormatId::kMXFP4, w, n, k), h, n, k));
  }
}

TEST(Gptq, RetriesWithMoreDamping) {
  // Pairs of inputs with correlation 1.05: eigenvalues 2.05 and -0.05 per pair. Damping 0.01
  // leaves it indefinite, 0.1 makes it positive definite.
  const int64_t n = 4, k = 32;
  std::vector<float> h(static_cast<size_t>(k * k), 0.0f);
  for (int64_t i = 0; i < k; i += 2) {
    h[static_cast<size_t>(i * k + i)] = h[static_cast<size_t>((i + 1) * k + i + 1)] = 1.0f;
    h[static_cast<size_t>(i * k + i + 1)] = h[static_cast<size_t>((i + 1) * k + i)] = 1.05f;
  }
  auto g = GptqQuantize(FormatId::kNVFP4A16, RandomWeights(n, k, 12), h, n, k);
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->fallback.ok());
  EXPECT_NEAR(g->damp_used, 0.1, 1e-12);
}

TEST(Gptq, FallsBackToRtnWhenNotFactorable) {
  const int64_t n = 5, k = 128;
  const auto w = RandomWeights(n, k, 13);
  auto h = Identity(k);
  for (float& v : h) v = -v;  // negative definite: no damping fraction helps
  auto g = GptqQuantize(FormatId::kINT4, w, h, n, k);
  ASSERT_TRUE(g.ok());
  EXPECT_FALSE(g->fallback.ok());
  EXPECT_NE(g->fallback.message().find("RTN"), std::string::npos) << g->fallback.message();
  auto rtn = formats::QuantizeRtn(FormatId::kINT4, w, n, k);
  ExpectSameBytes(g->tensors, *rtn, "INT4 fallback");
}

TEST(Gptq, SiblingGlobalScaleIsKept) {
  const int64_t n = 4, k = 64;
  const auto w = RandomWeights(n, k, 14);
  GptqOptions o;
  o.weight_global_scale = 1000.0f;
  auto g = GptqQuantize(FormatId::kNVFP4A16, w, CorrelatedHessian(k, 100, 15), n, k, o);
  ASSERT_TRUE(g.ok());
  auto q = formats::UnpackCodes(FormatId::kNVFP4A16, formats::Views(g->tensors), n, k);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->weight_global_scale, 1000.0f);
}

TEST(Gptq, GivenScalesAreUsedAndStored) {
  // Scale search on RTN first, then GPTQ with those scales fixed.
  const int64_t n = 16, k = 256;
  const auto w = RandomWeights(n, k, 17);
  const auto h = CorrelatedHessian(k, 400, 18);
  std::vector<float> hdiag(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) hdiag[static_cast<size_t>(i)] = h[static_cast<size_t>(i * k + i)];
  for (FormatId id : Quantized()) {
    const std::string what(formats::Spec(id).name);
    auto rtn = formats::QuantizeRtn(id, w, n, k, RtnOptions(id));
    ASSERT_TRUE(rtn.ok());
    auto ss = ScaleSearch(id, w, formats::Views(*rtn), hdiag, n, k);
    ASSERT_TRUE(ss.ok()) << ss.status().ToString();
    auto searched = formats::UnpackCodes(id, formats::Views(ss->tensors), n, k);
    ASSERT_TRUE(searched.ok());
    GptqOptions o = Options(id);
    o.scales = searched->scales;
    auto g = GptqQuantize(id, w, h, n, k, o);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    auto stored = formats::UnpackCodes(id, formats::Views(g->tensors), n, k);
    ASSERT_TRUE(stored.ok());
    EXPECT_EQ(stored->scales, searched->scales) << what;
    EXPECT_LE(OutputError(w, g->w_hat, h, n, k), OutputError(w, ss->w_hat, h, n, k)) << what;
    // With H = I it is exactly those scales applied to W.
    auto id_g = GptqQuantize(id, w, Identity(k), n, k, o);
    formats::QuantizeOptions qo = RtnOptions(id);
    auto direct = formats::QuantizeWithScales(id, w, n, k, searched->scales, qo);
    ASSERT_TRUE(id_g.ok() && direct.ok());
    ExpectSameBytes(id_g->tensors, *direct, what + " H = I");
  }
  GptqOptions o;
  o.scales.assign(static_cast<size_t>(n * k / 16), 3.0f);  // 3.0 is E4M3, but wrong count...
  o.scales.pop_back();
  EXPECT_FALSE(GptqQuantize(FormatId::kNVFP4A16, w, h, n, k, o).ok());
  o.scales.assign(static_cast<size_t>(n * k / 32), 3.0f);  // ...and not a power of two
  EXPECT_FALSE(GptqQuantize(FormatId::kMXFP4, w, h, n, k, o).ok());
}

TEST(Gptq, RejectsBadInput) {
  const int64_t n = 2, k = 64;
  const auto w = RandomWeights(n, k, 16);
  const auto h = Identity(k);
  EXPECT_FALSE(GptqQuantize(FormatId::kBF16, w, h, n, k).ok());
  GptqOptions o;
  o.block = 24;
  EXPECT_FALSE(GptqQuantize(FormatId::kNVFP4A16, w, h, n, k, o).ok());
  EXPECT_FALSE(GptqQuantize(FormatId::kNVFP4, w, h, n, k).ok());  // no input_global_scale
  EXPECT_FALSE(GptqQuantize(FormatId::kMXFP8, w, std::vector<float>(10), n, k).ok());
  auto bad = h;
  bad[5] = NAN;
  EXPECT_FALSE(GptqQuantize(FormatId::kMXFP8, w, bad, n, k).ok());
  o.block = 128;
  o.damp = -1.0;
  EXPECT_FALSE(GptqQuantize(FormatId::kFP8, w, h, n, k, o).ok());
}

}  // namespace
}  // namespace pq::quant
