// GPTQ (see gptq.h for the algorithm and its rules). Linear algebra in double with BLAS
// (OpenBLAS kept single-threaded, as in compute/: we split rows or columns over our threads).
#include "pq/quant/gptq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <string>

#include "pq/core/thread_pool.h"
#include "pq/formats/quantize_with_scales.h"

namespace pq::quant {
namespace {

using formats::FormatId;
using formats::GroupCodec;

constexpr int64_t kNb = 96;      // block size of the blocked Cholesky and inverse
constexpr int kDampRetries = 3;  // damp x10 up to 3 times (0.01 -> 10 by default)

void BlasSingleThreaded() {
  static const bool once = (openblas_set_num_threads(1), true);
  (void)once;
}

// fn(begin, end) over the blocks of kSplitBlock rows (or columns) of [0, n), spread over
// `threads`. The blocks depend on n alone, so every BLAS call — and every result — is the same
// with any thread count.
constexpr int64_t kSplitBlock = 64;
void Split(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t blocks = (n + kSplitBlock - 1) / kSplitBlock;
  ParallelFor(static_cast<size_t>(blocks), threads, [&](size_t b, size_t e) {
    for (auto i = static_cast<int64_t>(b); i < static_cast<int64_t>(e); ++i)
      fn(i * kSplitBlock, std::min(n, (i + 1) * kSplitBlock));
  });
}

// ---------------------------------------------------------------- linear algebra
// Row-major n x n matrices; `lda` is the row stride.

// Unblocked lower Cholesky of the n x n block at a (lower triangle); false if a pivot is
// not positive (or not finite).
bool CholeskyUnblocked(double* a, int64_t n, int64_t lda) {
  for (int64_t k = 0; k < n; ++k) {
    double d = a[k * lda + k];
    for (int64_t p = 0; p < k; ++p) d -= a[k * lda + p] * a[k * lda + p];
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    d = std::sqrt(d);
    a[k * lda + k] = d;
    for (int64_t i = k + 1; i < n; ++i) {
      double s = a[i * lda + k];
      for (int64_t p = 0; p < k; ++p) s -= a[i * lda + p] * a[k * lda + p];
      a[i * lda + k] = s / d;
    }
  }
  return true;
}

// In-place lower Cholesky A = L L^T (left-looking, blocked); reads the lower triangle.
bool CholeskyLower(double* a, int64_t n, int threads) {
  const auto bi = [](int64_t v) { return static_cast<blasint>(v); };
  for (int64_t j = 0; j < n; j += kNb) {
    const int64_t jb = std::min(kNb, n - j), m = n - j - jb;
    double* ajj = a + j * n + j;
    if (j > 0)  // A11 -= L10 L10^T
      cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, bi(jb), bi(j), -1.0, a + j * n, bi(n),
                  1.0, ajj, bi(n));
    if (!CholeskyUnblocked(ajj, jb, n)) return false;
    double* b = a + (j + jb) * n + j;  // A21 [m, jb] -> L21 = (A21 - L20 L10^T) L11^-T
    Split(m, threads, [&](int64_t r0, int64_t r1) {
      if (j > 0)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi(r1 - r0), bi(jb), bi(j), -1.0,
                    a + (j + jb + r0) * n, bi(n), a + j * n, bi(n), 1.0, b + r0 * n, bi(n));
      cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, bi(r1 - r0),
                  bi(jb), 1.0, ajj, bi(n), b + r0 * n, bi(n));
    });
  }
  return true;
}

// Unblocked inverse of the lower-triangular n x n block at a, in place.
void InvertLowerUnblocked(double* a, int64_t n, int64_t lda) {
  std::vector<double> l(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) l[static_cast<size_t>(i * n + j)] = a[i * lda + j];
  const auto L = [&](int64_t i, int64_t j) { return l[static_cast<size_t>(i * n + j)]; };
  for (int64_t j = 0; j < n; ++j) {
    a[j * lda + j] = 1.0 / L(j, j);
    for (int64_t i = j + 1; i < n; ++i) {  // X_ij = -(sum_{j<=p<i} L_ip X_pj) / L_ii
      double s = 0.0;
      for (int64_t p = j; p < i; ++p) s += L(i, p) * a[p * lda + j];
      a[i * lda + j] = -s / L(i, i);
    }
  }
}

