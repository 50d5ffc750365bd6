// Dequantization of stored tensors (the decode side of every format), with validation of
// the stored tensor set: a missing tensor, wrong dtype or wrong shape is an error.
#include <array>
#include <cstring>

#include "pq/core/minifloat.h"
#include "pq/formats/codecs.h"
#include "pq/formats/format.h"

namespace pq::formats {
namespace {

std::string ShapeString(std::span<const int64_t> s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// Finds `suffix` in `tensors` and checks its dtype and shape.
Result<const QTensorView*> Require(std::span<const QTensorView> tensors, std::string_view suffix,
                                   DType dtype, std::vector<int64_t> shape) {
  for (const auto& t : tensors) {
    if (t.suffix != suffix) continue;
    if (t.dtype != dtype)
      return InvalidArgument("tensor " + std::string(suffix) + " has dtype " +
                             std::string(DTypeName(t.dtype)) + ", expected " +
                             std::string(DTypeName(dtype)));
    if (!std::equal(t.shape.begin(), t.shape.end(), shape.begin(), shape.end()))
      return InvalidArgument("tensor " + std::string(suffix) + " has shape " +
                             ShapeString(t.shape) + ", expected " + ShapeString(shape));
    if (t.bytes.size() != [&] {
          size_t n = DTypeSize(dtype);
          for (int64_t d : shape) n *= static_cast<size_t>(d);
          return n;
        }())
      return InvalidArgument("tensor " + std::string(suffix) + " has the wrong byte length");
    return &t;
  }
  return NotFound("missing tensor " + std::string(suffix));
}

// Decode tables: the same values as the scalar decoders, looked up (the probe dequantizes
// every candidate of every Linear; per-element decoding dominated its time at Qwen3.6 size).
struct DecodeTables {
  std::array<float, 16> e2m1;
  std::array<float, 256> e4m3, e8m0;
  DecodeTables() {
    for (int i = 0; i < 16; ++i) e2m1[static_cast<size_t>(i)] = E2M1Decode(static_cast<uint8_t>(i));
    for (int i = 0; i < 256; ++i) {
      e4m3[static_cast<size_t>(i)] = E4M3Decode(static_cast<uint8_t>(i));
      e8m0[static_cast<size_t>(i)] = E8M0Decode(static_cast<uint8_t>(i));
    }
  }
};

const DecodeTables& Tables() {
  static const DecodeTables t;
  return t;
}

template <typename T>
T Load(const QTensorView* t, size_t i) {
  T v;
  std::memcpy(&v, t->bytes.data() + i * sizeof(T), sizeof(T));
  return v;
}

}  // namespace

std::vector<QTensorView> Views(const std::vector<QTensor>& tensors) {
  std::vector<QTensorView> v;
  for (const auto& t : tensors) v.push_back({t.suffix, t.dtype, t.shape, t.bytes});
  return v;
}

Result<std::vector<float>> Dequantize(FormatId id, std::span<const QTensorView> tensors,
                                      int64_t rows, int64_t cols) {
  PQ_RETURN_IF_ERROR(CheckShape(id, rows, cols));
  const size_t n = static_cast<size_t>(rows), k = static_cast<size_t>(cols);
  std::vector<float> w(n * k);
  switch (id) {
    case FormatId::kBF16: {
      PQ_ASSIGN_OR_RETURN(auto* t, Require(tensors, "weight", DType::kBF16, {rows, cols}));
      for (size_t i = 0; i < n * k; ++i) w[i] = Bf16ToF32(Load<uint16_t>(t, i));
      break;
    }
    case FormatId::kNVFP4:
    case FormatId::kNVFP4A16: {
      // w = e2m1 * scale / global_scale (the same order of operations as compressed-tensors).
      PQ_ASSIGN_OR_RETURN(auto* p, Require(tensors, "weight_packed", DType::kU8, {rows, cols / 2}));
      PQ_ASSIGN_OR_RETURN(auto* s,
                          Require(tensors, "weight_scale", DType::kF8E4M3, {rows, cols / 16}));
      PQ_ASSIGN_OR_RETURN(auto* g, Require(tensors, "weight_global_scale", DType::kF32, {1}));
      if (id == FormatId::kNVFP4) {
        PQ_ASSIGN_OR_RETURN(auto* a, Require(tensors, "input_global_scale", DType::kF32, {1}));
        (void)a;
      }
      const float gs = Load<float>(g, 0);
      const DecodeTables& lut = Tables();
      for (size_t r = 0; r < n; ++r)
        for (size_t c0 = 0; c0 < k; c0 += 16) {
          const float scale = lut.e4m3[s->bytes[r * (k / 16) + c0 / 16]] / gs;
          for (size_t c = c0; c < c0 + 16; c += 2) {
            const uint8_t byte = p->bytes[r * (k / 2) + c / 2];
            w[r * k + c] = lut.e2m1[byte & 0xf] * scale;
            w[r * k + c + 1] = lut.e2m1[byte >> 4] * scale;
          }
        }
      break;
    }
    case FormatId::kMXFP8:
    case FormatId::kMXFP4: {
      const bool fp4 = id == FormatId::kMXFP4;
      const QTensorView* e;
      if (fp4) {
        PQ_ASSIGN_OR_RETURN(e, Require(tensors, "weight_packed", DType::kU8, {rows, cols / 2}));
      } else {
        PQ_ASSIGN_OR_RETURN(e, Require(tensors, "weight", DType::kF8E4M3, {rows, cols}));
      }
      PQ_ASSIGN_OR_RETURN(auto* s, Require(tensors, "weight_scale", DType::kU8, {rows, cols / 32}));
      const DecodeTables& lut = Tables();
      for (size_t r = 0; r < n; ++r)
        for (size_t c0 = 0; c0 < k; c0 += 32) {
          const float scale = lut.e8m0[s->bytes[r * (k / 32) + c0 / 32]];
          for (size_t c = c0; c < c0 + 32; ++c) {
            float v;
            if (fp4) {
              const uint8_t byte = e->bytes[r * (k / 2) + c / 2];
              v = lut.e2m1[c % 2 ? byte >> 4 : byte & 0xf];
            } else {
              v = lut.e4m3[e->bytes[r * k + c]];
            }
            w[r * k + c] = v * scale;
          }
        }
      break;
    }
    case FormatId::kFP8: {
      PQ_ASSIGN_OR_RETURN(auto* e, Require(tensors, "weight", DType::kF8E4M3, {rows, cols}));
      PQ_ASSIGN_OR_RETURN(auto* s, Require(tensors, "weight_scale", DType::kBF16, {rows, 1}));
      for (size_t r = 0; r < n; ++r) {
        const float scale = Bf16ToF32(Load<uint16_t>(s, r));
        for (size_t c = 0; c < k; ++c) w[r * k + c] = Tables().e4m3[e->bytes[r * k + c]] * scale;
      }
      break;
    }
    case FormatId::kINT4:
    case FormatId::kINT8: {
      const int bits = id == FormatId::kINT4 ? 4 : 8;
      const size_t per_word = 32 / static_cast<size_t>(bits);
      const size_t group = bits == 4 ? 128 : k;
      const auto words = static_cast<int64_t>((k + per_word - 1) / per_word);
      PQ_ASSIGN_OR_RETURN(auto* p, Require(tensors, "weight_packed", DType::kI32, {rows, words}));
      PQ_ASSIGN_OR_RETURN(auto* s, Require(tensors, "weight_scale", DType::kBF16,
                                           {rows, static_cast<int64_t>(k / group)}));
      PQ_ASSIGN_OR_RETURN(auto* shp, Require(tensors, "weight_shape", DType::kI64, {2}));
      if (Load<int64_t>(shp, 0) != rows || Load<int64_t>(shp, 1) != cols)
        return InvalidArgument("weight_shape does not match the Linear's shape");
      const uint32_t mask = (1u << bits) - 1;
      for (size_t r = 0; r < n; ++r)
        for (size_t c = 0; c < k; ++c) {
          const uint32_t word = Load<uint32_t>(p, r * static_cast<size_t>(words) + c / per_word);
          const auto u =
              static_cast<int>((word >> (static_cast<size_t>(bits) * (c % per_word))) & mask);
          const float q = static_cast<float>(u - (1 << (bits - 1)));
          w[r * k + c] = q * Bf16ToF32(Load<uint16_t>(s, r * (k / group) + c / group));
        }
      break;
    }
  }
  return w;
}

}  // namespace pq::formats
