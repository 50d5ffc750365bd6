// Activation fake-quantization: hand-checked values per format (exact codes, ties to even,
// zeros and their signs, clamping, empty and saturated scales), argument errors, and the
// kernels against a plain scalar statement of ct's arithmetic built on the generic codecs.
// Bit-exactness against compressed-tensors itself is tests/interop/test_act_quant.py.
#include "pq/formats/act_quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "pq/core/minifloat.h"

namespace pq::formats {
namespace {

std::vector<float> Quantized(FormatId id, std::vector<float> x, int64_t rows, int64_t cols,
                             std::optional<float> gs = std::nullopt) {
  const Status s = FakeQuantizeActivations(id, x, rows, cols, gs);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return x;
}

bool SameBits(float a, float b) {
  return std::isnan(a) ? std::isnan(b) : FloatBits(a) == FloatBits(b);
}

// ---------------------------------------------------------------- hand-checked values

TEST(ActQuant, Mxfp4ExactCodesTiesZerosAndClamp) {
  // Group 0: amax 5 (mantissa 1.25: no round-up) -> E = 127 + 2 - 2, scale 1, so q = x.
  std::vector<float> x(64, 0.0f);
  const float in0[] = {5.0f,   0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f,  -3.0f,
                       -0.25f, -0.0f, 0.1f,  1.5f,  -4.0f, 0.5f, 2.75f, -1.0f};
  const float want0[] = {4.0f,  0.0f, 1.0f, 1.0f, 2.0f,  2.0f, 4.0f, -3.0f,
                         -0.0f, 0.0f, 0.0f, 1.5f, -4.0f, 0.5f, 3.0f, -1.0f};
  std::copy(std::begin(in0), std::end(in0), x.begin());
  // Group 1: amax 6.5 (mantissa 1.625) -> scale 1, 6.5 clamps to the max code 6; amax 7
  // would round p up to 8 (scale 2). -0.0 and an exact 0 both come back as +0.
  x[32] = 6.5f;
  x[33] = -6.5f;
  x[34] = -0.0f;
  const auto y = Quantized(FormatId::kMXFP4, x, 1, 64);
  for (int i = 0; i < 16; ++i) EXPECT_TRUE(SameBits(y[i], want0[i])) << i << ": " << y[i];
  EXPECT_EQ(y[32], 6.0f);
  EXPECT_EQ(y[33], -6.0f);
  EXPECT_FALSE(std::signbit(y[34]));
  for (int i = 16; i < 32; ++i) EXPECT_TRUE(SameBits(y[i], 0.0f)) << i;
}

TEST(ActQuant, Mxfp8ScaleRoundingTiesAndSubnormals) {
  std::vector<float> x(64, 0.0f);
  // Group 0: amax 1 -> scale 2^-8, q = 256 x; E4M3 in [256, 512) steps by 32.
  x[0] = 1.0f;
  x[1] = 1.0625f;                 // q = 272: tie 256 / 288 -> 256
  x[2] = 1.1875f;                 // q = 304: tie 288 / 320 -> 320
  x[3] = std::ldexp(1.0f, -17);   // q = 2^-9: smallest subnormal, exact
  x[4] = std::ldexp(3.0f, -18);   // q = 1.5 * 2^-9: tie -> 2 * 2^-9
  x[5] = std::ldexp(1.0f, -18);   // q = 2^-10: tie 0 / 2^-9 -> +0
  x[6] = -std::ldexp(1.0f, -18);  // same, negative -> -0
  x[7] = 0.8671875f;              // q = 222: [128, 256) steps by 16 -> 224
  // Group 1: amax 1.75 rounds p up to 2 (ct adds a quarter mantissa) -> scale 2^-7.
  x[32] = 1.75f;
  x[33] = 0.0078125f;  // q = 1 exact
  x[34] = 1.71875f;    // q = 220 -> 224 -> 1.75
  const auto y = Quantized(FormatId::kMXFP8, x, 1, 64);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], 1.0f);
  EXPECT_EQ(y[2], 1.25f);
  EXPECT_EQ(y[3], std::ldexp(1.0f, -17));
  EXPECT_EQ(y[4], std::ldexp(1.0f, -16));
  EXPECT_TRUE(SameBits(y[5], 0.0f));
  EXPECT_TRUE(SameBits(y[6], -0.0f));
  EXPECT_EQ(y[7], 0.875f);
  EXPECT_EQ(y[32], 1.75f);
  EXPECT_EQ(y[33], 0.0078125f);
  EXPECT_EQ(y[34], 1.75f);
}

