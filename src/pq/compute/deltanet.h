// The Gated DeltaNet recurrence (Qwen3-Next, Qwen3.5, Qwen3.6 `linear_attn`), reference op:
// forward and exact backward for one sequence. A separate header so ops.h stays as is.
//
// Shapes: T tokens, H heads (value heads: the caller has already repeat-interleaved the
// query/key heads onto the value heads, head j reading key head j / (n_v / n_k)), Dk key
// head dim, Dv value head dim. All tensors row-major and contiguous.
//
// What the op computes (exactly transformers' `torch_recurrent_gated_delta_rule` after its
// own pre-processing, architectures.md §2.6.2), per head h, with S_0 = 0, S_t in R^{Dk x Dv}:
//
//   α_t = exp(g_t)                       g_t is the LOG decay (≤ 0 in the model)
//   S̃_t = α_t S_{t-1}
//   u_t = S̃_tᵀ k_t                       (Dv) what the memory predicts for k_t
//   δ_t = β_t (v_t − u_t)                (Dv)
//   S_t = S̃_t + k_t δ_tᵀ                 (= α_t (I − β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ)
//   o_t = S_tᵀ q_t                       (Dv) read AFTER the update: the token sees its write
//
// What the op expects, and what the CALLER does (the op does none of it):
//   * q_t = l2norm(q_raw_t) / sqrt(Dk), k_t = l2norm(k_raw_t), l2norm(x) = x (Σx² + 1e-6)^(-1/2)
//     (HF: use_qk_l2norm_in_kernel=True, and the kernel always scales q by Dk^-1/2);
//   * g_t = −exp(A_log) · softplus(a_t + dt_bias) (fp32), β_t = σ(b_t);
//   * backward through l2norm / scale / gates / GQA is the caller's (architectures.md §6.7).
// The op itself is well defined for any q, k, g, β; the gradient checks use that.
//
// Numerics: every sum in double (also for float), results rounded to T once at the end, as
// in the other ref ops. The backward stores all states S_0..S_T of one head at a time
// ((T+1)·Dk·Dv doubles — acceptable for the reference; the fast op will checkpoint every C
// tokens). It never recovers S_{t-1} by inverting the update (unstable as α → 0).
// Backward ACCUMULATES (+=) into the gradient outputs; an empty gradient span is skipped.
#pragma once

#include <cstdint>
#include <span>

namespace pq::compute::ref {

#define PQ_DELTANET_OPS(T_)                                                                        \
  /* q, k[T,H,Dk], v[T,H,Dv], g (log decay), beta[T,H] -> out[T,H,Dv];                             \
     state_out[H,Dk,Dv] = S_T, the final state (may be empty: not wanted). */                      \
  void GatedDeltaRule(std::span<const T_> q, std::span<const T_> k, std::span<const T_> v,         \
                      std::span<const T_> g, std::span<const T_> beta, std::span<T_> out,          \
                      std::span<T_> state_out, int64_t tokens, int64_t heads, int64_t key_dim,     \
                      int64_t value_dim);                                                          \
  /* From dout[T,H,Dv]: dq, dk[T,H,Dk] +=, dv[T,H,Dv] +=, dg, dbeta[T,H] += (reverse-time          \
     sweep, recomputing the states from the inputs). */                                            \
  void GatedDeltaRuleBackward(std::span<const T_> dout, std::span<const T_> q,                     \
                              std::span<const T_> k, std::span<const T_> v, std::span<const T_> g, \
                              std::span<const T_> beta, std::span<T_> dq, std::span<T_> dk,        \
                              std::span<T_> dv, std::span<T_> dg, std::span<T_> dbeta,             \
                              int64_t tokens, int64_t heads, int64_t key_dim, int64_t value_dim);

PQ_DELTANET_OPS(float)
PQ_DELTANET_OPS(double)
#undef PQ_DELTANET_OPS

}  // namespace pq::compute::ref