// In-place inverse of a lower-triangular matrix (blocked, last block column first).
void InvertLower(double* a, int64_t n, int threads) {
  const auto bi = [](int64_t v) { return static_cast<blasint>(v); };
  for (int64_t j = ((n - 1) / kNb) * kNb; j >= 0; j -= kNb) {
    const int64_t jb = std::min(kNb, n - j), m = n - j - jb;
    double* ajj = a + j * n + j;
    if (m > 0) {  // X21 = -(X22 L21) L11^-1, X22 already inverted
      double* b = a + (j + jb) * n + j;
      const double* x22 = a + (j + jb) * n + (j + jb);
      Split(jb, threads, [&](int64_t c0, int64_t c1) {
        cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, bi(m),
                    bi(c1 - c0), 1.0, x22, bi(n), b + c0, bi(n));
      });
      Split(m, threads, [&](int64_t r0, int64_t r1) {
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, bi(r1 - r0),
                    bi(jb), -1.0, ajj, bi(n), b + r0 * n, bi(n));
      });
    }
    InvertLowerUnblocked(ajj, jb, n);
  }
}

// In place: `u` holds P H P (P: the reversal permutation, H damped); on success it holds U,
// the upper factor with H^-1 = U^T U. With P H P = L L^T: H^-1 = (P L^-T P)(P L^-1 P), so
// U = P L^-1 P, and reversing a row-major matrix's storage is exactly P . P. False if H is
// not positive definite.
bool InverseCholeskyUpper(std::vector<double>& u, int64_t n, int threads) {
  if (!CholeskyLower(u.data(), n, threads)) return false;
  InvertLower(u.data(), n, threads);
  for (int64_t i = 0; i < n; ++i)  // clear the (unused) strict upper triangle
    std::fill(u.begin() + i * n + i + 1, u.begin() + (i + 1) * n, 0.0);
  std::reverse(u.begin(), u.end());
  return true;
}

// ---------------------------------------------------------------- the sweep
struct Problem {
  int64_t n = 0, k = 0, block = 0, group = 0;
  bool dynamic_scales = false;  // group scale from current values at the group's first column
  std::vector<int64_t> order;   // sweep position -> original column
  std::vector<bool> dead;       // [K] sweep order: H_ii == 0
  double mean_diag = 0.0;       // mean(diag H) after dead inputs' H_ii = 1
  std::vector<double> u;        // [K, K] upper Cholesky factor of the damped H^-1
};

// Rows [r0, r1) of w [N, K] (sweep order): quantizes every column, propagating the error
// (gptq.h, step 3). Writes codes [N, K] (original order) and, if dynamic, scales [N, groups].
void SweepRows(const Problem& p, const GroupCodec& codec, int64_t r0, int64_t r1, double* w,
               float* scales, uint8_t* codes) {
  const auto bi = [](int64_t v) { return static_cast<blasint>(v); };
  const int64_t k = p.k, g = p.group, groups = k / g, rows = r1 - r0;
  std::vector<double> err(static_cast<size_t>(rows * p.block));
  std::vector<float> cur(static_cast<size_t>(g));
  for (int64_t i1 = 0; i1 < k; i1 += p.block) {
    const int64_t i2 = std::min(i1 + p.block, k), bw = i2 - i1;
    for (int64_t r = r0; r < r1; ++r) {
      double* x = w + r * k;
      for (int64_t i = i1; i < i2; ++i) {
        const int64_t col = p.order[static_cast<size_t>(i)];
        float& s = scales[r * groups + col / g];
        if (p.dynamic_scales && col % g == 0) {
          for (int64_t j = 0; j < g; ++j)
            cur[static_cast<size_t>(j)] = static_cast<float>(x[i + j]);
          s = codec.RtnScale(cur);
        }
        const uint8_t code = codec.Encode(static_cast<float>(x[i]), s);
        codes[r * k + col] = code;
        const double* ui = p.u.data() + i * k;
        const double e = (x[i] - static_cast<double>(codec.Decode(code, s))) / ui[i];
        err[static_cast<size_t>((r - r0) * bw + (i - i1))] = e;
        for (int64_t j = i + 1; j < i2; ++j) x[j] -= e * ui[j];
      }
    }
    if (i2 < k)  // W[r0:r1, i2:] -= Err . U[i1:i2, i2:]
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi(rows), bi(k - i2), bi(bw), -1.0,
                  err.data(), bi(bw), p.u.data() + i1 * k + i2, bi(k), 1.0, w + r0 * k + i2, bi(k));
  }
}

