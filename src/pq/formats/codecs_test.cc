// Minifloat codecs: every code decoded against an independently computed table,
// encode(decode(c)) == c, ties to even at every midpoint, -0 and NaN, and the fast
// codecs used by the quantizers against the generic one.
#include "pq/formats/codecs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "pq/core/minifloat.h"

namespace pq::formats {
namespace {

// Independent decode formula: (-1)^s * (e == 0 ? m/2^M * 2^(1-B) : (1 + m/2^M) * 2^(e-B)).
double FormulaDecode(const MinifloatSpec& s, uint32_t c) {
  const uint32_t m = c & ((1u << s.man_bits) - 1);
  const uint32_t e = (c >> s.man_bits) & ((1u << s.exp_bits) - 1);
  const bool neg = (c >> (s.exp_bits + s.man_bits)) & 1u;
  const double frac = static_cast<double>(m) / std::pow(2.0, s.man_bits);
  const double v = e == 0 ? frac * std::pow(2.0, 1 - s.bias)
                          : (1.0 + frac) * std::pow(2.0, static_cast<int>(e) - s.bias);
  return neg ? -v : v;
}

template <const MinifloatSpec& S>
void CheckAllCodes(int nan_codes_expected, int inf_codes_expected) {
  const uint32_t count = 1u << (S.exp_bits + S.man_bits + 1);
  int nans = 0, infs = 0;
  for (uint32_t c = 0; c < count; ++c) {
    const float v = MinifloatDecode<S>(c);
    if (std::isnan(v)) {
      ++nans;
      EXPECT_TRUE(std::isnan(MinifloatDecode<S>(MinifloatEncode<S>(v, false)))) << c;
      continue;
    }
    if (std::isinf(v)) {
      ++infs;
      EXPECT_EQ(MinifloatEncode<S>(v, false), c);
      continue;
    }
    EXPECT_EQ(static_cast<double>(v), FormulaDecode(S, c)) << "code " << c;
    EXPECT_EQ(MinifloatEncode<S>(v, false), c) << "code " << c << " value " << v;
    EXPECT_EQ(MinifloatEncode<S>(v, true), c) << "code " << c;
  }
  EXPECT_EQ(nans, nan_codes_expected);
  EXPECT_EQ(infs, inf_codes_expected);
}

TEST(Minifloat, E2M1EveryCode) {
  CheckAllCodes<kSpecE2M1>(0, 0);
  const float table[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (uint32_t c = 0; c < 8; ++c) {
    EXPECT_EQ(MinifloatDecode<kSpecE2M1>(c), table[c]);
    EXPECT_EQ(MinifloatDecode<kSpecE2M1>(c | 8), -table[c]);
  }
}
TEST(Minifloat, E4M3EveryCode) {
  CheckAllCodes<kSpecE4M3>(2, 0);
  EXPECT_EQ(MinifloatEncode<kSpecE4M3>(448.0f, false), 0x7eu);
  EXPECT_EQ(MinifloatEncode<kSpecE4M3>(176.0f, false), 0x73u);
  EXPECT_EQ(MinifloatEncode<kSpecE4M3>(160.0f, false), 0x72u);
  EXPECT_EQ(MinifloatEncode<kSpecE4M3>(1.25f, false), 0x3au);
  EXPECT_EQ(MinifloatEncode<kSpecE4M3>(-88.0f, false), 0xebu);
  EXPECT_EQ(MinifloatMax<kSpecE4M3>(), 448.0f);
  EXPECT_EQ(MinifloatDecode<kSpecE4M3>(1), std::ldexp(1.0f, -9));  // smallest subnormal
}
TEST(Minifloat, E5M2EveryCode) {
  CheckAllCodes<kSpecE5M2>(6, 2);
  EXPECT_EQ(MinifloatMax<kSpecE5M2>(), 57344.0f);
}
TEST(Minifloat, FP16EveryCodeMatchesCompiler) {
  CheckAllCodes<kSpecFP16>(2 * 1023, 2);
  for (uint32_t c = 0; c < 65536; ++c) {
    _Float16 h;
    const uint16_t bits = static_cast<uint16_t>(c);
    std::memcpy(&h, &bits, 2);
    const float v = static_cast<float>(h);
    if (std::isnan(v)) continue;
    EXPECT_EQ(MinifloatDecode<kSpecFP16>(c), v) << c;
  }
}
TEST(Minifloat, BF16EveryCode) {
  CheckAllCodes<kSpecBF16>(2 * 127, 2);
  for (uint32_t c = 0; c < 65536; ++c) {
    const float v = Bf16ToF32(static_cast<uint16_t>(c));
    if (std::isnan(v)) continue;
    EXPECT_EQ(MinifloatDecode<kSpecBF16>(c), v);
  }
}

// For every pair of adjacent finite positive codes, the exact midpoint rounds to the even
// code, and values just either side round to the nearer one.
template <const MinifloatSpec& S>
void CheckMidpoints() {
  for (uint32_t c = 0; c < S.max_code(); ++c) {
    const double lo = MinifloatDecode<S>(c), hi = MinifloatDecode<S>(c + 1);
    const double mid = (lo + hi) / 2;
    const auto mid_f = static_cast<float>(mid);
    ASSERT_EQ(static_cast<double>(mid_f), mid) << "midpoint not representable in float";
    const uint32_t even = (c % 2 == 0) ? c : c + 1;
    EXPECT_EQ(MinifloatEncode<S>(mid_f, false), even) << "tie between codes " << c;
    EXPECT_EQ(MinifloatEncode<S>(-mid_f, false), even | (1u << S.sign_shift()));
    EXPECT_EQ(MinifloatEncode<S>(std::nextafter(mid_f, 0.0f), false), c);
    EXPECT_EQ(MinifloatEncode<S>(std::nextafter(mid_f, 1e30f), false), c + 1);
  }
}
TEST(Minifloat, TiesToEvenE2M1) { CheckMidpoints<kSpecE2M1>(); }
TEST(Minifloat, TiesToEvenE4M3) { CheckMidpoints<kSpecE4M3>(); }
TEST(Minifloat, TiesToEvenE5M2) { CheckMidpoints<kSpecE5M2>(); }
TEST(Minifloat, TiesToEvenFP16) { CheckMidpoints<kSpecFP16>(); }

TEST(Minifloat, NegativeZeroAndNaN) {
  EXPECT_EQ(MinifloatEncode<kSpecE4M3>(-0.0f, false), 0x80u);
  EXPECT_EQ(MinifloatEncode<kSpecE2M1>(-0.0f, false), 0x8u);
  EXPECT_EQ(MinifloatEncode<kSpecE2M1>(-0.2f, false), 0x8u);  // small negatives keep the sign
  EXPECT_EQ(MinifloatDecode<kSpecE2M1>(0x8), 0.0f);
  EXPECT_TRUE(std::signbit(MinifloatDecode<kSpecE4M3>(0x80)));
  EXPECT_EQ(MinifloatEncode<kSpecE4M3>(NAN, false), 0x7fu);
  EXPECT_EQ(MinifloatEncode<kSpecE4M3>(-NAN, false), 0xffu);
  EXPECT_TRUE(std::isnan(MinifloatDecode<kSpecE4M3>(0xff)));
  EXPECT_EQ(MinifloatEncode<kSpecE2M1>(NAN, false), 0u);  // no NaN in E2M1
  // Overflow: saturate -> max; otherwise Inf (IEEE) or NaN (fn).
  EXPECT_EQ(MinifloatEncode<kSpecE4M3>(1000.0f, true), 0x7eu);
  EXPECT_EQ(MinifloatEncode<kSpecE4M3>(1000.0f, false), 0x7fu);
  EXPECT_EQ(MinifloatEncode<kSpecE5M2>(1e6f, false), 0x7cu);
  EXPECT_EQ(MinifloatEncode<kSpecE5M2>(1e6f, true), 0x7bu);
  EXPECT_EQ(MinifloatEncode<kSpecE2M1>(100.0f, false), 7u);
}

TEST(Minifloat, E8M0) {
  for (int c = 0; c < 255; ++c) {
    const float v = E8M0Decode(static_cast<uint8_t>(c));
    EXPECT_EQ(v, std::ldexp(1.0f, c - 127));
    EXPECT_EQ(E8M0Encode(v), c);
  }
  EXPECT_TRUE(std::isnan(E8M0Decode(0xff)));
  EXPECT_EQ(E8M0Encode(0.0f), 0xff);
  EXPECT_EQ(E8M0Encode(-1.0f), 0xff);
  EXPECT_EQ(E8M0FromExponent(-200), 0);
  EXPECT_EQ(E8M0FromExponent(200), 254);
}

TEST(Minifloat, Bf16FastPathMatchesGeneric) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    const float f = BitsFloat(bits(rng));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(f))));
      continue;
    }
    EXPECT_EQ(F32ToBf16(f), MinifloatEncode<kSpecBF16>(f, false)) << f;
  }
}

