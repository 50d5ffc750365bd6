#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

#include "pq/core/check.h"
#include "pq/formats/format.h"

namespace pq::formats {
namespace {

using R = TensorRole;
using S = ShapeRule;

// The on-disk layouts (compressed-tensors-format.md §2).
constexpr TensorSpec kBf16Tensors[] = {
    {kSuffixWeight, DType::kBF16, S::kDense, R::kElements},
};
constexpr TensorSpec kNvFp4Tensors[] = {
    {kSuffixWeightPacked, DType::kU8, S::kPacked4, R::kElements},
    {kSuffixWeightScale, DType::kF8E4M3, S::kGroupScales, R::kScales},
    {kSuffixWeightGlobalScale, DType::kF32, S::kScalar, R::kWeightGlobalScale},
    {kSuffixInputGlobalScale, DType::kF32, S::kScalar, R::kInputGlobalScale},
};
constexpr std::span<const TensorSpec> kNvFp4A16Tensors{kNvFp4Tensors, 3};  // no input scale
constexpr TensorSpec kMxFp8Tensors[] = {
    {kSuffixWeight, DType::kF8E4M3, S::kDense, R::kElements},
    {kSuffixWeightScale, DType::kU8, S::kGroupScales, R::kScales},  // E8M0 codes
};
constexpr TensorSpec kMxFp4Tensors[] = {
    {kSuffixWeightPacked, DType::kU8, S::kPacked4, R::kElements},
    {kSuffixWeightScale, DType::kU8, S::kGroupScales, R::kScales},  // E8M0 codes
};
constexpr TensorSpec kFp8Tensors[] = {
    {kSuffixWeight, DType::kF8E4M3, S::kDense, R::kElements},
    {kSuffixWeightScale, DType::kBF16, S::kChannelScales, R::kScales},
};
constexpr TensorSpec kInt4Tensors[] = {
    {kSuffixWeightPacked, DType::kI32, S::kPackedWords, R::kElements},
    {kSuffixWeightScale, DType::kBF16, S::kGroupScales, R::kScales},
    {kSuffixWeightShape, DType::kI64, S::kPair, R::kShape},
};
constexpr TensorSpec kInt8Tensors[] = {
    {kSuffixWeightPacked, DType::kI32, S::kPackedWords, R::kElements},
    {kSuffixWeightScale, DType::kBF16, S::kChannelScales, R::kScales},
    {kSuffixWeightShape, DType::kI64, S::kPair, R::kShape},
};

constexpr std::array<FormatSpec, 8> kFormats = {{
    {FormatId::kBF16, "BF16", "", ScaleLayout::kNone, 0, 16, false, false,
     "unquantized bf16 weight (module listed in `ignore`)", kBf16Tensors},
    {FormatId::kNVFP4, "NVFP4", "nvfp4-pack-quantized", ScaleLayout::kGroup, 16, 4, true, true,
     "FP4 E2M1 weights and activations, E4M3 scale per 16, FP32 global scales (W4A4)",
     kNvFp4Tensors},
    {FormatId::kNVFP4A16, "NVFP4A16", "nvfp4-pack-quantized", ScaleLayout::kGroup, 16, 4, false,
     false, "NVFP4 weights, bf16 activations (W4A16)", kNvFp4A16Tensors},
    {FormatId::kMXFP8, "MXFP8", "mxfp8-quantized", ScaleLayout::kGroup, 32, 8, true, false,
     "E4M3 weights, E8M0 scale per 32; dynamic MXFP8 activations", kMxFp8Tensors},
    {FormatId::kMXFP4, "MXFP4", "mxfp4-pack-quantized", ScaleLayout::kGroup, 32, 4, true, false,
     "E2M1 weights, E8M0 scale per 32; dynamic MXFP4 activations", kMxFp4Tensors},
    {FormatId::kFP8, "FP8", "float-quantized", ScaleLayout::kChannel, 0, 8, true, false,
     "E4M3 weights, bf16 scale per output channel; dynamic per-token FP8 activations", kFp8Tensors},
    {FormatId::kINT4, "INT4", "pack-quantized", ScaleLayout::kGroup, 128, 4, false, false,
     "symmetric int4 weights, bf16 scale per 128 inputs (W4A16)", kInt4Tensors},
    {FormatId::kINT8, "INT8", "pack-quantized", ScaleLayout::kChannel, 0, 8, false, false,
     "symmetric int8 weights, bf16 scale per output channel (W8A16)", kInt8Tensors},
}};

// A zero-filled tensor of `shape`.
QTensor MakeTensor(std::string_view suffix, DType dtype, std::vector<int64_t> shape,
                   bool zero_fill) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  QTensor t{std::string(suffix), dtype, std::move(shape), {}};
  const size_t n = static_cast<size_t>(numel) * DTypeSize(dtype);
  if (zero_fill)
    t.bytes.assign(n, 0);
  else
    t.bytes.resize(n);
  return t;
}

uint64_t U(int64_t v) { return static_cast<uint64_t>(v); }

}  // namespace

