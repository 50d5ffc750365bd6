// The fast RTN kernels against the scalar reference: identical bytes on random weights,
// adversarial values (ties, zeros, tiny and huge magnitudes, subnormals) and odd shapes.
#include "pq/formats/rtn_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
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

std::vector<uint16_t> Bf16Bits(const std::vector<float>& w) {
  std::vector<uint16_t> b(w.size());
  for (size_t i = 0; i < w.size(); ++i) b[i] = F32ToBf16(w[i]);
  return b;
}

void ExpectSameTensors(const std::vector<QTensor>& a, const std::vector<QTensor>& b,
                       const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].bytes, b[i].bytes) << what << " " << i;
}

// The raw-bf16 entry point writes the reference kernels' bytes, on one and two threads.
TEST(RtnKernels, Bf16InputEqualsReferenceEveryFormat) {
  for (uint32_t seed = 0; seed < 4; ++seed) {
    const int64_t rows = 5 + seed, cols = 256 + 128 * (seed % 2);
    const auto w = AdversarialWeights(static_cast<size_t>(rows * cols), seed);
    const auto wb = Bf16Bits(w);
    for (const auto& f : AllFormats()) {
      QuantizeOptions fast, ref;
      ref.reference_kernels = true;
      fast.num_threads = 1 + seed % 2;
      if (f.id == FormatId::kNVFP4) fast.input_global_scale = ref.input_global_scale = 7.0f;
      auto a = QuantizeRtnBf16(f.id, wb, rows, cols, fast);
      auto b = QuantizeRtn(f.id, w, rows, cols, ref);
      ASSERT_TRUE(a.ok() && b.ok()) << f.name;
      ExpectSameTensors(*a, *b, std::string(f.name) + " seed " + std::to_string(seed));
    }
  }
}

// Rows the vector kernels must hand to the exact division: values that are not bf16 (outside
// QuantizeRtn's contract, still the reference's bytes), and rows so small that the scale is a
// subnormal float (1 / scale would overflow). Also long rows (the 32- and 64-wide steps and
// their tails), and -0.0 / exact zeros.
TEST(RtnKernels, VectorKernelEdgeRows) {
  const int64_t rows = 6, cols = 1024 + 128;
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float& x = w[static_cast<size_t>(r * cols + c)];
      x = g(rng);
      if (r == 0) x = std::ldexp(x, -130);  // subnormal values, subnormal scales
      if (r == 1) x = std::ldexp(x, -120);  // scale near the normal boundary
      if (r == 2 && c % 3 == 0) x = c % 2 ? -0.0f : 0.0f;
      if (r != 3) x = RoundBf16(x);                   // row 3: full float32 values
      if (r == 4) x = RoundBf16(x * 1e-4f);           // many E4M3 subnormal codes
      if (r == 5) x = std::ldexp(RoundBf16(x), 100);  // huge
    }
  for (FormatId id : {FormatId::kFP8, FormatId::kMXFP8, FormatId::kINT4, FormatId::kINT8}) {
    QuantizeOptions ref;
    ref.reference_kernels = true;
    auto a = QuantizeRtn(id, w, rows, cols), b = QuantizeRtn(id, w, rows, cols, ref);
    ASSERT_TRUE(a.ok() && b.ok());
    ExpectSameTensors(*a, *b, std::string(Spec(id).name) + " float input");
  }
}

// The premise of the vector kernels' reciprocal multiply (rtn_avx2.cc): for bf16 x and a
// normal bf16 s, bf16(x / s) == bf16(x * f32(1 / s)). Every pair of mantissas, both signs of
// the exponent gap, subnormal x included.
TEST(RtnKernels, ReciprocalMultiplyIsExactForBf16) {
  int64_t checked = 0;
  for (uint32_t sm = 0; sm < 128; ++sm)
    for (int se : {-126, -100, -7, 0, 5, 100}) {
      const float s = std::ldexp(1.0f + static_cast<float>(sm) / 128.0f, se);
      const float inv = 1.0f / s;
      for (uint32_t xm = 0; xm < 256; ++xm)
        for (int xe = -140; xe <= 20; ++xe) {
          const float x = std::ldexp(static_cast<float>(xm) / 128.0f, xe + se);
          if (!std::isfinite(x) || x != RoundBf16(x)) continue;
          ASSERT_EQ(F32ToBf16(x / s), F32ToBf16(x * inv)) << x << " / " << s;
          ++checked;
        }
    }
  EXPECT_GT(checked, 1000000);
}

// Float (non-bf16) values x = t * s whose exact quotient x / s = t is a bf16 rounding tie:
// x * (1 / s) may land an ulp off the tie and round the other way, so these rows must take
// the division. Each group's first element fixes its scale to s exactly.
TEST(RtnKernels, NonBf16TiesTakeTheDivision) {
  const int64_t rows = 4, cols = 1024;
  const float mantissas[rows] = {1.0f + 47 / 128.0f, 1.0f + 93 / 128.0f, 1.0f + 121 / 128.0f,
                                 1.0f + 3 / 128.0f};
  for (FormatId id : {FormatId::kFP8, FormatId::kINT4, FormatId::kINT8}) {
    const float top = id == FormatId::kFP8 ? kFp8Max : id == FormatId::kINT8 ? 127.5f : 7.5f;
    const int64_t group = id == FormatId::kINT4 ? 128 : cols;
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float s = mantissas[r] / 64.0f;
        const float tie = 1.0f + static_cast<float>(2 * (c % 128) + 1) / 256.0f;
        const float pow2 = std::ldexp(1.0f, static_cast<int>(c % 4) - 2);  // 1/4 .. 2
        w[static_cast<size_t>(r * cols + c)] =
            c % group == 0 ? top * s : (c % 2 ? -1.0f : 1.0f) * tie * pow2 * s;
      }
    QuantizeOptions ref;
    ref.reference_kernels = true;
    auto a = QuantizeRtn(id, w, rows, cols), b = QuantizeRtn(id, w, rows, cols, ref);
    ASSERT_TRUE(a.ok() && b.ok());
    ExpectSameTensors(*a, *b, std::string(Spec(id).name) + " ties");
  }
}

TEST(RtnKernels, NonFiniteWeightIsAnError) {
  for (FormatId id : {FormatId::kFP8, FormatId::kMXFP8, FormatId::kINT4, FormatId::kINT8}) {
    for (float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
      std::vector<float> w(4 * 256, 0.5f);
      w[3 * 256 + 17] = bad;
      auto a = QuantizeRtn(id, w, 4, 256);
      ASSERT_FALSE(a.ok()) << Spec(id).name;
      EXPECT_NE(a.status().ToString().find("element 785"), std::string::npos)
          << a.status().ToString();
      auto b = QuantizeRtnBf16(id, Bf16Bits(w), 4, 256);
      ASSERT_FALSE(b.ok()) << Spec(id).name;
      EXPECT_NE(b.status().ToString().find("element 785"), std::string::npos)
          << b.status().ToString();
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
      auto c = QuantizeRtnBf16(id, Bf16Bits(w), 3, cols);
      ASSERT_TRUE(c.ok());
      for (size_t i = 0; i < a->size(); ++i) EXPECT_EQ((*c)[i].bytes, (*b)[i].bytes) << cols;
      auto d = Dequantize(id, Views(*a), 3, cols);
      ASSERT_TRUE(d.ok()) << d.status().ToString();
    }
  }
}

}  // namespace
}  // namespace pq::formats
