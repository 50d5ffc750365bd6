// Per-group scale search (see scale_search.h).
#include "pq/quant/scale_search.h"

#include <cmath>
#include <limits>
#include <string>

#include "pq/core/thread_pool.h"
#include "pq/formats/quantize_with_scales.h"

namespace pq::quant {
namespace {

using formats::GroupCodec;

// The weighted error of x [n] quantized to codes under stored scale s.
double CodesError(const GroupCodec& c, const float* x, const uint8_t* codes, const float* hd,
                  size_t n, float s) {
  double e = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - static_cast<double>(c.Decode(codes[i], s));
    e += static_cast<double>(hd[i]) * d * d;
  }
  return e;
}

// The weighted error of x [n] re-quantized with stored scale s (xq: scratch of n).
double RequantError(const GroupCodec& c, const float* x, const float* hd, size_t n, float s,
                    std::vector<float>& xq) {
  xq.resize(n);
  c.QuantDequant(std::span<const float>(x, n), s, xq);
  double e = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - static_cast<double>(xq[i]);
    e += static_cast<double>(hd[i]) * d * d;
  }
  return e;
}

struct GroupOutcome {
  double before = 0.0, after = 0.0;
  bool changed = false;
};

// Searches one group: x, hd [n]; codes [n] and *scale are replaced if a candidate is better.
GroupOutcome SearchGroup(const GroupCodec& c, const std::vector<double>& factors, const float* x,
                         const float* hd, size_t n, uint8_t* codes, float* scale) {
  GroupOutcome o;
  const float s0 = *scale;
  o.before = o.after = CodesError(c, x, codes, hd, n, s0);
  if (o.before == 0.0) return o;
  double best = std::numeric_limits<double>::infinity();
  float best_s = 0.0f, prev = 0.0f;
  std::vector<float> xq;
  for (double f : factors) {
    const float s = c.RoundScale(static_cast<float>(f * static_cast<double>(s0)));
    if (s == 0.0f || s == prev) continue;
    prev = s;
    const double e = RequantError(c, x, hd, n, s, xq);
    if (e < best) {
      best = e;
      best_s = s;
    }
  }
  if (!(best < o.before)) return o;
  for (size_t i = 0; i < n; ++i) codes[i] = c.Encode(x[i], best_s);
  *scale = best_s;
  o.after = best;
  o.changed = true;
  return o;
}

Status Validate(formats::FormatId f, std::span<const float> w, std::span<const float> hdiag,
                int64_t n, int64_t k, const ScaleSearchOptions& o) {
  PQ_RETURN_IF_ERROR(formats::CheckShape(f, n, k));
  if (w.size() != static_cast<size_t>(n * k) || hdiag.size() != static_cast<size_t>(k))
    return InvalidArgument("ScaleSearch: w must hold N*K and hdiag K values for [" +
                           std::to_string(n) + ", " + std::to_string(k) + "]");
  if (o.candidates < 1 || !(o.lo > 0.0) || !(o.hi >= o.lo) || !std::isfinite(o.hi))
    return InvalidArgument("ScaleSearch: needs candidates >= 1 and 0 < lo <= hi (finite)");
  for (float v : w)
    if (!std::isfinite(v)) return InvalidArgument("ScaleSearch: the weight has a non-finite value");
  for (float v : hdiag)
    if (!std::isfinite(v) || v < 0.0f)
      return InvalidArgument("ScaleSearch: hdiag values must be finite and >= 0");
  return Status::Ok();
}

std::vector<double> Factors(const ScaleSearchOptions& o) {
  std::vector<double> f(static_cast<size_t>(o.candidates), o.lo);
  for (int c = 1; c < o.candidates; ++c)
    f[static_cast<size_t>(c)] = o.lo + (o.hi - o.lo) * c / (o.candidates - 1);
  return f;
}

}  // namespace

Result<ScaleSearchResult> ScaleSearch(formats::FormatId format, std::span<const float> w,
                                      std::span<const formats::QTensorView> current,
                                      std::span<const float> hdiag, int64_t rows, int64_t cols,
                                      const ScaleSearchOptions& options) {
  PQ_RETURN_IF_ERROR(Validate(format, w, hdiag, rows, cols, options));
  PQ_ASSIGN_OR_RETURN(formats::QCodes q, formats::UnpackCodes(format, current, rows, cols));
  PQ_ASSIGN_OR_RETURN(const GroupCodec codec,
                      GroupCodec::Create(format, cols, q.weight_global_scale));
  const std::vector<double> factors = Factors(options);
  const auto k = static_cast<size_t>(cols), g = static_cast<size_t>(codec.group_size());
  const size_t groups = k / g;
  std::vector<GroupOutcome> outcome(static_cast<size_t>(rows) * groups);
  ParallelFor(static_cast<size_t>(rows), options.num_threads, [&](size_t b, size_t e) {
    for (size_t r = b; r < e; ++r)
      for (size_t j = 0; j < groups; ++j) {
        const size_t at = r * k + j * g;
        outcome[r * groups + j] = SearchGroup(codec, factors, w.data() + at, hdiag.data() + j * g,
                                              g, q.codes.data() + at, &q.scales[r * groups + j]);
      }
  });
  ScaleSearchResult out;
  for (const GroupOutcome& o : outcome) {  // summed in a fixed order: deterministic
    out.error_before += o.before;
    out.error_after += o.after;
    out.groups_changed += o.changed ? 1 : 0;
  }
  PQ_ASSIGN_OR_RETURN(out.tensors, formats::PackCodes(format, q, rows, cols));
  PQ_ASSIGN_OR_RETURN(out.w_hat,
                      formats::Dequantize(format, formats::Views(out.tensors), rows, cols));
  return out;
}

}  // namespace pq::quant