TEST(ActQuant, MxAllZeroTinyAndHugeGroups) {
  std::vector<float> x(96, 0.0f);
  x[32] = std::ldexp(1.0f, -130);  // bf16 subnormal group: E = 0, scale 2^-127
  x[64] = 3.2e38f;                 // p rounds to Inf: ct's scale is Inf, the group is NaN
  for (FormatId id : {FormatId::kMXFP8, FormatId::kMXFP4}) {
    const auto y = Quantized(id, x, 1, 96);
    for (int i = 0; i < 32; ++i) EXPECT_TRUE(SameBits(y[i], 0.0f)) << i;
    // 2^-130 / 2^-127 = 0.125: an E4M3 value (kept), an E2M1 zero.
    EXPECT_EQ(y[32], id == FormatId::kMXFP8 ? std::ldexp(1.0f, -130) : 0.0f);
    for (int i = 64; i < 96; ++i) EXPECT_TRUE(std::isnan(y[i])) << i;
  }
}

TEST(ActQuant, Fp8PerTokenScales) {
  std::vector<float> x(3 * 8, 0.0f);
  // Row 0: amax 448 -> scale 1, q = x rounded to E4M3 ([16, 32) steps by 2, subnormals
  // are multiples of 2^-9).
  const float row0[] = {448.0f, 17.0f, 19.0f, -17.0f, 0.0f, -0.0f, 0.005859375f, -0.0009765625f};
  std::copy(std::begin(row0), std::end(row0), x.begin());
  // Row 1: all zeros -> scale 2^-7, zeros (also -0) come back +0.
  x[8 + 3] = -0.0f;
  // Row 2: amax 1 -> s = bf16(1/448) = 146 * 2^-16; q = bf16(1/s) = 448; out =
  // bf16(448 * 146 * 2^-16) = bf16(0.998046875) = 1 (a tie, to even).
  x[16] = 1.0f;
  x[17] = -0.5f;  // q = bf16(-224.44) = -224, exact in e4m3; bf16(-224 * s) = -0.5 (tie)
  const auto y = Quantized(FormatId::kFP8, x, 3, 8);
  EXPECT_EQ(y[0], 448.0f);
  EXPECT_EQ(y[1], 16.0f);  // tie 16 / 18 -> 16
  EXPECT_EQ(y[2], 20.0f);  // tie 18 / 20 -> 20
  EXPECT_EQ(y[3], -16.0f);
  EXPECT_TRUE(SameBits(y[4], 0.0f));
  EXPECT_TRUE(SameBits(y[5], 0.0f));
  EXPECT_EQ(y[6], 0.005859375f);       // 3 * 2^-9, exact subnormal
  EXPECT_TRUE(SameBits(y[7], -0.0f));  // -2^-10: tie 0 / 2^-9 -> -0
  for (int i = 8; i < 16; ++i) EXPECT_TRUE(SameBits(y[i], 0.0f)) << i;
  EXPECT_EQ(y[16], 1.0f);
  EXPECT_EQ(y[17], -0.5f);
}

TEST(ActQuant, NvFp4GroupScalesUnderGlobalScale) {
  // gs = 448 (NvFp4InputGlobalScale(6)): a group with amax 6 gets s = e4m3(448 * 1) = 448,
  // eff = 1, so q = x.
  ASSERT_EQ(NvFp4InputGlobalScale(6.0f), 448.0f);
  std::vector<float> x(64, 0.0f);
  const float in0[] = {6.0f,  0.25f, 0.75f, 1.25f, 1.75f, 2.5f,  3.5f, 5.0f,
                       -5.5f, -0.1f, -0.0f, 0.0f,  1.5f,  -2.0f, 4.0f, 0.5f};
  const float want0[] = {6.0f,  0.0f,  1.0f, 1.0f, 2.0f, 2.0f,  4.0f, 4.0f,
                         -6.0f, -0.0f, 0.0f, 0.0f, 1.5f, -2.0f, 4.0f, 0.5f};
  std::copy(std::begin(in0), std::end(in0), x.begin());
  // Group 1: amax 3000 > the calibrated 6: gs * bf16(500) saturates at 448, eff = 1, so
  // everything clamps to +-6.
  x[16] = 3000.0f;
  x[17] = -7.0f;
  x[18] = 2.9f;  // bf16 2.90625 -> 3
  // Group 2 all zero: s = 0 -> ct's eps 0.125, output zeros. Group 3: amax 2^-20, so
  // gs * bf16(amax / 6) = 7.1e-5 underflows e4m3 -> eps 0.125, eff = 0.125 / 448, and
  // q = 2^-20 / eff = 0.0034 -> 0 (-0 for the negative value).
  x[48] = std::ldexp(1.0f, -20);
  x[49] = -std::ldexp(1.0f, -20);
  const auto y = Quantized(FormatId::kNVFP4, x, 1, 64, 448.0f);
  for (int i = 0; i < 16; ++i) EXPECT_TRUE(SameBits(y[i], want0[i])) << i << ": " << y[i];
  EXPECT_EQ(y[16], 6.0f);
  EXPECT_EQ(y[17], -6.0f);
  EXPECT_EQ(y[18], 3.0f);
  for (int i = 32; i < 48; ++i) EXPECT_TRUE(SameBits(y[i], 0.0f)) << i;
  EXPECT_TRUE(SameBits(y[48], 0.0f));
  EXPECT_TRUE(SameBits(y[49], -0.0f));
}

