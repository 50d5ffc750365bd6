// Tests of the hybrid-layer ops (hybrid_ops.h): central-difference gradient checks of every
// `ref` backward (double), forwards computed by hand, `cpu` vs `ref` parity on random data,
// and the fast cpu::GatedDeltaRule / Backward against ref::GatedDeltaRule (deltanet.h).
// Gradient buffers start nonzero, so every check also proves that backward ops accumulate.
#include "pq/compute/hybrid_ops.h"

#include <cmath>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "pq/compute/deltanet.h"
#include "pq/compute/ops.h"
#include "pq/compute/ops_test_util.h"

namespace pq::compute {
namespace {

using testing::ExpectGradient;
using testing::ExpectScaledNear;
using testing::FVec;
using testing::GradBuffer;
using testing::Random;
using testing::ToFloat;
using testing::Vec;

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double Silu(double x) { return x * Sigmoid(x); }

Vec Concat(const Vec& a, const Vec& b) {
  Vec c = a;
  c.insert(c.end(), b.begin(), b.end());
  return c;
}

// ===== Gradient checks of the ref ops (double) ===========================================

TEST(HybridRefGrad, CausalConv1dSilu) {
  std::mt19937 rng(101);
  struct Case {
    int64_t t, c, k;
  };
  for (const Case s : {Case{6, 5, 4}, Case{6, 3, 1}, Case{1, 4, 4}, Case{3, 2, 4}, Case{9, 7, 2}}) {
    SCOPED_TRACE(::testing::Message() << "T=" << s.t << " C=" << s.c << " Kc=" << s.k);
    Vec x = Random(s.t * s.c, rng, -2.0, 2.0), w = Random(s.c * s.k, rng);
    Vec y(x.size());
    auto forward = [&] {
      ref::CausalConv1dSilu(x, w, y, s.t, s.c, s.k);
      return y;
    };
    const Vec r = Random(s.t * s.c, rng);
    GradBuffer dx(s.t * s.c, rng), dw(s.c * s.k, rng);
    ref::CausalConv1dSiluBackward(r, x, w, dx.value, dw.value, s.t, s.c, s.k);
    ExpectGradient(x, dx.Delta(), forward, r, "CausalConv1dSilu dx");
    ExpectGradient(w, dw.Delta(), forward, r, "CausalConv1dSilu dw");
  }
}

TEST(HybridRefGrad, L2Norm) {
  std::mt19937 rng(102);
  struct Case {
    int64_t rows, dim;
    float scale;
  };
  for (const Case s :
       {Case{4, 7, 1.0f}, Case{1, 10, 0.25f}, Case{3, 16, 0.25f}, Case{2, 1, 1.0f}}) {
    SCOPED_TRACE(::testing::Message() << "R=" << s.rows << " Dh=" << s.dim);
    Vec x = Random(s.rows * s.dim, rng, -2.0, 2.0);
    Vec y(x.size()), inv(static_cast<size_t>(s.rows));
    const float eps = s.dim == 1 ? 0.5f : 1e-6f;  // Dh=1: y = x/|x| is flat without eps
    auto forward = [&] {
      ref::L2Norm(x, eps, s.scale, y, inv, s.rows, s.dim);
      return y;
    };
    forward();
    const Vec r = Random(s.rows * s.dim, rng);
    GradBuffer dx(s.rows * s.dim, rng);
    ref::L2NormBackward(r, x, inv, s.scale, dx.value, s.rows, s.dim);
    ExpectGradient(x, dx.Delta(), forward, r, "L2Norm dx");
  }
}

TEST(HybridRefGrad, GatedRmsNorm) {
  std::mt19937 rng(103);
  struct Case {
    int64_t rows, dim;
  };
  for (const Case s : {Case{3, 7}, Case{1, 10}, Case{2, 16}}) {
    SCOPED_TRACE(::testing::Message() << "R=" << s.rows << " Dh=" << s.dim);
    Vec x = Random(s.rows * s.dim, rng, -2.0, 2.0), z = Random(s.rows * s.dim, rng, -4.0, 4.0);
    z[0] = 12.0;  // saturated gates on both sides
    z[1] = -12.0;
    Vec w = Random(s.dim, rng, 0.5, 1.5);
    Vec y(x.size()), rstd(static_cast<size_t>(s.rows));
    const float eps = 1e-3f;
    auto forward = [&] {
      ref::GatedRmsNorm(x, z, w, eps, y, rstd, s.rows, s.dim);
      return y;
    };
    forward();
    const Vec r = Random(s.rows * s.dim, rng);
    GradBuffer dx(s.rows * s.dim, rng), dz(s.rows * s.dim, rng), dw(s.dim, rng);
    ref::GatedRmsNormBackward(r, x, z, w, rstd, dx.value, dz.value, dw.value, s.rows, s.dim);
    ExpectGradient(x, dx.Delta(), forward, r, "GatedRmsNorm dx");
    ExpectGradient(z, dz.Delta(), forward, r, "GatedRmsNorm dz");
    ExpectGradient(w, dw.Delta(), forward, r, "GatedRmsNorm dw");
  }
}

TEST(HybridRefGrad, DeltaGates) {
  std::mt19937 rng(104);
  for (const int64_t t : {5, 1}) {
    SCOPED_TRACE(::testing::Message() << "T=" << t);
    const int64_t hv = 3;
    Vec a = Random(t * hv, rng, -4.0, 4.0), b = Random(t * hv, rng, -4.0, 4.0);
    const Vec a_log = Random(hv, rng, -1.0, 1.0), dt_bias = Random(hv, rng, -1.0, 1.0);
    a[0] = 25.0 - dt_bias[0];  // above the softplus threshold: softplus(x) = x
    if (t > 1) a[1] = -25.0 - dt_bias[1];
    Vec g(a.size()), beta(a.size());
    auto forward = [&] {
      ref::DeltaGates(a, b, a_log, dt_bias, g, beta, t, hv);
      return Concat(g, beta);
    };
    const Vec rg = Random(t * hv, rng), rb = Random(t * hv, rng);
    GradBuffer da(t * hv, rng), db(t * hv, rng);
    ref::DeltaGatesBackward(rg, rb, a, b, a_log, dt_bias, da.value, db.value, t, hv);
    ExpectGradient(a, da.Delta(), forward, Concat(rg, rb), "DeltaGates da");
    ExpectGradient(b, db.Delta(), forward, Concat(rg, rb), "DeltaGates db");
  }
}

TEST(HybridRefGrad, SigmoidGate) {
  std::mt19937 rng(105);
  struct Case {
    int64_t t, n, groups;
  };
  for (const Case s : {Case{4, 6, 1}, Case{4, 6, 2}, Case{4, 6, 3}, Case{4, 6, 6}, Case{1, 9, 3}}) {
    SCOPED_TRACE(::testing::Message() << "T=" << s.t << " N=" << s.n << " G=" << s.groups);
    Vec x = Random(s.t * s.n, rng), gate = Random(s.t * s.groups, rng, -3.0, 3.0);
    Vec y(x.size());
    auto forward = [&] {
      ref::SigmoidGate(x, gate, y, s.t, s.n, s.groups);
      return y;
    };
    const Vec r = Random(s.t * s.n, rng);
    GradBuffer dx(s.t * s.n, rng), dgate(s.t * s.groups, rng);
    ref::SigmoidGateBackward(r, x, gate, dx.value, dgate.value, s.t, s.n, s.groups);
    ExpectGradient(x, dx.Delta(), forward, r, "SigmoidGate dx");
    ExpectGradient(gate, dgate.Delta(), forward, r, "SigmoidGate dgate");
  }
}

TEST(HybridRefGrad, RepeatHeads) {
  std::mt19937 rng(106);
  struct Case {
    int64_t t, hk, r, dh;
  };
  for (const Case s : {Case{3, 2, 1, 5}, Case{3, 2, 3, 5}, Case{1, 3, 3, 2}}) {
    SCOPED_TRACE(::testing::Message() << "T=" << s.t << " Hk=" << s.hk << " r=" << s.r);
    Vec x = Random(s.t * s.hk * s.dh, rng);
    Vec y(static_cast<size_t>(s.t * s.hk * s.r * s.dh));
    auto forward = [&] {
      ref::RepeatHeads(x, y, s.t, s.hk, s.r, s.dh);
      return y;
    };
    const Vec r = Random(static_cast<int64_t>(y.size()), rng);
    GradBuffer dx(s.t * s.hk * s.dh, rng);
    ref::RepeatHeadsBackward(r, dx.value, s.t, s.hk, s.r, s.dh);
    ExpectGradient(x, dx.Delta(), forward, r, "RepeatHeads dx");
  }
}

// ===== Forwards by hand (ref double and cpu float) =======================================

constexpr double kHandTolDouble = 1e-14;  // relative
constexpr double kHandTolFloat = 1e-6;    // relative

void ExpectHand(const Vec& got, const FVec& got_f, const Vec& want, const std::string& what) {
  ExpectScaledNear(got, want, kHandTolDouble, what + " (ref double)");
  ExpectScaledNear(got_f, want, kHandTolFloat, what + " (cpu float)");
}

// T=4, C=3, Kc=3: channel 0 w = [0,0,1] (current token only), channel 1 w = [1,0,0] (two
// tokens back), channel 2 w = [0.5,-1,2]: c_t = 0.5 x_{t-2} - x_{t-1} + 2 x_t.
TEST(HybridHand, CausalConv1dSilu) {
  const Vec x = {1, 5, 1, 2, 6, 2, 3, 7, 3, 4, 8, 4};  // [T=4, C=3]
  const Vec w = {0, 0, 1, 1, 0, 0, 0.5, -1, 2};        // [C=3, Kc=3]
  const Vec pre = {1, 0, 2, 2, 0, 3, 3, 5, 4.5, 4, 6, 6};
  Vec want(pre.size()), y(pre.size());
  for (size_t i = 0; i < pre.size(); ++i) want[i] = Silu(pre[i]);
  FVec yf(pre.size());
  ref::CausalConv1dSilu(x, w, y, 4, 3, 3);
  cpu::CausalConv1dSilu(ToFloat(x), ToFloat(w), yf, 4, 3, 3);
  ExpectHand(y, yf, want, "conv Kc=3");
  // Kc = 1: a pointwise scale.
  const Vec w1 = {2, -1, 0.5};
  for (size_t i = 0; i < x.size(); ++i) want[i] = Silu(w1[i % 3] * x[i]);
  ref::CausalConv1dSilu(x, w1, y, 4, 3, 1);
  cpu::CausalConv1dSilu(ToFloat(x), ToFloat(w1), yf, 4, 3, 1);
  ExpectHand(y, yf, want, "conv Kc=1");
}

TEST(HybridHand, L2Norm) {
  const Vec x = {3, 4, 0, 0};  // row 1 is zero: y = 0, inv = eps^(-1/2)
  Vec y(4), inv(2);
  FVec yf(4), invf(2);
  ref::L2Norm(x, 1e-6f, 0.5f, y, inv, 2, 2);
  cpu::L2Norm(ToFloat(x), 1e-6f, 0.5f, yf, invf, 2, 2);
  const double s = 1.0 / std::sqrt(25.0 + static_cast<double>(1e-6f));
  ExpectHand(y, yf, {1.5 * s, 2.0 * s, 0, 0}, "L2Norm y");
  ExpectHand(inv, invf, {s, 1.0 / std::sqrt(static_cast<double>(1e-6f))}, "L2Norm inv");
}

// x = [1,-1,1,-1] (rstd = 1 with eps 0), z far into both tails of the gate.
TEST(HybridHand, GatedRmsNormLargeZ) {
  const Vec x = {1, -1, 1, -1}, z = {40, -40, 800, -800}, w = {2, 3, 0.5, 1};
  Vec y(4), rstd(1);
  FVec yf(4), rstdf(1);
  ref::GatedRmsNorm(x, z, w, 0.0f, y, rstd, 1, 4);
  cpu::GatedRmsNorm(ToFloat(x), ToFloat(z), ToFloat(w), 0.0f, yf, rstdf, 1, 4);
  ExpectHand(y, yf, {80, -3 * Silu(-40), 400, 0}, "GatedRmsNorm y");
  ExpectHand(rstd, rstdf, {1}, "GatedRmsNorm rstd");
  // Backward stays finite in the tails; dz = dy w xh silu'(z) with silu'(±800) = 1, 0.
  Vec dx(4, 0.0), dz(4, 0.0), dw(4, 0.0);
  FVec dxf(4, 0.0f), dzf(4, 0.0f), dwf(4, 0.0f);
  const Vec dy = {1, 1, 1, 1};
  ref::GatedRmsNormBackward(dy, x, z, w, rstd, dx, dz, dw, 1, 4);
  cpu::GatedRmsNormBackward(ToFloat(dy), ToFloat(x), ToFloat(z), ToFloat(w), rstdf, dxf, dzf, dwf,
                            1, 4);
  ExpectHand(dz, dzf, {2, 0, 0.5, 0}, "GatedRmsNorm dz");
  ExpectHand(dw, dwf, {40, -Silu(-40), 800, 0}, "GatedRmsNorm dw");
}

// softplus(x) = x exactly for x > 20 (PyTorch), log1p(exp(x)) at and below 20.
TEST(HybridHand, DeltaGatesSoftplusThreshold) {
  const Vec a_log = {0.0, std::log(2.0)}, dt_bias = {5.0, 0.5};
  const Vec a = {20.0, -0.5, 15.0, 0.0};  // [T=2, Hv=2]: a + dt_bias = 25, 0, 20, 0.5
  const Vec b = {0.0, std::log(3.0), -std::log(3.0), 0.0};
  Vec g(4), beta(4);
  ref::DeltaGates(a, b, a_log, dt_bias, g, beta, 2, 2);
  EXPECT_EQ(g[0], -25.0);  // log1p(exp(25)) would be 25 + 1.4e-11
  EXPECT_NEAR(g[1], -2.0 * std::log(2.0), 1e-15);
  EXPECT_NEAR(g[2], -(20.0 + std::log1p(std::exp(-20.0))), 1e-14);
  EXPECT_LT(g[2], -20.0 - 1e-9);  // not thresholded at exactly 20
  EXPECT_NEAR(g[3], -2.0 * std::log1p(std::exp(0.5)), 1e-15);
  ExpectScaledNear(beta, {0.5, 0.75, 0.25, 0.5}, kHandTolDouble, "beta");
  FVec gf(4), betaf(4);
  cpu::DeltaGates(ToFloat(a), ToFloat(b), ToFloat(a_log), ToFloat(dt_bias), gf, betaf, 2, 2);
  ExpectScaledNear(gf, g, kHandTolFloat, "cpu g");
  ExpectScaledNear(betaf, beta, kHandTolFloat, "cpu beta");
  // da = dg (-exp(a_log)) softplus': exactly -1 at 25 (torch's backward), sigmoid at <= 20.
  const Vec ones = {1, 1, 1, 1};
  Vec da(4, 0.0);
  ref::DeltaGatesBackward(ones, ones, a, b, a_log, dt_bias, da, {}, 2, 2);
  ExpectScaledNear(da, {-1.0, -2.0 * 0.5, -Sigmoid(20.0), -2.0 * Sigmoid(0.5)}, kHandTolDouble,
                   "da");
}

TEST(HybridHand, SigmoidGateAndRepeatHeads) {
  const Vec x = {1, 2, 3, 4};
  Vec y(4);
  FVec yf(4);
  ref::SigmoidGate(x, Vec{0.0, std::log(3.0)}, y, 1, 4, 2);
  cpu::SigmoidGate(ToFloat(x), ToFloat({0.0, std::log(3.0)}), yf, 1, 4, 2);
  ExpectHand(y, yf, {0.5, 1.0, 2.25, 3.0}, "SigmoidGate G=2");
  ref::SigmoidGate(x, Vec{0.0}, y, 1, 4, 1);
  cpu::SigmoidGate(ToFloat(x), ToFloat({0.0}), yf, 1, 4, 1);
  ExpectHand(y, yf, {0.5, 1.0, 1.5, 2.0}, "SigmoidGate G=1");
  Vec rep(12);
  FVec repf(12);
  ref::RepeatHeads(x, rep, 1, 2, 3, 2);  // x[T=1, Hk=2, Dh=2], r = 3
  cpu::RepeatHeads(ToFloat(x), repf, 1, 2, 3, 2);
  ExpectHand(rep, repf, {1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4}, "RepeatHeads");
}

// ===== cpu vs ref parity (random data) ===================================================

// Scaled-error tolerances (max |err| / max |ref|), float op vs ref<double>; observed maxima
// are 5-10x smaller (1e-7 .. 2e-7).
constexpr double kConvTol = 1e-6;
constexpr double kL2NormTol = 2e-6;  // Dh=1 is pure cancellation: 6e-7 observed
constexpr double kGatedRmsNormTol = 1e-6;
constexpr double kDeltaGatesTol = 1e-6;
constexpr double kSigmoidGateTol = 1e-6;
constexpr double kRepeatHeadsTol = 5e-7;  // forward is an exact copy

// The same values as double (for ref) and float (for cpu).
struct Tensor {
  Vec d;
  FVec f;
  Vec init;  // initial values (what a gradient accumulates onto)
  explicit Tensor(Vec v) : d(std::move(v)), f(ToFloat(d)), init(d) {}
  Tensor(int64_t n, std::mt19937& rng, double lo = -1.0, double hi = 1.0)
      : Tensor(Random(n, rng, lo, hi)) {}
  void Expect(double tol, const std::string& what) const { ExpectScaledNear(f, d, tol, what); }
  // Scaled by the larger of the result and the op's contribution (as ops_parity_test.cc).
  void ExpectGrad(double tol, const std::string& what) const {
    ExpectScaledNear(f, d, tol, what,
                     std::max(testing::MaxAbs(d), testing::MaxAbs(testing::Minus(d, init))));
  }
};

void ConvCase(std::mt19937& rng, int64_t t, int64_t c, int64_t k) {
  SCOPED_TRACE(::testing::Message() << "Conv T=" << t << " C=" << c << " Kc=" << k);
  const Tensor x(t * c, rng, -2.0, 2.0), w(c * k, rng), dy(t * c, rng);
  Tensor y(t * c, rng), dx(t * c, rng), dw(c * k, rng);
  ref::CausalConv1dSilu(x.d, w.d, y.d, t, c, k);
  cpu::CausalConv1dSilu(x.f, w.f, y.f, t, c, k);
  y.Expect(kConvTol, "y");
  ref::CausalConv1dSiluBackward(dy.d, x.d, w.d, dx.d, dw.d, t, c, k);
  cpu::CausalConv1dSiluBackward(dy.f, x.f, w.f, dx.f, dw.f, t, c, k);
  dx.ExpectGrad(kConvTol, "dx");
  dw.ExpectGrad(kConvTol, "dw");
}

void L2NormCase(std::mt19937& rng, int64_t rows, int64_t dim, float scale) {
  SCOPED_TRACE(::testing::Message() << "L2Norm R=" << rows << " Dh=" << dim);
  const Tensor x(rows * dim, rng, -2.0, 2.0), dy(rows * dim, rng);
  Tensor y(rows * dim, rng), inv(rows, rng), dx(rows * dim, rng);
  ref::L2Norm(x.d, 1e-6f, scale, y.d, inv.d, rows, dim);
  cpu::L2Norm(x.f, 1e-6f, scale, y.f, inv.f, rows, dim);
  y.Expect(kL2NormTol, "y");
  inv.Expect(kL2NormTol, "inv");
  ref::L2NormBackward(dy.d, x.d, inv.d, scale, dx.d, rows, dim);
  cpu::L2NormBackward(dy.f, x.f, inv.f, scale, dx.f, rows, dim);
  dx.ExpectGrad(kL2NormTol, "dx");
}

void GatedRmsNormCase(std::mt19937& rng, int64_t rows, int64_t dim) {
  SCOPED_TRACE(::testing::Message() << "GatedRmsNorm R=" << rows << " Dh=" << dim);
  Vec zv = Random(rows * dim, rng, -6.0, 6.0);
  if (zv.size() > 2) zv[1] = -100.0;  // saturated gate (not alone: the metric needs a scale)
  const Tensor x(rows * dim, rng, -2.0, 2.0), z(zv), w(dim, rng, 0.5, 1.5), dy(rows * dim, rng);
  Tensor y(rows * dim, rng), rstd(rows, rng), dx(rows * dim, rng), dz(rows * dim, rng),
      dw(dim, rng);
  ref::GatedRmsNorm(x.d, z.d, w.d, 1e-6f, y.d, rstd.d, rows, dim);
  cpu::GatedRmsNorm(x.f, z.f, w.f, 1e-6f, y.f, rstd.f, rows, dim);
  y.Expect(kGatedRmsNormTol, "y");
  rstd.Expect(kGatedRmsNormTol, "rstd");
  ref::GatedRmsNormBackward(dy.d, x.d, z.d, w.d, rstd.d, dx.d, dz.d, dw.d, rows, dim);
  cpu::GatedRmsNormBackward(dy.f, x.f, z.f, w.f, rstd.f, dx.f, dz.f, dw.f, rows, dim);
  dx.ExpectGrad(kGatedRmsNormTol, "dx");
  dz.ExpectGrad(kGatedRmsNormTol, "dz");
  dw.ExpectGrad(kGatedRmsNormTol, "dw");
}

void DeltaGatesCase(std::mt19937& rng, int64_t t, int64_t hv) {
  SCOPED_TRACE(::testing::Message() << "DeltaGates T=" << t << " Hv=" << hv);
  const Tensor a(t * hv, rng, -8.0, 8.0), b(t * hv, rng, -8.0, 8.0), a_log(hv, rng, -2.0, 2.0),
      dt_bias(hv, rng, -2.0, 2.0), dg(t * hv, rng), dbeta(t * hv, rng);
  Tensor g(t * hv, rng), beta(t * hv, rng), da(t * hv, rng), db(t * hv, rng);
  ref::DeltaGates(a.d, b.d, a_log.d, dt_bias.d, g.d, beta.d, t, hv);
  cpu::DeltaGates(a.f, b.f, a_log.f, dt_bias.f, g.f, beta.f, t, hv);
  g.Expect(kDeltaGatesTol, "g");
  beta.Expect(kDeltaGatesTol, "beta");
  ref::DeltaGatesBackward(dg.d, dbeta.d, a.d, b.d, a_log.d, dt_bias.d, da.d, db.d, t, hv);
  cpu::DeltaGatesBackward(dg.f, dbeta.f, a.f, b.f, a_log.f, dt_bias.f, da.f, db.f, t, hv);
  da.ExpectGrad(kDeltaGatesTol, "da");
  db.ExpectGrad(kDeltaGatesTol, "db");
}

void SigmoidGateCase(std::mt19937& rng, int64_t t, int64_t n, int64_t groups) {
  SCOPED_TRACE(::testing::Message() << "SigmoidGate T=" << t << " N=" << n << " G=" << groups);
  const Tensor x(t * n, rng), gate(t * groups, rng, -6.0, 6.0), dy(t * n, rng);
  Tensor y(t * n, rng), dx(t * n, rng), dgate(t * groups, rng);
  ref::SigmoidGate(x.d, gate.d, y.d, t, n, groups);
  cpu::SigmoidGate(x.f, gate.f, y.f, t, n, groups);
  y.Expect(kSigmoidGateTol, "y");
  ref::SigmoidGateBackward(dy.d, x.d, gate.d, dx.d, dgate.d, t, n, groups);
  cpu::SigmoidGateBackward(dy.f, x.f, gate.f, dx.f, dgate.f, t, n, groups);
  dx.ExpectGrad(kSigmoidGateTol, "dx");
  dgate.ExpectGrad(kSigmoidGateTol, "dgate");
}

void RepeatHeadsCase(std::mt19937& rng, int64_t t, int64_t hk, int64_t r, int64_t dh) {
  SCOPED_TRACE(::testing::Message() << "RepeatHeads T=" << t << " Hk=" << hk << " r=" << r);
  const Tensor x(t * hk * dh, rng), dy(t * hk * r * dh, rng);
  Tensor y(t * hk * r * dh, rng), dx(t * hk * dh, rng);
  ref::RepeatHeads(x.d, y.d, t, hk, r, dh);
  cpu::RepeatHeads(x.f, y.f, t, hk, r, dh);
  y.Expect(0.0, "y");
  ref::RepeatHeadsBackward(dy.d, dx.d, t, hk, r, dh);
  cpu::RepeatHeadsBackward(dy.f, dx.f, t, hk, r, dh);
  dx.ExpectGrad(kRepeatHeadsTol, "dx");
}

void AllParityCases() {
  std::mt19937 rng(107);
  for (const int64_t k : {4, 1}) {
    ConvCase(rng, 1, 1, k);
    ConvCase(rng, 1, 7, k);
    ConvCase(rng, 5, 13, k);
    ConvCase(rng, 67, 300, k);  // 5 channel blocks, the last partial
    ConvCase(rng, 200, 130, k);
  }
  ConvCase(rng, 3, 70, 4);  // T < Kc
  for (const float scale : {1.0f, 0.0883883476f}) {
    L2NormCase(rng, 1, 1, scale);
    L2NormCase(rng, 1, 7, scale);
    L2NormCase(rng, 67, 128, scale);
    L2NormCase(rng, 300, 130, scale);
  }
  GatedRmsNormCase(rng, 1, 3);
  GatedRmsNormCase(rng, 5, 7);
  GatedRmsNormCase(rng, 67, 128);
  GatedRmsNormCase(rng, 300, 130);
  DeltaGatesCase(rng, 1, 1);
  DeltaGatesCase(rng, 5, 3);
  DeltaGatesCase(rng, 2000, 32);
  for (const int64_t groups : {1, 3, 12}) {
    SigmoidGateCase(rng, 1, 12, groups);
    SigmoidGateCase(rng, 67, 12, groups);
  }
  SigmoidGateCase(rng, 300, 512, 4);
  SigmoidGateCase(rng, 300, 512, 512);
  for (const int64_t r : {1, 3}) {
    RepeatHeadsCase(rng, 1, 1, r, 1);
    RepeatHeadsCase(rng, 5, 2, r, 7);
    RepeatHeadsCase(rng, 67, 16, r, 128);
  }
}

TEST(HybridCpuParity, AllOpsOneThread) {
  cpu::SetNumThreads(1);
  AllParityCases();
  cpu::SetNumThreads(0);
}

TEST(HybridCpuParity, AllOpsTwoThreads) {
  cpu::SetNumThreads(2);
  AllParityCases();
  cpu::SetNumThreads(0);
}

// ===== cpu::GatedDeltaRule(Backward) vs ref::GatedDeltaRule(Backward) ====================

// Scaled-error tolerances, cpu (float state, float sums) vs ref<float> (double inside);
// observed maxima: 4e-7 forward, 5e-7 backward (T=256, Dk=Dv=128).
constexpr double kDeltaRuleForwardTol = 5e-6;
constexpr double kDeltaRuleBackwardTol = 1e-5;

struct DeltaShape {
  int64_t t, h, dk, dv;
  double g_lo = -3.0;  // g in [g_lo, 0): log decay
};

// Inputs as the model feeds them: q = l2norm(q_raw)/sqrt(Dk), k = l2norm(k_raw), β in (0,1).
struct DeltaProblem {
  FVec q, k, v, g, beta, dout;
};

FVec NormalisedRows(int64_t rows, int64_t dim, double scale, std::mt19937& rng) {
  Vec x = Random(rows * dim, rng);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i)
      ss += x[static_cast<size_t>(r * dim + i)] * x[static_cast<size_t>(r * dim + i)];
    for (int64_t i = 0; i < dim; ++i)
      x[static_cast<size_t>(r * dim + i)] *= scale / std::sqrt(ss + 1e-6);
  }
  return ToFloat(x);
}

