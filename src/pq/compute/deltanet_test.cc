// Tests of the reference Gated DeltaNet recurrence (deltanet.h): gradient checks by central
// differences, a naive re-implementation with explicit matrices, a case done on paper, and
// float vs double.
#include "pq/compute/deltanet.h"
#include "pq/compute/hybrid_ops.h"

#include <cmath>
#include <random>
#include <span>
#include <vector>

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

struct Shape {
  int64_t t, h, dk, dv;
};

// Inputs as the model feeds them: q = l2norm(q_raw)/sqrt(Dk), k = l2norm(k_raw), g ≤ 0 (log
// decay), β in (0, 1). Rounded to float so the float and double ops see the same values.
struct Problem {
  Vec q, k, v, g, beta;
};

void NormaliseRows(Vec& x, int64_t dim, double scale) {
  for (size_t r = 0; r < x.size() / static_cast<size_t>(dim); ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
    const double f = scale / std::sqrt(ss + 1e-6);
    for (int64_t i = 0; i < dim; ++i)
      x[r * dim + i] = static_cast<double>(static_cast<float>(x[r * dim + i] * f));
  }
}

Problem MakeProblem(const Shape& s, std::mt19937& rng) {
  Problem p{Random(s.t * s.h * s.dk, rng), Random(s.t * s.h * s.dk, rng),
            Random(s.t * s.h * s.dv, rng, -2.0, 2.0), Random(s.t * s.h, rng, -1.5, -0.01),
            Random(s.t * s.h, rng, 0.05, 0.95)};
  NormaliseRows(p.q, s.dk, 1.0 / std::sqrt(static_cast<double>(s.dk)));
  NormaliseRows(p.k, s.dk, 1.0);
  return p;
}

// out[T,H,Dv] and final state[H,Dk,Dv] of the op (element type E).
template <typename E>
void RunOp(const Problem& p, const Shape& s, std::vector<E>& out, std::vector<E>& state) {
  const auto cast = [](const Vec& x) {
    std::vector<E> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<E>(x[i]);
    return y;
  };
  const std::vector<E> q = cast(p.q), k = cast(p.k), v = cast(p.v), g = cast(p.g),
                       beta = cast(p.beta);
  out.assign(static_cast<size_t>(s.t * s.h * s.dv), E{0});
  state.assign(static_cast<size_t>(s.h * s.dk * s.dv), E{0});
  ref::GatedDeltaRule(std::span<const E>(q), std::span<const E>(k), std::span<const E>(v),
                      std::span<const E>(g), std::span<const E>(beta), std::span<E>(out),
                      std::span<E>(state), s.t, s.h, s.dk, s.dv);
}

using Matrix = std::vector<std::vector<double>>;  // row-major [rows][cols]

Matrix MatMul(const Matrix& a, const Matrix& b) {
  Matrix c(a.size(), std::vector<double>(b[0].size(), 0.0));
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t l = 0; l < b.size(); ++l)
      for (size_t j = 0; j < b[0].size(); ++j) c[i][j] += a[i][l] * b[l][j];
  return c;
}

// Naive version, written differently: per head and step, the transition matrix
// A_t = α_t (I − β_t k_t k_tᵀ) [Dk,Dk] is materialised and S_t = A_t S_{t-1} + β_t k_t v_tᵀ.
void Naive(const Problem& p, const Shape& s, Vec& out, Vec& state) {
  out.assign(static_cast<size_t>(s.t * s.h * s.dv), 0.0);
  state.assign(static_cast<size_t>(s.h * s.dk * s.dv), 0.0);
  const size_t dk = static_cast<size_t>(s.dk), dv = static_cast<size_t>(s.dv);
  for (int64_t h = 0; h < s.h; ++h) {
    Matrix st(dk, std::vector<double>(dv, 0.0));
    for (int64_t t = 0; t < s.t; ++t) {
      const size_t row = static_cast<size_t>(t * s.h + h);
      const double alpha = std::exp(p.g[row]), beta = p.beta[row];
      const double* k = &p.k[row * dk];
      const double* v = &p.v[row * dv];
      const double* q = &p.q[row * dk];
      Matrix a(dk, std::vector<double>(dk, 0.0));
      for (size_t i = 0; i < dk; ++i)
        for (size_t j = 0; j < dk; ++j)
          a[i][j] = alpha * ((i == j ? 1.0 : 0.0) - beta * k[i] * k[j]);
      st = MatMul(a, st);
      for (size_t i = 0; i < dk; ++i)
        for (size_t j = 0; j < dv; ++j) st[i][j] += beta * k[i] * v[j];
      Matrix qrow(1, std::vector<double>(q, q + dk));
      const Matrix o = MatMul(qrow, st);  // (qᵀ S) = (Sᵀ q)ᵀ
      for (size_t j = 0; j < dv; ++j) out[row * dv + j] = o[0][j];
    }
    for (size_t i = 0; i < dk; ++i)
      for (size_t j = 0; j < dv; ++j) state[(static_cast<size_t>(h) * dk + i) * dv + j] = st[i][j];
  }
}

