// Per-group scale search: for each group (formats/quantize_with_scales.h; per channel for FP8
// and INT8) try stored scales s = RoundScale(f * s0) for `candidates` factors f evenly spaced
// in [lo, hi] (s0 = the group's current stored scale; consecutive duplicates tried once,
// scales that round to 0 skipped), re-quantize the group's ORIGINAL weights with each, and
// measure err(s) = sum_i hdiag[i] * (w_i - w_hat_i)^2 over the group. The best candidate
// (first one on ties) replaces the group's codes and stored scale only if its error is
// strictly below the error of the incoming group (RTN or GPTQ codes): improve-or-keep, so
// no group's weighted error ever grows, and kept groups keep their bytes. The chosen scale
// is stored directly (no re-derivation from the weights). E8M0 (MX) scales are powers of two:
// [0.5, 1.5] * s0 collapses to {s0 / 2, s0, 2 s0}. NVFP4's global scale is unchanged.
//
// Note: the criterion is the diagonal of H only. For GPTQ output it ignores the cross terms
// GPTQ traded for (a group may "improve" here while the full output error grows); measure
// both passes (OutputError in gptq.h) before keeping the combination.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "pq/core/status.h"
#include "pq/formats/format.h"

namespace pq::quant {

struct ScaleSearchOptions {
  int candidates = 32;  // factors tried per group, evenly spaced in [lo, hi] (1: only lo)
  double lo = 0.5, hi = 1.5;
  int num_threads = 1;
};

struct ScaleSearchResult {
  std::vector<formats::QTensor> tensors;  // the stored tensors, QuantizeRtn's layout
  std::vector<float> w_hat;               // [N, K] what the runtime reconstructs
  int64_t groups_changed = 0;
  double error_before = 0.0, error_after = 0.0;  // sum over all groups of err(.)
};

// w: [N, K] the original weights (finite). current: the stored tensors of the incoming
// quantization (RTN or GPTQ) of w in `format`. hdiag: [K] = diag(H) (finite, >= 0).
Result<ScaleSearchResult> ScaleSearch(formats::FormatId format, std::span<const float> w,
                                      std::span<const formats::QTensorView> current,
                                      std::span<const float> hdiag, int64_t rows, int64_t cols,
                                      const ScaleSearchOptions& options = {});

}  // namespace pq::quant