// Symmetrised H_ij.
double HSym(std::span<const float> h, int64_t k, int64_t i, int64_t j) {
  return 0.5 * (static_cast<double>(h[static_cast<size_t>(i * k + j)]) +
                static_cast<double>(h[static_cast<size_t>(j * k + i)]));
}

// The sweep order (act_order: descending diag H, stable), dead inputs and mean diag.
Problem Prepare(std::span<const float> h, int64_t n, int64_t k, const GptqOptions& o,
                const GroupCodec& codec) {
  Problem p;
  p.n = n;
  p.k = k;
  p.block = o.block;
  p.group = codec.group_size();
  p.dynamic_scales = !o.act_order && o.scales.empty() &&
                     formats::Spec(codec.id()).scale_layout == formats::ScaleLayout::kGroup;
  p.order.resize(static_cast<size_t>(k));
  std::iota(p.order.begin(), p.order.end(), 0);
  if (o.act_order)
    std::stable_sort(p.order.begin(), p.order.end(),
                     [&](int64_t a, int64_t b) { return HSym(h, k, a, a) > HSym(h, k, b, b); });
  p.dead.resize(static_cast<size_t>(k));
  for (int64_t a = 0; a < k; ++a) {
    const int64_t i = p.order[static_cast<size_t>(a)];
    p.dead[static_cast<size_t>(a)] = HSym(h, k, i, i) == 0.0;
    p.mean_diag += p.dead[static_cast<size_t>(a)] ? 1.0 : HSym(h, k, i, i);
  }
  p.mean_diag /= static_cast<double>(k);
  return p;
}

// p.u = P H' P with H' the symmetrised H in sweep order, dead diagonal 1, plus damp on the
// diagonal (P: reversal; see InverseCholeskyUpper).
void BuildReversedHessian(std::span<const float> h, Problem& p, double damp) {
  const int64_t k = p.k;
  p.u.resize(static_cast<size_t>(k * k));
  for (int64_t a = 0; a < k; ++a) {
    double* row = p.u.data() + (k - 1 - a) * k;
    const int64_t ia = p.order[static_cast<size_t>(a)];
    for (int64_t b = 0; b < k; ++b)
      row[k - 1 - b] = HSym(h, k, ia, p.order[static_cast<size_t>(b)]);
    if (p.dead[static_cast<size_t>(a)]) row[k - 1 - a] = 1.0;
    row[k - 1 - a] += damp;
  }
}

// Factors the damped H into p.u, multiplying damp by 10 up to kDampRetries times; returns the
// damping fraction that worked, or nullopt (with the last one tried in *last).
std::optional<double> FactorOnce(std::span<const float> h, Problem& p, double damp, int threads,
                                 double* last) {
  for (int t = 0; t <= kDampRetries; ++t, damp *= 10.0) {
    *last = damp;
    BuildReversedHessian(h, p, damp * p.mean_diag);
    if (InverseCholeskyUpper(p.u, p.k, threads)) return damp;
  }
  return std::nullopt;
}

}  // namespace

struct GptqFactorCache::Entry {
  std::vector<double> u;
  std::optional<double> damp;
  double last = 0.0;
};

GptqFactorCache::GptqFactorCache() = default;
GptqFactorCache::~GptqFactorCache() = default;

std::shared_ptr<const GptqFactorCache::Entry> GptqFactorCache::Get(
    std::span<const float> h, double damp, bool act_order,
    const std::function<std::shared_ptr<const Entry>()>& make) {
  const auto key = std::make_tuple(h.data(), h.size(), damp, act_order);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      ++hits_;
      return it->second;
    }
  }
  std::shared_ptr<const Entry> e = make();
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.emplace(key, std::move(e)).first->second;
}

