// Reference (scalar) ops of the hybrid Qwen3-Next / Qwen3.5 / Qwen3.6 layers (hybrid_ops.h):
// the specification the fast ops are tested against. Straightforward loops, every sum and
// every intermediate in double (also in the float instantiation), results rounded to T once.
#include <algorithm>
#include <cmath>
#include <vector>

#include "pq/compute/hybrid_ops.h"
#include "pq/compute/op_checks.h"
#include "pq/compute/ref_util.h"

namespace pq::compute::ref {
namespace {

using ref_util::Round;
using ref_util::Sigmoid;

template <typename T>
double D(T v) {
  return static_cast<double>(v);
}

// sigmoid'(x) = s (1 - s), with 1 - s = sigmoid(-x) (no cancellation for large x).
double SigmoidGrad(double x) { return Sigmoid(x) * Sigmoid(-x); }

double Silu(double x) { return x * Sigmoid(x); }

// silu'(x) = s (1 + x (1 - s)), s = sigmoid(x).
double SiluGrad(double x) { return Sigmoid(x) * (1.0 + x * Sigmoid(-x)); }

// PyTorch's softplus (beta 1, threshold 20): x above the threshold, else log1p(exp(x)); its
// derivative is then 1 above the threshold (as torch's softplus_backward), else sigmoid(x).
constexpr double kSoftplusThreshold = 20.0;
double Softplus(double x) { return x > kSoftplusThreshold ? x : std::log1p(std::exp(x)); }
double SoftplusGrad(double x) { return x > kSoftplusThreshold ? 1.0 : Sigmoid(x); }

// a += v (rounded once); for accumulating gradient outputs.
template <typename T>
void AddTo(T& a, double v) {
  a = Round<T>(D(a) + v);
}

// ---- CausalConv1dSilu ------------------------------------------------------------------

// Pre-activation c[t,ch] = sum_j w[ch,j] x[t-Kc+1+j, ch] (x[<0] = 0); x[T,C], w[C,Kc].
template <typename T>
double ConvAt(std::span<const T> x, std::span<const T> w, int64_t t, int64_t ch, int64_t channels,
              int64_t kernel) {
  double acc = 0.0;
  for (int64_t j = std::max<int64_t>(0, kernel - 1 - t); j < kernel; ++j)
    acc += D(w[ch * kernel + j]) * D(x[(t - kernel + 1 + j) * channels + ch]);
  return acc;
}

template <typename T>
void CausalConv1dSiluT(std::span<const T> x, std::span<const T> w, std::span<T> y, int64_t tokens,
                       int64_t channels, int64_t kernel) {
  internal::CheckCausalConv<T>(x, w, y, tokens, channels, kernel);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t ch = 0; ch < channels; ++ch)
      y[t * channels + ch] = Round<T>(Silu(ConvAt(x, w, t, ch, channels, kernel)));
}

// dc = dy silu'(c);  dx[s] += sum_j w[j] dc[s+Kc-1-j] (index < T);  dw[j] += sum_t dc[t]
// x[t-Kc+1+j]
template <typename T>
void CausalConv1dSiluBackwardT(std::span<const T> dy, std::span<const T> x, std::span<const T> w,
                               std::span<T> dx, std::span<T> dw, int64_t tokens, int64_t channels,
                               int64_t kernel) {
  internal::CheckCausalConvBackward<T>(dy, x, w, dx, dw, tokens, channels, kernel);
  std::vector<double> dc(static_cast<size_t>(tokens * channels));  // [T,C]
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t ch = 0; ch < channels; ++ch)
      dc[static_cast<size_t>(t * channels + ch)] =
          D(dy[t * channels + ch]) * SiluGrad(ConvAt(x, w, t, ch, channels, kernel));
  const auto dc_at = [&](int64_t t, int64_t ch) {
    return dc[static_cast<size_t>(t * channels + ch)];
  };
  for (int64_t ch = 0; ch < channels && !dx.empty(); ++ch)
    for (int64_t s = 0; s < tokens; ++s) {
      double acc = 0.0;
      for (int64_t j = std::max<int64_t>(0, s + kernel - tokens); j < kernel; ++j)
        acc += D(w[ch * kernel + j]) * dc_at(s + kernel - 1 - j, ch);
      AddTo(dx[s * channels + ch], acc);
    }
  for (int64_t ch = 0; ch < channels && !dw.empty(); ++ch)
    for (int64_t j = 0; j < kernel; ++j) {
      double acc = 0.0;
      for (int64_t t = std::max<int64_t>(0, kernel - 1 - j); t < tokens; ++t)
        acc += dc_at(t, ch) * D(x[(t - kernel + 1 + j) * channels + ch]);
      AddTo(dw[ch * kernel + j], acc);
    }
}

// ---- L2Norm ----------------------------------------------------------------------------