TEST(DeltaNetRef, GradientCheck) {
  std::mt19937 rng(11);
  const Shape s{5, 2, 3, 4};
  Problem p = MakeProblem(s, rng);
  Vec out(static_cast<size_t>(s.t * s.h * s.dv));
  Vec none;
  auto forward = [&] {
    ref::GatedDeltaRule(p.q, p.k, p.v, p.g, p.beta, out, none, s.t, s.h, s.dk, s.dv);
    return out;
  };
  const Vec r = Random(s.t * s.h * s.dv, rng);
  GradBuffer dq(s.t * s.h * s.dk, rng), dk(s.t * s.h * s.dk, rng), dv(s.t * s.h * s.dv, rng),
      dg(s.t * s.h, rng), dbeta(s.t * s.h, rng);
  ref::GatedDeltaRuleBackward(r, p.q, p.k, p.v, p.g, p.beta, dq.value, dk.value, dv.value, dg.value,
                              dbeta.value, s.t, s.h, s.dk, s.dv);
  ExpectGradient(p.q, dq.Delta(), forward, r, "GatedDeltaRule dq");
  ExpectGradient(p.k, dk.Delta(), forward, r, "GatedDeltaRule dk");
  ExpectGradient(p.v, dv.Delta(), forward, r, "GatedDeltaRule dv");
  ExpectGradient(p.g, dg.Delta(), forward, r, "GatedDeltaRule dg");
  ExpectGradient(p.beta, dbeta.Delta(), forward, r, "GatedDeltaRule dbeta");
}

TEST(DeltaNetRef, BackwardSkipsEmptyGradients) {
  std::mt19937 rng(12);
  const Shape s{4, 2, 3, 2};
  const Problem p = MakeProblem(s, rng);
  const Vec r = Random(s.t * s.h * s.dv, rng);
  Vec all_dg(static_cast<size_t>(s.t * s.h), 0.0), only_dg(all_dg.size(), 0.0);
  Vec dq(p.q.size()), dk(p.k.size()), dv(p.v.size()), dbeta(all_dg.size());
  ref::GatedDeltaRuleBackward(r, p.q, p.k, p.v, p.g, p.beta, dq, dk, dv, all_dg, dbeta, s.t, s.h,
                              s.dk, s.dv);
  ref::GatedDeltaRuleBackward(r, p.q, p.k, p.v, p.g, p.beta, {}, {}, {}, only_dg, {}, s.t, s.h,
                              s.dk, s.dv);
  EXPECT_EQ(only_dg, all_dg);
}

TEST(DeltaNetRef, ForwardMatchesNaive) {
  std::mt19937 rng(13);
  for (const Shape s : {Shape{5, 2, 3, 4}, Shape{17, 3, 8, 6}, Shape{1, 1, 4, 4}}) {
    SCOPED_TRACE(::testing::Message()
                 << "T=" << s.t << " H=" << s.h << " Dk=" << s.dk << " Dv=" << s.dv);
    const Problem p = MakeProblem(s, rng);
    Vec want_out, want_state;
    Naive(p, s, want_out, want_state);
    Vec out, state;
    RunOp(p, s, out, state);
    ExpectScaledNear(out, want_out, 1e-12, "double out");
    ExpectScaledNear(state, want_state, 1e-12, "double state");
    FVec fout, fstate;
    RunOp(p, s, fout, fstate);
    ExpectScaledNear(fout, want_out, 1e-6, "float out");
    ExpectScaledNear(fstate, want_state, 1e-6, "float state");
  }
}

