#include "pq/quant/export_quantizer.h"

#include <algorithm>
#include <utility>

#include "pq/core/log.h"
#include "pq/formats/quantize_with_scales.h"
#include "pq/quant/scale_search.h"

namespace pq::quant {
namespace {

constexpr std::pair<Passes, const char*> kPassNames[] = {
    {Passes::kRtn, "rtn"},
    {Passes::kGptq, "gptq"},
    {Passes::kSearch, "search"},
    {Passes::kSearchGptq, "search+gptq"},
    {Passes::kGptqSearch, "gptq+search"},
};

// diag(H) [K] of H [K, K].
std::vector<float> Diagonal(std::span<const float> h, int64_t k) {
  std::vector<float> d(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) d[static_cast<size_t>(i)] = h[static_cast<size_t>(i * k + i)];
  return d;
}

bool SearchFirst(Passes p) { return p == Passes::kSearch || p == Passes::kSearchGptq; }
bool RunsGptq(Passes p) {
  return p == Passes::kGptq || p == Passes::kSearchGptq || p == Passes::kGptqSearch;
}

Status Search(formats::FormatId f, std::span<const float> w, std::span<const float> h, int64_t n,
              int64_t k, int threads, QuantizedLinear& q) {
  ScaleSearchOptions so;
  so.num_threads = std::max(1, threads);  // rows split across threads: same result
  PQ_ASSIGN_OR_RETURN(auto s,
                      ScaleSearch(f, w, formats::Views(q.tensors), Diagonal(h, k), n, k, so));
  q.tensors = std::move(s.tensors);
  q.w_hat = std::move(s.w_hat);
  return Status::Ok();
}

// GPTQ on q's current scales when the passes searched them first; false: it fell back to RTN.
Result<bool> Gptq(formats::FormatId f, std::span<const float> w, std::span<const float> h,
                  int64_t n, int64_t k, const LinearQuantizeOptions& o, QuantizedLinear& q) {
  GptqOptions g = o.gptq;
  g.weight_global_scale = o.qo.weight_global_scale;
  g.input_global_scale = o.qo.input_global_scale;
  g.num_threads = o.qo.num_threads;
  if (SearchFirst(o.passes)) {
    PQ_ASSIGN_OR_RETURN(auto codes, formats::UnpackCodes(f, formats::Views(q.tensors), n, k));
    g.scales = std::move(codes.scales);
  }
  PQ_ASSIGN_OR_RETURN(auto r, GptqQuantize(f, w, h, n, k, g));
  if (!r.fallback.ok()) {
    LogWarning(o.module + ": GPTQ fell back to RTN: " + r.fallback.message());
    return false;
  }
  q.tensors = std::move(r.tensors);
  q.w_hat = std::move(r.w_hat);
  return true;
}

}  // namespace

Result<Passes> ParsePasses(std::string_view name) {
  for (const auto& [p, n] : kPassNames)
    if (name == n) return p;
  return InvalidArgument("--passes must be rtn, gptq, search, search+gptq or gptq+search (got \"" +
                         std::string(name) + "\")");
}

const char* PassesName(Passes p) {
  for (const auto& [q, n] : kPassNames)
    if (p == q) return n;
  return "?";
}

Result<QuantizedLinear> QuantizeLinear(formats::FormatId f, std::span<const float> w, int64_t n,
                                       int64_t k, std::span<const float> h, int64_t h_rows,
                                       const LinearQuantizeOptions& o) {
  QuantizedLinear q;
  PQ_ASSIGN_OR_RETURN(q.tensors, formats::QuantizeRtn(f, w, n, k, o.qo));
  PQ_ASSIGN_OR_RETURN(q.w_hat, formats::Dequantize(f, formats::Views(q.tensors), n, k));
  if (o.passes == Passes::kRtn || f == formats::FormatId::kBF16) return q;
  if (h_rows < o.min_tokens || h.size() != static_cast<size_t>(k * k)) {
    LogInfo(o.module + ": " + std::to_string(h_rows) + " calibration rows (< " +
            std::to_string(o.min_tokens) + "), quantized by RTN");
    return q;
  }
  const double rtn_error = o.measure_error ? OutputError(w, q.w_hat, h, n, k) : 0.0;
  const int threads = o.qo.num_threads;
  if (SearchFirst(o.passes)) PQ_RETURN_IF_ERROR(Search(f, w, h, n, k, threads, q));
  if (RunsGptq(o.passes)) {
    PQ_ASSIGN_OR_RETURN(bool ok, Gptq(f, w, h, n, k, o, q));
    if (!ok) return q;  // what the passes before GPTQ wrote, not counted as calibrated
  }
  if (o.passes == Passes::kGptqSearch) PQ_RETURN_IF_ERROR(Search(f, w, h, n, k, threads, q));
  q.calibrated = true;
  if (!o.measure_error) return q;
  const double err = OutputError(w, q.w_hat, h, n, k);
  q.error_ratio = rtn_error > 0 ? err / rtn_error : 1.0;
  return q;
}

}  // namespace pq::quant