// y = scale x inv,  inv = (sum x^2 + eps)^(-1/2)
template <typename T>
void L2NormT(std::span<const T> x, float eps, float scale, std::span<T> y, std::span<T> inv,
             int64_t rows, int64_t dim) {
  internal::CheckL2Norm<T>(x, y, inv, rows, dim);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += D(x[r * dim + i]) * D(x[r * dim + i]);
    const double s = 1.0 / std::sqrt(ss + D(eps));
    inv[r] = Round<T>(s);
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = Round<T>(D(scale) * D(x[r * dim + i]) * s);
  }
}

// With yh = x inv (unscaled):  dx += scale inv (dy - yh (yh . dy))   (§6.2)
template <typename T>
void L2NormBackwardT(std::span<const T> dy, std::span<const T> x, std::span<const T> inv,
                     float scale, std::span<T> dx, int64_t rows, int64_t dim) {
  internal::CheckL2Norm<T>(x, dy, inv, rows, dim);
  PQ_CHECK_OPT_SIZE(dx, rows * dim, "L2NormBackward: dx[R,Dh]");
  if (dx.empty()) return;
  for (int64_t r = 0; r < rows; ++r) {
    const double s = D(inv[r]);
    double dot = 0.0;
    for (int64_t i = 0; i < dim; ++i) dot += D(x[r * dim + i]) * s * D(dy[r * dim + i]);
    for (int64_t i = 0; i < dim; ++i) {
      const double yh = D(x[r * dim + i]) * s;
      AddTo(dx[r * dim + i], D(scale) * s * (D(dy[r * dim + i]) - yh * dot));
    }
  }
}

// ---- GatedRmsNorm ----------------------------------------------------------------------

// y = (w x rstd) silu(z),  rstd = 1/sqrt(mean(x^2) + eps)
template <typename T>
void GatedRmsNormT(std::span<const T> x, std::span<const T> z, std::span<const T> w, float eps,
                   std::span<T> y, std::span<T> rstd, int64_t rows, int64_t dim) {
  internal::CheckGatedRmsNorm<T>(x, z, w, y, rstd, rows, dim);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += D(x[r * dim + i]) * D(x[r * dim + i]);
    const double rs = 1.0 / std::sqrt(ss / static_cast<double>(dim) + D(eps));
    rstd[r] = Round<T>(rs);
    for (int64_t i = 0; i < dim; ++i) {
      const int64_t n = r * dim + i;
      y[n] = Round<T>(D(w[i]) * D(x[n]) * rs * Silu(D(z[n])));
    }
  }
}

// xh = x rstd, s = silu(z), g' = dy s w (§6.1):
//   dw += sum_rows dy xh s;  dx += rstd (g' - xh mean_i(g'_i xh_i));  dz += dy w xh silu'(z)
template <typename T>
void GatedRmsNormBackwardT(std::span<const T> dy, std::span<const T> x, std::span<const T> z,
                           std::span<const T> w, std::span<const T> rstd, std::span<T> dx,
                           std::span<T> dz, std::span<T> dw, int64_t rows, int64_t dim) {
  internal::CheckGatedRmsNormBackward<T>(dy, x, z, w, rstd, dx, dz, dw, rows, dim);
  std::vector<double> dw_acc(static_cast<size_t>(dim), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const double rs = D(rstd[r]);
    double dot = 0.0;  // sum_i g'_i xh_i
    for (int64_t i = 0; i < dim; ++i) {
      const int64_t n = r * dim + i;
      const double xh = D(x[n]) * rs, s = Silu(D(z[n])), g = D(dy[n]);
      dot += g * s * D(w[i]) * xh;
      dw_acc[static_cast<size_t>(i)] += g * xh * s;
      if (!dz.empty()) AddTo(dz[n], g * D(w[i]) * xh * SiluGrad(D(z[n])));
    }
    const double mean = dot / static_cast<double>(dim);
    for (int64_t i = 0; i < dim && !dx.empty(); ++i) {
      const int64_t n = r * dim + i;
      const double xh = D(x[n]) * rs;
      AddTo(dx[n], rs * (D(dy[n]) * Silu(D(z[n])) * D(w[i]) - xh * mean));
    }
  }
  for (int64_t i = 0; i < dim && !dw.empty(); ++i) AddTo(dw[i], dw_acc[static_cast<size_t>(i)]);
}

// ---- DeltaGates ------------------------------------------------------------------------

