// Quantization with given scales: the primitives GPTQ and scale search need, exact with
// respect to QuantizeRtn (the same scale rule, the same element rounding, the same bytes).
//
// Vocabulary (shared by quant/gptq.h and quant/scale_search.h):
// - group: the run of input (K) elements of one row that share a stored scale: 16 (NVFP4),
//   32 (MXFP4/MXFP8), 128 (INT4), or the whole row (FP8 and INT8 are per output channel).
// - stored scale: the value of the scale's on-disk dtype, as a float: an E4M3 value for
//   NVFP4 (before the division by the global scale), a power of two 2^(e-127) for E8M0 (MX),
//   a bf16 value for FP8 and INT4/INT8. Always finite and > 0.
// - code: one element as stored: an FP4 nibble (bit 3 = sign), an E4M3 byte, or the integer
//   offset by 2^(bits-1) (INT4: 0..15, INT8: 0..255), i.e. q + 8 / q + 128.
// The value the runtime reconstructs from (code, stored scale) is what Dequantize returns:
// e2m1 * (scale / global_scale) for NVFP4, element * scale otherwise.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "pq/core/status.h"
#include "pq/formats/format.h"

namespace pq::formats {

// The element and scale arithmetic of one quantized format for a weight with `cols` inputs.
// Cheap to copy; every method is thread-safe.
class GroupCodec {
 public:
  // `weight_global_scale`: NVFP4's FP32 global scale (ignored by the other formats). BF16
  // has no codes: InvalidArgument. Requires CheckShape(id, 1, cols).ok().
  static Result<GroupCodec> Create(FormatId id, int64_t cols, float weight_global_scale = 1.0f);

  FormatId id() const { return id_; }
  int64_t group_size() const { return group_; }  // K elements per stored scale
  int64_t groups_per_row() const { return cols_ / group_; }
  float weight_global_scale() const { return gs_; }

  // The stored scale QuantizeRtn picks for one group of values x [group_size] (any finite
  // floats; QuantizeRtn's inputs are bf16). Computed by RTN's own reference kernel.
  float RtnScale(std::span<const float> x) const;
  // The code QuantizeRtn writes for x (finite) under stored scale `scale`.
  uint8_t Encode(float x, float scale) const;
  // The value the runtime reconstructs from `code` under stored scale `scale`.
  float Decode(uint8_t code, float scale) const;
  float QuantDequant(float x, float scale) const { return Decode(Encode(x, scale), scale); }
  // The same for every element of x (one stored scale): out[i] = QuantDequant(x[i], scale),
  // bit for bit, in one loop compiled per format.
  void QuantDequant(std::span<const float> x, float scale, std::span<float> out) const;
  // One column, one value per row: x [rows], scales [rows] (each row's stored scale for this
  // column's group) -> codes [rows] and values [rows] (reconstructed).
  void QuantizeColumn(std::span<const float> x, std::span<const float> scales,
                      std::span<uint8_t> codes, std::span<float> values) const;

  // The storable scale nearest to s > 0 (E4M3: RNE, saturating at 448; E8M0: nearest power
  // of two in log2, ties up; bf16: RNE). 0 when s rounds to zero (not a usable scale).
  float RoundScale(float s) const;
  // Whether `s` is exactly a stored scale of this format (finite, > 0, representable).
  bool IsStorableScale(float s) const;

 private:
  GroupCodec(FormatId id, int64_t cols, int64_t group, float gs)
      : id_(id), cols_(cols), group_(group), gs_(gs) {}
  FormatId id_;
  int64_t cols_, group_;
  float gs_;
};

// Codes and stored scales of one quantized [rows, cols] weight.
struct QCodes {
  std::vector<uint8_t> codes;               // [rows, cols]
  std::vector<float> scales;                // [rows, cols / group_size] stored scales
  float weight_global_scale = 1.0f;         // NVFP4 only
  std::optional<float> input_global_scale;  // NVFP4 (W4A4) only; required there
};

// Writes codes and scales into exactly the tensors QuantizeRtn writes (same suffixes,
// dtypes, shapes, byte layout). Invalid codes (FP4/INT4 > 15, E4M3 NaN) or scales that are
// not storable are InvalidArgument.
Result<std::vector<QTensor>> PackCodes(FormatId id, const QCodes& q, int64_t rows, int64_t cols);

// The inverse of PackCodes, validating the tensor set like Dequantize does.
Result<QCodes> UnpackCodes(FormatId id, std::span<const QTensorView> tensors, int64_t rows,
                           int64_t cols);

// Encodes weight [rows, cols] (finite) with the GIVEN stored scales [rows, cols / group_size]
// into the tensors QuantizeRtn writes. NVFP4's global scale comes from options (unset: from
// this weight, as QuantizeRtn does); NVFP4 (W4A4) needs options.input_global_scale. With the
// scales RTN picks (GroupCodec::RtnScale per group) the bytes equal QuantizeRtn's.
Result<std::vector<QTensor>> QuantizeWithScales(FormatId id, std::span<const float> weight,
                                                int64_t rows, int64_t cols,
                                                std::span<const float> scales,
                                                const QuantizeOptions& options = {});

// The NVFP4 global scale QuantizeRtn uses for `weight` under `options` (the override, else
// NvFp4GlobalScale(max |weight|)); 1.0 for the other formats.
float WeightGlobalScale(FormatId id, std::span<const float> weight, const QuantizeOptions& options);

}  // namespace pq::formats