TEST(ActQuant, NvFp4InputGlobalScaleConvention) {
  EXPECT_EQ(NvFp4InputGlobalScale(7.5f), 360.0f);              // CT_NOTES: not 358
  EXPECT_EQ(NvFp4InputGlobalScale(0.09326171875f), 28928.0f);  // not 28800
  EXPECT_EQ(NvFp4InputGlobalScale(-6.0f), 448.0f);
  EXPECT_EQ(NvFp4InputGlobalScale(6.01f), 448.0f);  // the observer sees bf16(6.01) = 6
  EXPECT_EQ(NvFp4InputGlobalScale(0.0f), 1.0f);
  EXPECT_EQ(NvFp4InputGlobalScale(1e-37f), 1.0f);
  EXPECT_EQ(NvFp4InputGlobalScale(std::nanf("")), 1.0f);
}

// ---------------------------------------------------------------- errors, passthrough

TEST(ActQuant, Errors) {
  std::vector<float> x(64, 1.0f);
  // NVFP4 needs a positive finite global scale.
  EXPECT_EQ(FakeQuantizeActivations(FormatId::kNVFP4, x, 2, 32, std::nullopt).code(),
            StatusCode::kInvalidArgument);
  for (float bad : {0.0f, -1.0f, INFINITY, NAN})
    EXPECT_FALSE(FakeQuantizeActivations(FormatId::kNVFP4, x, 2, 32, bad).ok()) << bad;
  // Shape: size mismatch, negative dims, K not a multiple of the group.
  EXPECT_FALSE(FakeQuantizeActivations(FormatId::kFP8, x, 3, 32, {}).ok());
  EXPECT_FALSE(FakeQuantizeActivations(FormatId::kBF16, x, -2, -32, {}).ok());
  const Status g = FakeQuantizeActivations(FormatId::kMXFP8, x, 4, 16, {});
  EXPECT_EQ(g.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(g.message().find("groups of 32"), std::string::npos) << g.message();
  EXPECT_TRUE(FakeQuantizeActivations(FormatId::kMXFP4, x, 2, 32, {}).ok());
  EXPECT_FALSE(FakeQuantizeActivations(FormatId::kNVFP4, x, 8, 8, 1.0f).ok());
  EXPECT_TRUE(FakeQuantizeActivations(FormatId::kFP8, x, 8, 8, {}).ok());  // any K
  // Non-finite values (also values that overflow bf16) are rejected, x untouched.
  std::vector<float> y(32, 0.3f);
  y[5] = 3.4e38f;  // rounds to bf16 Inf
  const std::vector<float> y0 = y;
  const Status nf = FakeQuantizeActivations(FormatId::kMXFP4, y, 1, 32, {});
  EXPECT_EQ(nf.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(nf.message().find("element 5"), std::string::npos) << nf.message();
  EXPECT_EQ(std::memcmp(y.data(), y0.data(), y.size() * 4), 0);
  // Empty input is fine.
  std::vector<float> none;
  EXPECT_TRUE(FakeQuantizeActivations(FormatId::kNVFP4, none, 0, 64, 1.0f).ok());
}

TEST(ActQuant, WeightOnlyFormatsLeaveInputBitIdentical) {
  std::vector<float> x = {0.1f, -0.0f, 1e-40f, 3.4e38f, 1.00001f, -7.3f, 0.0f, 65504.5f};
  x.push_back(std::nanf(""));  // not even checked: these formats never touch x
  x.resize(16, 0.123456789f);
  for (FormatId id : {FormatId::kBF16, FormatId::kNVFP4A16, FormatId::kINT4, FormatId::kINT8}) {
    std::vector<float> y = x;
    ASSERT_TRUE(FakeQuantizeActivations(id, y, 2, 8, 5.0f).ok());
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * 4), 0) << Spec(id).name;
  }
}

// ---------------------------------------------------------------- scalar statement