// g = -exp(a_log[h]) softplus(a + dt_bias[h]),  beta = sigmoid(b);  a, b, g, beta[T,Hv]
template <typename T>
void DeltaGatesT(std::span<const T> a, std::span<const T> b, std::span<const T> a_log,
                 std::span<const T> dt_bias, std::span<T> g, std::span<T> beta, int64_t tokens,
                 int64_t heads) {
  internal::CheckDeltaGates<T>(a, b, a_log, dt_bias, g, beta, tokens, heads);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t n = t * heads + h;
      g[n] = Round<T>(-std::exp(D(a_log[h])) * Softplus(D(a[n]) + D(dt_bias[h])));
      beta[n] = Round<T>(Sigmoid(D(b[n])));
    }
}

// da += dg (-exp(a_log)) softplus'(a + dt_bias);  db += dbeta beta (1 - beta)
template <typename T>
void DeltaGatesBackwardT(std::span<const T> dg, std::span<const T> dbeta, std::span<const T> a,
                         std::span<const T> b, std::span<const T> a_log, std::span<const T> dt_bias,
                         std::span<T> da, std::span<T> db, int64_t tokens, int64_t heads) {
  internal::CheckDeltaGates<T>(a, b, a_log, dt_bias, dg, dbeta, tokens, heads);
  PQ_CHECK_OPT_SIZE(da, tokens * heads, "DeltaGatesBackward: da[T,Hv]");
  PQ_CHECK_OPT_SIZE(db, tokens * heads, "DeltaGatesBackward: db[T,Hv]");
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t n = t * heads + h;
      if (!da.empty())
        AddTo(da[n], D(dg[n]) * -std::exp(D(a_log[h])) * SoftplusGrad(D(a[n]) + D(dt_bias[h])));
      if (!db.empty()) AddTo(db[n], D(dbeta[n]) * SigmoidGrad(D(b[n])));
    }
}

// ---- SigmoidGate -----------------------------------------------------------------------

// y[t,i] = x[t,i] sigmoid(gate[t, i / (N/G)]);  x, y[T,N], gate[T,G]
template <typename T>
void SigmoidGateT(std::span<const T> x, std::span<const T> gate, std::span<T> y, int64_t tokens,
                  int64_t n, int64_t groups) {
  internal::CheckSigmoidGate<T>(x, gate, y, tokens, n, groups);
  const int64_t run = n / groups;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < n; ++i)
      y[t * n + i] = Round<T>(D(x[t * n + i]) * Sigmoid(D(gate[t * groups + i / run])));
}

// dx += dy s;  dgate[t,g] += s (1 - s) sum_{i in group g} dy x,  s = sigmoid(gate[t,g])
template <typename T>
void SigmoidGateBackwardT(std::span<const T> dy, std::span<const T> x, std::span<const T> gate,
                          std::span<T> dx, std::span<T> dgate, int64_t tokens, int64_t n,
                          int64_t groups) {
  internal::CheckSigmoidGate<T>(x, gate, dy, tokens, n, groups);
  PQ_CHECK_OPT_SIZE(dx, tokens * n, "SigmoidGateBackward: dx[T,N]");
  PQ_CHECK_OPT_SIZE(dgate, tokens * groups, "SigmoidGateBackward: dgate[T,G]");
  const int64_t run = n / groups;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t gi = 0; gi < groups; ++gi) {
      const double s = Sigmoid(D(gate[t * groups + gi]));
      double dot = 0.0;
      for (int64_t i = gi * run; i < (gi + 1) * run; ++i) {
        dot += D(dy[t * n + i]) * D(x[t * n + i]);
        if (!dx.empty()) AddTo(dx[t * n + i], D(dy[t * n + i]) * s);
      }
      if (!dgate.empty())
        AddTo(dgate[t * groups + gi], dot * SigmoidGrad(D(gate[t * groups + gi])));
    }
}

// ---- RepeatHeads -----------------------------------------------------------------------

// y[t, j, :] = x[t, j / r, :];  x[T,Hk,Dh], y[T,Hk*r,Dh]
template <typename T>
void RepeatHeadsT(std::span<const T> x, std::span<T> y, int64_t tokens, int64_t heads,
                  int64_t repeat, int64_t dim) {
  internal::CheckRepeatHeads<T>(x, y, tokens, heads, repeat, dim, false);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < heads * repeat; ++j)
      for (int64_t i = 0; i < dim; ++i)
        y[(t * heads * repeat + j) * dim + i] = x[(t * heads + j / repeat) * dim + i];
}

// dx[t, h, :] += sum_{m < r} dy[t, h r + m, :]
template <typename T>
void RepeatHeadsBackwardT(std::span<const T> dy, std::span<T> dx, int64_t tokens, int64_t heads,
                          int64_t repeat, int64_t dim) {
  internal::CheckRepeatHeads<T>(dx, dy, tokens, heads, repeat, dim, true);
  if (dx.empty()) return;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < dim; ++i) {
        double acc = 0.0;
        for (int64_t m = 0; m < repeat; ++m) acc += D(dy[((t * heads + h) * repeat + m) * dim + i]);
        AddTo(dx[(t * heads + h) * dim + i], acc);
      }
}

}  // namespace