DeltaProblem MakeDeltaProblem(const DeltaShape& s, std::mt19937& rng) {
  const int64_t rows = s.t * s.h;
  return {NormalisedRows(rows, s.dk, 1.0 / std::sqrt(static_cast<double>(s.dk)), rng),
          NormalisedRows(rows, s.dk, 1.0, rng),
          ToFloat(Random(rows * s.dv, rng, -2.0, 2.0)),
          ToFloat(Random(rows, rng, s.g_lo, 0.0)),
          ToFloat(Random(rows, rng, 1e-3, 1.0)),
          ToFloat(Random(rows * s.dv, rng))};
}

// Output of one implementation: out, final state and the gradients.
struct DeltaResult {
  FVec out, state, dq, dk, dv, dg, dbeta;
};

// Forward, then backward TWICE onto zeroed gradients: the result is twice the gradient only
// if backward accumulates (+=). (Accumulating onto random values instead would bury the small
// dv, ~0.03 at Dk=Dv=128, under the rounding of the sum.)
template <typename Fwd, typename Bwd>
DeltaResult RunDelta(const DeltaProblem& p, const DeltaShape& s, Fwd fwd, Bwd bwd) {
  const auto n = [](int64_t x) { return FVec(static_cast<size_t>(x)); };
  const int64_t rows = s.t * s.h;
  DeltaResult r{n(rows * s.dv), n(s.h * s.dk * s.dv), n(rows * s.dk),
                n(rows * s.dk), n(rows * s.dv),       n(rows),
                n(rows)};
  fwd(p.q, p.k, p.v, p.g, p.beta, r.out, r.state, s.t, s.h, s.dk, s.dv);
  for (int i = 0; i < 2; ++i)
    bwd(p.dout, p.q, p.k, p.v, p.g, p.beta, r.dq, r.dk, r.dv, r.dg, r.dbeta, s.t, s.h, s.dk, s.dv);
  return r;
}

