// Run-time activation fake-quantization: what the runtime does to a Linear's *input* for
// each format, bit-exact with compressed-tensors 0.20's forward pass
// (`lifecycle/forward.py: forward_quantize` with the `input_activations` args that
// compressed_tensors.cc `InputArgs` writes). tests/interop/test_act_quant.py checks every
// format against the library itself; tests/interop/CT_NOTES.md ("Activations") has the
// derivation and where vLLM's kernels compute something slightly different.
//
// What a float input means: the runtime sees bf16 activations, so every quantizing format
// first rounds x to bf16 (nearest, ties to even) and then does ct's arithmetic on those
// values; the result is the bf16 tensor ct returns, stored as float. Rows are independent
// (callers may split rows across threads).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "pq/core/status.h"
#include "pq/formats/format.h"

namespace pq::formats {

// x: [rows, cols] activations (rows = tokens, cols = in_features K), quantized then
// dequantized in place exactly as the runtime does for a Linear stored in format `id`:
// - kNVFP4: groups of 16 along K, dynamic E4M3 group scales under the static FP32
//   `input_global_scale` (required: finite and > 0), E2M1 elements;
// - kMXFP8 / kMXFP4: groups of 32, dynamic E8M0 scales, E4M3 / E2M1 elements;
// - kFP8: one dynamic scale per row (token), E4M3 elements;
// - kBF16, kNVFP4A16, kINT4, kINT8: x is left bit-identical (input_global_scale ignored).
// InvalidArgument (x untouched) if x.size() != rows * cols, cols is not a multiple of the
// group size, the NVFP4 global scale is missing or not positive, or a value of x is not
// finite after rounding to bf16.
Status FakeQuantizeActivations(FormatId id, std::span<float> x, int64_t rows, int64_t cols,
                               std::optional<float> input_global_scale);

// The calibrated NVFP4 `input_global_scale` for activations whose absolute maximum over the
// calibration set is `amax`: ct's observer sees bf16 activations, so this is
// NvFp4GlobalScale(bf16(|amax|)) -- the weights' reciprocal-then-multiply convention,
// bf16(bf16(1 / amax) * 2688), and 1.0 when that is not finite (amax 0, tiny or NaN).
float NvFp4InputGlobalScale(float amax);

}  // namespace pq::formats