// On paper, T=2, H=1, Dk=Dv=1, S_0 = 0:
//   t=1: q=1, k=1, v=2, g=0 (α=1), β=0.5:
//        S̃=0, u=0, δ=0.5·(2−0)=1, S_1=0+1·1=1, o_1=1·1=1
//   t=2: q=2, k=1, v=4, g=ln 0.5 (α=0.5), β=0.5:
//        S̃=0.5, u=0.5, δ=0.5·(4−0.5)=1.75, S_2=0.5+1.75=2.25, o_2=2.25·2=4.5
// Backward of L = o_2 (dout = [0, 1]):
//   t=2: dS=q·1=2, dq_2=S_2=2.25, dδ=dS·k=2, dk_2=dS·δ=3.5, dv_2=β·dδ=1, du=−1,
//        dβ_2=dδ·(v−u)=2·3.5=7, dS̃=2+1·(−1)=1, dk_2+=S̃·du=−0.5 → 3, dg_2=dS̃·S̃=0.5,
//        dS_1=α·dS̃=0.5
//   t=1: dq_1=0, dδ=0.5, dk_1=0.5·δ=0.5, dv_1=0.25, du=−0.25, dβ_1=0.5·2=1,
//        dS̃=0.5−0.25=0.25, dk_1+=S̃·du=0 → 0.5, dg_1=dS̃·S̃=0
// The case above through any implementation (element type T, tolerance tol).
template <typename T, typename Fwd, typename Bwd>
void CheckHandCase(Fwd fwd, Bwd bwd, double tol) {
  using V = std::vector<T>;
  const V q = {1, 2}, k = {1, 1}, v = {2, 4}, g = {0, static_cast<T>(std::log(0.5))},
          beta = {0.5, 0.5};
  V out(2), state(1);
  fwd(std::span<const T>(q), std::span<const T>(k), std::span<const T>(v), std::span<const T>(g),
      std::span<const T>(beta), std::span<T>(out), std::span<T>(state), 2, 1, 1, 1);
  EXPECT_NEAR(out[0], 1.0, tol);
  EXPECT_NEAR(out[1], 4.5, tol);
  EXPECT_NEAR(state[0], 2.25, tol);
  const V dout = {0, 1};
  V dq(2), dk(2), dv(2), dg(2), dbeta(2);
  bwd(std::span<const T>(dout), std::span<const T>(q), std::span<const T>(k),
      std::span<const T>(v), std::span<const T>(g), std::span<const T>(beta), std::span<T>(dq),
      std::span<T>(dk), std::span<T>(dv), std::span<T>(dg), std::span<T>(dbeta), 2, 1, 1, 1);
  const auto expect = [&](const V& got, const std::vector<double>& want, const char* what) {
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << what << i;
  };
  expect(dq, {0.0, 2.25}, "dq");
  expect(dk, {0.5, 3.0}, "dk");
  expect(dv, {0.25, 1.0}, "dv");
  expect(dg, {0.0, 0.5}, "dg");
  expect(dbeta, {1.0, 7.0}, "dbeta");
}

TEST(DeltaNetRef, HandCheckedTinyCase) {
  CheckHandCase<double>(
      [](auto... a) { ref::GatedDeltaRule(a...); },
      [](auto... a) { ref::GatedDeltaRuleBackward(a...); }, 1e-14);
}

// The fast op on the same case.
TEST(DeltaNetCpu, HandCheckedTinyCase) {
  CheckHandCase<float>(
      [](auto... a) { cpu::GatedDeltaRule(a...); },
      [](auto... a) { cpu::GatedDeltaRuleBackward(a...); }, 1e-6);
}

