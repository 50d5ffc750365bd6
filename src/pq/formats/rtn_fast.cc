// Fast RTN kernels: the arithmetic of rtn_ref.cc rewritten branch-free over fixed-size
// groups so the compiler vectorizes it. Inputs are finite (QuantizeRtn checks), which lets
// the bf16 and e4m3 roundings skip their NaN paths. Bytes must equal the reference kernels'.
#include <algorithm>
#include <cmath>
#include <vector>

#include "pq/core/minifloat.h"
#include "pq/formats/codecs.h"
#include "pq/formats/rtn_kernels.h"

// On x86-64 each kernel is also compiled for AVX2 and picked at load time (GCC function
// multiversioning); elsewhere the portable build is used. Results are identical: the
// arithmetic is the same IEEE single precision, only the vector width changes.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define PQ_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define PQ_MULTIVERSION
#endif

namespace pq::formats::fast {
namespace {

inline float RoundBf16Finite(float x) {
  uint32_t u = FloatBits(x);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  return BitsFloat(u);
}

// E4M3 (fn), saturating at 448, RNE; x finite.
// Selections are written as masks so the loops stay branch-free and vectorize.
inline uint32_t MaskIf(bool c) { return 0u - static_cast<uint32_t>(c); }

inline uint8_t E4M3SatFinite(float x) {
  const uint32_t u = FloatBits(x);
  const uint32_t sign = (u >> 24) & 0x80u;
  uint32_t a = u & 0x7fffffffu;
  const uint32_t over = MaskIf(static_cast<int32_t>(a) > 0x43e00000);  // saturate at 448
  a = (a & ~over) | (0x43e00000u & over);
  const uint32_t normal = (a + 0xc4000000u + 0x7ffffu + ((a >> 20) & 1u)) >> 20;  // rebias 127->7
  const uint32_t sub = FloatBits(BitsFloat(a) * 512.0f + 8388608.0f) & 0x7fu;     // n * 2^-9
  const uint32_t is_sub = MaskIf(static_cast<int32_t>(a) < 0x3c800000);
  return static_cast<uint8_t>(sign | (sub & is_sub) | (normal & ~is_sub));
}

// E2M1 of y (any finite or infinite y: magnitudes above 5 give the max code 7, which is
// exactly what clamping to [-6, 6] first would give).
inline uint8_t E2M1Finite(float y) {
  const float a = std::fabs(y);
  const int code = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) +
                   (a >= 3.5f) + (a > 5.0f);
  return static_cast<uint8_t>(code | ((y < 0.0f) << 3));  // torch.sign: -0.0 packs as +0
}

template <size_t kN>
inline float AbsMaxN(const float* x) {
  float m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < kN; i += 8)
    for (size_t j = 0; j < 8; ++j) m[j] = std::max(m[j], std::fabs(x[i + j]));
  float r = 0;
  for (float v : m) r = std::max(r, v);
  return r;
}

}  // namespace

// Integer max over the magnitude bits: for finite values the same order as |x|, and any
// Inf or NaN yields a result >= 0x7f800000 (Inf or NaN), so callers detect non-finite input
// from the result without another pass.
PQ_MULTIVERSION float AbsMax(const float* x, size_t n) {
  int32_t m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (size_t j = 0; j < 8; ++j)
      m[j] = std::max(m[j], static_cast<int32_t>(FloatBits(x[i + j]) & 0x7fffffffu));
  int32_t r = 0;
  for (; i < n; ++i) r = std::max(r, static_cast<int32_t>(FloatBits(x[i]) & 0x7fffffffu));
  for (int32_t v : m) r = std::max(r, v);
  return BitsFloat(static_cast<uint32_t>(r));
}

// The grouped kernels work a row at a time in two phases: the group scales first (short
// loops over each group), then the elements in one long loop over the row against a
// per-element copy of their group's divisor, which vectorizes far better than 16- or
// 32-element inner loops.
PQ_MULTIVERSION void NvFp4Rows(const float* w, size_t row_begin, size_t row_end, size_t cols,
                               float gs, uint8_t* packed, uint8_t* scales) {
  const size_t groups = cols / 16;
  const uint8_t eps_code = E4M3EncodeSat(0.125f);
  std::vector<float> eff(cols);
  std::vector<uint8_t> codes(cols);
  for (size_t r = row_begin; r < row_end; ++r) {
    const float* x = w + r * cols;
    for (size_t g = 0; g < groups; ++g) {
      const float s = RoundBf16Finite(AbsMaxN<16>(x + g * 16) / kFp4Max);
      uint8_t code = E4M3SatFinite(std::min(gs * s, kFp8Max));
      if (code == 0) code = eps_code;
      scales[r * groups + g] = code;
      const float e = E4M3Decode(code) / gs;
      for (size_t j = 0; j < 16; ++j) eff[g * 16 + j] = e;
    }
    for (size_t i = 0; i < cols; ++i) codes[i] = E2M1Finite(x[i] / eff[i]);
    uint8_t* out = packed + r * (cols / 2);
    for (size_t j = 0; j < cols / 2; ++j)
      out[j] = static_cast<uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
  }
}