// The declared (non-template) ops forward to the templates above.
#define PQ_REF_HYBRID_OPS(T_)                                                                      \
  void CausalConv1dSilu(std::span<const T_> x, std::span<const T_> w, std::span<T_> y,             \
                        int64_t tokens, int64_t channels, int64_t kernel) {                        \
    CausalConv1dSiluT<T_>(x, w, y, tokens, channels, kernel);                                      \
  }                                                                                                \
  void CausalConv1dSiluBackward(std::span<const T_> dy, std::span<const T_> x,                     \
                                std::span<const T_> w, std::span<T_> dx, std::span<T_> dw,         \
                                int64_t tokens, int64_t channels, int64_t kernel) {                \
    CausalConv1dSiluBackwardT<T_>(dy, x, w, dx, dw, tokens, channels, kernel);                     \
  }                                                                                                \
  void L2Norm(std::span<const T_> x, float eps, float scale, std::span<T_> y, std::span<T_> inv,   \
              int64_t rows, int64_t dim) {                                                         \
    L2NormT<T_>(x, eps, scale, y, inv, rows, dim);                                                 \
  }                                                                                                \
  void L2NormBackward(std::span<const T_> dy, std::span<const T_> x, std::span<const T_> inv,      \
                      float scale, std::span<T_> dx, int64_t rows, int64_t dim) {                  \
    L2NormBackwardT<T_>(dy, x, inv, scale, dx, rows, dim);                                         \
  }                                                                                                \
  void GatedRmsNorm(std::span<const T_> x, std::span<const T_> z, std::span<const T_> w,           \
                    float eps, std::span<T_> y, std::span<T_> rstd, int64_t rows, int64_t dim) {   \
    GatedRmsNormT<T_>(x, z, w, eps, y, rstd, rows, dim);                                           \
  }                                                                                                \
  void GatedRmsNormBackward(std::span<const T_> dy, std::span<const T_> x, std::span<const T_> z,  \
                            std::span<const T_> w, std::span<const T_> rstd, std::span<T_> dx,     \
                            std::span<T_> dz, std::span<T_> dw, int64_t rows, int64_t dim) {       \
    GatedRmsNormBackwardT<T_>(dy, x, z, w, rstd, dx, dz, dw, rows, dim);                           \
  }                                                                                                \
  void DeltaGates(std::span<const T_> a, std::span<const T_> b, std::span<const T_> a_log,         \
                  std::span<const T_> dt_bias, std::span<T_> g, std::span<T_> beta,                \
                  int64_t tokens, int64_t heads) {                                                 \
    DeltaGatesT<T_>(a, b, a_log, dt_bias, g, beta, tokens, heads);                                 \
  }                                                                                                \
  void DeltaGatesBackward(std::span<const T_> dg, std::span<const T_> dbeta,                       \
                          std::span<const T_> a, std::span<const T_> b, std::span<const T_> a_log, \
                          std::span<const T_> dt_bias, std::span<T_> da, std::span<T_> db,         \
                          int64_t tokens, int64_t heads) {                                         \
    DeltaGatesBackwardT<T_>(dg, dbeta, a, b, a_log, dt_bias, da, db, tokens, heads);               \
  }                                                                                                \
  void SigmoidGate(std::span<const T_> x, std::span<const T_> gate, std::span<T_> y,               \
                   int64_t tokens, int64_t n, int64_t groups) {                                    \
    SigmoidGateT<T_>(x, gate, y, tokens, n, groups);                                               \
  }                                                                                                \
  void SigmoidGateBackward(std::span<const T_> dy, std::span<const T_> x,                          \
                           std::span<const T_> gate, std::span<T_> dx, std::span<T_> dgate,        \
                           int64_t tokens, int64_t n, int64_t groups) {                            \
    SigmoidGateBackwardT<T_>(dy, x, gate, dx, dgate, tokens, n, groups);                           \
  }                                                                                                \
  void RepeatHeads(std::span<const T_> x, std::span<T_> y, int64_t tokens, int64_t heads,          \
                   int64_t repeat, int64_t dim) {                                                  \
    RepeatHeadsT<T_>(x, y, tokens, heads, repeat, dim);                                            \
  }                                                                                                \
  void RepeatHeadsBackward(std::span<const T_> dy, std::span<T_> dx, int64_t tokens,               \
                           int64_t heads, int64_t repeat, int64_t dim) {                           \
    RepeatHeadsBackwardT<T_>(dy, dx, tokens, heads, repeat, dim);                                  \
  }

PQ_REF_HYBRID_OPS(float)
PQ_REF_HYBRID_OPS(double)
#undef PQ_REF_HYBRID_OPS

}  // namespace pq::compute::ref
