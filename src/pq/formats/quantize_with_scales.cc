// Quantization with given scales (quantize_with_scales.h). The scale rule is RTN's own
// reference kernel run on one group; the element arithmetic repeats rtn_ref.cc's formulas
// (quantize_with_scales_test.cc checks byte equality with QuantizeRtn on every format).
#include "pq/formats/quantize_with_scales.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "pq/core/check.h"
#include "pq/core/minifloat.h"
#include "pq/core/thread_pool.h"
#include "pq/formats/codecs.h"
#include "pq/formats/rtn_kernels.h"

namespace pq::formats {
namespace {

bool IsNvFp4(FormatId id) { return id == FormatId::kNVFP4 || id == FormatId::kNVFP4A16; }
bool IsMx(FormatId id) { return id == FormatId::kMXFP4 || id == FormatId::kMXFP8; }
bool IsFp4Elements(FormatId id) { return IsNvFp4(id) || id == FormatId::kMXFP4; }
constexpr int IntBits(FormatId id) { return id == FormatId::kINT4 ? 4 : 8; }

int64_t GroupSize(FormatId id, int64_t cols) {
  const FormatSpec& f = Spec(id);
  return f.scale_layout == ScaleLayout::kGroup ? f.group_size : cols;
}

// E8M0 code of a stored power-of-two scale 2^(code - 127) (subnormal 2^-127 included).
uint8_t E8M0Code(float s) { return static_cast<uint8_t>(std::ilogb(s) + 127); }

uint8_t ScaleCode(FormatId id, float s) {  // NVFP4 (E4M3) and MX (E8M0) only
  return IsNvFp4(id) ? E4M3EncodeSat(s) : E8M0Code(s);
}

std::string At(int64_t row, int64_t group) {
  return "row " + std::to_string(row) + ", group " + std::to_string(group);
}

template <typename T>
void Put(QTensor& t, size_t index, T value) {
  std::memcpy(t.bytes.data() + index * sizeof(T), &value, sizeof(T));
}
template <typename T>
T Get(const QTensorView& t, size_t index) {
  T v;
  std::memcpy(&v, t.bytes.data() + index * sizeof(T), sizeof(T));
  return v;
}

Status CheckScales(const GroupCodec& codec, std::span<const float> scales, int64_t rows) {
  const int64_t groups = codec.groups_per_row();
  if (scales.size() != static_cast<size_t>(rows * groups))
    return InvalidArgument("expected " + std::to_string(rows * groups) + " scales ([" +
                           std::to_string(rows) + ", " + std::to_string(groups) + "]), got " +
                           std::to_string(scales.size()));
  for (int64_t i = 0; i < rows * groups; ++i)
    if (!codec.IsStorableScale(scales[static_cast<size_t>(i)]))
      return InvalidArgument("scale " + std::to_string(scales[static_cast<size_t>(i)]) + " at " +
                             At(i / groups, i % groups) + " is not a stored " +
                             std::string(Spec(codec.id()).name) + " scale");
  return Status::Ok();
}

Status CheckCodes(FormatId id, std::span<const uint8_t> codes) {
  for (size_t i = 0; i < codes.size(); ++i) {
    const uint8_t c = codes[i];
    const bool nibble = IsFp4Elements(id) || id == FormatId::kINT4;
    const bool e4m3 = id == FormatId::kMXFP8 || id == FormatId::kFP8;
    if ((nibble && c > 15) || (e4m3 && (c & 0x7f) == 0x7f))
      return InvalidArgument("invalid " + std::string(Spec(id).name) + " code " +
                             std::to_string(c) + " at element " + std::to_string(i));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- packing
void PackNibbles(std::span<const uint8_t> codes, QTensor& packed) {
  for (size_t j = 0; j < codes.size() / 2; ++j)
    packed.bytes[j] = static_cast<uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
}

// INT: little-endian int32 words, element i at bits [b*i, b*i + b); padding bits are 0.
void PackIntWords(int bits, std::span<const uint8_t> codes, int64_t rows, int64_t cols,
                  QTensor& packed) {
  const auto per_word = static_cast<size_t>(32 / bits);
  const size_t k = static_cast<size_t>(cols), words = (k + per_word - 1) / per_word;
  for (size_t r = 0; r < static_cast<size_t>(rows); ++r)
    for (size_t w = 0; w < words; ++w) {
      uint32_t word = 0;
      for (size_t i = 0; i < per_word && w * per_word + i < k; ++i)
        word |= static_cast<uint32_t>(codes[r * k + w * per_word + i]) << (bits * i);
      Put<uint32_t>(packed, r * words + w, word);
    }
}

// Fills the tensors of `id`'s layout (MakeTensors) from valid codes and scales.
std::vector<QTensor> PackValid(FormatId id, const QCodes& q, int64_t rows, int64_t cols) {
  std::vector<QTensor> out = MakeTensors(id, rows, cols);
  QTensor& elems = TensorOf(id, out, TensorRole::kElements);
  if (IsFp4Elements(id))
    PackNibbles(q.codes, elems);
  else if (id == FormatId::kMXFP8 || id == FormatId::kFP8)
    elems.bytes.assign(q.codes.begin(), q.codes.end());
  else
    PackIntWords(IntBits(id), q.codes, rows, cols, elems);
  QTensor& scale = TensorOf(id, out, TensorRole::kScales);
  for (size_t i = 0; i < q.scales.size(); ++i) {
    if (IsNvFp4(id) || IsMx(id))
      scale.bytes[i] = ScaleCode(id, q.scales[i]);
    else
      Put<uint16_t>(scale, i, F32ToBf16(q.scales[i]));
  }
  if (FindTensor(id, TensorRole::kWeightGlobalScale))
    Put<float>(TensorOf(id, out, TensorRole::kWeightGlobalScale), 0, q.weight_global_scale);
  if (FindTensor(id, TensorRole::kInputGlobalScale))
    Put<float>(TensorOf(id, out, TensorRole::kInputGlobalScale), 0, *q.input_global_scale);
  return out;
}

// ---------------------------------------------------------------- unpacking
void UnpackNibbles(const QTensorView& p, std::vector<uint8_t>& codes) {
  for (size_t j = 0; j < codes.size() / 2; ++j) {
    codes[2 * j] = p.bytes[j] & 0xf;
    codes[2 * j + 1] = static_cast<uint8_t>(p.bytes[j] >> 4);
  }
}

Status UnpackElements(FormatId id, const MatchedTensors& matched, int64_t rows, int64_t cols,
                      QCodes& q) {
  q.codes.resize(static_cast<size_t>(rows * cols));
  const QTensorView& e = matched.Get(TensorRole::kElements);
  if (IsFp4Elements(id)) {
    UnpackNibbles(e, q.codes);
  } else if (id == FormatId::kMXFP8 || id == FormatId::kFP8) {
    q.codes.assign(e.bytes.begin(), e.bytes.end());
  } else {
    const int bits = IntBits(id), per_word = 32 / bits;
    const int64_t words = (cols + per_word - 1) / per_word;
    const uint32_t mask = (1u << bits) - 1;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const uint32_t word = Get<uint32_t>(e, static_cast<size_t>(r * words + c / per_word));
        q.codes[static_cast<size_t>(r * cols + c)] =
            static_cast<uint8_t>((word >> (bits * (c % per_word))) & mask);
      }
  }
  return CheckCodes(id, q.codes);
}

Status UnpackScales(FormatId id, const MatchedTensors& matched, int64_t rows, int64_t groups,
                    QCodes& q) {
  q.scales.resize(static_cast<size_t>(rows * groups));
  const QTensorView& s = matched.Get(TensorRole::kScales);
  for (size_t i = 0; i < q.scales.size(); ++i) {
    if (IsNvFp4(id))
      q.scales[i] = E4M3Decode(s.bytes[i]);
    else if (IsMx(id))
      q.scales[i] = E8M0Decode(s.bytes[i]);
    else
      q.scales[i] = Bf16ToF32(Get<uint16_t>(s, i));
  }
  if (FindTensor(id, TensorRole::kWeightGlobalScale)) {
    q.weight_global_scale = Get<float>(matched.Get(TensorRole::kWeightGlobalScale), 0);
    if (!(std::isfinite(q.weight_global_scale) && q.weight_global_scale > 0.0f))
      return InvalidArgument("weight_global_scale is not a positive finite number");
  }
  if (FindTensor(id, TensorRole::kInputGlobalScale))
    q.input_global_scale = Get<float>(matched.Get(TensorRole::kInputGlobalScale), 0);
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------- GroupCodec
Result<GroupCodec> GroupCodec::Create(FormatId id, int64_t cols, float weight_global_scale) {
  if (id == FormatId::kBF16) return InvalidArgument("BF16 is not quantized: it has no codes");
  PQ_RETURN_IF_ERROR(CheckShape(id, 1, cols));
  if (IsNvFp4(id) && !(std::isfinite(weight_global_scale) && weight_global_scale > 0.0f))
    return InvalidArgument("NVFP4 weight_global_scale must be positive and finite, got " +
                           std::to_string(weight_global_scale));
  return GroupCodec(id, cols, GroupSize(id, cols), IsNvFp4(id) ? weight_global_scale : 1.0f);
}

float GroupCodec::RtnScale(std::span<const float> x) const {
  PQ_CHECK(static_cast<int64_t>(x.size()) == group_, "RtnScale: x must hold one group");
  const size_t n = x.size();
  switch (id_) {
    case FormatId::kNVFP4:
    case FormatId::kNVFP4A16: {
      std::array<uint8_t, 8> packed;
      uint8_t code;
      ref::NvFp4Rows(x.data(), 0, 1, n, gs_, packed.data(), &code);
      return E4M3Decode(code);
    }
    case FormatId::kMXFP4:
    case FormatId::kMXFP8: {
      std::array<uint8_t, 32> elems;
      uint8_t code;
      ref::MxRows(id_ == FormatId::kMXFP4, x.data(), 0, 1, n, elems.data(), &code);
      return E8M0Decode(code);
    }
    case FormatId::kFP8: {
      std::vector<uint8_t> elems(n);
      uint16_t s;
      ref::Fp8Rows(x.data(), 0, 1, n, elems.data(), &s);
      return Bf16ToF32(s);
    }
    case FormatId::kINT4:
    case FormatId::kINT8: {
      std::vector<uint32_t> words(n);
      uint16_t s;
      ref::IntRows(IntBits(id_), x.data(), 0, 1, n, n, words.data(), &s);
      return Bf16ToF32(s);
    }
    case FormatId::kBF16:
      break;
  }
  PQ_CHECK(false, "RtnScale: BF16 has no scales");
  return 0.0f;
}

namespace {

// rtn_ref.cc's element arithmetic for format F, one element at a time (gs: NVFP4's global
// scale). Templates, so QuantDequant's loops below are compiled once per format.
template <FormatId F>
inline uint8_t EncodeAs(float x, float scale, float gs) {
  if constexpr (F == FormatId::kNVFP4 || F == FormatId::kNVFP4A16) {
    return E2M1Encode(std::clamp(x / (scale / gs), -kFp4Max, kFp4Max));
  } else if constexpr (F == FormatId::kMXFP4) {
    return E2M1Encode(std::clamp(x * (1.0f / scale), -kFp4Max, kFp4Max));  // 1/2^e exact
  } else if constexpr (F == FormatId::kMXFP8) {
    return E4M3EncodeSat(x * (1.0f / scale));
  } else if constexpr (F == FormatId::kFP8) {
    return E4M3EncodeSat(std::clamp(RoundBf16(x / scale), -kFp8Max, kFp8Max));
  } else {  // INT4, INT8
    const int half = 1 << (IntBits(F) - 1);
    const float q = std::nearbyint(
        std::clamp(RoundBf16(x / scale), static_cast<float>(-half), static_cast<float>(half - 1)));
    return static_cast<uint8_t>(static_cast<int>(q) + half);
  }
}

// dequantize.cc's arithmetic.
template <FormatId F>
inline float DecodeAs(uint8_t code, float scale, float gs) {
  if constexpr (F == FormatId::kNVFP4 || F == FormatId::kNVFP4A16) {
    return E2M1Decode(code) * (scale / gs);
  } else if constexpr (F == FormatId::kMXFP4) {
    return E2M1Decode(code) * scale;
  } else if constexpr (F == FormatId::kMXFP8 || F == FormatId::kFP8) {
    return E4M3Decode(code) * scale;
  } else {  // INT4, INT8
    return static_cast<float>(static_cast<int>(code) - (1 << (IntBits(F) - 1))) * scale;
  }
}

// fn(integral_constant<FormatId, id>) for a quantized format id; false for BF16.
template <typename Fn>
bool Dispatch(FormatId id, Fn&& fn) {
  switch (id) {
    case FormatId::kNVFP4:
      return fn(std::integral_constant<FormatId, FormatId::kNVFP4>{}), true;
    case FormatId::kNVFP4A16:
      return fn(std::integral_constant<FormatId, FormatId::kNVFP4A16>{}), true;
    case FormatId::kMXFP4:
      return fn(std::integral_constant<FormatId, FormatId::kMXFP4>{}), true;
    case FormatId::kMXFP8:
      return fn(std::integral_constant<FormatId, FormatId::kMXFP8>{}), true;
    case FormatId::kFP8:
      return fn(std::integral_constant<FormatId, FormatId::kFP8>{}), true;
    case FormatId::kINT4:
      return fn(std::integral_constant<FormatId, FormatId::kINT4>{}), true;
    case FormatId::kINT8:
      return fn(std::integral_constant<FormatId, FormatId::kINT8>{}), true;
    case FormatId::kBF16:
      break;
  }
  return false;
}

}  // namespace

uint8_t GroupCodec::Encode(float x, float scale) const {
  uint8_t code = 0;
  Dispatch(id_, [&](auto f) { code = EncodeAs<decltype(f)::value>(x, scale, gs_); });
  return code;
}

float GroupCodec::Decode(uint8_t code, float scale) const {
  float v = 0.0f;
  Dispatch(id_, [&](auto f) { v = DecodeAs<decltype(f)::value>(code, scale, gs_); });
  return v;
}

void GroupCodec::QuantDequant(std::span<const float> x, float scale, std::span<float> out) const {
  PQ_CHECK(out.size() == x.size(), "QuantDequant: size mismatch");
  Dispatch(id_, [&](auto f) {
    constexpr FormatId F = decltype(f)::value;
    for (size_t i = 0; i < x.size(); ++i)
      out[i] = DecodeAs<F>(EncodeAs<F>(x[i], scale, gs_), scale, gs_);
  });
}

void GroupCodec::QuantizeColumn(std::span<const float> x, std::span<const float> scales,
                                std::span<uint8_t> codes, std::span<float> values) const {
  PQ_CHECK(scales.size() == x.size() && codes.size() == x.size() && values.size() == x.size(),
           "QuantizeColumn: size mismatch");
  for (size_t r = 0; r < x.size(); ++r) {
    codes[r] = Encode(x[r], scales[r]);
    values[r] = Decode(codes[r], scales[r]);
  }
}

float GroupCodec::RoundScale(float s) const {
  if (!(s > 0.0f)) return 0.0f;
  if (IsNvFp4(id_)) return E4M3Decode(E4M3EncodeSat(s));
  if (IsMx(id_)) {
    const uint8_t code = E8M0Encode(std::isinf(s) ? std::ldexp(1.0f, 127) : s);
    return E8M0Decode(code);
  }
  return RoundBf16(s);
}

bool GroupCodec::IsStorableScale(float s) const {
  if (!(std::isfinite(s) && s > 0.0f)) return false;
  if (IsNvFp4(id_)) return s <= kFp8Max && E4M3Decode(E4M3EncodeSat(s)) == s;
  if (IsMx(id_)) {
    int e;
    return std::frexp(s, &e) == 0.5f && e - 1 >= -127 && e - 1 <= 127;
  }
  return RoundBf16(s) == s;
}

// ---------------------------------------------------------------- tensors
Result<std::vector<QTensor>> PackCodes(FormatId id, const QCodes& q, int64_t rows, int64_t cols) {
  PQ_RETURN_IF_ERROR(CheckShape(id, rows, cols));
  PQ_ASSIGN_OR_RETURN(const GroupCodec codec, GroupCodec::Create(id, cols, q.weight_global_scale));
  if (q.codes.size() != static_cast<size_t>(rows * cols))
    return InvalidArgument("expected " + std::to_string(rows * cols) + " codes, got " +
                           std::to_string(q.codes.size()));
  PQ_RETURN_IF_ERROR(CheckScales(codec, q.scales, rows));
  PQ_RETURN_IF_ERROR(CheckCodes(id, q.codes));
  if (id == FormatId::kNVFP4 && !q.input_global_scale)
    return InvalidArgument("NVFP4 (W4A4) needs an input_global_scale");
  return PackValid(id, q, rows, cols);
}

Result<QCodes> UnpackCodes(FormatId id, std::span<const QTensorView> tensors, int64_t rows,
                           int64_t cols) {
  PQ_RETURN_IF_ERROR(CheckShape(id, rows, cols));
  if (id == FormatId::kBF16) return InvalidArgument("BF16 is not quantized: it has no codes");
  PQ_ASSIGN_OR_RETURN(const MatchedTensors matched, MatchTensors(id, tensors, rows, cols));
  QCodes q;
  PQ_RETURN_IF_ERROR(UnpackScales(id, matched, rows, cols / GroupSize(id, cols), q));
  PQ_RETURN_IF_ERROR(UnpackElements(id, matched, rows, cols, q));
  PQ_ASSIGN_OR_RETURN(const GroupCodec codec, GroupCodec::Create(id, cols, q.weight_global_scale));
  PQ_RETURN_IF_ERROR(CheckScales(codec, q.scales, rows));
  return q;
}

float WeightGlobalScale(FormatId id, std::span<const float> weight,
                        const QuantizeOptions& options) {
  if (!IsNvFp4(id)) return 1.0f;
  if (options.weight_global_scale) return *options.weight_global_scale;
  return NvFp4GlobalScale(fast::AbsMax(weight.data(), weight.size()));
}

Result<std::vector<QTensor>> QuantizeWithScales(FormatId id, std::span<const float> weight,
                                                int64_t rows, int64_t cols,
                                                std::span<const float> scales,
                                                const QuantizeOptions& options) {
  PQ_RETURN_IF_ERROR(CheckShape(id, rows, cols));
  if (weight.size() != static_cast<size_t>(rows * cols))
    return InvalidArgument("weight has " + std::to_string(weight.size()) + " values, shape [" +
                           std::to_string(rows) + ", " + std::to_string(cols) + "] needs " +
                           std::to_string(rows * cols));
  for (size_t i = 0; i < weight.size(); ++i)
    if (!std::isfinite(weight[i]))
      return InvalidArgument("weight element " + std::to_string(i) +
                             " is not finite; cannot quantize");
  QCodes q;
  q.weight_global_scale = WeightGlobalScale(id, weight, options);
  q.input_global_scale = options.input_global_scale;
  PQ_ASSIGN_OR_RETURN(const GroupCodec codec, GroupCodec::Create(id, cols, q.weight_global_scale));
  PQ_RETURN_IF_ERROR(CheckScales(codec, scales, rows));
  q.scales.assign(scales.begin(), scales.end());
  q.codes.resize(weight.size());
  const auto k = static_cast<size_t>(cols), group = static_cast<size_t>(codec.group_size());
  const size_t groups = k / group;
  ParallelFor(static_cast<size_t>(rows), options.num_threads, [&](size_t b, size_t e) {
    for (size_t r = b; r < e; ++r)
      for (size_t c = 0; c < k; ++c)
        q.codes[r * k + c] = codec.Encode(weight[r * k + c], scales[r * groups + c / group]);
  });
  return PackCodes(id, q, rows, cols);
}

}  // namespace pq::formats
