// Reference Gated DeltaNet recurrence (see deltanet.h for the math and the contract).
// Plain loops over one head at a time; every sum in double, results rounded to T once.
#include <cmath>
#include <vector>

#include "pq/compute/deltanet.h"
#include "pq/compute/op_checks.h"
#include "pq/compute/ref_util.h"

namespace pq::compute::ref {
namespace {

using ref_util::Round;
using ref_util::Sigmoid;

struct Dims {
  int64_t t, h, dk, dv;
};

// The inputs of the op (shared by forward and backward).
template <typename T>
struct Inputs {
  std::span<const T> q, k, v, g, beta;
  Dims d;
};

template <typename T>
void CheckInputs(const Inputs<T>& in) {
  const Dims& d = in.d;
  PQ_CHECK(d.t >= 0 && d.h > 0 && d.dk > 0 && d.dv > 0,
           "GatedDeltaRule: need tokens >= 0 and heads, key_dim, value_dim > 0");
  PQ_CHECK_SIZE(in.q, d.t * d.h * d.dk, "GatedDeltaRule: q[T,H,Dk]");
  PQ_CHECK_SIZE(in.k, d.t * d.h * d.dk, "GatedDeltaRule: k[T,H,Dk]");
  PQ_CHECK_SIZE(in.v, d.t * d.h * d.dv, "GatedDeltaRule: v[T,H,Dv]");
  PQ_CHECK_SIZE(in.g, d.t * d.h, "GatedDeltaRule: g[T,H]");
  PQ_CHECK_SIZE(in.beta, d.t * d.h, "GatedDeltaRule: beta[T,H]");
}

// One head's inputs in double: q, k[T,Dk], v[T,Dv], g, beta[T].
struct Head {
  std::vector<double> q, k, v, g, beta;
};

template <typename T>
std::vector<double> Gather(std::span<const T> x, int64_t tokens, int64_t heads, int64_t h,
                           int64_t dim) {
  std::vector<double> out(static_cast<size_t>(tokens * dim));
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < dim; ++i)
      out[static_cast<size_t>(t * dim + i)] = static_cast<double>(x[(t * heads + h) * dim + i]);
  return out;
}

template <typename T>
Head LoadHead(const Inputs<T>& in, int64_t h) {
  const Dims& d = in.d;
  return Head{Gather(in.q, d.t, d.h, h, d.dk), Gather(in.k, d.t, d.h, h, d.dk),
              Gather(in.v, d.t, d.h, h, d.dv), Gather(in.g, d.t, d.h, h, 1),
              Gather(in.beta, d.t, d.h, h, 1)};
}

// The intermediate quantities of step t of one head.
struct StepVals {
  std::vector<double> s_tilde;  // [Dk,Dv] S̃_t = α_t S_{t-1}
  std::vector<double> u;        // [Dv]    u_t = S̃_tᵀ k_t
  std::vector<double> delta;    // [Dv]    δ_t = β_t (v_t − u_t)
  StepVals(int64_t dk, int64_t dv)
      : s_tilde(static_cast<size_t>(dk * dv)),
        u(static_cast<size_t>(dv)),
        delta(static_cast<size_t>(dv)) {}
};

// Step t: from s_prev = S_{t-1}[Dk,Dv], fills `sv` and writes s_next = S_t[Dk,Dv].
void Step(const Head& hd, int64_t t, const Dims& d, const double* s_prev, StepVals& sv,
          double* s_next) {
  const double alpha = std::exp(hd.g[static_cast<size_t>(t)]);
  const double beta = hd.beta[static_cast<size_t>(t)];
  const double* k = hd.k.data() + t * d.dk;
  const double* v = hd.v.data() + t * d.dv;
  for (int64_t n = 0; n < d.dk * d.dv; ++n) sv.s_tilde[static_cast<size_t>(n)] = alpha * s_prev[n];
  for (int64_t j = 0; j < d.dv; ++j) {
    double u = 0.0;
    for (int64_t i = 0; i < d.dk; ++i) u += sv.s_tilde[static_cast<size_t>(i * d.dv + j)] * k[i];
    sv.u[static_cast<size_t>(j)] = u;
    sv.delta[static_cast<size_t>(j)] = beta * (v[j] - u);
  }
  for (int64_t i = 0; i < d.dk; ++i)
    for (int64_t j = 0; j < d.dv; ++j)
      s_next[i * d.dv + j] =
          sv.s_tilde[static_cast<size_t>(i * d.dv + j)] + k[i] * sv.delta[static_cast<size_t>(j)];
}

// states[(T+1), Dk, Dv]: S_0 = 0, S_1 .. S_T of one head.
std::vector<double> AllStates(const Head& hd, const Dims& d) {
  const int64_t n = d.dk * d.dv;
  std::vector<double> states(static_cast<size_t>((d.t + 1) * n), 0.0);
  StepVals sv(d.dk, d.dv);
  for (int64_t t = 0; t < d.t; ++t)
    Step(hd, t, d, states.data() + t * n, sv, states.data() + (t + 1) * n);
  return states;
}

template <typename T>
void ForwardT(const Inputs<T>& in, std::span<T> out, std::span<T> state_out) {
  CheckInputs(in);
  const Dims& d = in.d;
  PQ_CHECK_SIZE(out, d.t * d.h * d.dv, "GatedDeltaRule: out[T,H,Dv]");
  PQ_CHECK_OPT_SIZE(state_out, d.h * d.dk * d.dv, "GatedDeltaRule: state_out[H,Dk,Dv]");
  const int64_t n = d.dk * d.dv;
  for (int64_t h = 0; h < d.h; ++h) {
    const Head hd = LoadHead(in, h);
    const std::vector<double> states = AllStates(hd, d);
    for (int64_t t = 0; t < d.t; ++t) {  // o_t = S_tᵀ q_t
      const double* s = states.data() + (t + 1) * n;
      for (int64_t j = 0; j < d.dv; ++j) {
        double o = 0.0;
        for (int64_t i = 0; i < d.dk; ++i)
          o += s[i * d.dv + j] * hd.q[static_cast<size_t>(t * d.dk + i)];
        out[(t * d.h + h) * d.dv + j] = Round<T>(o);
      }
    }
    if (state_out.empty()) continue;
    for (int64_t m = 0; m < n; ++m)
      state_out[h * n + m] = Round<T>(states[static_cast<size_t>(d.t * n + m)]);
  }
}

// One head's input gradients in double: dq, dk[T,Dk], dv[T,Dv], dg, dbeta[T].
struct HeadGrads {
  std::vector<double> dq, dk, dv, dg, dbeta;
  explicit HeadGrads(const Dims& d)
      : dq(static_cast<size_t>(d.t * d.dk)),
        dk(dq.size()),
        dv(static_cast<size_t>(d.t * d.dv)),
        dg(static_cast<size_t>(d.t)),
        dbeta(dg.size()) {}
};

// Backward of step t (architectures.md §6.7). On entry ds[Dk,Dv] = dL/dS_t from the future;
// on exit dL/dS_{t-1}. do_t[Dv] is the output gradient of this step.
void StepBackward(const Head& hd, int64_t t, const Dims& d, const double* s_t, const StepVals& sv,
                  const double* do_t, std::vector<double>& ds, HeadGrads& gr) {
  const auto at = [&](int64_t i, int64_t j) { return static_cast<size_t>(i * d.dv + j); };
  const double* q = hd.q.data() + t * d.dk;
  const double* k = hd.k.data() + t * d.dk;
  const double* v = hd.v.data() + t * d.dv;
  const double alpha = std::exp(hd.g[static_cast<size_t>(t)]);
  const double beta = hd.beta[static_cast<size_t>(t)];
  double* dq = gr.dq.data() + t * d.dk;
  double* dk = gr.dk.data() + t * d.dk;
  double* dv = gr.dv.data() + t * d.dv;
  // o_t = S_tᵀ q_t:  dq_t = S_t do_t;  dS += q_t do_tᵀ.
  for (int64_t i = 0; i < d.dk; ++i)
    for (int64_t j = 0; j < d.dv; ++j) {
      dq[i] += s_t[at(i, j)] * do_t[j];
      ds[at(i, j)] += q[i] * do_t[j];
    }
  // S_t = S̃_t + k_t δ_tᵀ:  dδ = dSᵀ k_t;  dk_t += dS δ_t.
  std::vector<double> du(static_cast<size_t>(d.dv));
  double dbeta = 0.0;
  for (int64_t j = 0; j < d.dv; ++j) {
    double ddelta = 0.0;
    for (int64_t i = 0; i < d.dk; ++i) ddelta += ds[at(i, j)] * k[i];
    // δ_t = β_t (v_t − u_t):  dv = β dδ;  du = −β dδ;  dβ = dδ · (v − u).
    dv[j] += beta * ddelta;
    du[static_cast<size_t>(j)] = -beta * ddelta;
    dbeta += ddelta * (v[j] - sv.u[static_cast<size_t>(j)]);
  }
  for (int64_t i = 0; i < d.dk; ++i)
    for (int64_t j = 0; j < d.dv; ++j) dk[i] += ds[at(i, j)] * sv.delta[static_cast<size_t>(j)];
  gr.dbeta[static_cast<size_t>(t)] += dbeta;
  // u_t = S̃_tᵀ k_t:  dS̃ = dS + k_t duᵀ;  dk_t += S̃_t du.
  double dg = 0.0;
  for (int64_t i = 0; i < d.dk; ++i)
    for (int64_t j = 0; j < d.dv; ++j) {
      const double s_tilde = sv.s_tilde[at(i, j)];
      dk[i] += s_tilde * du[static_cast<size_t>(j)];
      const double ds_tilde = ds[at(i, j)] + k[i] * du[static_cast<size_t>(j)];
      // S̃_t = e^{g_t} S_{t-1}:  dg = <dS̃, S̃_t>_F;  dS_{t-1} = α_t dS̃.
      dg += ds_tilde * s_tilde;
      ds[at(i, j)] = alpha * ds_tilde;
    }
  gr.dg[static_cast<size_t>(t)] += dg;
}

// dst[(t*H + h)*dim + i] += src[t*dim + i] (skipped when dst is empty).
template <typename T>
void Scatter(const std::vector<double>& src, std::span<T> dst, int64_t tokens, int64_t heads,
             int64_t h, int64_t dim) {
  if (dst.empty()) return;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < dim; ++i) {
      T& x = dst[(t * heads + h) * dim + i];
      x = Round<T>(static_cast<double>(x) + src[static_cast<size_t>(t * dim + i)]);
    }
}