TEST(DeltaNetRef, FloatMatchesDouble) {
  std::mt19937 rng(14);
  const Shape s{33, 3, 16, 8};
  const Problem p = MakeProblem(s, rng);
  Vec out, state;
  FVec fout, fstate;
  RunOp(p, s, out, state);
  RunOp(p, s, fout, fstate);
  ExpectScaledNear(fout, out, 1e-5, "float vs double out");
  ExpectScaledNear(fstate, state, 1e-5, "float vs double state");
  // Backward.
  const Vec r = Random(s.t * s.h * s.dv, rng);
  Vec dq(p.q.size()), dk(p.k.size()), dv(p.v.size()), dg(p.g.size()), dbeta(p.g.size());
  ref::GatedDeltaRuleBackward(r, p.q, p.k, p.v, p.g, p.beta, dq, dk, dv, dg, dbeta, s.t, s.h, s.dk,
                              s.dv);
  const FVec fr = ToFloat(r), fq = ToFloat(p.q), fk = ToFloat(p.k), fv = ToFloat(p.v),
             fg = ToFloat(p.g), fb = ToFloat(p.beta);
  FVec fdq(dq.size()), fdk(dk.size()), fdv(dv.size()), fdg(dg.size()), fdbeta(dbeta.size());
  ref::GatedDeltaRuleBackward(std::span<const float>(fr), fq, fk, fv, fg, fb, fdq, fdk, fdv, fdg,
                              fdbeta, s.t, s.h, s.dk, s.dv);
  ExpectScaledNear(fdq, dq, 1e-5, "float vs double dq");
  ExpectScaledNear(fdk, dk, 1e-5, "float vs double dk");
  ExpectScaledNear(fdv, dv, 1e-5, "float vs double dv");
  ExpectScaledNear(fdg, dg, 1e-5, "float vs double dg");
  ExpectScaledNear(fdbeta, dbeta, 1e-5, "float vs double dbeta");
}

// Against transformers' own torch_recurrent_gated_delta_rule (use_qk_l2norm_in_kernel=True,
// fp32 inside): golden numbers printed by tests/engine/deltanet_ref.py for the same formula
// inputs. Here the test does the caller's part: q = l2norm(q_raw)/sqrt(Dk), k = l2norm(k_raw).
TEST(DeltaNetRef, MatchesTransformers) {
  const Shape s{4, 2, 3, 2};
  const auto fill = [](int64_t n, auto f) {
    Vec x(static_cast<size_t>(n));
    for (size_t i = 0; i < x.size(); ++i) x[i] = f(static_cast<double>(i));
    return x;
  };
  Problem p{fill(s.t * s.h * s.dk, [](double i) { return std::sin(0.37 * i + 0.1); }),
            fill(s.t * s.h * s.dk, [](double i) { return std::cos(0.53 * i + 0.2); }),
            fill(s.t * s.h * s.dv, [](double i) { return 1.5 * std::sin(0.29 * i + 0.3); }),
            fill(s.t * s.h, [](double i) { return -0.05 - 0.2 * (1.0 + std::sin(0.71 * i)); }),
            fill(s.t * s.h, [](double i) { return 0.5 + 0.4 * std::sin(0.61 * i + 0.4); })};
  NormaliseRows(p.q, s.dk, 1.0 / std::sqrt(static_cast<double>(s.dk)));
  NormaliseRows(p.k, s.dk, 1.0);
  // out[T=4,H=2,Dv=2]
  const Vec want_out = {0.0999919027,  0.188249737,  -0.502221882,  -0.599971235,
                        -0.754403174,  -0.737811923, -0.562435448,  -0.431850791,
                        -0.0444543138, 0.0839049071, -0.0951065868, -0.107395031,
                        0.0919854641,  0.0362028405, 0.157366127,   0.17295903};
  // state[H,Dk,Dv]
  const Vec want_state = {0.196905315,  0.09465193,     0.126315564,  0.0531851277,
                          0.0210666023, -0.00287504867, 0.0642179102, 0.0770307258,
                          0.18500033,   0.202526569,    0.255021393,  0.272451967};
  Vec out, state;
  RunOp(p, s, out, state);
  ExpectScaledNear(out, want_out, 1e-5, "out vs transformers");
  ExpectScaledNear(state, want_state, 1e-5, "state vs transformers");
}

}  // namespace
}  // namespace pq::compute
