// AVX2 RTN kernels for the byte-per-element formats (FP8, MXFP8) and the integer formats
// (INT8, INT4), from float32 or raw bf16 input. Identical bytes to the reference kernels
// (rtn_kernels_test.cc checks it); the arguments for the two shortcuts taken:
//
// * x / s as x * (1 / s). When x and s are bf16 values (8 significant bits) and s is a
//   normal float, bf16(x / s) == bf16(x * f32(1 / s)): writing x = X 2^a, s = S 2^b with
//   integers X < 2^8, 128 <= S < 2^8, a bf16 rounding tie N 2^(e-8) (N odd, 2^8 < N < 2^9)
//   is never hit exactly (X = N S 2^k has no solution) and the quotient lies at least
//   2^(e-8) / S >= 2^-16 |x / s| away from every tie, while both float results are within
//   2^-23 |x / s| of the exact quotient. Quotients below 2^-126 (where that bound fails)
//   round to zero in every format here, sign included. Rows whose values are not all bf16
//   (float input; the contract asks for bf16 values) or whose scale is subnormal take the
//   reference kernel instead.
// * The E4M3 encode works on the bf16 bits (16 lanes per vector): the value being encoded is
//   a bf16 (FP8: rounded so by the reference; MXFP8: x times a power of two, exact).
//
// Rows holding Inf or NaN are skipped and reported (the caller returns an error).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "pq/core/minifloat.h"
#include "pq/formats/codecs.h"
#include "pq/formats/rtn_kernels.h"

// GCC on x86-64: everything below is compiled for AVX2 (lambdas included) and called only
// after a CPU check; other compilers and targets take the portable kernels.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define PQ_HAVE_AVX2_KERNELS 1
namespace pq::formats::avx2 {
bool Available() {
  static const bool ok = __builtin_cpu_supports("avx2");
  return ok;
}
}  // namespace pq::formats::avx2
#pragma GCC push_options
#pragma GCC target("avx2")
#define PQ_AVX2
#endif

namespace pq::formats::avx2 {

#ifdef PQ_HAVE_AVX2_KERNELS

namespace {

inline float Bf16Scale(uint32_t amax_bits, float divisor) {
  const float s = BitsFloat(amax_bits) / divisor;
  uint32_t u = FloatBits(s);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;  // RNE to bf16 (finite)
  return u == 0 ? kBf16Eps : BitsFloat(u);
}

// Max |x| as float bits, and the OR of every value's low 16 bits (zero iff all are bf16).
struct Stats {
  uint32_t amax;
  uint32_t low;
};

PQ_AVX2 inline uint32_t HMaxEpu32(__m256i v) {
  __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4e));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xb1));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
}

PQ_AVX2 inline uint32_t HOr32(__m256i v) {
  __m128i m = _mm_or_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_or_si128(m, _mm_shuffle_epi32(m, 0x4e));
  m = _mm_or_si128(m, _mm_shuffle_epi32(m, 0xb1));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
}

PQ_AVX2 Stats RangeStats(const float* x, size_t n) {
  const __m256i abs = _mm256_set1_epi32(0x7fffffff);
  __m256i m0 = _mm256_setzero_si256(), m1 = m0, o0 = m0, o1 = m0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8));
    m0 = _mm256_max_epu32(m0, _mm256_and_si256(a, abs));
    m1 = _mm256_max_epu32(m1, _mm256_and_si256(b, abs));
    o0 = _mm256_or_si256(o0, a);
    o1 = _mm256_or_si256(o1, b);
  }
  Stats s{HMaxEpu32(_mm256_max_epu32(m0, m1)), HOr32(_mm256_or_si256(o0, o1))};
  for (; i < n; ++i) {
    const uint32_t u = FloatBits(x[i]);
    s.amax = std::max(s.amax, u & 0x7fffffffu);
    s.low |= u;
  }
  s.low &= 0xffffu;
  return s;
}

PQ_AVX2 Stats RangeStats(const uint16_t* x, size_t n) {
  const __m256i abs = _mm256_set1_epi16(0x7fff);
  __m256i m0 = _mm256_setzero_si256(), m1 = m0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16));
    m0 = _mm256_max_epu16(m0, _mm256_and_si256(a, abs));
    m1 = _mm256_max_epu16(m1, _mm256_and_si256(b, abs));
  }
  __m128i m = _mm_max_epu16(_mm256_castsi256_si128(_mm256_max_epu16(m0, m1)),
                            _mm256_extracti128_si256(_mm256_max_epu16(m0, m1), 1));
  m = _mm_minpos_epu16(_mm_xor_si128(m, _mm_set1_epi32(-1)));  // max = ~min(~m)
  uint32_t amax = ~static_cast<uint32_t>(_mm_cvtsi128_si32(m)) & 0xffffu;
  for (; i < n; ++i) amax = std::max<uint32_t>(amax, x[i] & 0x7fffu);
  return Stats{amax << 16, 0};
}

