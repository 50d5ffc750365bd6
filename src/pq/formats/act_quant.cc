// Activation fake-quantization: compressed-tensors 0.20's `forward_quantize` for the
// `input_activations` args of compressed_tensors.cc `InputArgs`, step by step on bf16 inputs
// (tests/interop/CT_NOTES.md "Activations"; test_act_quant.py checks it against the library).
//
// ct's path for a dynamic (or "local") activation: `compute_dynamic_scales_and_zp` (amax
// per group / per token, `calculate_qparams`), then `_quantize_dequantize`:
//   eff = scale [/ global_scale];  q = x / eff;  q += zero_point (a zero tensor);
//   q = round(clamp(q, qmin, qmax));  out = q * eff;  cast to x's dtype (bf16).
// Each torch op on bf16 operands is one f32 operation rounded to bf16 (RoundBf16 here);
// ops with an f32 operand (NVFP4's global scale) stay f32 until the final cast.
// `q += 0` turns a -0 quotient into +0, so an output zero is negative only when q was a
// nonzero negative value that rounded to zero.
//
// vLLM's kernels compute slightly different values, and we deliberately follow ct (details
// in CT_NOTES.md): NVFP4 block scale gs * (amax * rcp.approx(6)) in f32 (no bf16 rounding)
// and elements x * rcp.approx(s * rcp.approx(gs)) instead of ct's IEEE division; FP8 per
// token uses an f32 scale max(amax / 448, 1 / (448 * 512)) and no bf16 rounding of x / s
// or of the dequantized value; MXFP8 (TRT-LLM kernel) rounds the E8M0 scale up from
// amax / 448, which differs from ct only at an amax mantissa of exactly 1.75. vLLM never
// materializes the dequantized activation (its GEMMs apply the scales in f32), and on
// Hopper it runs NVFP4 / MXFP8 weight-only, leaving activations in bf16.
//
// The loops are branch-free over a row (per-group quantities first, then one long
// element loop against a per-element copy of the group's scale), as in rtn_fast.cc.
#include "pq/formats/act_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "pq/core/minifloat.h"
#include "pq/formats/rtn_kernels.h"

// x86-64 builds also compile the row kernels for AVX2 / AVX-512 and pick one at load time
// (same IEEE single-precision arithmetic, only the vector width differs).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define PQ_ACT_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define PQ_ACT_MULTIVERSION
#endif

