// One Linear quantized by the export passes (DESIGN §3 "Export quantizers") — the one function
// the calibrated export writes with and the probe prices with, so a candidate's predicted
// cost is that of the weight export will actually write.
//
// Passes:
//   rtn          round to nearest (the reference)
//   gptq         GPTQ (gptq.h)
//   search       per-group scale search on RTN, weighted by diag(H) (scale_search.h)
//   search+gptq  scale search on RTN, then GPTQ with those scales fixed (measured best)
//   gptq+search  GPTQ, then scale search on its output (the original plan; measured worse)
// A Linear with fewer than `min_tokens` calibration rows (a rarely routed expert), or whose
// Hessian cannot be factorised, gets RTN.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pq/core/status.h"
#include "pq/formats/format.h"
#include "pq/quant/gptq.h"

namespace pq::quant {

enum class Passes { kRtn, kGptq, kSearch, kSearchGptq, kGptqSearch };
// Stable names (persisted in work dirs and model cards): rtn, gptq, search, search+gptq,
// gptq+search.
Result<Passes> ParsePasses(std::string_view name);
const char* PassesName(Passes p);

struct LinearQuantizeOptions {
  Passes passes = Passes::kSearchGptq;
  int64_t min_tokens = 32;
  GptqOptions gptq;             // damping, block, act order (the scales come from the passes)
  formats::QuantizeOptions qo;  // global scales, threads (GPTQ's and the scale search's)
  std::string module;           // for messages
  // Measure error_ratio (two ΔW H ΔWᵀ products, as costly as GPTQ's own updates); the probe,
  // which discards it, turns it off (the tensors and w_hat are the same either way).
  bool measure_error = true;
};

struct QuantizedLinear {
  std::vector<formats::QTensor> tensors;  // the stored tensors (QuantizeRtn's layout)
  std::vector<float> w_hat;               // [N, K] what the runtime reconstructs
  double error_ratio = 1.0;  // tr(ΔW H ΔWᵀ) of the result / that of RTN (1 for RTN or
                             // when not measured)
  bool calibrated = false;   // false: RTN (pure RTN passes, too few rows, or a fallback)
};

// w: [N, K] bf16-representable weights; h: [K, K] = Σ xᵀx over h_rows calibration rows
// (may be empty when the passes are rtn or h_rows < min_tokens). BF16 is written as is.
Result<QuantizedLinear> QuantizeLinear(formats::FormatId format, std::span<const float> w,
                                       int64_t n, int64_t k, std::span<const float> h,
                                       int64_t h_rows, const LinearQuantizeOptions& o);

}  // namespace pq::quant
