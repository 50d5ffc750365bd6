// The format table: one row per on-disk weight format (DESIGN §3). Format ids, tensor
// suffixes and compressed-tensors strings are persisted and therefore an ABI: never rename.
// Each row lists the tensors it writes (TensorSpec: suffix, dtype, shape rule, role); byte
// counts, suffix lists, the writers' outputs (MakeTensors) and the readers' validation
// (MatchTensors) all derive from that list.
//
// Shapes: a Linear weight is W[rows, cols] = [out_features N, in_features K], row-major.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pq/core/dtype.h"
#include "pq/core/status.h"

namespace pq::formats {

enum class FormatId : uint8_t {
  kBF16,
  kNVFP4,     // W4A4: FP4 E2M1, E4M3 scale per 16, FP32 global scales (weights + inputs)
  kNVFP4A16,  // the same weights, activations unquantized
  kMXFP8,     // E4M3 elements, E8M0 scale per 32; dynamic MXFP8 activations
  kMXFP4,     // E2M1 elements, E8M0 scale per 32; dynamic MXFP4 activations
  kFP8,       // E4M3 per output channel (bf16 scale), dynamic per-token FP8 activations
  kINT4,      // symmetric int4, bf16 scale per 128 inputs, weight-only
  kINT8,      // symmetric int8, bf16 scale per output channel, weight-only
};

// How a format groups its scales along the input dimension K.
enum class ScaleLayout : uint8_t { kNone, kGroup, kChannel };

// The suffixes of the tensors a Linear "M" stores as "M.<suffix>" (persisted ABI).
inline constexpr std::string_view kSuffixWeight = "weight";
inline constexpr std::string_view kSuffixWeightPacked = "weight_packed";
inline constexpr std::string_view kSuffixWeightScale = "weight_scale";
inline constexpr std::string_view kSuffixWeightGlobalScale = "weight_global_scale";
inline constexpr std::string_view kSuffixInputGlobalScale = "input_global_scale";
inline constexpr std::string_view kSuffixWeightShape = "weight_shape";

// What one stored tensor of a format holds (at most one tensor per role in a row).
enum class TensorRole : uint8_t {
  kElements,           // the weight's values or codes
  kScales,             // one stored scale per group or per output channel
  kWeightGlobalScale,  // FP32 scalar; fused siblings share it
  kInputGlobalScale,   // FP32 scalar from activation calibration; fused siblings share it
  kShape,              // int64 [rows, cols] of the weight
};

// How a stored tensor's shape follows from the weight's [rows N, cols K], the format's
// element_bits b and group_size g.
enum class ShapeRule : uint8_t {
  kDense,          // [N, K]
  kPacked4,        // [N, K/2]: two 4-bit codes per byte, low nibble first
  kPackedWords,    // [N, ceil(K*b/32)]: b-bit codes in little-endian int32 words
  kGroupScales,    // [N, K/g]
  kChannelScales,  // [N, 1]
  kScalar,         // [1]
  kPair,           // [2]
};

// One tensor in a format's on-disk layout.
struct TensorSpec {
  std::string_view suffix;
  DType dtype;
  ShapeRule shape;
  TensorRole role;
};

struct FormatSpec {
  FormatId id;
  std::string_view name;       // stable id used on the CLI and in work dirs, e.g. "NVFP4"
  std::string_view ct_format;  // compressed-tensors format string ("" for BF16)
  ScaleLayout scale_layout;
  int group_size;              // K elements per scale (kGroup), else 0
  int element_bits;            // 16, 8 or 4
  bool quantizes_activations;  // the runtime quantizes this Linear's input
  bool needs_calibration;      // needs calibrated activation statistics (NVFP4 W4A4)
  std::string_view description;
  std::span<const TensorSpec> tensors;  // every tensor it writes, in on-disk order
};

// All formats, in table order.
std::span<const FormatSpec> AllFormats();
const FormatSpec& Spec(FormatId id);
// Case-insensitive lookup by name; nullopt if unknown.
std::optional<FormatId> ParseFormat(std::string_view name);
// "BF16, NVFP4, ..." for help texts and errors.
std::string FormatNameList();

// Whether the format can hold a [rows, cols] weight; InvalidArgument says why if not.
Status CheckShape(FormatId id, int64_t rows, int64_t cols);

// The shape of tensor `t` of format `f` for a [rows, cols] weight (its ShapeRule).
std::vector<int64_t> TensorShape(const FormatSpec& f, const TensorSpec& t, int64_t rows,
                                 int64_t cols);
// The layout entry of `id` with `suffix` / `role`; nullptr if the format stores none.
const TensorSpec* FindTensor(FormatId id, std::string_view suffix);
const TensorSpec* FindTensor(FormatId id, TensorRole role);
inline bool IsGlobalScale(TensorRole r) {
  return r == TensorRole::kWeightGlobalScale || r == TensorRole::kInputGlobalScale;
}

// Exact bytes of every tensor the format writes for one [rows, cols] weight (scales and
// global scales included, bias excluded): the sum over Spec(id).tensors. Requires
// CheckShape(...).ok().
uint64_t BytesOnDisk(FormatId id, int64_t rows, int64_t cols);

// A std::allocator whose value-less construct leaves the value uninitialized, so that
// resize() of a byte buffer costs no pass over memory; assign(n, 0) still zero-fills.
template <typename T>
struct UninitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <typename U>
  UninitAllocator(const UninitAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using ByteBuffer = std::vector<uint8_t, UninitAllocator<uint8_t>>;

// One tensor of a quantized weight, named by its suffix ("weight_packed", ...).
struct QTensor {
  std::string suffix;
  DType dtype;
  std::vector<int64_t> shape;
  ByteBuffer bytes;
};

struct QuantizeOptions {
  // NVFP4 only: the FP32 global weight scale (2688/amax, reciprocal convention). Fused
  // siblings pass the one computed from their largest amax; unset -> from this weight.
  std::optional<float> weight_global_scale;
  // NVFP4 (W4A4) only: the calibrated input global scale; required for kNVFP4.
  std::optional<float> input_global_scale;
  int num_threads = 1;
  // Use the scalar reference kernels instead of the fast ones (identical bytes; for tests).
  bool reference_kernels = false;
};

// The tensors of `id`'s layout for a [rows, cols] weight, in Spec order, zero-filled except
// the shape tensor, which holds [rows, cols] (the writers fill the rest). With
// zero_fill = false the other bytes are left uninitialized (for writers of every byte).
std::vector<QTensor> MakeTensors(FormatId id, int64_t rows, int64_t cols, bool zero_fill = true);
// The tensor with `role` in MakeTensors' output; the format must store one.
QTensor& TensorOf(FormatId id, std::vector<QTensor>& tensors, TensorRole role);

// Round-to-nearest quantization exactly as compressed-tensors does it for bf16 weights.
// `weight`: [rows, cols] values, which must be bf16-representable (the caller rounds);
// non-finite values are an error. Returns the on-disk tensors in Spec order.
Result<std::vector<QTensor>> QuantizeRtn(FormatId id, std::span<const float> weight, int64_t rows,
                                         int64_t cols, const QuantizeOptions& options = {});

// QuantizeRtn of a weight given as raw bf16 bits (the checkpoint's own bytes): the same
// tensors, byte for byte, from half the memory traffic.
Result<std::vector<QTensor>> QuantizeRtnBf16(FormatId id, std::span<const uint16_t> weight,
                                             int64_t rows, int64_t cols,
                                             const QuantizeOptions& options = {});

// A read-only view of one stored tensor (from a checkpoint or a QTensor).
struct QTensorView {
  std::string_view suffix;
  DType dtype;
  std::span<const int64_t> shape;
  std::span<const uint8_t> bytes;
};

// Stored tensors matched to their format's layout (MatchTensors).
struct MatchedTensors {
  FormatId id;
  std::vector<const QTensorView*> views;  // one per Spec(id).tensors entry, in that order
  // The tensor with `role`; the format must store one.
  const QTensorView& Get(TensorRole role) const;
};

// Checks `tensors` against `id`'s layout for a [rows, cols] weight: CheckShape, then every
// layout tensor present with the table's dtype, shape and byte length, and the shape tensor
// holding [rows, cols]. Tensors outside the layout are ignored (callers decide whether
// extras are an error). NotFound / InvalidArgument name the offending tensor.
Result<MatchedTensors> MatchTensors(FormatId id, std::span<const QTensorView> tensors, int64_t rows,
                                    int64_t cols);

// Dequantizes stored tensors back to a dense [rows, cols] float weight, validating them
// with MatchTensors first.
Result<std::vector<float>> Dequantize(FormatId id, std::span<const QTensorView> tensors,
                                      int64_t rows, int64_t cols);
std::vector<QTensorView> Views(const std::vector<QTensor>& tensors);

// The tensor suffixes a format stores for one Linear (Spec(id).tensors' suffixes).
std::vector<std::string_view> TensorSuffixes(FormatId id);

// NVFP4 global scale for a tensor (or sibling group) whose absolute maximum is `amax`:
// bf16(bf16(1 / amax) * 2688) as float32 (compressed-tensors' exact arithmetic), 1.0 when
// that is not finite (amax zero or below ~1e-35).
float NvFp4GlobalScale(float amax);

}  // namespace pq::formats
