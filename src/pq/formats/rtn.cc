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
#include "pq/formats/rtn_kernels.h"

namespace pq::formats {
namespace {

template <typename T>
void PutLE(std::vector<uint8_t>& out, size_t index, T value) {
  std::memcpy(out.data() + index * sizeof(T), &value, sizeof(T));
}

// `amax` = fast::AbsMax(w): non-finite exactly when some element is; then locate it.
Status CheckFinite(std::span<const float> w, float amax) {
  if (std::isfinite(amax)) return Status::Ok();
  for (size_t i = 0; i < w.size(); ++i)
    if (!std::isfinite(w[i]))
      return InvalidArgument("weight element " + std::to_string(i) +
                             " is not finite; cannot quantize");
  return Status::Ok();
}

}  // namespace

// compressed-tensors evaluates `2688.0 / amax` on a bf16 tensor as reciprocal-then-multiply,
// each step rounded to bf16, and replaces a non-finite result (amax 0 or tiny) by 1.0.
float NvFp4GlobalScale(float amax) {
  const float gs = RoundBf16(RoundBf16(1.0f / amax) * (kFp8Max * kFp4Max));
  return std::isfinite(gs) && gs > 0.0f ? gs : 1.0f;
}

Result<std::vector<QTensor>> QuantizeRtn(FormatId id, std::span<const float> weight, int64_t rows,
                                         int64_t cols, const QuantizeOptions& options) {
  PQ_RETURN_IF_ERROR(CheckShape(id, rows, cols));
  if (weight.size() != static_cast<size_t>(rows * cols))
    return InvalidArgument("weight has " + std::to_string(weight.size()) + " values, shape [" +
                           std::to_string(rows) + ", " + std::to_string(cols) + "] needs " +
                           std::to_string(rows * cols));
  const size_t n = static_cast<size_t>(rows), k = static_cast<size_t>(cols);
  const float* w = weight.data();
  const float amax = fast::AbsMax(w, n * k);
  PQ_RETURN_IF_ERROR(CheckFinite(weight, amax));
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
        return InvalidArgument(
            "NVFP4 (W4A4) needs a calibrated input_global_scale; use "
            "NVFP4A16 for weight-only quantization without calibration");
      const float gs = options.weight_global_scale.value_or(NvFp4GlobalScale(amax));
      QTensor packed = MakeTensor("weight_packed", DType::kU8, {rows, cols / 2});
      QTensor scale = MakeTensor("weight_scale", DType::kF8E4M3, {rows, cols / 16});
      ParallelFor(n, threads, [&](size_t b, size_t e) {
        if (options.reference_kernels)
          ref::NvFp4Rows(w, b, e, k, gs, packed.bytes.data(), scale.bytes.data());
        else
          fast::NvFp4Rows(w, b, e, k, gs, packed.bytes.data(), scale.bytes.data());
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
        if (options.reference_kernels)
          ref::MxRows(fp4, w, b, e, k, elems.bytes.data(), scale.bytes.data());
        else
          fast::MxRows(fp4, w, b, e, k, elems.bytes.data(), scale.bytes.data());
      });
      out.push_back(std::move(elems));
      out.push_back(std::move(scale));
      break;
    }
    case FormatId::kFP8: {
      QTensor elems = MakeTensor("weight", DType::kF8E4M3, {rows, cols});
      QTensor scale = MakeTensor("weight_scale", DType::kBF16, {rows, 1});
      auto* s = reinterpret_cast<uint16_t*>(scale.bytes.data());
      ParallelFor(n, threads, [&](size_t b, size_t e) {
        if (options.reference_kernels)
          ref::Fp8Rows(w, b, e, k, elems.bytes.data(), s);
        else
          fast::Fp8Rows(w, b, e, k, elems.bytes.data(), s);
      });
      out.push_back(std::move(elems));
      out.push_back(std::move(scale));
      break;
    }
    case FormatId::kINT4:
    case FormatId::kINT8: {
      const bool int4 = id == FormatId::kINT4;
      const int per_word = int4 ? 8 : 4;
      const size_t group = int4 ? 128 : k;
      QTensor packed =
          MakeTensor("weight_packed", DType::kI32, {rows, (cols + per_word - 1) / per_word});
      QTensor scale =
          MakeTensor("weight_scale", DType::kBF16, {rows, static_cast<int64_t>(k / group)});
      auto* words = reinterpret_cast<uint32_t*>(packed.bytes.data());
      auto* s = reinterpret_cast<uint16_t*>(scale.bytes.data());
      ParallelFor(n, threads, [&](size_t b, size_t e) {
        if (options.reference_kernels)
          ref::IntRows(int4 ? 4 : 8, w, b, e, k, group, words, s);
        else
          fast::IntRows(int4 ? 4 : 8, w, b, e, k, group, words, s);
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