// Every bf16 value (the inputs compressed-tensors sees) plus random floats.
TEST(Codecs, FastE4M3MatchesGeneric) {
  auto check = [](float f) {
    if (std::isnan(f)) return;
    ASSERT_EQ(E4M3EncodeSat(f), MinifloatEncode<kSpecE4M3>(f, true)) << f;
  };
  for (uint32_t c = 0; c < 65536; ++c) check(Bf16ToF32(static_cast<uint16_t>(c)));
  std::mt19937 rng(2);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 500000; ++i) check(BitsFloat(bits(rng)));
  for (int c = 0; c < 256; ++c) {
    const float v = MinifloatDecode<kSpecE4M3>(static_cast<uint32_t>(c));
    if (!std::isnan(v)) {
      EXPECT_EQ(E4M3Decode(static_cast<uint8_t>(c)), v);
    }
  }
}

TEST(Codecs, FastE2M1MatchesGeneric) {
  auto check = [](float f) {
    if (std::isnan(f)) return;
    if (f == 0.0f) {  // compressed-tensors packs +-0.0 as +0 (torch.sign(-0.0) == 0)
      ASSERT_EQ(E2M1Encode(f), 0u);
      return;
    }
    ASSERT_EQ(E2M1Encode(f), MinifloatEncode<kSpecE2M1>(f, true)) << f;
  };
  for (uint32_t c = 0; c < 65536; ++c) check(Bf16ToF32(static_cast<uint16_t>(c)));
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-8.0f, 8.0f);
  for (int i = 0; i < 500000; ++i) check(u(rng));
  for (uint8_t n = 0; n < 16; ++n) EXPECT_EQ(E2M1Decode(n), MinifloatDecode<kSpecE2M1>(n));
  EXPECT_EQ(E2M1Encode(-0.0f), 0u);
  EXPECT_EQ(E2M1Encode(-0.2f), 8u);  // a negative value rounding to zero keeps the sign
}

}  // namespace
}  // namespace pq::formats
