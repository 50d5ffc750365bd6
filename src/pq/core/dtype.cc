#include "pq/core/dtype.h"

#include <array>
#include <cstring>

#include "pq/core/check.h"
#include "pq/core/minifloat.h"

namespace pq {
namespace {

struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t size;
  bool is_float;
};

constexpr std::array<DTypeInfo, 12> kDTypes = {{
    {DType::kF32, "F32", 4, true},
    {DType::kF16, "F16", 2, true},
    {DType::kBF16, "BF16", 2, true},
    {DType::kF8E4M3, "F8_E4M3", 1, true},
    {DType::kF8E5M2, "F8_E5M2", 1, true},
    {DType::kF8E8M0, "F8_E8M0", 1, true},
    {DType::kU8, "U8", 1, false},
    {DType::kI8, "I8", 1, false},
    {DType::kI32, "I32", 4, false},
    {DType::kI64, "I64", 8, false},
    {DType::kF64, "F64", 8, true},
    {DType::kBool, "BOOL", 1, false},
}};

const DTypeInfo& Info(DType t) {
  for (const auto& i : kDTypes)
    if (i.type == t) return i;
  PQ_CHECK(false, "unknown DType");
}

template <typename T>
void CastLoop(const void* src, size_t n, float* dst) {
  const auto* p = static_cast<const unsigned char*>(src);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, p + i * sizeof(T), sizeof(T));
    dst[i] = static_cast<float>(v);
  }
}

}  // namespace

std::string_view DTypeName(DType t) { return Info(t).name; }
size_t DTypeSize(DType t) { return Info(t).size; }
bool IsFloatingPoint(DType t) { return Info(t).is_float; }

std::optional<DType> ParseDType(std::string_view name) {
  for (const auto& i : kDTypes)
    if (i.name == name) return i.type;
  return std::nullopt;
}

void ConvertToF32(DType t, const void* src, size_t n, float* dst) {
  const auto* b = static_cast<const uint8_t*>(src);
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::kF64:
      CastLoop<double>(src, n, dst);
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, b + 2 * i, 2);
        dst[i] = Bf16ToF32(h);
      }
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, b + 2 * i, 2);
        dst[i] = F16ToF32(h);
      }
      return;
    case DType::kF8E4M3:
      for (size_t i = 0; i < n; ++i) dst[i] = MinifloatDecode<kSpecE4M3>(b[i]);
      return;
    case DType::kF8E5M2:
      for (size_t i = 0; i < n; ++i) dst[i] = MinifloatDecode<kSpecE5M2>(b[i]);
      return;
    case DType::kF8E8M0:
      for (size_t i = 0; i < n; ++i) dst[i] = E8M0Decode(b[i]);
      return;
    case DType::kU8:
      CastLoop<uint8_t>(src, n, dst);
      return;
    case DType::kBool:
      CastLoop<uint8_t>(src, n, dst);
      return;
    case DType::kI8:
      CastLoop<int8_t>(src, n, dst);
      return;
    case DType::kI32:
      CastLoop<int32_t>(src, n, dst);
      return;
    case DType::kI64:
      CastLoop<int64_t>(src, n, dst);
      return;
  }
}

}  // namespace pq
