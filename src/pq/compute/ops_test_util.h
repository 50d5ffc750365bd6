// Test helpers for the compute ops: random tensors, error metrics, finite-difference checks.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace pq::compute::testing {

using Vec = std::vector<double>;
using FVec = std::vector<float>;

// Uniform values in [lo, hi), rounded to float so float and double ops see the same inputs.
inline Vec Random(int64_t n, std::mt19937& rng, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec v(static_cast<size_t>(n));
  for (double& x : v) x = static_cast<double>(static_cast<float>(dist(rng)));
  return v;
}

inline FVec ToFloat(const Vec& v) {
  FVec f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = static_cast<float>(v[i]);
  return f;
}

inline Vec Minus(const Vec& a, const Vec& b) {
  Vec d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

inline double MaxAbs(const Vec& v) {
  double m = 0.0;
  for (const double x : v) m = std::max(m, std::abs(x));
  return m;
}

// max_i |got_i - want_i| / scale, scale = max_i |want_i| unless given: the error relative to
// the tensor's scale (elementwise relative error is meaningless where a value cancels to ~0).
template <typename G>
double ScaledError(const std::vector<G>& got, const Vec& want, double scale = -1.0) {
  EXPECT_EQ(got.size(), want.size());
  double err = 0.0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - want[i]);
    if (!(d <= err)) err = d;  // NaN propagates
  }
  if (scale < 0.0) scale = MaxAbs(want);
  return scale > 0.0 ? err / scale : err;
}

template <typename G>
void ExpectScaledNear(const std::vector<G>& got, const Vec& want, double tol,
                      const std::string& what, double scale = -1.0) {
  const double err = ScaledError(got, want, scale);
  EXPECT_LE(err, tol) << what << ": max error / scale = " << err << " (tolerance " << tol << ")";
}

// Central differences of L(p) = sum(r . forward()) w.r.t. every element of `param` (perturbed
// in place and restored), compared with `analytic` in the scaled metric above.
inline constexpr double kFiniteDiffStep = 1e-6;
inline constexpr double kGradTol = 1e-6;

inline void ExpectGradient(Vec& param, const Vec& analytic, const std::function<Vec()>& forward,
                           const Vec& r, const std::string& what) {
  ASSERT_EQ(param.size(), analytic.size()) << what;
  auto loss = [&] {
    const Vec y = forward();
    EXPECT_EQ(y.size(), r.size()) << what;
    double l = 0.0;
    for (size_t i = 0; i < std::min(y.size(), r.size()); ++i) l += r[i] * y[i];
    return l;
  };
  Vec numeric(param.size());
  for (size_t i = 0; i < param.size(); ++i) {
    const double saved = param[i];
    param[i] = saved + kFiniteDiffStep;
    const double lp = loss();
    param[i] = saved - kFiniteDiffStep;
    const double lm = loss();
    param[i] = saved;
    numeric[i] = (lp - lm) / (2.0 * kFiniteDiffStep);
  }
  EXPECT_GT(MaxAbs(numeric), 1e-3) << what << ": degenerate check, gradient is ~0";
  const double err = ScaledError(analytic, numeric);
  EXPECT_LE(err, kGradTol) << what
                           << ": analytic vs central differences, max error / max |grad| = " << err;
}

// A gradient buffer prefilled with random values, so checks also prove backward ACCUMULATES.
struct GradBuffer {
  Vec init, value;
  GradBuffer(int64_t n, std::mt19937& rng) : init(Random(n, rng)), value(init) {}
  Vec Delta() const { return Minus(value, init); }
};

}  // namespace pq::compute::testing