float RefE4M3(float c) { return MinifloatDecode<kSpecE4M3>(MinifloatEncode<kSpecE4M3>(c, true)); }
float RefSignedE2M1(float q) {  // torch.sign(q) * cast_to_fp4(|clamp(q, +-6)|)
  const float m = MinifloatDecode<kSpecE2M1>(MinifloatEncode<kSpecE2M1>(std::fabs(q), true));
  return q < 0.0f ? -m : (q > 0.0f ? m : 0.0f);
}
float RefAbsMax(const float* x, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}
// ct's E for an MX group: p = amax rounded to a power of two (up iff mantissa >= 1.75),
// E = 127 + log2(p) - offset clamped to [0, 255]; p = 0 for bf16-subnormal amax (the bit
// mask drops the mantissa), p = Inf past the largest binade.
int RefMxE(float amax, int offset) {
  if (amax < std::ldexp(1.0f, -126)) return 0;
  int e;
  const float f = std::frexp(amax, &e);  // amax = f * 2^e, f in [0.5, 1)
  const int lg = (e - 1) + (f >= 0.875f ? 1 : 0);
  if (lg >= 128) return 255;
  return std::clamp(127 + lg - offset, 0, 255);
}

std::vector<float> Reference(FormatId id, std::vector<float> x, size_t rows, size_t cols,
                             float gs) {
  for (float& v : x) v = RoundBf16(v);
  for (size_t r = 0; r < rows; ++r) {
    float* row = x.data() + r * cols;
    if (id == FormatId::kFP8) {
      float s = RoundBf16(RefAbsMax(row, cols) / 448.0f);
      if (s == 0.0f) s = 0.0078125f;
      for (size_t i = 0; i < cols; ++i) {
        const float q = RoundBf16(row[i] / s) + 0.0f;
        row[i] = RoundBf16(RefE4M3(std::clamp(q, -448.0f, 448.0f)) * s);
      }
      continue;
    }
    const size_t g = id == FormatId::kNVFP4 ? 16 : 32;
    for (size_t b = 0; b < cols; b += g) {
      float* v = row + b;
      const float amax = RefAbsMax(v, g);
      if (id == FormatId::kNVFP4) {
        float s = RefE4M3(std::min(gs * RoundBf16(amax / 6.0f), 448.0f));
        if (s == 0.0f) s = 0.125f;
        const float eff = s / gs;
        for (size_t i = 0; i < g; ++i) v[i] = RoundBf16(RefSignedE2M1(v[i] / eff) * eff);
      } else {
        const bool fp4 = id == FormatId::kMXFP4;
        const int e = RefMxE(amax, fp4 ? 2 : 8);
        const float s = e == 255 ? INFINITY : std::ldexp(1.0f, e - 127);
        for (size_t i = 0; i < g; ++i) {
          const float q = RoundBf16(v[i] / s) + 0.0f;
          v[i] = RoundBf16((fp4 ? RefSignedE2M1(q) : RefE4M3(std::clamp(q, -448.0f, 448.0f))) * s);
        }
      }
    }
  }
  return x;
}

std::vector<float> AdversarialActivations(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_int_distribution<int> kind(0, 11), exp(-135, 40);
  std::vector<float> x(n);
  for (float& v : x) {
    switch (kind(rng)) {
      case 0:
        v = 0.0f;
        break;
      case 1:
        v = -0.0f;
        break;
      case 2:
        v = std::ldexp(g(rng), exp(rng));
        break;  // any magnitude, bf16 subnormals too
      case 3:
        v = static_cast<float>(static_cast<int>(g(rng) * 8)) * 0.125f;
        break;  // ties
      case 4:
        v = g(rng) * 300.0f;
        break;  // outliers
      default:
        v = g(rng);
    }
  }
  return x;
}

TEST(ActQuant, MatchesScalarStatement) {
  const size_t rows = 41, cols = 256;
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    const auto x = AdversarialActivations(rows * cols, seed);
    float amax = 0.0f;
    for (float v : x) amax = std::max(amax, std::fabs(RoundBf16(v)));
    for (FormatId id : {FormatId::kNVFP4, FormatId::kMXFP8, FormatId::kMXFP4, FormatId::kFP8}) {
      // NVFP4: the calibrated scale, one from a smaller calibration amax (saturating group
      // scales) and one from a larger one (underflowing group scales).
      for (float gs : {NvFp4InputGlobalScale(amax), NvFp4InputGlobalScale(amax / 64.0f),
                       NvFp4InputGlobalScale(amax * 1e6f)}) {
        const auto want = Reference(id, x, rows, cols, gs);
        const auto got =
            Quantized(id, x, static_cast<int64_t>(rows), static_cast<int64_t>(cols), gs);
        size_t bad = 0;
        for (size_t i = 0; i < x.size(); ++i)
          if (!SameBits(got[i], want[i]) && bad++ < 5)
            ADD_FAILURE() << Spec(id).name << " seed " << seed << " gs " << gs << " [" << i
                          << "] x=" << x[i] << " got " << got[i] << " want " << want[i];
        EXPECT_EQ(bad, 0u);
        if (id != FormatId::kNVFP4) break;
      }
    }
  }
}

}  // namespace
}  // namespace pq::formats