namespace {

// FactorOnce, or its result for the same H from options.factor_cache (p.order, p.dead and
// p.mean_diag depend on H and act_order alone, so the cached factor is this call's own).
std::optional<double> Factor(std::span<const float> h, Problem& p, const GptqOptions& o,
                             int threads, double* last) {
  if (!o.factor_cache) return FactorOnce(h, p, o.damp, threads, last);
  auto e = o.factor_cache->Get(h, o.damp, o.act_order, [&] {
    auto made = std::make_shared<GptqFactorCache::Entry>();
    made->damp = FactorOnce(h, p, o.damp, threads, &made->last);
    made->u = std::move(p.u);
    return std::shared_ptr<const GptqFactorCache::Entry>(std::move(made));
  });
  p.u = e->u;
  *last = e->last;
  return e->damp;
}

// W in sweep order, dead columns zeroed.
std::vector<double> SweepWeights(const Problem& p, std::span<const float> w) {
  std::vector<double> x(static_cast<size_t>(p.n * p.k));
  for (int64_t r = 0; r < p.n; ++r)
    for (int64_t a = 0; a < p.k; ++a) {
      const auto col = static_cast<size_t>(r * p.k + p.order[static_cast<size_t>(a)]);
      x[static_cast<size_t>(r * p.k + a)] = p.dead[static_cast<size_t>(a)] ? 0.0 : w[col];
    }
  return x;
}

// Static scales (act_order, or per channel): RTN's scales of the original W.
std::vector<float> StaticScales(const GroupCodec& codec, std::span<const float> w, int64_t n,
                                int64_t k) {
  const int64_t g = codec.group_size();
  std::vector<float> s(static_cast<size_t>(n * (k / g)));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k / g; ++j)
      s[static_cast<size_t>(r * (k / g) + j)] =
          codec.RtnScale(w.subspan(static_cast<size_t>(r * k + j * g), static_cast<size_t>(g)));
  return s;
}

Status Validate(FormatId f, std::span<const float> w, std::span<const float> h, int64_t n,
                int64_t k, const GptqOptions& o) {
  PQ_RETURN_IF_ERROR(formats::CheckShape(f, n, k));
  if (f == FormatId::kBF16) return InvalidArgument("GPTQ: BF16 is not a quantized format");
  if (w.size() != static_cast<size_t>(n * k) || h.size() != static_cast<size_t>(k * k))
    return InvalidArgument("GPTQ: w must hold N*K and h K*K values for [" + std::to_string(n) +
                           ", " + std::to_string(k) + "]");
  const auto& spec = formats::Spec(f);
  if (o.block <= 0 ||
      (spec.scale_layout == formats::ScaleLayout::kGroup && o.block % spec.group_size != 0))
    return InvalidArgument("GPTQ: block " + std::to_string(o.block) +
                           " must be a positive multiple of the " + std::string(spec.name) +
                           " group size " + std::to_string(spec.group_size));
  if (!(o.damp >= 0.0) || !std::isfinite(o.damp))
    return InvalidArgument("GPTQ: damp must be finite and >= 0");
  if (f == FormatId::kNVFP4 && !o.input_global_scale)
    return InvalidArgument("GPTQ: NVFP4 (W4A4) needs an input_global_scale");
  for (float v : w)
    if (!std::isfinite(v)) return InvalidArgument("GPTQ: the weight has a non-finite value");
  for (float v : h)
    if (!std::isfinite(v)) return InvalidArgument("GPTQ: the Hessian has a non-finite value");
  return Status::Ok();
}

Status CheckGivenScales(const GroupCodec& codec, const std::vector<float>& scales, int64_t n) {
  if (scales.empty()) return Status::Ok();
  if (scales.size() != static_cast<size_t>(n * codec.groups_per_row()))
    return InvalidArgument("GPTQ: options.scales must hold N * groups = " +
                           std::to_string(n * codec.groups_per_row()) + " values, got " +
                           std::to_string(scales.size()));
  for (float s : scales)
    if (!codec.IsStorableScale(s))
      return InvalidArgument("GPTQ: options.scales holds " + std::to_string(s) + ", not a stored " +
                             std::string(formats::Spec(codec.id()).name) + " scale");
  return Status::Ok();
}