void RefForward(const FVec& q, const FVec& k, const FVec& v, const FVec& g, const FVec& b, FVec& o,
                FVec& st, int64_t t, int64_t h, int64_t dk, int64_t dv) {
  ref::GatedDeltaRule(std::span<const float>(q), k, v, g, b, o, st, t, h, dk, dv);
}

void RefBackward(const FVec& d_o, const FVec& q, const FVec& k, const FVec& v, const FVec& g,
                 const FVec& b, FVec& dq, FVec& dk, FVec& dv, FVec& dg, FVec& db, int64_t t,
                 int64_t h, int64_t kd, int64_t vd) {
  ref::GatedDeltaRuleBackward(std::span<const float>(d_o), q, k, v, g, b, dq, dk, dv, dg, db, t, h,
                              kd, vd);
}

Vec ToDouble(const FVec& f) { return Vec(f.begin(), f.end()); }

// `nonzero`: the gradient must not vanish (else the comparison proves little).
void ExpectGradNear(const FVec& got, const FVec& want, const char* what, bool nonzero = true) {
  ExpectScaledNear(got, ToDouble(want), kDeltaRuleBackwardTol, what);
  if (nonzero) {
    EXPECT_GT(testing::MaxAbs(ToDouble(want)), 1e-3) << what << ": degenerate, ~0";
  }
}

