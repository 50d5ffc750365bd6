// Element types of checkpoint tensors, with their safetensors names (an ABI).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace pq {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kF8E4M3,
  kF8E5M2,
  kF8E8M0,  // read-only (compressed-tensors stores MX scales as U8)
  kU8,
  kI8,
  kI32,
  kI64,
  kF64,
  kBool,
};

// Safetensors dtype string, e.g. "BF16".
std::string_view DTypeName(DType t);
// Parses a safetensors dtype string; nullopt if we do not support it.
std::optional<DType> ParseDType(std::string_view name);
size_t DTypeSize(DType t);
bool IsFloatingPoint(DType t);

// Converts `n` elements of type `t` at `src` (little-endian) to float.
// Integer types convert by value. Exact for every float type we read.
void ConvertToF32(DType t, const void* src, size_t n, float* dst);

}  // namespace pq