Result<GptqResult> Finish(FormatId f, formats::QCodes q, int64_t n, int64_t k, double damp) {
  GptqResult out;
  PQ_ASSIGN_OR_RETURN(out.tensors, formats::PackCodes(f, q, n, k));
  PQ_ASSIGN_OR_RETURN(out.w_hat, formats::Dequantize(f, formats::Views(out.tensors), n, k));
  out.damp_used = damp;
  return out;
}

Result<GptqResult> RtnFallback(FormatId f, std::span<const float> w, int64_t n, int64_t k,
                               const formats::QuantizeOptions& qo, double damp, double mean) {
  GptqResult out;
  PQ_ASSIGN_OR_RETURN(out.tensors, formats::QuantizeRtn(f, w, n, k, qo));
  PQ_ASSIGN_OR_RETURN(out.w_hat, formats::Dequantize(f, formats::Views(out.tensors), n, k));
  out.fallback =
      InvalidArgument("GPTQ: H + damp * mean(diag H) * I is not positive definite for damp up to " +
                      std::to_string(damp) + " (mean diag H = " + std::to_string(mean) +
                      "); wrote RTN instead (check the calibration statistics of this Linear)");
  return out;
}

}  // namespace

Result<GptqResult> GptqQuantize(FormatId format, std::span<const float> w, std::span<const float> h,
                                int64_t rows, int64_t cols, const GptqOptions& options) {
  PQ_RETURN_IF_ERROR(Validate(format, w, h, rows, cols, options));
  BlasSingleThreaded();
  const int threads = std::max(1, options.num_threads);
  formats::QuantizeOptions qo;
  qo.weight_global_scale = options.weight_global_scale;
  qo.input_global_scale = options.input_global_scale;
  qo.num_threads = threads;
  const float gs = formats::WeightGlobalScale(format, w, qo);
  if (format == FormatId::kNVFP4 || format == FormatId::kNVFP4A16) qo.weight_global_scale = gs;
  PQ_ASSIGN_OR_RETURN(const GroupCodec codec, GroupCodec::Create(format, cols, gs));
  PQ_RETURN_IF_ERROR(CheckGivenScales(codec, options.scales, rows));
  Problem p = Prepare(h, rows, cols, options, codec);
  double last = 0.0;
  const std::optional<double> damp = Factor(h, p, options, threads, &last);
  if (!damp) return RtnFallback(format, w, rows, cols, qo, last, p.mean_diag);

  formats::QCodes q;
  q.weight_global_scale = gs;
  q.input_global_scale = options.input_global_scale;
  q.codes.resize(static_cast<size_t>(rows * cols));
  if (!options.scales.empty())
    q.scales = options.scales;
  else
    q.scales = p.dynamic_scales
                   ? std::vector<float>(static_cast<size_t>(rows * codec.groups_per_row()))
                   : StaticScales(codec, w, rows, cols);
  std::vector<double> x = SweepWeights(p, w);
  Split(rows, threads, [&](int64_t r0, int64_t r1) {
    SweepRows(p, codec, r0, r1, x.data(), q.scales.data(), q.codes.data());
  });
  return Finish(format, std::move(q), rows, cols, *damp);
}

double OutputError(std::span<const float> w, std::span<const float> w_hat, std::span<const float> h,
                   int64_t rows, int64_t cols) {
  BlasSingleThreaded();
  const auto n = static_cast<size_t>(rows), k = static_cast<size_t>(cols);
  std::vector<double> d(n * k), hd(h.begin(), h.end()), dh(n * k);
  for (size_t i = 0; i < n * k; ++i)
    d[i] = static_cast<double>(w[i]) - static_cast<double>(w_hat[i]);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(rows),
              static_cast<blasint>(cols), static_cast<blasint>(cols), 1.0, d.data(),
              static_cast<blasint>(cols), hd.data(), static_cast<blasint>(cols), 0.0, dh.data(),
              static_cast<blasint>(cols));
  double e = 0.0;
  for (size_t i = 0; i < n * k; ++i) e += dh[i] * d[i];
  return e;
}

}  // namespace pq::quant
