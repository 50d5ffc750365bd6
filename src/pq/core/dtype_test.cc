#include "pq/core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "pq/core/minifloat.h"

namespace pq {
namespace {

constexpr DType kAll[] = {DType::kF32,    DType::kF16,    DType::kBF16, DType::kF8E4M3,
                          DType::kF8E5M2, DType::kF8E8M0, DType::kU8,   DType::kI8,
                          DType::kI32,    DType::kI64,    DType::kF64,  DType::kBool};

// The safetensors names are an ABI.
TEST(DType, NamesSizesAndRoundTrip) {
  const struct {
    DType t;
    const char* name;
    size_t size;
    bool is_float;
  } want[] = {
      {DType::kF32, "F32", 4, true},        {DType::kF16, "F16", 2, true},
      {DType::kBF16, "BF16", 2, true},      {DType::kF8E4M3, "F8_E4M3", 1, true},
      {DType::kF8E5M2, "F8_E5M2", 1, true}, {DType::kF8E8M0, "F8_E8M0", 1, true},
      {DType::kU8, "U8", 1, false},         {DType::kI8, "I8", 1, false},
      {DType::kI32, "I32", 4, false},       {DType::kI64, "I64", 8, false},
      {DType::kF64, "F64", 8, true},        {DType::kBool, "BOOL", 1, false},
  };
  ASSERT_EQ(std::size(want), std::size(kAll));
  for (const auto& w : want) {
    EXPECT_EQ(DTypeName(w.t), w.name);
    EXPECT_EQ(DTypeSize(w.t), w.size) << w.name;
    EXPECT_EQ(IsFloatingPoint(w.t), w.is_float) << w.name;
    EXPECT_EQ(ParseDType(w.name), w.t) << w.name;
  }
  for (const char* unknown : {"", "f32", "F8", "I16", "U16", "BF16 ", "C64"})
    EXPECT_FALSE(ParseDType(unknown).has_value()) << unknown;
}

template <typename T>
std::vector<float> Convert(DType t, const std::vector<T>& v) {
  std::vector<float> out(v.size());
  ConvertToF32(t, v.data(), v.size(), out.data());
  return out;
}

TEST(DType, ConvertsFloatsExactly) {
  const std::vector<float> f32 = {0.0f, -1.5f, 3.25e-5f, std::numeric_limits<float>::max(),
                                  std::numeric_limits<float>::denorm_min()};
  EXPECT_EQ(Convert(DType::kF32, f32), f32);
  EXPECT_EQ(Convert(DType::kF64, std::vector<double>{0.5, -2.0, 0.1}),
            (std::vector<float>{0.5f, -2.0f, 0.1f}));
  // bf16: the top half of the float32 bits.
  EXPECT_EQ(Convert(DType::kBF16, std::vector<uint16_t>{0x3F80, 0xC000, 0x3EAA, 0x0000, 0x8000}),
            (std::vector<float>{1.0f, -2.0f, 0.33203125f, 0.0f, -0.0f}));
  // fp16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), 0.333251953125.
  EXPECT_EQ(Convert(DType::kF16, std::vector<uint16_t>{0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555}),
            (std::vector<float>{1.0f, -2.0f, 65504.0f, 5.9604644775390625e-8f, 0.333251953125f}));
  // E4M3: 1, -448 (max), 2^-9 (smallest subnormal); E5M2: 1, 57344 (max), -2^-16.
  EXPECT_EQ(Convert(DType::kF8E4M3, std::vector<uint8_t>{0x38, 0xFE, 0x01}),
            (std::vector<float>{1.0f, -448.0f, 0.001953125f}));
  EXPECT_EQ(Convert(DType::kF8E5M2, std::vector<uint8_t>{0x3C, 0x7B, 0x81}),
            (std::vector<float>{1.0f, 57344.0f, -1.52587890625e-5f}));
  // E8M0: 2^(code - 127).
  EXPECT_EQ(Convert(DType::kF8E8M0, std::vector<uint8_t>{127, 128, 120}),
            (std::vector<float>{1.0f, 2.0f, 0.0078125f}));
  // NaN and infinity survive.
  const auto special = Convert(DType::kBF16, std::vector<uint16_t>{0x7FC0, 0xFF80});
  EXPECT_TRUE(std::isnan(special[0]));
  EXPECT_EQ(special[1], -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(Convert(DType::kF8E4M3, std::vector<uint8_t>{0x7F})[0]));
}

TEST(DType, ConvertsIntegersByValue) {
  EXPECT_EQ(Convert(DType::kU8, std::vector<uint8_t>{0, 7, 255}), (std::vector<float>{0, 7, 255}));
  EXPECT_EQ(Convert(DType::kBool, std::vector<uint8_t>{0, 1}), (std::vector<float>{0, 1}));
  EXPECT_EQ(Convert(DType::kI8, std::vector<int8_t>{-128, -1, 127}),
            (std::vector<float>{-128, -1, 127}));
  EXPECT_EQ(Convert(DType::kI32, std::vector<int32_t>{-5, 1 << 20}),
            (std::vector<float>{-5, 1 << 20}));
  EXPECT_EQ(Convert(DType::kI64, std::vector<int64_t>{-3, int64_t{1} << 40}),
            (std::vector<float>{-3, 1099511627776.0f}));
}

TEST(DType, ConvertReadsUnalignedInput) {
  // Tensors in a safetensors file start at arbitrary offsets.
  std::vector<unsigned char> raw(1 + 3 * 4);
  const float vals[3] = {1.5f, -0.25f, 8.0f};
  std::memcpy(raw.data() + 1, vals, sizeof vals);
  float out[3];
  ConvertToF32(DType::kF32, raw.data() + 1, 3, out);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -0.25f);
  EXPECT_EQ(out[2], 8.0f);
  std::vector<unsigned char> raw64(1 + 8);
  const int64_t big = -(int64_t{1} << 33);
  std::memcpy(raw64.data() + 1, &big, 8);
  ConvertToF32(DType::kI64, raw64.data() + 1, 1, out);
  EXPECT_EQ(out[0], -8589934592.0f);
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3F80);
  // 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties to even (1).
  EXPECT_EQ(F32ToBf16(1.00390625f), 0x3F80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: ties to even (up).
  EXPECT_EQ(F32ToBf16(1.01171875f), 0x3F82);
  EXPECT_EQ(F32ToBf16(1.0f + 1.0f / 128 + 1.0f / 4096), 0x3F81);  // below halfway: down
}

}  // namespace
}  // namespace pq