inline float ToFloat(float x) { return x; }
inline float ToFloat(uint16_t x) { return Bf16ToF32(x); }

// 16 values as float bits in two vectors, in an order that Narrow() below undoes.
struct Pair {
  __m256i lo, hi;
};
PQ_AVX2 inline Pair Load16(const float* p) {
  return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 8))};
}
PQ_AVX2 inline Pair Load16(const uint16_t* p) {  // elements 0-3,8-11 | 4-7,12-15
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i z = _mm256_setzero_si256();
  return {_mm256_unpacklo_epi16(z, v), _mm256_unpackhi_epi16(z, v)};
}
// Packs two vectors of 32-bit lanes (each < 2^16 unsigned, or int16 with kSigned) back to
// 16 lanes in element order.
template <bool kSigned>
PQ_AVX2 inline __m256i Narrow(__m256i a, __m256i b, const float*) {
  const __m256i p = kSigned ? _mm256_packs_epi32(a, b) : _mm256_packus_epi32(a, b);
  return _mm256_permute4x64_epi64(p, 0xd8);
}
template <bool kSigned>
PQ_AVX2 inline __m256i Narrow(__m256i a, __m256i b, const uint16_t*) {
  return kSigned ? _mm256_packs_epi32(a, b) : _mm256_packus_epi32(a, b);
}
// 32 16-bit lanes (two vectors, element order) to 32 bytes in element order.
PQ_AVX2 inline __m256i ToBytes(__m256i a, __m256i b, bool is_signed) {
  const __m256i p = is_signed ? _mm256_packs_epi16(a, b) : _mm256_packus_epi16(a, b);
  return _mm256_permute4x64_epi64(p, 0xd8);
}

// bf16(q) of the float bits of a quotient q = x * (1 / s) of the reciprocal path, in the low
// 16 bits. Round half up equals RNE there: q is never a bf16 tie (header comment: the exact
// quotient is >= 2^-16 |q| away from every tie, q within 2^-23 |q| of it).
PQ_AVX2 inline __m256i QuotientToBf16Hi(__m256i u) {
  return _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x8000)), 16);
}

PQ_AVX2 inline __m256i MulBits(__m256i x, __m256 inv) {
  return _mm256_castps_si256(_mm256_mul_ps(_mm256_castsi256_ps(x), inv));
}

// E4M3 (fn, saturating, RNE) of 16 bf16 values h (finite); one code per 16-bit lane.
PQ_AVX2 inline __m256i E4M3Of16(__m256i h) {
  const __m256i a = _mm256_and_si256(h, _mm256_set1_epi16(0x7fff));
  // Normal: rebias the exponent (127 -> 7), round 7 mantissa bits to 3, saturate at 448.
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi16(a, 4), _mm256_set1_epi16(1));
  __m256i n = _mm256_add_epi16(_mm256_add_epi16(a, odd), _mm256_set1_epi16(0xc407 - 0x10000));
  n = _mm256_min_epu16(_mm256_srli_epi16(n, 4), _mm256_set1_epi16(0x7e));
  // Below 2^-6: subnormal codes n * 2^-9, rounded by the float adder (rare in real weights).
  const __m256i sub = _mm256_cmpgt_epi16(_mm256_set1_epi16(0x3c80), a);
  if (!_mm256_testz_si256(sub, sub)) {
    const __m256i z = _mm256_setzero_si256();
    const __m256 k512 = _mm256_set1_ps(512.0f), magic = _mm256_set1_ps(8388608.0f);
    const __m256i lo7 = _mm256_set1_epi32(0x7f);
    const __m256 flo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, a));
    const __m256 fhi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, a));
    const __m256i tlo = _mm256_castps_si256(_mm256_add_ps(_mm256_mul_ps(flo, k512), magic));
    const __m256i thi = _mm256_castps_si256(_mm256_add_ps(_mm256_mul_ps(fhi, k512), magic));
    const __m256i s = _mm256_packus_epi32(_mm256_and_si256(tlo, lo7), _mm256_and_si256(thi, lo7));
    n = _mm256_blendv_epi8(n, s, sub);
  }
  return _mm256_or_si256(n, _mm256_srli_epi16(_mm256_xor_si256(h, a), 8));  // sign
}