std::span<const FormatSpec> AllFormats() { return kFormats; }

const FormatSpec& Spec(FormatId id) {
  for (const auto& f : kFormats)
    if (f.id == id) return f;
  PQ_CHECK(false, "FormatId missing from the format table");
}

std::optional<FormatId> ParseFormat(std::string_view name) {
  for (const auto& f : kFormats) {
    if (f.name.size() != name.size()) continue;
    if (std::equal(f.name.begin(), f.name.end(), name.begin(), [](char a, char b) {
          return std::toupper(static_cast<unsigned char>(a)) ==
                 std::toupper(static_cast<unsigned char>(b));
        }))
      return f.id;
  }
  return std::nullopt;
}

std::string FormatNameList() {
  std::string s;
  for (const auto& f : kFormats) {
    if (!s.empty()) s += ", ";
    s += f.name;
  }
  return s;
}

Status CheckShape(FormatId id, int64_t rows, int64_t cols) {
  const FormatSpec& f = Spec(id);
  if (rows <= 0 || cols <= 0)
    return InvalidArgument(std::string(f.name) + " needs a non-empty 2-D weight, got [" +
                           std::to_string(rows) + ", " + std::to_string(cols) + "]");
  if (f.scale_layout == ScaleLayout::kGroup && cols % f.group_size != 0)
    return InvalidArgument(std::string(f.name) + " needs in_features divisible by " +
                           std::to_string(f.group_size) + ", got " + std::to_string(cols));
  if (f.element_bits == 4 && cols % 2 != 0)
    return InvalidArgument(std::string(f.name) +
                           " packs two values per byte and needs even "
                           "in_features, got " +
                           std::to_string(cols));
  return Status::Ok();
}

std::vector<int64_t> TensorShape(const FormatSpec& f, const TensorSpec& t, int64_t rows,
                                 int64_t cols) {
  switch (t.shape) {
    case ShapeRule::kDense:
      return {rows, cols};
    case ShapeRule::kPacked4:
      return {rows, cols / 2};
    case ShapeRule::kPackedWords:
      return {rows, (cols * f.element_bits + 31) / 32};
    case ShapeRule::kGroupScales:
      return {rows, cols / f.group_size};
    case ShapeRule::kChannelScales:
      return {rows, 1};
    case ShapeRule::kScalar:
      return {1};
    case ShapeRule::kPair:
      return {2};
  }
  PQ_CHECK(false, "ShapeRule missing from TensorShape");
}

const TensorSpec* FindTensor(FormatId id, std::string_view suffix) {
  for (const TensorSpec& t : Spec(id).tensors)
    if (t.suffix == suffix) return &t;
  return nullptr;
}

const TensorSpec* FindTensor(FormatId id, TensorRole role) {
  for (const TensorSpec& t : Spec(id).tensors)
    if (t.role == role) return &t;
  return nullptr;
}

uint64_t BytesOnDisk(FormatId id, int64_t rows, int64_t cols) {
  const FormatSpec& f = Spec(id);
  uint64_t bytes = 0;
  for (const TensorSpec& t : f.tensors) {
    uint64_t n = DTypeSize(t.dtype);
    for (int64_t d : TensorShape(f, t, rows, cols)) n *= U(d);
    bytes += n;
  }
  return bytes;
}

std::vector<std::string_view> TensorSuffixes(FormatId id) {
  std::vector<std::string_view> s;
  for (const TensorSpec& t : Spec(id).tensors) s.push_back(t.suffix);
  return s;
}

std::vector<QTensor> MakeTensors(FormatId id, int64_t rows, int64_t cols, bool zero_fill) {
  const FormatSpec& f = Spec(id);
  std::vector<QTensor> out;
  for (const TensorSpec& t : f.tensors) {
    out.push_back(MakeTensor(t.suffix, t.dtype, TensorShape(f, t, rows, cols), zero_fill));
    if (t.role == TensorRole::kShape) {
      const int64_t shape[2] = {rows, cols};
      std::memcpy(out.back().bytes.data(), shape, sizeof shape);
    }
  }
  return out;
}

namespace {
// Index of the tensor with `role` in Spec(id).tensors; the format must store one.
size_t IndexOf(FormatId id, TensorRole role) {
  const TensorSpec* t = FindTensor(id, role);
  PQ_CHECK(t != nullptr, "the format stores no tensor with this role");
  return static_cast<size_t>(t - Spec(id).tensors.data());
}
}  // namespace

QTensor& TensorOf(FormatId id, std::vector<QTensor>& tensors, TensorRole role) {
  const size_t i = IndexOf(id, role);
  PQ_CHECK(i < tensors.size(), "TensorOf: not MakeTensors' output");
  return tensors[i];
}

const QTensorView& MatchedTensors::Get(TensorRole role) const {
  const size_t i = IndexOf(id, role);
  PQ_CHECK(i < views.size(), "MatchedTensors: not MatchTensors' output");
  return *views[i];
}

}  // namespace pq::formats
