// Round-to-nearest quantizers, reproducing compressed-tensors' arithmetic for bf16 weights
// step by step (compressed-tensors-format.md §2; tests/interop checks it against the
// library itself). Intermediate results that torch computes in the weight dtype are
// rounded to bf16 here at the same points (RoundBf16).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "pq/core/check.h"
#include "pq/core/minifloat.h"
#include "pq/core/thread_pool.h"
#include "pq/formats/codecs.h"
#include "pq/formats/format.h"

namespace pq::formats {
namespace {

constexpr float kFp8Max = 448.0f;
constexpr float kFp4Max = 6.0f;
constexpr float kBf16Eps = 0.0078125f;  // torch.finfo(torch.bfloat16).eps

template <typename T>
void PutLE(std::vector<uint8_t>& out, size_t index, T value) {
  std::memcpy(out.data() + index * sizeof(T), &value, sizeof(T));
}

QTensor MakeTensor(std::string suffix, DType dtype, std::vector<int64_t> shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  QTensor t{std::move(suffix), dtype, std::move(shape), {}};
  t.bytes.assign(static_cast<size_t>(numel) * DTypeSize(dtype), 0);
  return t;
}

float AbsMax(const float* x, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// ---------------------------------------------------------------- NVFP4
// weight_scale = e4m3(clamp(f32(gs * bf16(amax_g / 6)))) (0 -> 0.125 as ct's eps);
// element = e2m1(x / f32(f32(scale) / gs)).
void QuantizeNvFp4Rows(const float* w, size_t row_begin, size_t row_end, size_t cols, float gs,
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
uint8_t MxScaleCode(float amax, int elem_emax) {
  const uint32_t bumped = FloatBits(amax) + 0x00200000u;  // + quarter of the mantissa range
  const int exponent = static_cast<int>((bumped >> 23) & 0xffu) - 127;
  return E8M0FromExponent(exponent - elem_emax);
}

template <bool kFp4>
void QuantizeMxRows(const float* w, size_t row_begin, size_t row_end, size_t cols,
                    uint8_t* elements, uint8_t* scales) {
  const size_t groups = cols / 32;
  for (size_t r = row_begin; r < row_end; ++r) {
    for (size_t g = 0; g < groups; ++g) {
      const float* x = w + r * cols + g * 32;
      const uint8_t e = MxScaleCode(AbsMax(x, 32), kFp4 ? 2 : 8);
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
void QuantizeFp8Rows(const float* w, size_t row_begin, size_t row_end, size_t cols,
                     uint8_t* elements, uint16_t* scales) {
  for (size_t r = row_begin; r < row_end; ++r) {
    const float* x = w + r * cols;
    float scale = RoundBf16(AbsMax(x, cols) / kFp8Max);
    if (scale == 0.0f) scale = kBf16Eps;
    scales[r] = F32ToBf16(scale);
    for (size_t i = 0; i < cols; ++i)
      elements[r * cols + i] = E4M3EncodeSat(std::clamp(RoundBf16(x[i] / scale), -kFp8Max, kFp8Max));
  }
}

// ---------------------------------------------------------------- INT (symmetric)
// scale = bf16(amax_g / ((2^b - 1) / 2)) (0 -> bf16 eps); q = rne(clamp(bf16(x / scale))).
// Packed little-endian into int32 words, element i at bits [b*i, b*i + b), offset by 2^(b-1).
template <int kBits>
void QuantizeIntRows(const float* w, size_t row_begin, size_t row_end, size_t cols,
                     size_t group, uint32_t* words, uint16_t* scales) {
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

Status CheckFinite(std::span<const float> w) {
  for (size_t i = 0; i < w.size(); ++i)
    if (!std::isfinite(w[i]))
      return InvalidArgument("weight element " + std::to_string(i) +
                             " is not finite; cannot quantize");
  return Status::Ok();
}

}  // namespace

float NvFp4GlobalScale(float amax) {
  if (!(amax > 0.0f) || !std::isfinite(amax)) return 1.0f;
  return RoundBf16(kFp8Max * kFp4Max / amax);
}

Result<std::vector<QTensor>> QuantizeRtn(FormatId id, std::span<const float> weight,
                                         int64_t rows, int64_t cols,
                                         const QuantizeOptions& options) {
  PQ_RETURN_IF_ERROR(CheckShape(id, rows, cols));
  if (weight.size() != static_cast<size_t>(rows * cols))
    return InvalidArgument("weight has " + std::to_string(weight.size()) + " values, shape [" +
                           std::to_string(rows) + ", " + std::to_string(cols) + "] needs " +
                           std::to_string(rows * cols));
  PQ_RETURN_IF_ERROR(CheckFinite(weight));
  const size_t n = static_cast<size_t>(rows), k = static_cast<size_t>(cols);
  const float* w = weight.data();
  const int threads = options.num_threads;
  std::vector<QTensor> out;
  switch (id) {
    case FormatId::kBF16: {
      QTensor t = MakeTensor("weight", DType::kBF16, {rows, cols});
      for (size_t i = 0; i < n * k; ++i) PutLE<uint16_t>(t.bytes, i, F32ToBf16(w[i]));
      out.push_back(std::move(t));
      break;
    }
    case FormatId::kNVFP4:
    case FormatId::kNVFP4A16: {
      if (id == FormatId::kNVFP4 && !options.input_global_scale)
        return InvalidArgument("NVFP4 (W4A4) needs a calibrated input_global_scale; use "
                               "NVFP4A16 for weight-only quantization without calibration");
      const float gs = options.weight_global_scale.value_or(
          NvFp4GlobalScale(AbsMax(w, n * k)));
      QTensor packed = MakeTensor("weight_packed", DType::kU8, {rows, cols / 2});
      QTensor scale = MakeTensor("weight_scale", DType::kF8E4M3, {rows, cols / 16});
      ParallelFor(n, threads, [&](size_t b, size_t e) {
        QuantizeNvFp4Rows(w, b, e, k, gs, packed.bytes.data(), scale.bytes.data());
      });
      QTensor global = MakeTensor("weight_global_scale", DType::kF32, {1});
      PutLE<float>(global.bytes, 0, gs);
      out.push_back(std::move(packed));
      out.push_back(std::move(scale));
      out.push_back(std::move(global));
      if (id == FormatId::kNVFP4) {
        QTensor input = MakeTensor("input_global_scale", DType::kF32, {1});
        PutLE<float>(input.bytes, 0, *options.input_global_scale);
        out.push_back(std::move(input));
      }
      break;
    }
    case FormatId::kMXFP8:
    case FormatId::kMXFP4: {
      const bool fp4 = id == FormatId::kMXFP4;
      QTensor elems = fp4 ? MakeTensor("weight_packed", DType::kU8, {rows, cols / 2})
                          : MakeTensor("weight", DType::kF8E4M3, {rows, cols});
      QTensor scale = MakeTensor("weight_scale", DType::kU8, {rows, cols / 32});
      ParallelFor(n, threads, [&](size_t b, size_t e) {
        if (fp4)
          QuantizeMxRows<true>(w, b, e, k, elems.bytes.data(), scale.bytes.data());
        else
          QuantizeMxRows<false>(w, b, e, k, elems.bytes.data(), scale.bytes.data());
      });
      out.push_back(std::move(elems));
      out.push_back(std::move(scale));
      break;
    }
    case FormatId::kFP8: {
      QTensor elems = MakeTensor("weight", DType::kF8E4M3, {rows, cols});
      QTensor scale = MakeTensor("weight_scale", DType::kBF16, {rows, 1});
      auto* s = reinterpret_cast<uint16_t*>(scale.bytes.data());
      ParallelFor(n, threads,
                  [&](size_t b, size_t e) { QuantizeFp8Rows(w, b, e, k, elems.bytes.data(), s); });
      out.push_back(std::move(elems));
      out.push_back(std::move(scale));
      break;
    }
    case FormatId::kINT4:
    case FormatId::kINT8: {
      const bool int4 = id == FormatId::kINT4;
      const int per_word = int4 ? 8 : 4;
      const size_t group = int4 ? 128 : k;
      QTensor packed = MakeTensor("weight_packed", DType::kI32,
                                  {rows, (cols + per_word - 1) / per_word});
      QTensor scale = MakeTensor("weight_scale", DType::kBF16,
                                 {rows, static_cast<int64_t>(k / group)});
      auto* words = reinterpret_cast<uint32_t*>(packed.bytes.data());
      auto* s = reinterpret_cast<uint16_t*>(scale.bytes.data());
      ParallelFor(n, threads, [&](size_t b, size_t e) {
        if (int4)
          QuantizeIntRows<4>(w, b, e, k, group, words, s);
        else
          QuantizeIntRows<8>(w, b, e, k, group, words, s);
      });
      QTensor shape = MakeTensor("weight_shape", DType::kI64, {2});
      PutLE<int64_t>(shape.bytes, 0, rows);
      PutLE<int64_t>(shape.bytes, 1, cols);
      out.push_back(std::move(packed));
      out.push_back(std::move(scale));
      out.push_back(std::move(shape));
      break;
    }
  }
  return out;
}

}  // namespace pq::formats
