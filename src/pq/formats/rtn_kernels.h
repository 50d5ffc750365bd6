// Row kernels of the RTN quantizers: `ref` (scalar, the specification) and `fast`
// (branch-free, vectorizable; identical bytes). Rows [row_begin, row_end) of a row-major
// [rows, cols] weight are written into the outputs at their row offsets.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pq::formats {

inline constexpr float kFp8Max = 448.0f;
inline constexpr float kFp4Max = 6.0f;
inline constexpr float kBf16Eps = 0.0078125f;  // torch.finfo(torch.bfloat16).eps

#define PQ_RTN_KERNELS                                                                           \
  /* packed [rows, cols/2] u8, scales [rows, cols/16] e4m3; gs = NVFP4 global scale */           \
  void NvFp4Rows(const float* w, size_t row_begin, size_t row_end, size_t cols, float gs,        \
                 uint8_t* packed, uint8_t* scales);                                              \
  /* elements [rows, cols] e4m3 or [rows, cols/2] packed e2m1; scales [rows, cols/32] e8m0 */    \
  void MxRows(bool fp4, const float* w, size_t row_begin, size_t row_end, size_t cols,           \
              uint8_t* elements, uint8_t* scales);                                               \
  /* elements [rows, cols] e4m3, scales [rows] bf16 */                                           \
  void Fp8Rows(const float* w, size_t row_begin, size_t row_end, size_t cols, uint8_t* elements, \
               uint16_t* scales);                                                                \
  /* words [rows, ceil(cols*bits/32)] int32, scales [rows, cols/group] bf16 */                   \
  void IntRows(int bits, const float* w, size_t row_begin, size_t row_end, size_t cols,          \
               size_t group, uint32_t* words, uint16_t* scales);

namespace ref {
PQ_RTN_KERNELS
}  // namespace ref
namespace fast {
PQ_RTN_KERNELS
// max |x[i]| over n values (vectorized); Inf or NaN if any value is not finite.
float AbsMax(const float* x, size_t n);
}  // namespace fast

#undef PQ_RTN_KERNELS

// AVX2 kernels (rtn_avx2.cc) for FP8, MXFP8, INT8 and INT4, from float32 or raw bf16 input
// (uint16_t). Same layouts and bytes as above; each returns false if some row holds a
// non-finite value (that row's outputs are then unspecified). Callable only if Available().
namespace avx2 {
bool Available();
bool Fp8Rows(const float* w, size_t row_begin, size_t row_end, size_t cols, uint8_t* elements,
             uint16_t* scales);
bool Fp8Rows(const uint16_t* w, size_t row_begin, size_t row_end, size_t cols, uint8_t* elements,
             uint16_t* scales);
bool MxFp8Rows(const float* w, size_t row_begin, size_t row_end, size_t cols, uint8_t* elements,
               uint8_t* scales);
bool MxFp8Rows(const uint16_t* w, size_t row_begin, size_t row_end, size_t cols, uint8_t* elements,
               uint8_t* scales);
bool IntRows(int bits, const float* w, size_t row_begin, size_t row_end, size_t cols, size_t group,
             uint32_t* words, uint16_t* scales);
bool IntRows(int bits, const uint16_t* w, size_t row_begin, size_t row_end, size_t cols,
             size_t group, uint32_t* words, uint16_t* scales);
}  // namespace avx2

}  // namespace pq::formats