void DeltaRuleCase(const DeltaShape& s, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << "GatedDeltaRule T=" << s.t << " H=" << s.h << " Dk=" << s.dk
                                    << " Dv=" << s.dv << " g_lo=" << s.g_lo);
  const DeltaProblem p = MakeDeltaProblem(s, rng);
  const DeltaResult want = RunDelta(p, s, RefForward, RefBackward);
  const DeltaResult got = RunDelta(p, s, cpu::GatedDeltaRule, cpu::GatedDeltaRuleBackward);
  ExpectScaledNear(got.out, ToDouble(want.out), kDeltaRuleForwardTol, "out");
  ExpectScaledNear(got.state, ToDouble(want.state), kDeltaRuleForwardTol, "state");
  ExpectGradNear(got.dq, want.dq, "dq");
  ExpectGradNear(got.dk, want.dk, "dk");
  ExpectGradNear(got.dv, want.dv, "dv");
  ExpectGradNear(got.dg, want.dg, "dg", s.t > 1);  // T=1: S_0 = 0, so dg = 0
  ExpectGradNear(got.dbeta, want.dbeta, "dbeta");
}

void SmallDeltaRuleCases() {
  std::mt19937 rng(108);
  for (const int64_t t : {1, 7, 64, 65, 128, 200}) DeltaRuleCase({t, 3, 16, 24}, rng);
  DeltaRuleCase({9, 2, 1, 3}, rng);             // Dk = 1: only the scalar tails of the row kernels
  DeltaRuleCase({70, 2, 5, 11}, rng);           // Dk, Dv not multiples of 8
  DeltaRuleCase({70, 2, 8, 72}, rng);           // two column blocks, the second partial
  DeltaRuleCase({150, 2, 16, 24, -30.0}, rng);  // α down to e^-30: inverting would blow up
}