// 16 values x * inv rounded to bf16, as 16-bit lanes in element order.
template <class In>
PQ_AVX2 inline __m256i QuotientBf16(const In* x, __m256 inv) {
  const Pair p = Load16(x);
  return Narrow<false>(QuotientToBf16Hi(MulBits(p.lo, inv)), QuotientToBf16Hi(MulBits(p.hi, inv)),
                       x);
}

// 16 values x * inv (exact: inv is a power of two) as bf16 bits in element order.
template <class In>
PQ_AVX2 inline __m256i ScaledBf16(const In* x, __m256 inv) {
  const Pair p = Load16(x);
  return Narrow<false>(_mm256_srli_epi32(MulBits(p.lo, inv), 16),
                       _mm256_srli_epi32(MulBits(p.hi, inv), 16), x);
}

// 16 values rne(bf16(x * inv)) as int16 lanes (saturated) in element order.
template <class In>
PQ_AVX2 inline __m256i QuotientInt16(const In* x, __m256 inv) {
  const Pair p = Load16(x);
  const __m256i hi_half = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  auto one = [&](__m256i v) {  // to bf16 (see QuotientToBf16Hi), then RNE (the default mode)
    const __m256i r = _mm256_add_epi32(MulBits(v, inv), _mm256_set1_epi32(0x8000));
    return _mm256_cvtps_epi32(_mm256_castsi256_ps(_mm256_and_si256(r, hi_half)));
  };
  return Narrow<true>(one(p.lo), one(p.hi), x);
}

// Prefetches the 32 values at p (64 or 128 bytes): the next row's, while this row is in L1,
// so the next row's scale pass does not wait on memory.
template <class In>
inline void Prefetch32(const In* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
  if constexpr (sizeof(In) == 4) _mm_prefetch(reinterpret_cast<const char*>(p + 16), _MM_HINT_T0);
}

PQ_AVX2 inline void Store32(uint8_t* out, __m256i v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v);
}

// The scalar forms of the element maps, for tails and the rows the vector path leaves.
inline uint8_t Fp8Code(float q) { return E4M3EncodeSat(RoundBf16(q)); }
template <int kBits>
inline uint32_t IntCode(float q) {
  constexpr float kQMax = static_cast<float>((1 << (kBits - 1)) - 1);
  constexpr float kQMin = -static_cast<float>(1 << (kBits - 1));
  const float v = std::nearbyint(std::clamp(RoundBf16(q), kQMin, kQMax));
  return static_cast<uint32_t>(static_cast<int>(v) + (1 << (kBits - 1)));
}

template <class In>
PQ_AVX2 bool Fp8RowsT(const In* w, size_t row_begin, size_t row_end, size_t cols, uint8_t* elements,
                      uint16_t* scales) {
  bool finite = true;
  for (size_t r = row_begin; r < row_end; ++r) {
    const In* x = w + r * cols;
    const Stats st = RangeStats(x, cols);
    if (st.amax >= 0x7f800000u) {
      finite = false;
      continue;
    }
    const float scale = Bf16Scale(st.amax, kFp8Max);
    scales[r] = F32ToBf16(scale);
    uint8_t* out = elements + r * cols;
    size_t i = 0;
    if (st.low == 0 && scale >= FLT_MIN) {
      const float inv_s = 1.0f / scale;
      const __m256 inv = _mm256_set1_ps(inv_s);
      const In* next = r + 1 < row_end ? x + cols : x;
      for (; i + 32 <= cols; i += 32) {
        Prefetch32(next + i);
        Store32(out + i, ToBytes(E4M3Of16(QuotientBf16(x + i, inv)),
                                 E4M3Of16(QuotientBf16(x + i + 16, inv)), false));
      }
      for (; i < cols; ++i) out[i] = Fp8Code(ToFloat(x[i]) * inv_s);
    }
    for (; i < cols; ++i) out[i] = Fp8Code(ToFloat(x[i]) / scale);
  }
  return finite;
}

