// GPTQ (Frantar et al. 2022, "OBS" column sweep with lazy block updates) for every quantized
// format, writing exactly the codes and scales it chose in QuantizeRtn's on-disk layout.
//
// The algorithm, for W [N, K] and H = sum_t x_t^T x_t [K, K] (computed in double):
//  1. H is symmetrised ((H + H^T) / 2). Dead inputs (H_ii == 0): H_ii = 1 and W[:, i] = 0.
//  2. Damping: H_ii += damp * mean(diag H). U = the upper Cholesky factor of H^-1
//     (H^-1 = U^T U), computed as P L^-1 P with L = chol(P H P) and P the reversal
//     permutation (one Cholesky and one triangular inverse, no explicit H^-1). If a pivot is
//     not positive, damp is multiplied by 10 and the factorisation retried (up to 3 times);
//     if it still fails, the weight is quantized with plain RTN and GptqResult::fallback says
//     why (the caller logs it).
//  3. Columns are swept in blocks of `block` (a multiple of the format's group). In column i:
//     q = Q(w_i) with the group's stored scale, err = (w_i - q) / U_ii, the remaining columns
//     of the block get w_j -= err * U_ij, and after the block all later columns get
//     W[:, i2:] -= Err[:, block] * U[block, i2:] (one gemm). Rows are independent; they are
//     split over threads. Memory: 8 K^2 (U) + 8 N K (W) bytes besides the inputs.
//  Group scales (the rule that decides what is stored):
//   - grouped formats (NVFP4, MX, INT4) without act_order: a group's scale is fixed when the
//     sweep reaches its first column, with RTN's scale rule (formats::GroupCodec::RtnScale)
//     on the CURRENT values of the group's columns, i.e. after every update so far including
//     those from earlier columns of the same block (the original GPTQ code read the
//     block-start copy; the current values are what the columns will actually be rounded
//     from).
//   - per-channel formats (FP8, INT8): the row's scale from the original row, before GPTQ.
//   - NVFP4's FP32 global scale: options.weight_global_scale (fused siblings) or from the
//     original W; never changed by GPTQ.
//   - options.scales given: those, for every group (static; e.g. scale search on RTN first:
//     on correlated H this beat both GPTQ alone and GPTQ followed by scale search, whose
//     diagonal criterion discards GPTQ's compensation; see tests/quant/run.sh's ratios).
//  act_order: columns are swept in order of descending diag(H) (stable: ties keep their
//  index order), but groups stay the ORIGINAL column ranges, so the stored layout is the
//  plain one vLLM reads (no g_idx). The scales are then "static": every group's scale is
//  computed before the sweep from the original W (llm-compressor's "weight" act-order).
//  Element rounding: the current value (double) is rounded to float and quantized with RTN's
//  exact arithmetic (GroupCodec::Encode), so with H = I GPTQ writes RTN's bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <tuple>
#include <vector>

#include "pq/core/status.h"
#include "pq/formats/format.h"

namespace pq::quant {

class GptqFactorCache;

struct GptqOptions {
  double damp = 0.01;  // fraction of mean(diag H) added to the diagonal
  int block = 128;     // columns per lazy-update block; a multiple of the format's group
  bool act_order = false;
  // NVFP4: the FP32 global weight scale shared by fused siblings; unset -> from this weight.
  std::optional<float> weight_global_scale;
  // NVFP4 (W4A4): the calibrated input global scale (required, as for QuantizeRtn).
  std::optional<float> input_global_scale;
  int num_threads = 1;
  // Given stored scales [N, K / group] (e.g. ScaleSearch's choice on RTN; formats::UnpackCodes
  // reads them from its tensors): used for every group as static scales and stored as is.
  // Empty: GPTQ's own rule above.
  std::vector<float> scales;
  // Optional: reuse the factorisation of the same H (same data address, damp, act_order)
  // across calls — the probe prices every format of a Linear, and fused siblings, on one H.
  GptqFactorCache* factor_cache = nullptr;
};

// The damped H's inverse Cholesky factor, shared by GptqQuantize calls on one H: it depends on
// H, damp and act_order only, never on the format or the rows, so results are the same bit for
// bit with or without the cache. Keyed by H's address: a cache must not outlive the Hessians
// it has seen (nor see one rewritten in place). Thread-safe.
class GptqFactorCache {
 public:
  struct Entry;  // gptq.cc
  GptqFactorCache();
  ~GptqFactorCache();
  GptqFactorCache(const GptqFactorCache&) = delete;
  GptqFactorCache& operator=(const GptqFactorCache&) = delete;
  // The entry of (h, damp, act_order), made by `make` the first time.
  std::shared_ptr<const Entry> Get(std::span<const float> h, double damp, bool act_order,
                                   const std::function<std::shared_ptr<const Entry>()>& make);
  int64_t hits() const { return hits_; }

 private:
  std::mutex mu_;
  std::map<std::tuple<const float*, size_t, double, bool>, std::shared_ptr<const Entry>> entries_;
  int64_t hits_ = 0;
};

struct GptqResult {
  std::vector<formats::QTensor> tensors;  // the stored tensors, QuantizeRtn's layout
  std::vector<float> w_hat;               // [N, K] what the runtime reconstructs (Dequantize)
  double damp_used = 0.0;                 // the damping fraction that worked (0 on fallback)
  Status fallback;  // non-ok when H could not be factorised and RTN was written instead
};

// w: [N, K] bf16-representable weights (finite). h: [K, K] = sum of x^T x over calibration
// inputs (float, symmetric PSD up to rounding; finite). Returns InvalidArgument on bad shapes,
// options or non-finite input; BF16 is not a quantized format.
Result<GptqResult> GptqQuantize(formats::FormatId format, std::span<const float> w,
                                std::span<const float> h, int64_t rows, int64_t cols,
                                const GptqOptions& options = {});

// sum_r (W - W_hat)_r H (W - W_hat)_r^T in double: the output error GPTQ minimises.
// w, w_hat: [N, K]; h: [K, K].
double OutputError(std::span<const float> w, std::span<const float> w_hat, std::span<const float> h,
                   int64_t rows, int64_t cols);

}  // namespace pq::quant
