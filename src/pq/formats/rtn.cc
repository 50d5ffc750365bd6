// Round-to-nearest quantizers, reproducing compressed-tensors' arithmetic for bf16 weights
// step by step (compressed-tensors-format.md §2; tests/interop checks it against the
// library itself). Intermediate results that torch computes in the weight dtype are
// rounded to bf16 here at the same points (RoundBf16).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "pq/core/check.h"
#include "pq/core/minifloat.h"
#include "pq/core/thread_pool.h"
#include "pq/formats/codecs.h"
#include "pq/formats/format.h"
#include "pq/formats/rtn_kernels.h"

namespace pq::formats {
namespace {

template <typename T>
void PutLE(ByteBuffer& out, size_t index, T value) {
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

namespace {

Status CheckSize(size_t size, int64_t rows, int64_t cols) {
  if (size == static_cast<size_t>(rows * cols)) return Status::Ok();
  return InvalidArgument("weight has " + std::to_string(size) + " values, shape [" +
                         std::to_string(rows) + ", " + std::to_string(cols) + "] needs " +
                         std::to_string(rows * cols));
}

bool HasVectorKernel(FormatId id, const QuantizeOptions& options) {
  return !options.reference_kernels && avx2::Available() &&
         (id == FormatId::kMXFP8 || id == FormatId::kFP8 || id == FormatId::kINT4 ||
          id == FormatId::kINT8);
}

// The AVX2 path: no separate pass over the weight (the kernels check finiteness per row).
template <typename In>
Result<std::vector<QTensor>> QuantizeVector(FormatId id, const In* w, size_t n, size_t k,
                                            int threads) {
  // The kernels write every byte of the elements and scales (INT8's word padding included).
  std::vector<QTensor> out =
      MakeTensors(id, static_cast<int64_t>(n), static_cast<int64_t>(k), /*zero_fill=*/false);
  uint8_t* elems = TensorOf(id, out, TensorRole::kElements).bytes.data();
  uint8_t* scale = TensorOf(id, out, TensorRole::kScales).bytes.data();
  auto* scale16 = reinterpret_cast<uint16_t*>(scale);
  std::atomic<bool> finite{true};
  ParallelFor(n, threads, [&](size_t b, size_t e) {
    bool ok = true;
    if (id == FormatId::kMXFP8) {
      ok = avx2::MxFp8Rows(w, b, e, k, elems, scale);
    } else if (id == FormatId::kFP8) {
      ok = avx2::Fp8Rows(w, b, e, k, elems, scale16);
    } else {
      const size_t group = Spec(id).scale_layout == ScaleLayout::kGroup
                               ? static_cast<size_t>(Spec(id).group_size)
                               : k;
      ok = avx2::IntRows(Spec(id).element_bits, w, b, e, k, group,
                         reinterpret_cast<uint32_t*>(elems), scale16);
    }
    if (!ok) finite = false;
  });
  if (!finite) return InvalidArgument("weight holds a non-finite value; cannot quantize");
  return out;
}

}  // namespace

Result<std::vector<QTensor>> QuantizeRtnBf16(FormatId id, std::span<const uint16_t> weight,
                                             int64_t rows, int64_t cols,
                                             const QuantizeOptions& options) {
  PQ_RETURN_IF_ERROR(CheckShape(id, rows, cols));
  PQ_RETURN_IF_ERROR(CheckSize(weight.size(), rows, cols));
  if (HasVectorKernel(id, options)) {
    auto q = QuantizeVector(id, weight.data(), static_cast<size_t>(rows), static_cast<size_t>(cols),
                            options.num_threads);
    if (q.ok()) return q;
    for (size_t i = 0; i < weight.size(); ++i)  // name the first non-finite element
      if ((weight[i] & 0x7f80u) == 0x7f80u)
        return InvalidArgument("weight element " + std::to_string(i) +
                               " is not finite; cannot quantize");
    return q;
  }
  std::vector<float> w(weight.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = Bf16ToF32(weight[i]);
  return QuantizeRtn(id, w, rows, cols, options);
}

Result<std::vector<QTensor>> QuantizeRtn(FormatId id, std::span<const float> weight, int64_t rows,
                                         int64_t cols, const QuantizeOptions& options) {
  PQ_RETURN_IF_ERROR(CheckShape(id, rows, cols));
  PQ_RETURN_IF_ERROR(CheckSize(weight.size(), rows, cols));
  if (HasVectorKernel(id, options)) {
    auto q = QuantizeVector(id, weight.data(), static_cast<size_t>(rows), static_cast<size_t>(cols),
                            options.num_threads);
    if (q.ok()) return q;
    PQ_RETURN_IF_ERROR(CheckFinite(weight, std::numeric_limits<float>::infinity()));
    return q;
  }
  const size_t n = static_cast<size_t>(rows), k = static_cast<size_t>(cols);
  const float* w = weight.data();
  const float amax = fast::AbsMax(w, n * k);
  PQ_RETURN_IF_ERROR(CheckFinite(weight, amax));
  const int threads = options.num_threads;
  const bool use_ref = options.reference_kernels;
  if (FindTensor(id, TensorRole::kInputGlobalScale) && !options.input_global_scale)
    return InvalidArgument(
        "NVFP4 (W4A4) needs a calibrated input_global_scale; use "
        "NVFP4A16 for weight-only quantization without calibration");
  std::vector<QTensor> out = MakeTensors(id, rows, cols);
  QTensor& elements = TensorOf(id, out, TensorRole::kElements);
  uint8_t* elems = elements.bytes.data();
  switch (id) {
    case FormatId::kBF16:
      for (size_t i = 0; i < n * k; ++i) PutLE<uint16_t>(elements.bytes, i, F32ToBf16(w[i]));
      break;
    case FormatId::kNVFP4:
    case FormatId::kNVFP4A16: {
      const float gs = options.weight_global_scale.value_or(NvFp4GlobalScale(amax));
      uint8_t* scale = TensorOf(id, out, TensorRole::kScales).bytes.data();
      ParallelFor(n, threads, [&](size_t b, size_t e) {
        if (use_ref)
          ref::NvFp4Rows(w, b, e, k, gs, elems, scale);
        else
          fast::NvFp4Rows(w, b, e, k, gs, elems, scale);
      });
      PutLE<float>(TensorOf(id, out, TensorRole::kWeightGlobalScale).bytes, 0, gs);
      if (FindTensor(id, TensorRole::kInputGlobalScale))
        PutLE<float>(TensorOf(id, out, TensorRole::kInputGlobalScale).bytes, 0,
                     *options.input_global_scale);
      break;
    }
    case FormatId::kMXFP8:
    case FormatId::kMXFP4: {
      const bool fp4 = id == FormatId::kMXFP4;
      uint8_t* scale = TensorOf(id, out, TensorRole::kScales).bytes.data();
      ParallelFor(n, threads, [&](size_t b, size_t e) {
        if (use_ref)
          ref::MxRows(fp4, w, b, e, k, elems, scale);
        else
          fast::MxRows(fp4, w, b, e, k, elems, scale);
      });
      break;
    }
    case FormatId::kFP8: {
      auto* s = reinterpret_cast<uint16_t*>(TensorOf(id, out, TensorRole::kScales).bytes.data());
      ParallelFor(n, threads, [&](size_t b, size_t e) {
        if (use_ref)
          ref::Fp8Rows(w, b, e, k, elems, s);
        else
          fast::Fp8Rows(w, b, e, k, elems, s);
      });
      break;
    }
    case FormatId::kINT4:
    case FormatId::kINT8: {
      const int bits = Spec(id).element_bits;
      const size_t group = Spec(id).scale_layout == ScaleLayout::kGroup
                               ? static_cast<size_t>(Spec(id).group_size)
                               : k;
      auto* words = reinterpret_cast<uint32_t*>(elems);
      auto* s = reinterpret_cast<uint16_t*>(TensorOf(id, out, TensorRole::kScales).bytes.data());
      ParallelFor(n, threads, [&](size_t b, size_t e) {
        if (use_ref)
          ref::IntRows(bits, w, b, e, k, group, words, s);
        else
          fast::IntRows(bits, w, b, e, k, group, words, s);
      });
      break;
    }
  }
  return out;
}

}  // namespace pq::formats