TEST(HybridDeltaRule, CpuMatchesRefOneThread) {
  cpu::SetNumThreads(1);
  SmallDeltaRuleCases();
  cpu::SetNumThreads(0);
}

TEST(HybridDeltaRule, CpuMatchesRefTwoThreads) {
  cpu::SetNumThreads(2);
  SmallDeltaRuleCases();
  cpu::SetNumThreads(0);
}

TEST(HybridDeltaRule, CpuMatchesRefRealisticSize) {
  std::mt19937 rng(109);
  DeltaRuleCase({256, 4, 128, 128, -1.0}, rng);
}

TEST(HybridDeltaRule, CpuBackwardSkipsEmptyGradients) {
  std::mt19937 rng(110);
  const DeltaShape s{70, 2, 8, 4};
  const DeltaProblem p = MakeDeltaProblem(s, rng);
  const auto n = static_cast<size_t>(s.t * s.h);
  FVec dq(p.q.size()), dk(p.k.size()), dv(p.v.size()), dg(n), dbeta(n), only_dg(n),
      only_dv(dv.size());
  cpu::GatedDeltaRuleBackward(p.dout, p.q, p.k, p.v, p.g, p.beta, dq, dk, dv, dg, dbeta, s.t, s.h,
                              s.dk, s.dv);
  cpu::GatedDeltaRuleBackward(p.dout, p.q, p.k, p.v, p.g, p.beta, {}, {}, {}, only_dg, {}, s.t, s.h,
                              s.dk, s.dv);
  cpu::GatedDeltaRuleBackward(p.dout, p.q, p.k, p.v, p.g, p.beta, {}, {}, only_dv, {}, {}, s.t, s.h,
                              s.dk, s.dv);
  EXPECT_EQ(only_dg, dg);
  EXPECT_EQ(only_dv, dv);
  FVec out(dv.size());
  cpu::GatedDeltaRule(p.q, p.k, p.v, p.g, p.beta, out, {}, s.t, s.h, s.dk, s.dv);  // no state
}