// The output gradients (accumulated into).
template <typename T>
struct Grads {
  std::span<T> dq, dk, dv, dg, dbeta;
};

template <typename T>
void BackwardT(std::span<const T> dout, const Inputs<T>& in, const Grads<T>& out) {
  CheckInputs(in);
  const Dims& d = in.d;
  PQ_CHECK_SIZE(dout, d.t * d.h * d.dv, "GatedDeltaRuleBackward: dout[T,H,Dv]");
  PQ_CHECK_OPT_SIZE(out.dq, d.t * d.h * d.dk, "GatedDeltaRuleBackward: dq[T,H,Dk]");
  PQ_CHECK_OPT_SIZE(out.dk, d.t * d.h * d.dk, "GatedDeltaRuleBackward: dk[T,H,Dk]");
  PQ_CHECK_OPT_SIZE(out.dv, d.t * d.h * d.dv, "GatedDeltaRuleBackward: dv[T,H,Dv]");
  PQ_CHECK_OPT_SIZE(out.dg, d.t * d.h, "GatedDeltaRuleBackward: dg[T,H]");
  PQ_CHECK_OPT_SIZE(out.dbeta, d.t * d.h, "GatedDeltaRuleBackward: dbeta[T,H]");
  const int64_t n = d.dk * d.dv;
  for (int64_t h = 0; h < d.h; ++h) {
    const Head hd = LoadHead(in, h);
    const std::vector<double> states = AllStates(hd, d);
    const std::vector<double> dout_h = Gather(dout, d.t, d.h, h, d.dv);
    std::vector<double> ds(static_cast<size_t>(n), 0.0);  // dL/dS_T = 0 (no state gradient)
    std::vector<double> s_t(static_cast<size_t>(n));
    HeadGrads gr(d);
    StepVals sv(d.dk, d.dv);
    for (int64_t t = d.t - 1; t >= 0; --t) {
      Step(hd, t, d, states.data() + t * n, sv, s_t.data());  // recompute S̃_t, u_t, δ_t
      StepBackward(hd, t, d, s_t.data(), sv, dout_h.data() + t * d.dv, ds, gr);
    }
    Scatter(gr.dq, out.dq, d.t, d.h, h, d.dk);
    Scatter(gr.dk, out.dk, d.t, d.h, h, d.dk);
    Scatter(gr.dv, out.dv, d.t, d.h, h, d.dv);
    Scatter(gr.dg, out.dg, d.t, d.h, h, 1);
    Scatter(gr.dbeta, out.dbeta, d.t, d.h, h, 1);
  }
}

}  // namespace

