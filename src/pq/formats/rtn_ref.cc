// Scalar reference RTN kernels: compressed-tensors' arithmetic written out step by step
// (compressed-tensors-format.md §2). Intermediate results that torch computes in the weight
// dtype are rounded to bf16 at the same points (RoundBf16). The fast kernels
// (rtn_fast.cc) must produce identical bytes; rtn_kernels_test.cc checks it.
#include <algorithm>
#include <cmath>

#include "pq/core/minifloat.h"
#include "pq/formats/codecs.h"
#include "pq/formats/rtn_kernels.h"

namespace pq::formats::ref {
namespace {
float AbsMax(const float* x, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}
}  // namespace

// ---------------------------------------------------------------- NVFP4
// weight_scale = e4m3(clamp(f32(gs * bf16(amax_g / 6)))) (0 -> 0.125 as ct's eps);
// element = e2m1(x / f32(f32(scale) / gs)).
void NvFp4Rows(const float* w, size_t row_begin, size_t row_end, size_t cols, float gs,
               uint8_t* packed, uint8_t* scales) {
  const size_t groups = cols / 16;
  for (size_t r = row_begin; r < row_end; ++r) {
    for (size_t g = 0; g < groups; ++g) {
      const float* x = w + r * cols + g * 16;
      const float s = RoundBf16(AbsMax(x, 16) / kFp4Max);
      uint8_t code = E4M3EncodeSat(std::clamp(gs * s, -kFp8Max, kFp8Max));
      if ((code & 0x7f) == 0) code = E4M3EncodeSat(0.125f);  // ct's FP8 eps
      scales[r * groups + g] = code;
      const float eff = E4M3Decode(code) / gs;
      uint8_t* out = packed + r * (cols / 2) + g * 8;
      for (int j = 0; j < 8; ++j) {
        const uint8_t lo = E2M1Encode(std::clamp(x[2 * j] / eff, -kFp4Max, kFp4Max));
        const uint8_t hi = E2M1Encode(std::clamp(x[2 * j + 1] / eff, -kFp4Max, kFp4Max));
        out[j] = static_cast<uint8_t>(lo | (hi << 4));
      }
    }
  }
}

// ---------------------------------------------------------------- MX (E8M0 per 32)
// Shared exponent: amax rounded to a power of two (mantissa fraction >= 0.75 rounds up),
// minus the element format's emax (8 for E4M3, 2 for E2M1).
uint8_t MxScaleCodeRef(float amax, int elem_emax) {
  const uint32_t bumped = FloatBits(amax) + 0x00200000u;  // + quarter of the mantissa range
  const int exponent = static_cast<int>((bumped >> 23) & 0xffu) - 127;
  return E8M0FromExponent(exponent - elem_emax);
}

template <bool kFp4>
void MxRowsT(const float* w, size_t row_begin, size_t row_end, size_t cols, uint8_t* elements,
             uint8_t* scales) {
  const size_t groups = cols / 32;
  for (size_t r = row_begin; r < row_end; ++r) {
    for (size_t g = 0; g < groups; ++g) {
      const float* x = w + r * cols + g * 32;
      const uint8_t e = MxScaleCodeRef(AbsMax(x, 32), kFp4 ? 2 : 8);
      scales[r * groups + g] = e;
      const float inv = std::ldexp(1.0f, 127 - static_cast<int>(e));  // exact 1/scale
      if constexpr (kFp4) {
        uint8_t* out = elements + r * (cols / 2) + g * 16;
        for (int j = 0; j < 16; ++j) {
          const uint8_t lo = E2M1Encode(std::clamp(x[2 * j] * inv, -kFp4Max, kFp4Max));
          const uint8_t hi = E2M1Encode(std::clamp(x[2 * j + 1] * inv, -kFp4Max, kFp4Max));
          out[j] = static_cast<uint8_t>(lo | (hi << 4));
        }
      } else {
        uint8_t* out = elements + r * cols + g * 32;
        for (int j = 0; j < 32; ++j) out[j] = E4M3EncodeSat(x[j] * inv);
      }
    }
  }
}

// ---------------------------------------------------------------- FP8 per channel
// scale = bf16(amax_row / 448) (0 -> bf16 eps); q = e4m3(clamp(bf16(x / scale))).
void Fp8Rows(const float* w, size_t row_begin, size_t row_end, size_t cols, uint8_t* elements,
             uint16_t* scales) {
  for (size_t r = row_begin; r < row_end; ++r) {
    const float* x = w + r * cols;
    float scale = RoundBf16(AbsMax(x, cols) / kFp8Max);
    if (scale == 0.0f) scale = kBf16Eps;
    scales[r] = F32ToBf16(scale);
    for (size_t i = 0; i < cols; ++i)
      elements[r * cols + i] =
          E4M3EncodeSat(std::clamp(RoundBf16(x[i] / scale), -kFp8Max, kFp8Max));
  }
}

// ---------------------------------------------------------------- INT (symmetric)
// scale = bf16(amax_g / ((2^b - 1) / 2)) (0 -> bf16 eps); q = rne(clamp(bf16(x / scale))).
// Packed little-endian into int32 words, element i at bits [b*i, b*i + b), offset by 2^(b-1).
template <int kBits>
void IntRowsT(const float* w, size_t row_begin, size_t row_end, size_t cols, size_t group,
              uint32_t* words, uint16_t* scales) {
  constexpr float kQMax = static_cast<float>((1 << (kBits - 1)) - 1);
  constexpr float kQMin = -static_cast<float>(1 << (kBits - 1));
  constexpr float kHalfRange = static_cast<float>((1 << kBits) - 1) / 2.0f;
  constexpr int kPerWord = 32 / kBits;
  const size_t groups = cols / group;
  const size_t words_per_row = (cols + kPerWord - 1) / kPerWord;
  for (size_t r = row_begin; r < row_end; ++r) {
    uint32_t* row_words = words + r * words_per_row;
    std::fill(row_words, row_words + words_per_row, 0u);
    for (size_t g = 0; g < groups; ++g) {
      const float* x = w + r * cols + g * group;
      float scale = RoundBf16(AbsMax(x, group) / kHalfRange);
      if (scale == 0.0f) scale = kBf16Eps;
      scales[r * groups + g] = F32ToBf16(scale);
      for (size_t i = 0; i < group; ++i) {
        const float q = std::nearbyint(std::clamp(RoundBf16(x[i] / scale), kQMin, kQMax));
        const auto u = static_cast<uint32_t>(static_cast<int>(q) + (1 << (kBits - 1)));
        const size_t k = g * group + i;
        row_words[k / kPerWord] |= u << (kBits * (k % kPerWord));
      }
    }
  }
}

}  // namespace pq::formats::ref

namespace pq::formats::ref {
void MxRows(bool fp4, const float* w, size_t row_begin, size_t row_end, size_t cols,
            uint8_t* elements, uint8_t* scales) {
  if (fp4)
    MxRowsT<true>(w, row_begin, row_end, cols, elements, scales);
  else
    MxRowsT<false>(w, row_begin, row_end, cols, elements, scales);
}
void IntRows(int bits, const float* w, size_t row_begin, size_t row_end, size_t cols, size_t group,
             uint32_t* words, uint16_t* scales) {
  if (bits == 4)
    IntRowsT<4>(w, row_begin, row_end, cols, group, words, scales);
  else
    IntRowsT<8>(w, row_begin, row_end, cols, group, words, scales);
}
}  // namespace pq::formats::ref