// Max |x| (float bits) of one MX group of 32; float input also ORs its bits into `low`
// (the row's bf16 check), without a horizontal OR per group.
PQ_AVX2 inline uint32_t GroupAmax32(const float* x, __m256i& low) {
  const __m256i abs = _mm256_set1_epi32(0x7fffffff);
  const auto* p = reinterpret_cast<const __m256i*>(x);
  const __m256i a = _mm256_loadu_si256(p), b = _mm256_loadu_si256(p + 1);
  const __m256i c = _mm256_loadu_si256(p + 2), d = _mm256_loadu_si256(p + 3);
  low = _mm256_or_si256(low, _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d)));
  const __m256i m0 = _mm256_max_epu32(_mm256_and_si256(a, abs), _mm256_and_si256(b, abs));
  const __m256i m1 = _mm256_max_epu32(_mm256_and_si256(c, abs), _mm256_and_si256(d, abs));
  return HMaxEpu32(_mm256_max_epu32(m0, m1));
}
PQ_AVX2 inline uint32_t GroupAmax32(const uint16_t* x, __m256i&) { return RangeStats(x, 32).amax; }

// The grouped kernels work a row at a time in two phases: every group's scale first (the
// scale computations are independent, so they overlap), then the elements.
template <class In>
PQ_AVX2 bool MxFp8RowsT(const In* w, size_t row_begin, size_t row_end, size_t cols,
                        uint8_t* elements, uint8_t* scales) {
  constexpr size_t kGroup = 32;
  const size_t groups = cols / kGroup;
  std::vector<float> inv(groups);
  bool finite = true;
  for (size_t r = row_begin; r < row_end; ++r) {
    const In* x = w + r * cols;
    uint32_t amax = 0;
    __m256i low_bits = _mm256_setzero_si256();
    for (size_t g = 0; g < groups; ++g) {
      const uint32_t group_amax = GroupAmax32(x + g * kGroup, low_bits);
      amax = std::max(amax, group_amax);
      const uint32_t bumped = group_amax + 0x00200000u;
      const uint8_t e = E8M0FromExponent(static_cast<int>((bumped >> 23) & 0xffu) - 127 - 8);
      scales[r * groups + g] = e;
      // 1 / scale = 2^(127 - e), built from bits (2^-127 is the subnormal 0x00400000).
      inv[g] = e < 254 ? BitsFloat(static_cast<uint32_t>(254 - e) << 23) : BitsFloat(0x00400000u);
    }
    if (amax >= 0x7f800000u) {
      finite = false;
      continue;
    }
    const uint32_t low = HOr32(low_bits) & 0xffffu;
    uint8_t* out = elements + r * cols;
    const In* next = r + 1 < row_end ? x + cols : x;
    for (size_t g = 0; g < groups; ++g) {
      const size_t i = g * kGroup;
      if (low == 0) {
        Prefetch32(next + i);
        const __m256 v = _mm256_set1_ps(inv[g]);
        Store32(out + i, ToBytes(E4M3Of16(ScaledBf16(x + i, v)),
                                 E4M3Of16(ScaledBf16(x + i + 16, v)), false));
      } else {
        for (size_t j = i; j < i + kGroup; ++j) out[j] = E4M3EncodeSat(ToFloat(x[j]) * inv[g]);
      }
    }
  }
  return finite;
}