#define PQ_REF_DELTANET_OPS(T_)                                                                    \
  void GatedDeltaRule(std::span<const T_> q, std::span<const T_> k, std::span<const T_> v,         \
                      std::span<const T_> g, std::span<const T_> beta, std::span<T_> out,          \
                      std::span<T_> state_out, int64_t tokens, int64_t heads, int64_t key_dim,     \
                      int64_t value_dim) {                                                         \
    ForwardT<T_>({q, k, v, g, beta, {tokens, heads, key_dim, value_dim}}, out, state_out);         \
  }                                                                                                \
  void GatedDeltaRuleBackward(std::span<const T_> dout, std::span<const T_> q,                     \
                              std::span<const T_> k, std::span<const T_> v, std::span<const T_> g, \
                              std::span<const T_> beta, std::span<T_> dq, std::span<T_> dk,        \
                              std::span<T_> dv, std::span<T_> dg, std::span<T_> dbeta,             \
                              int64_t tokens, int64_t heads, int64_t key_dim, int64_t value_dim) { \
    BackwardT<T_>(dout, {q, k, v, g, beta, {tokens, heads, key_dim, value_dim}},                   \
                  {dq, dk, dv, dg, dbeta});                                                        \
  }

PQ_REF_DELTANET_OPS(float)
PQ_REF_DELTANET_OPS(double)
#undef PQ_REF_DELTANET_OPS

}  // namespace pq::compute::ref