PQ_MULTIVERSION void MxRows(bool fp4, const float* w, size_t row_begin, size_t row_end, size_t cols,
                            uint8_t* elements, uint8_t* scales) {
  const size_t groups = cols / 32;
  const int elem_emax = fp4 ? 2 : 8;
  std::vector<float> inv(cols);
  std::vector<uint8_t> codes(cols);
  for (size_t r = row_begin; r < row_end; ++r) {
    const float* x = w + r * cols;
    for (size_t g = 0; g < groups; ++g) {
      const uint32_t bumped = FloatBits(AbsMaxN<32>(x + g * 32)) + 0x00200000u;
      const uint8_t e =
          E8M0FromExponent(static_cast<int>((bumped >> 23) & 0xffu) - 127 - elem_emax);
      scales[r * groups + g] = e;
      // 1 / scale = 2^(127 - e), built from bits (2^-127 is the subnormal 0x00400000).
      const float v =
          e < 254 ? BitsFloat(static_cast<uint32_t>(254 - e) << 23) : BitsFloat(0x00400000u);
      for (size_t j = 0; j < 32; ++j) inv[g * 32 + j] = v;
    }
    if (fp4) {
      for (size_t i = 0; i < cols; ++i) codes[i] = E2M1Finite(x[i] * inv[i]);
      uint8_t* out = elements + r * (cols / 2);
      for (size_t j = 0; j < cols / 2; ++j)
        out[j] = static_cast<uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
    } else {
      uint8_t* out = elements + r * cols;
      for (size_t i = 0; i < cols; ++i) out[i] = E4M3SatFinite(x[i] * inv[i]);
    }
  }
}

PQ_MULTIVERSION void Fp8Rows(const float* w, size_t row_begin, size_t row_end, size_t cols,
                             uint8_t* elements, uint16_t* scales) {
  for (size_t r = row_begin; r < row_end; ++r) {
    const float* x = w + r * cols;
    float scale = RoundBf16Finite(AbsMax(x, cols) / kFp8Max);
    if (scale == 0.0f) scale = kBf16Eps;
    scales[r] = F32ToBf16(scale);
    uint8_t* out = elements + r * cols;
    for (size_t i = 0; i < cols; ++i) out[i] = E4M3SatFinite(RoundBf16Finite(x[i] / scale));
  }
}

namespace {

// Groups start on word boundaries (INT4: 128 per group; INT8: one group per row), so each
// group is rounded into `u` (vectorized) and then packed word by word.
template <int kBits>
PQ_MULTIVERSION void IntRowsT(const float* w, size_t row_begin, size_t row_end, size_t cols,
                              size_t group, uint32_t* words, uint16_t* scales) {
  constexpr int kQMax = (1 << (kBits - 1)) - 1, kQMin = -(1 << (kBits - 1));
  constexpr float kHalfRange = static_cast<float>((1 << kBits) - 1) / 2.0f;
  constexpr size_t kPerWord = 32 / kBits;
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: x + m - m rounds to nearest even
  const size_t groups = cols / group;
  const size_t words_per_row = (cols + kPerWord - 1) / kPerWord;
  const size_t group_words = (group + kPerWord - 1) / kPerWord;
  std::vector<uint32_t> u(group_words * kPerWord, 0u);
  for (size_t r = row_begin; r < row_end; ++r) {
    for (size_t g = 0; g < groups; ++g) {
      const float* x = w + r * cols + g * group;
      float scale = RoundBf16Finite(AbsMax(x, group) / kHalfRange);
      if (scale == 0.0f) scale = kBf16Eps;
      scales[r * groups + g] = F32ToBf16(scale);
      // |x / scale| <= ~2^(bits-1), so rounding before clamping to the integer bounds
      // equals the reference's clamp-then-round.
      for (size_t i = 0; i < group; ++i) {
        const float q = (RoundBf16Finite(x[i] / scale) + kRoundMagic) - kRoundMagic;
        const int qi = std::max(kQMin, std::min(kQMax, static_cast<int>(q)));
        u[i] = static_cast<uint32_t>(qi - kQMin);
      }
      uint32_t* out = words + r * words_per_row + g * group / kPerWord;
      for (size_t j = 0; j < group_words; ++j) {
        uint32_t word = 0;
        for (size_t i = 0; i < kPerWord; ++i) word |= u[j * kPerWord + i] << (kBits * i);
        out[j] = word;
      }
      std::fill(u.begin() + static_cast<std::ptrdiff_t>(group), u.end(), 0u);  // padding
    }
  }
}

}  // namespace

void IntRows(int bits, const float* w, size_t row_begin, size_t row_end, size_t cols, size_t group,
             uint32_t* words, uint16_t* scales) {
  if (bits == 4)
    IntRowsT<4>(w, row_begin, row_end, cols, group, words, scales);
  else
    IntRowsT<8>(w, row_begin, row_end, cols, group, words, scales);
}

}  // namespace pq::formats::fast