namespace pq::formats {
namespace {

constexpr size_t kNvFp4Group = 16;
constexpr size_t kMxGroup = 32;

inline uint32_t MaskIf(bool c) { return 0u - static_cast<uint32_t>(c); }

// bf16 rounding (nearest, ties to even) of a finite value; overflow gives Inf.
inline float RoundBf16Finite(float x) {
  const uint32_t u = FloatBits(x);
  return BitsFloat((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
}

// max |x[i]| of a group of finite values (integer max over the magnitude bits).
template <size_t kN>
inline float GroupAbsMax(const float* x) {
  uint32_t m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < kN; i += 8)
    for (size_t j = 0; j < 8; ++j) m[j] = std::max(m[j], FloatBits(x[i + j]) & 0x7fffffffu);
  uint32_t r = 0;
  for (uint32_t v : m) r = std::max(r, v);
  return BitsFloat(r);
}

// ct's FP4 rounding (`cast_to_fp4`) of a magnitude: <=0.25 -> 0, <0.75 -> 0.5,
// <=1.25 -> 1, <1.75 -> 1.5, <=2.5 -> 2, <3.5 -> 3, <=5 -> 4, else 6 (nearest, ties to
// even; clamping to 6 first changes nothing).
inline float E2M1Magnitude(float a) {
  const int halves = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f);
  const int ones = (a > 2.5f) + (a >= 3.5f);
  return 0.5f * static_cast<float>(halves) + static_cast<float>(ones) +
         2.0f * static_cast<float>(a > 5.0f);
}

// torch's sign(q) * fp4(|q|): a -0 quotient gives +0, a small negative one gives -0.
inline float SignedE2M1(float q) {
  const float m = E2M1Magnitude(std::fabs(q));
  return q < 0.0f ? -m : m;
}

// c (|c| <= 448) rounded to the nearest E4M3 value, ties to even, sign kept (torch's
// `.to(float8_e4m3fn)` and back). Normal range: keep 3 mantissa bits of the pattern;
// below 2^-6: multiples of 2^-9, rounded by the FP adder.
inline float E4M3Round(float c) {
  const uint32_t u = FloatBits(c);
  const uint32_t a = u & 0x7fffffffu;
  const uint32_t normal = (a + 0x7ffffu + ((a >> 20) & 1u)) & 0xfff00000u;
  const uint32_t sub = FloatBits((BitsFloat(a) + 16384.0f) - 16384.0f);
  const uint32_t is_sub = MaskIf(a < 0x3c800000u);
  return BitsFloat((u & 0x80000000u) | (sub & is_sub) | (normal & ~is_sub));
}

// Each row kernel first rounds its row to bf16 in place (while it is in cache).
inline void RoundRowBf16(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = RoundBf16Finite(x[i]);
}

// ---------------------------------------------------------------- NVFP4 (W4A4)
// calculate_qparams (TENSOR_GROUP, dynamic "local", scale_dtype e4m3):
//   s = e4m3(min(f32(gs * bf16(amax_g / 6)), 448)), 0 -> 0.125;  eff = f32(s / gs);
// _quantize_dequantize in f32 (eff is f32): q = x / eff (+0); fp4 of clamp(q, +-6);
// out = bf16(f32(fp4 * eff)).
PQ_ACT_MULTIVERSION void NvFp4Rows(float* x, size_t rows, size_t cols, float gs, float* eff) {
  const size_t groups = cols / kNvFp4Group;
  for (size_t r = 0; r < rows; ++r) {
    float* row = x + r * cols;
    RoundRowBf16(row, cols);
    for (size_t g = 0; g < groups; ++g) {
      const float s = RoundBf16Finite(GroupAbsMax<kNvFp4Group>(row + g * kNvFp4Group) / kFp4Max);
      float sc = E4M3Round(std::min(gs * s, kFp8Max));
      if (sc == 0.0f) sc = 0.125f;  // ct's eps for an e4m3 scale
      const float e = sc / gs;
      for (size_t j = 0; j < kNvFp4Group; ++j) eff[g * kNvFp4Group + j] = e;
    }
    for (size_t i = 0; i < cols; ++i) {
      const float q = row[i] / eff[i] + 0.0f;
      row[i] = RoundBf16Finite(SignedE2M1(q) * eff[i]);
    }
  }
}

// ---------------------------------------------------------------- MX (E8M0 per 32)
// generate_mx_scales on the bf16 group amax: p = amax rounded to a power of two (bf16 bits
// + 32, exponent kept: up when the mantissa fraction is >= 0.75, with the FP4 mantissa
// width for MXFP8 too), E = 127 + log2(p) - offset (8 for E4M3, 2 for E2M1), clamped to
// [0, 255] by the uint8 cast; scale = bf16(2^(E - 127)). A zero or tiny group has p = 0,
// log2 = -inf, E = 0. A group with amax >= ~2.98e38 has p = Inf, E = 255 and scale Inf,
// so ct returns NaN for the whole group (0 * Inf); we do the same.
inline uint32_t MxScaleExponent(float amax, int offset) {
  const int field = static_cast<int>(((FloatBits(amax) + 0x00200000u) >> 23) & 0xffu);
  if (field == 255) return 255;
  return static_cast<uint32_t>(std::max(field - offset, 0));
}

// bf16 x / scale (exact power of two) then q += 0; clamp, round; out = bf16(q * scale).
PQ_ACT_MULTIVERSION void MxRows(bool fp4, float* x, size_t rows, size_t cols, float* scale,
                                float* inv) {
  const size_t groups = cols / kMxGroup;
  const int offset = fp4 ? 2 : 8;
  for (size_t r = 0; r < rows; ++r) {
    float* row = x + r * cols;
    RoundRowBf16(row, cols);
    for (size_t g = 0; g < groups; ++g) {
      const uint32_t e = MxScaleExponent(GroupAbsMax<kMxGroup>(row + g * kMxGroup), offset);
      // 2^(e-127) and its exact reciprocal from bits (2^-127 is the subnormal 0x00400000;
      // e = 255 gives scale Inf, reciprocal 0, and x * 0 = x / Inf = +-0).
      const float s = BitsFloat(e == 0 ? 0x00400000u : e << 23);
      const float v = e == 255   ? 0.0f
                      : e == 254 ? BitsFloat(0x00400000u)
                                 : BitsFloat((254u - e) << 23);
      for (size_t j = 0; j < kMxGroup; ++j) {
        scale[g * kMxGroup + j] = s;
        inv[g * kMxGroup + j] = v;
      }
    }
    if (fp4) {
      for (size_t i = 0; i < cols; ++i) {
        const float q = RoundBf16Finite(row[i] * inv[i]) + 0.0f;
        row[i] = RoundBf16Finite(SignedE2M1(q) * scale[i]);
      }
    } else {
      for (size_t i = 0; i < cols; ++i) {
        const float q = RoundBf16Finite(row[i] * inv[i]) + 0.0f;
        const float c = std::clamp(q, -kFp8Max, kFp8Max);
        row[i] = RoundBf16Finite(E4M3Round(c) * scale[i]);
      }
    }
  }
}

// ---------------------------------------------------------------- FP8 per token
// calculate_qparams (TOKEN): s = bf16(amax_row / 448), 0 -> 2^-7 (bf16 eps);
// q = bf16(x / s) (+0), clamp +-448, e4m3; out = bf16(q * s).
PQ_ACT_MULTIVERSION void Fp8Rows(float* x, size_t rows, size_t cols) {
  for (size_t r = 0; r < rows; ++r) {
    float* row = x + r * cols;
    RoundRowBf16(row, cols);
    float s = RoundBf16Finite(fast::AbsMax(row, cols) / kFp8Max);
    if (s == 0.0f) s = kBf16Eps;
    for (size_t i = 0; i < cols; ++i) {
      const float q = RoundBf16Finite(row[i] / s) + 0.0f;
      row[i] = RoundBf16Finite(E4M3Round(std::clamp(q, -kFp8Max, kFp8Max)) * s);
    }
  }
}

// Elements per activation scale along K (1: any K).
int64_t ActGroupSize(FormatId id) {
  switch (id) {
    case FormatId::kNVFP4:
      return static_cast<int64_t>(kNvFp4Group);
    case FormatId::kMXFP8:
    case FormatId::kMXFP4:
      return static_cast<int64_t>(kMxGroup);
    default:
      return 1;
  }
}

Status CheckInput(FormatId id, std::span<const float> x, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0 || (cols > 0 && rows > std::numeric_limits<int64_t>::max() / cols) ||
      static_cast<uint64_t>(rows * cols) != x.size())
    return InvalidArgument("activations have " + std::to_string(x.size()) + " values; shape [" +
                           std::to_string(rows) + ", " + std::to_string(cols) + "] does not match");
  const int64_t group = ActGroupSize(id);
  if (cols % group != 0)
    return InvalidArgument(std::string(Spec(id).name) + " quantizes activations in groups of " +
                           std::to_string(group) + " along K; " + std::to_string(cols) +
                           " columns is not a multiple");
  return Status::Ok();
}

}  // namespace