// ===== Contract: shapes are checked, zero tokens are fine ================================

TEST(HybridOps, ShapeMismatchesAbort) {
  const FVec x(6), w(8);
  FVec y(6), small(5);
  EXPECT_DEATH(cpu::CausalConv1dSilu(small, w, y, 3, 2, 4), "x\\[T,C\\] has 5 elements");
  EXPECT_DEATH(cpu::CausalConv1dSiluBackward(x, x, w, small, {}, 3, 2, 4), "dx\\[T,C\\]");
  EXPECT_DEATH(cpu::SigmoidGate(x, x, y, 1, 6, 4), "multiple of groups");
  EXPECT_DEATH(cpu::RepeatHeads(x, small, 1, 2, 3, 3), "y\\[T,Hk\\*r,Dh\\]");
  EXPECT_DEATH(ref::L2Norm(std::span<const float>(x), 1e-6f, 1.0f, y, small, 2, 3), "inv\\[R\\]");
  EXPECT_DEATH(cpu::GatedDeltaRule(x, x, x, small, small, y, {}, 1, 2, 3, 3), "g\\[T,H\\]");
  EXPECT_DEATH(
      cpu::GatedDeltaRuleBackward(y, x, x, x, FVec(2), FVec(2), {}, {}, {}, small, {}, 1, 2, 3, 3),
      "dg\\[T,H\\]");
}

TEST(HybridOps, ZeroTokens) {
  const FVec none, w(8), a_log(2);
  FVec out;
  cpu::CausalConv1dSilu(none, w, out, 0, 2, 4);
  cpu::CausalConv1dSiluBackward(none, none, w, out, {}, 0, 2, 4);
  cpu::DeltaGates(none, none, a_log, a_log, out, out, 0, 2);
  cpu::GatedDeltaRule(none, none, none, none, none, out, {}, 0, 2, 3, 3);
  cpu::GatedDeltaRuleBackward(none, none, none, none, none, none, {}, {}, {}, {}, {}, 0, 2, 3, 3);
  SUCCEED();
}

}  // namespace
}  // namespace pq::compute
