#include <algorithm>
#include <array>
#include <cctype>

#include "pq/core/check.h"
#include "pq/formats/format.h"

namespace pq::formats {
namespace {

constexpr std::array<FormatSpec, 8> kFormats = {{
    {FormatId::kBF16, "BF16", "", ScaleLayout::kNone, 0, 16, false, false,
     "unquantized bf16 weight (module listed in `ignore`)"},
    {FormatId::kNVFP4, "NVFP4", "nvfp4-pack-quantized", ScaleLayout::kGroup, 16, 4, true, true,
     "FP4 E2M1 weights and activations, E4M3 scale per 16, FP32 global scales (W4A4)"},
    {FormatId::kNVFP4A16, "NVFP4A16", "nvfp4-pack-quantized", ScaleLayout::kGroup, 16, 4, false,
     false, "NVFP4 weights, bf16 activations (W4A16)"},
    {FormatId::kMXFP8, "MXFP8", "mxfp8-quantized", ScaleLayout::kGroup, 32, 8, true, false,
     "E4M3 weights, E8M0 scale per 32; dynamic MXFP8 activations"},
    {FormatId::kMXFP4, "MXFP4", "mxfp4-pack-quantized", ScaleLayout::kGroup, 32, 4, true, false,
     "E2M1 weights, E8M0 scale per 32; dynamic MXFP4 activations"},
    {FormatId::kFP8, "FP8", "float-quantized", ScaleLayout::kChannel, 0, 8, true, false,
     "E4M3 weights, bf16 scale per output channel; dynamic per-token FP8 activations"},
    {FormatId::kINT4, "INT4", "pack-quantized", ScaleLayout::kGroup, 128, 4, false, false,
     "symmetric int4 weights, bf16 scale per 128 inputs (W4A16)"},
    {FormatId::kINT8, "INT8", "pack-quantized", ScaleLayout::kChannel, 0, 8, false, false,
     "symmetric int8 weights, bf16 scale per output channel (W8A16)"},
}};

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

uint64_t BytesOnDisk(FormatId id, int64_t rows, int64_t cols) {
  const uint64_t n = U(rows), k = U(cols);
  switch (id) {
    case FormatId::kBF16:
      return n * k * 2;
    case FormatId::kNVFP4A16:
      return n * k / 2 + n * (k / 16) + 4;
    case FormatId::kNVFP4:
      return n * k / 2 + n * (k / 16) + 4 + 4;
    case FormatId::kMXFP8:
      return n * k + n * (k / 32);
    case FormatId::kMXFP4:
      return n * k / 2 + n * (k / 32);
    case FormatId::kFP8:
      return n * k + n * 2;
    case FormatId::kINT4:
      return n * ((k * 4 + 31) / 32) * 4 + n * (k / 128) * 2 + 2 * 8;
    case FormatId::kINT8:
      return n * ((k * 8 + 31) / 32) * 4 + n * 2 + 2 * 8;
  }
  return 0;
}

std::vector<std::string_view> TensorSuffixes(FormatId id) {
  switch (id) {
    case FormatId::kBF16:
      return {"weight"};
    case FormatId::kNVFP4:
      return {"weight_packed", "weight_scale", "weight_global_scale", "input_global_scale"};
    case FormatId::kNVFP4A16:
      return {"weight_packed", "weight_scale", "weight_global_scale"};
    case FormatId::kMXFP8:
      return {"weight", "weight_scale"};
    case FormatId::kMXFP4:
      return {"weight_packed", "weight_scale"};
    case FormatId::kFP8:
      return {"weight", "weight_scale"};
    case FormatId::kINT4:
    case FormatId::kINT8:
      return {"weight_packed", "weight_scale", "weight_shape"};
  }
  return {};
}

QTensor MakeTensor(std::string suffix, DType dtype, std::vector<int64_t> shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  QTensor t{std::move(suffix), dtype, std::move(shape), {}};
  t.bytes.assign(static_cast<size_t>(numel) * DTypeSize(dtype), 0);
  return t;
}

}  // namespace pq::formats
