// Fast element codecs used by the quantizers. Each is checked against the generic
// MinifloatEncode/Decode (core/minifloat.h) in codecs_test.cc.
#pragma once

#include <cmath>
#include <cstdint>

#include "pq/core/minifloat.h"

namespace pq::formats {

// E2M1 magnitudes by code 0..7.
inline constexpr float kE2M1Values[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

// FP4 E2M1 nibble for x as compressed-tensors packs it: clamp to [-6, 6], round to nearest,
// ties to even code; the sign comes from torch.sign, so negative values that round to zero
// give -0 (0x8) but an exact -0.0 gives +0 (0x0). (The generic codec keeps -0.0's sign.)
// NaN encodes as +0 (callers reject non-finite weights before quantizing).
inline uint8_t E2M1Encode(float x) {
  const float a = std::fabs(x);
  const int code = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) +
                   (a >= 3.5f) + (a > 5.0f);
  return static_cast<uint8_t>(code | (x < 0.0f ? 8 : 0));
}
inline float E2M1Decode(uint8_t nibble) {
  const float v = kE2M1Values[nibble & 7];
  return (nibble & 8) ? -v : v;
}

// E4M3 (fn) with saturation to +-448, RNE. NaN -> 0x7f with sign.
inline uint8_t E4M3EncodeSat(float x) {
  uint32_t u = FloatBits(x);
  const uint32_t sign = (u >> 24) & 0x80u;
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return static_cast<uint8_t>(sign | 0x7fu);
  if (u >= 0x43e00000u) return static_cast<uint8_t>(sign | 0x7eu);  // >= 448: saturate
  if (u < 0x3c800000u) {  // below 2^-6: subnormal codes n * 2^-9, RNE by the FP adder
    const float t = BitsFloat(u) * 512.0f + 8388608.0f;
    return static_cast<uint8_t>(sign | (FloatBits(t) & 0x7fu));
  }
  // Normal: rebias exponent (127 -> 7) and round the 23-bit mantissa to 3 bits, RNE.
  u += (static_cast<uint32_t>(7 - 127) << 23) + 0x7ffffu + ((u >> 20) & 1u);
  return static_cast<uint8_t>(sign | (u >> 20));
}

// E4M3 decode through a 256-entry table.
struct E4M3Table {
  float v[256];
  E4M3Table() {
    for (int c = 0; c < 256; ++c) v[c] = MinifloatDecode<kSpecE4M3>(static_cast<uint32_t>(c));
  }
};
inline float E4M3Decode(uint8_t code) {
  static const E4M3Table table;
  return table.v[code];
}

}  // namespace pq::formats