float NvFp4InputGlobalScale(float amax) { return NvFp4GlobalScale(RoundBf16(std::fabs(amax))); }

Status FakeQuantizeActivations(FormatId id, std::span<float> x, int64_t rows, int64_t cols,
                               std::optional<float> input_global_scale) {
  PQ_RETURN_IF_ERROR(CheckInput(id, x, rows, cols));
  if (!Spec(id).quantizes_activations) return Status::Ok();
  float gs = 0.0f;
  if (id == FormatId::kNVFP4) {
    if (!input_global_scale)
      return InvalidArgument("NVFP4 activation quantization needs the input_global_scale");
    gs = *input_global_scale;
    if (!std::isfinite(gs) || !(gs > 0.0f))
      return InvalidArgument("NVFP4 input_global_scale must be finite and positive, got " +
                             std::to_string(gs));
  }
  // bf16 rounding is monotonic, so bf16(max |x|) is finite iff every bf16(x) is.
  if (!std::isfinite(RoundBf16(fast::AbsMax(x.data(), x.size())))) {
    for (size_t i = 0; i < x.size(); ++i)
      if (!std::isfinite(RoundBf16(x[i])))
        return InvalidArgument("activation element " + std::to_string(i) + " (" +
                               std::to_string(x[i]) + ") is not finite in bf16");
  }
  const size_t n = static_cast<size_t>(rows), k = static_cast<size_t>(cols);
  switch (id) {
    case FormatId::kNVFP4: {
      std::vector<float> eff(k);
      NvFp4Rows(x.data(), n, k, gs, eff.data());
      break;
    }
    case FormatId::kMXFP8:
    case FormatId::kMXFP4: {
      std::vector<float> scale(k), inv(k);
      MxRows(id == FormatId::kMXFP4, x.data(), n, k, scale.data(), inv.data());
      break;
    }
    case FormatId::kFP8:
      Fp8Rows(x.data(), n, k);
      break;
    default:
      return Internal("format " + std::string(Spec(id).name) +
                      " is marked as quantizing activations but has no activation quantizer");
  }
  return Status::Ok();
}

}  // namespace pq::formats
