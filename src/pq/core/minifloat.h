// Generic minifloat codec, parameterised by a constexpr descriptor (exponent bits,
// mantissa bits, bias, special-value policy). E2M1, E4M3 (fn), E5M2, FP16 and BF16 are
// instances; E8M0 (scale-only, no sign, no mantissa) has its own small codec below.
//
// Encode rounds to nearest, ties to the even code, exactly like IEEE/torch casts.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace pq {

enum class SpecialPolicy {
  kIeee,         // all-ones exponent = Inf (mantissa 0) or NaN (fp16, bf16, e5m2)
  kNanOnlyOnes,  // no Inf; only S.1111.111 is NaN (e4m3 "fn")
  kNone,         // every code is finite (e2m1)
};

struct MinifloatSpec {
  int exp_bits;
  int man_bits;
  int bias;
  SpecialPolicy policy;

  constexpr int sign_shift() const { return exp_bits + man_bits; }
  constexpr uint32_t magnitude_mask() const { return (1u << (exp_bits + man_bits)) - 1; }
  constexpr int min_normal_exp() const { return 1 - bias; }
  // Largest finite magnitude code.
  constexpr uint32_t max_code() const {
    switch (policy) {
      case SpecialPolicy::kIeee:
        return ((1u << exp_bits) - 2) << man_bits | ((1u << man_bits) - 1);
      case SpecialPolicy::kNanOnlyOnes:
        return magnitude_mask() - 1;
      case SpecialPolicy::kNone:
        return magnitude_mask();
    }
    return 0;
  }
};

inline constexpr MinifloatSpec kSpecE2M1{2, 1, 1, SpecialPolicy::kNone};
inline constexpr MinifloatSpec kSpecE4M3{4, 3, 7, SpecialPolicy::kNanOnlyOnes};
inline constexpr MinifloatSpec kSpecE5M2{5, 2, 15, SpecialPolicy::kIeee};
inline constexpr MinifloatSpec kSpecFP16{5, 10, 15, SpecialPolicy::kIeee};
inline constexpr MinifloatSpec kSpecBF16{8, 7, 127, SpecialPolicy::kIeee};

// Decodes one code (low sign_shift()+1 bits used) to float. Exact.
template <const MinifloatSpec& S>
inline float MinifloatDecode(uint32_t code) {
  const bool neg = (code >> S.sign_shift()) & 1u;
  const uint32_t mag = code & S.magnitude_mask();
  const uint32_t e = mag >> S.man_bits;
  const uint32_t m = mag & ((1u << S.man_bits) - 1);
  double v;
  if (S.policy == SpecialPolicy::kIeee && e == (1u << S.exp_bits) - 1) {
    v = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else if (S.policy == SpecialPolicy::kNanOnlyOnes && mag == S.magnitude_mask()) {
    v = std::numeric_limits<double>::quiet_NaN();
  } else if (e == 0) {
    v = std::ldexp(static_cast<double>(m), S.min_normal_exp() - S.man_bits);
  } else {
    v = std::ldexp(static_cast<double>(m + (1u << S.man_bits)),
                   static_cast<int>(e) - S.bias - S.man_bits);
  }
  return static_cast<float>(neg ? -v : v);
}

// Encodes x with round-to-nearest-even. `saturate`: magnitudes above the largest finite
// value become it (what compressed-tensors' clamp-then-cast does); otherwise they become
// Inf (IEEE formats), NaN (fn formats), or the max (formats without specials).
// NaN input gives the canonical NaN code (or 0 for formats without NaN).
template <const MinifloatSpec& S>
inline uint32_t MinifloatEncode(float x, bool saturate) {
  const uint32_t sign = std::signbit(x) ? (1u << S.sign_shift()) : 0u;
  if (std::isnan(x)) {
    if (S.policy == SpecialPolicy::kNone) return 0;
    return sign | S.magnitude_mask();
  }
  const double a = std::fabs(static_cast<double>(x));
  uint32_t mag;
  if (std::isinf(a)) {
    mag = S.max_code() + 1;  // overflow; handled below
  } else {
    int e2;
    std::frexp(a, &e2);  // a = f * 2^e2, f in [0.5, 1)
    const int e = (a == 0.0) ? S.min_normal_exp() : std::max(e2 - 1, S.min_normal_exp());
    const double quantum = std::ldexp(1.0, e - S.man_bits);
    const double n = std::nearbyint(a / quantum);  // exact division, RNE (default mode)
    if (e == S.min_normal_exp() && n < std::ldexp(1.0, S.man_bits + 1)) {
      mag = static_cast<uint32_t>(n);  // subnormal, or rolls into the first normal binade
    } else {
      mag = static_cast<uint32_t>(((e - S.min_normal_exp() + 1) << S.man_bits)) +
            static_cast<uint32_t>(n) - (1u << S.man_bits);
    }
  }
  if (mag > S.max_code()) {
    if (saturate || S.policy == SpecialPolicy::kNone) {
      mag = S.max_code();
    } else if (S.policy == SpecialPolicy::kIeee) {
      mag = ((1u << S.exp_bits) - 1) << S.man_bits;  // Inf
    } else {
      mag = S.magnitude_mask();  // NaN
    }
  }
  return sign | mag;
}

template <const MinifloatSpec& S>
inline float MinifloatMax() {
  return MinifloatDecode<S>(S.max_code());
}

// ---- E8M0: unsigned power-of-two scale, value 2^(code-127), 0xff = NaN. ----
inline float E8M0Decode(uint8_t code) {
  if (code == 0xff) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, static_cast<int>(code) - 127);
}
// Exponent -> code, clamped to the representable range [2^-127, 2^127].
inline uint8_t E8M0FromExponent(int exponent) {
  int c = exponent + 127;
  if (c < 0) c = 0;
  if (c > 254) c = 254;
  return static_cast<uint8_t>(c);
}
// Encodes a positive finite x to the nearest power of two in log2 (ties up); NaN/<=0 -> 0xff.
inline uint8_t E8M0Encode(float x) {
  if (!(x > 0.0f) || std::isinf(x)) return 0xff;
  return E8M0FromExponent(static_cast<int>(std::lround(std::log2(static_cast<double>(x)))));
}

// ---- Fast paths for the hot types (checked against the generic codec in tests). ----
inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float Bf16ToF32(uint16_t b) { return BitsFloat(static_cast<uint32_t>(b) << 16); }
// Round-to-nearest-even; NaN stays a (quiet) NaN with its sign.
inline uint16_t F32ToBf16(float f) {
  uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float RoundBf16(float f) { return Bf16ToF32(F32ToBf16(f)); }
inline float F16ToF32(uint16_t h) { return MinifloatDecode<kSpecFP16>(h); }
inline uint16_t F32ToF16(float f) {
  return static_cast<uint16_t>(MinifloatEncode<kSpecFP16>(f, false));
}

}  // namespace pq
