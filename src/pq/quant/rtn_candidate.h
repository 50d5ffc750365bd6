// A candidate weight exactly as the probe prices it and export writes it with RTN: bf16(W)
// quantized to `format` (with the unit's shared NVFP4 global scales), then dequantized.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "pq/core/status.h"
#include "pq/formats/format.h"

namespace pq::quant {

// w: [rows, cols] float weights (rounded to bf16 here). BF16 returns bf16(W).
Result<std::vector<float>> RtnCandidate(formats::FormatId format, std::span<const float> w,
                                        int64_t rows, int64_t cols, float weight_global_scale,
                                        float input_global_scale);

// max |bf16(w)| (the amax behind NVFP4 weight global scales).
float Bf16AbsMax(std::span<const float> w);

}  // namespace pq::quant