// Groups start on word boundaries (INT4: 128 per group; INT8: one group per row).
template <int kBits, class In>
PQ_AVX2 bool IntRowsT(const In* w, size_t row_begin, size_t row_end, size_t cols, size_t group,
                      uint32_t* words, uint16_t* scales) {
  constexpr float kHalfRange = static_cast<float>((1 << kBits) - 1) / 2.0f;
  constexpr size_t kPerWord = 32 / kBits;
  constexpr size_t kVec = kBits == 8 ? 32 : 64;  // elements per vector step
  const size_t groups = cols / group;
  const size_t words_per_row = (cols + kPerWord - 1) / kPerWord;
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i qmin8 = _mm256_set1_epi8(-8), qmax8 = _mm256_set1_epi8(7);
  const __m256i nibble_weights = _mm256_set1_epi16(0x1001);  // bytes 1, 16
  std::vector<float> scale(groups);
  bool finite = true;
  for (size_t r = row_begin; r < row_end; ++r) {
    const In* x = w + r * cols;
    uint32_t amax = 0, low = 0;
    float min_scale = FLT_MAX;
    for (size_t g = 0; g < groups; ++g) {
      const Stats st = RangeStats(x + g * group, group);
      amax = std::max(amax, st.amax);
      low |= st.low;
      scale[g] = Bf16Scale(st.amax, kHalfRange);
      min_scale = std::min(min_scale, scale[g]);
      scales[r * groups + g] = F32ToBf16(scale[g]);
    }
    if (amax >= 0x7f800000u) {
      finite = false;
      continue;
    }
    auto* out = reinterpret_cast<uint8_t*>(words + r * words_per_row);
    const In* next = r + 1 < row_end ? x + cols : x;
    const bool vec = low == 0 && min_scale >= FLT_MIN;
    for (size_t g = 0; g < groups; ++g) {
      const size_t g0 = g * group;
      size_t i = g0;
      if (vec) {
        const __m256 inv = _mm256_set1_ps(1.0f / scale[g]);
        for (; i + kVec <= g0 + group; i += kVec) {
          Prefetch32(next + i);
          if constexpr (kBits == 8) {
            const __m256i q = ToBytes(QuotientInt16(x + i, inv), QuotientInt16(x + i + 16, inv),
                                      true);  // saturates to [-128, 127]
            Store32(out + i, _mm256_xor_si256(q, bias));
          } else {
            Prefetch32(next + i + 32);
            __m256i nib[2];
            for (int h = 0; h < 2; ++h) {
              const size_t at = i + 32 * static_cast<size_t>(h);
              __m256i b = ToBytes(QuotientInt16(x + at, inv), QuotientInt16(x + at + 16, inv),
                                  true);  // 32 int8 lanes
              b = _mm256_sub_epi8(_mm256_min_epi8(_mm256_max_epi8(b, qmin8), qmax8), qmin8);
              nib[h] = _mm256_maddubs_epi16(b, nibble_weights);  // u[2j] + 16 u[2j + 1]
            }
            Store32(out + i / 2, ToBytes(nib[0], nib[1], false));
          }
        }
      }
      for (; i < g0 + group; ++i) {  // the rest (and rows the vector path cannot take)
        const float q = ToFloat(x[i]) / scale[g];
        if constexpr (kBits == 8) {
          out[i] = static_cast<uint8_t>(IntCode<8>(q));
        } else {
          const uint32_t u = IntCode<4>(q);
          out[i / 2] = static_cast<uint8_t>(i % 2 ? (out[i / 2] & 0x0f) | (u << 4) : u);
        }
      }
    }
    if (kBits == 8) std::memset(out + cols, 0, words_per_row * 4 - cols);  // last word's pad
  }
  return finite;
}

}  // namespace

bool Fp8Rows(const float* w, size_t b, size_t e, size_t cols, uint8_t* el, uint16_t* s) {
  return Fp8RowsT(w, b, e, cols, el, s);
}
bool Fp8Rows(const uint16_t* w, size_t b, size_t e, size_t cols, uint8_t* el, uint16_t* s) {
  return Fp8RowsT(w, b, e, cols, el, s);
}
bool MxFp8Rows(const float* w, size_t b, size_t e, size_t cols, uint8_t* el, uint8_t* s) {
  return MxFp8RowsT(w, b, e, cols, el, s);
}
bool MxFp8Rows(const uint16_t* w, size_t b, size_t e, size_t cols, uint8_t* el, uint8_t* s) {
  return MxFp8RowsT(w, b, e, cols, el, s);
}
bool IntRows(int bits, const float* w, size_t b, size_t e, size_t cols, size_t group,
             uint32_t* words, uint16_t* s) {
  return bits == 4 ? IntRowsT<4>(w, b, e, cols, group, words, s)
                   : IntRowsT<8>(w, b, e, cols, group, words, s);
}
bool IntRows(int bits, const uint16_t* w, size_t b, size_t e, size_t cols, size_t group,
             uint32_t* words, uint16_t* s) {
  return bits == 4 ? IntRowsT<4>(w, b, e, cols, group, words, s)
                   : IntRowsT<8>(w, b, e, cols, group, words, s);
}

#pragma GCC pop_options

#else  // no AVX2 kernels on this target

bool Available() { return false; }
#define PQ_NO_AVX2(...) \
  { return false; }
bool Fp8Rows(const float*, size_t, size_t, size_t, uint8_t*, uint16_t*)
    PQ_NO_AVX2() bool Fp8Rows(const uint16_t*, size_t, size_t, size_t, uint8_t*, uint16_t*)
        PQ_NO_AVX2() bool MxFp8Rows(const float*, size_t, size_t, size_t, uint8_t*, uint8_t*)
            PQ_NO_AVX2() bool MxFp8Rows(const uint16_t*, size_t, size_t, size_t, uint8_t*, uint8_t*)
                PQ_NO_AVX2() bool IntRows(int, const float*, size_t, size_t, size_t, size_t,
                                          uint32_t*, uint16_t*)
                    PQ_NO_AVX2() bool IntRows(int, const uint16_t*, size_t, size_t, size_t, size_t,
                                              uint32_t*, uint16_t*) PQ_NO_AVX2()
#undef PQ_NO_AVX2

#endif

}  // namespace pq::formats::avx2
