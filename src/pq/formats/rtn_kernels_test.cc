// The fast RTN kernels against the scalar reference: identical bytes on random weights,
// adversarial values (ties, zeros, tiny and huge magnitudes, subnormals) and odd shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "pq/core/minifloat.h"
#include "pq/formats/format.h"

namespace pq::formats {
namespace {

std::vector<float> AdversarialWeights(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_int_distribution<int> kind(0, 9), exp(-140, 20);
  std::vector<float> w(n);
  for (float& x : w) {
    switch (kind(rng)) {
      case 0:
        x = 0.0f;
        break;
      case 1:
        x = -0.0f;
        break;
      case 2:
        x = std::ldexp(g(rng), exp(rng));
        break;  // any magnitude, incl. subnormal
      case 3:
        x = static_cast<float>(static_cast<int>(g(rng) * 8)) * 0.25f;
        break;  // ties
      default:
        x = g(rng) * 0.05f;
    }
    x = RoundBf16(x);
  }
  return w;
}

TEST(RtnKernels, FastEqualsReferenceEveryFormat) {
  for (uint32_t seed = 0; seed < 6; ++seed) {
    const int64_t rows = 7 + seed, cols = 256 + 128 * (seed % 2);
    const auto w = AdversarialWeights(static_cast<size_t>(rows * cols), seed);
    for (const auto& f : AllFormats()) {
      QuantizeOptions fast, ref;
      ref.reference_kernels = true;
      fast.num_threads = 2;
      if (f.id == FormatId::kNVFP4) fast.input_global_scale = ref.input_global_scale = 7.0f;
      auto a = QuantizeRtn(f.id, w, rows, cols, fast), b = QuantizeRtn(f.id, w, rows, cols, ref);
      ASSERT_TRUE(a.ok() && b.ok()) << f.name;
      ASSERT_EQ(a->size(), b->size());
      for (size_t i = 0; i < a->size(); ++i)
        EXPECT_EQ((*a)[i].bytes, (*b)[i].bytes)
            << f.name << " " << (*a)[i].suffix << " seed " << seed;
    }
  }
}

TEST(RtnKernels, OddChannelWidths) {
  // FP8 and INT8 hold any in_features; INT8 pads the last int32 word with zero bits.
  for (int64_t cols : {1, 3, 5, 172, 173}) {
    const auto w = AdversarialWeights(static_cast<size_t>(3 * cols), static_cast<uint32_t>(cols));
    for (FormatId id : {FormatId::kFP8, FormatId::kINT8}) {
      QuantizeOptions ref;
      ref.reference_kernels = true;
      auto a = QuantizeRtn(id, w, 3, cols), b = QuantizeRtn(id, w, 3, cols, ref);
      ASSERT_TRUE(a.ok() && b.ok());
      for (size_t i = 0; i < a->size(); ++i) EXPECT_EQ((*a)[i].bytes, (*b)[i].bytes) << cols;
      auto d = Dequantize(id, Views(*a), 3, cols);
      ASSERT_TRUE(d.ok()) << d.status().ToString();
    }
  }
}

}  // namespace
}  // namespace pq::formats
