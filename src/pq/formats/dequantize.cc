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

// Finds `spec`'s tensor in `tensors` and checks its dtype, `shape` and byte length.
Result<const QTensorView*> Require(std::span<const QTensorView> tensors, const TensorSpec& spec,
                                   const std::vector<int64_t>& shape) {
  const std::string suffix(spec.suffix);
  for (const auto& t : tensors) {
    if (t.suffix != spec.suffix) continue;
    if (t.dtype != spec.dtype)
      return InvalidArgument("tensor " + suffix + " has dtype " + std::string(DTypeName(t.dtype)) +
                             ", expected " + std::string(DTypeName(spec.dtype)));
    if (!std::equal(t.shape.begin(), t.shape.end(), shape.begin(), shape.end()))
      return InvalidArgument("tensor " + suffix + " has shape " + ShapeString(t.shape) +
                             ", expected " + ShapeString(shape));
    size_t bytes = DTypeSize(spec.dtype);
    for (int64_t d : shape) bytes *= static_cast<size_t>(d);
    if (t.bytes.size() != bytes)
      return InvalidArgument("tensor " + suffix + " has the wrong byte length");
    return &t;
  }
  return NotFound("missing tensor " + suffix);
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

// w = e2m1 * scale / global_scale (the same order of operations as compressed-tensors).
// p: [n, k/2] codes, s: [n, k/16] E4M3, g: [1] f32 -> w [n, k].
void DecodeNvFp4(const QTensorView* p, const QTensorView* s, const QTensorView* g, size_t n,
                 size_t k, std::vector<float>& w) {
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
}

// e: [n, k/2] FP4 codes or [n, k] E4M3, s: [n, k/32] E8M0 -> w [n, k].
void DecodeMx(bool fp4, const QTensorView* e, const QTensorView* s, size_t n, size_t k,
              std::vector<float>& w) {
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
}

// p: [n, ceil(k*bits/32)] int32 words, s: [n, k/group] bf16 -> w [n, k].
void DecodeInt(const FormatSpec& f, const QTensorView* p, const QTensorView* s, size_t n, size_t k,
               std::vector<float>& w) {
  const int bits = f.element_bits;
  const size_t per_word = 32 / static_cast<size_t>(bits);
  const size_t group =
      f.scale_layout == ScaleLayout::kGroup ? static_cast<size_t>(f.group_size) : k;
  const size_t words = (k + per_word - 1) / per_word;
  const uint32_t mask = (1u << bits) - 1;
  for (size_t r = 0; r < n; ++r)
    for (size_t c = 0; c < k; ++c) {
      const uint32_t word = Load<uint32_t>(p, r * words + c / per_word);
      const auto u =
          static_cast<int>((word >> (static_cast<size_t>(bits) * (c % per_word))) & mask);
      const float q = static_cast<float>(u - (1 << (bits - 1)));
      w[r * k + c] = q * Bf16ToF32(Load<uint16_t>(s, r * (k / group) + c / group));
    }
}

}  // namespace

std::vector<QTensorView> Views(const std::vector<QTensor>& tensors) {
  std::vector<QTensorView> v;
  for (const auto& t : tensors) v.push_back({t.suffix, t.dtype, t.shape, t.bytes});
  return v;
}

Result<MatchedTensors> MatchTensors(FormatId id, std::span<const QTensorView> tensors, int64_t rows,
                                    int64_t cols) {
  PQ_RETURN_IF_ERROR(CheckShape(id, rows, cols));
  const FormatSpec& f = Spec(id);
  MatchedTensors out{id, {}};
  for (const TensorSpec& spec : f.tensors) {
    PQ_ASSIGN_OR_RETURN(const QTensorView* t,
                        Require(tensors, spec, TensorShape(f, spec, rows, cols)));
    if (spec.role == TensorRole::kShape &&
        (Load<int64_t>(t, 0) != rows || Load<int64_t>(t, 1) != cols))
      return InvalidArgument(std::string(spec.suffix) + " does not match the Linear's shape");
    out.views.push_back(t);
  }
  return out;
}

Result<std::vector<float>> Dequantize(FormatId id, std::span<const QTensorView> tensors,
                                      int64_t rows, int64_t cols) {
  PQ_ASSIGN_OR_RETURN(const MatchedTensors m, MatchTensors(id, tensors, rows, cols));
  const size_t n = static_cast<size_t>(rows), k = static_cast<size_t>(cols);
  std::vector<float> w(n * k);
  const QTensorView* e = &m.Get(TensorRole::kElements);
  switch (id) {
    case FormatId::kBF16:
      for (size_t i = 0; i < n * k; ++i) w[i] = Bf16ToF32(Load<uint16_t>(e, i));
      break;
    case FormatId::kNVFP4:
    case FormatId::kNVFP4A16:
      DecodeNvFp4(e, &m.Get(TensorRole::kScales), &m.Get(TensorRole::kWeightGlobalScale), n, k, w);
      break;
    case FormatId::kMXFP8:
    case FormatId::kMXFP4:
      DecodeMx(id == FormatId::kMXFP4, e, &m.Get(TensorRole::kScales), n, k, w);
      break;
    case FormatId::kFP8: {
      const QTensorView* s = &m.Get(TensorRole::kScales);
      for (size_t r = 0; r < n; ++r) {
        const float scale = Bf16ToF32(Load<uint16_t>(s, r));
        for (size_t c = 0; c < k; ++c) w[r * k + c] = Tables().e4m3[e->bytes[r * k + c]] * scale;
      }
      break;
    }
    case FormatId::kINT4:
    case FormatId::kINT8:
      DecodeInt(Spec(id), e, &m.Get(TensorRole::kScales), n, k, w);
      break;
  }
  return w;
}

}  // namespace pq::formats
