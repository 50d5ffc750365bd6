// Fast causal GQA attention (float). Per head, rows are processed in blocks of kRowBlock
// queries; block [r0, r1) only touches keys [0, r1), so the sgemm calls skip most of the
// masked upper triangle. The sgemm calls are issued from the calling thread (OpenBLAS
// threads them itself and serialises concurrent callers anyway); the softmax rows in
// between are threaded over (head, query) rows.
#include <algorithm>
#include <cmath>
#include <vector>

#include "pq/compute/cpu_util.h"
#include "pq/compute/op_checks.h"
#include "pq/compute/ops.h"

namespace pq::compute::cpu {
namespace {

using internal::Gemm;
using internal::ParallelRange;

constexpr int64_t kRowBlock = 128;

// End (exclusive) of the row block holding row i: keys [0, BlockEnd(i)) were touched.
int64_t BlockEnd(int64_t i, int64_t tokens) {
  return std::min(tokens, (i / kRowBlock + 1) * kRowBlock);
}

}  // namespace

// q[T,H,Dh], k/v[T,Hkv,Dh] -> o[T,H,Dh], probs[H,T,T]
void Attention(std::span<const float> q, std::span<const float> k, std::span<const float> v,
               std::span<float> o, std::span<float> probs, int64_t tokens, int64_t heads,
               int64_t kv_heads, int64_t head_dim, float scale) {
  compute::internal::CheckAttention<float>(q, k, v, probs, tokens, heads, kv_heads, head_dim);
  PQ_CHECK_SIZE(o, tokens * heads * head_dim, "Attention: o[T,H,Dh]");
  const int64_t group = heads / kv_heads, dh = head_dim;
  const int64_t ldq = heads * dh, ldkv = kv_heads * dh;
  // S[h, r0:r1, 0:r1] = scale Q_h[r0:r1] K_g[0:r1]^T, written into probs.
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t g = h / group;
    for (int64_t r0 = 0; r0 < tokens; r0 += kRowBlock) {
      const int64_t r1 = std::min(tokens, r0 + kRowBlock);
      Gemm(false, true, r1 - r0, r1, dh, scale, q.data() + r0 * ldq + h * dh, ldq,
           k.data() + g * dh, ldkv, 0.0f, probs.data() + (h * tokens + r0) * tokens, tokens);
    }
  }
  // Causal softmax of each row; zeros above the diagonal.
  ParallelRange(heads * tokens, tokens * 4, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const int64_t i = row % tokens;
      float* p = probs.data() + row * tokens;
      const float m = *std::max_element(p, p + i + 1);
      double sum = 0.0;
      for (int64_t j = 0; j <= i; ++j) sum += (p[j] = std::exp(p[j] - m));
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j <= i; ++j) p[j] *= inv;
      std::fill(p + i + 1, p + tokens, 0.0f);
    }
  });
  // O_h[r0:r1] = P[h, r0:r1, 0:r1] V_g[0:r1]
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t g = h / group;
    for (int64_t r0 = 0; r0 < tokens; r0 += kRowBlock) {
      const int64_t r1 = std::min(tokens, r0 + kRowBlock);
      Gemm(false, false, r1 - r0, dh, r1, 1.0f, probs.data() + (h * tokens + r0) * tokens, tokens,
           v.data() + g * dh, ldkv, 0.0f, o.data() + r0 * ldq + h * dh, ldq);
    }
  }
}

// Per head: dV_g += P^T dO;  dP = dO V_g^T;  dS = P (dP - rowsum(P dP));
// dQ_h += scale dS K_g;  dK_g += scale dS^T Q_h.
void AttentionBackward(std::span<const float> d_o, std::span<const float> q,
                       std::span<const float> k, std::span<const float> v,
                       std::span<const float> probs, std::span<float> dq, std::span<float> dk,
                       std::span<float> dv, int64_t tokens, int64_t heads, int64_t kv_heads,
                       int64_t head_dim, float scale) {
  compute::internal::CheckAttention<float>(q, k, v, probs, tokens, heads, kv_heads, head_dim);
  PQ_CHECK_SIZE(d_o, tokens * heads * head_dim, "AttentionBackward: d_o[T,H,Dh]");
  PQ_CHECK_OPT_SIZE(dq, tokens * heads * head_dim, "AttentionBackward: dq[T,H,Dh]");
  PQ_CHECK_OPT_SIZE(dk, tokens * kv_heads * head_dim, "AttentionBackward: dk[T,Hkv,Dh]");
  PQ_CHECK_OPT_SIZE(dv, tokens * kv_heads * head_dim, "AttentionBackward: dv[T,Hkv,Dh]");
  const int64_t group = heads / kv_heads, dh = head_dim;
  const int64_t ldq = heads * dh, ldkv = kv_heads * dh;
  const bool need_ds = !dq.empty() || !dk.empty();
  std::vector<float> ds(need_ds ? static_cast<size_t>(tokens * tokens) : 0);  // [T,T] scratch
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t g = h / group;
    const float* ph = probs.data() + h * tokens * tokens;
    const float* doh = d_o.data() + h * dh;
    if (!dv.empty()) {
      for (int64_t r0 = 0; r0 < tokens; r0 += kRowBlock) {
        const int64_t r1 = std::min(tokens, r0 + kRowBlock);
        Gemm(true, false, r1, dh, r1 - r0, 1.0f, ph + r0 * tokens, tokens, doh + r0 * ldq, ldq,
             1.0f, dv.data() + g * dh, ldkv);
      }
    }
    if (!need_ds) continue;
    for (int64_t r0 = 0; r0 < tokens; r0 += kRowBlock) {  // dP blocks
      const int64_t r1 = std::min(tokens, r0 + kRowBlock);
      Gemm(false, true, r1 - r0, r1, dh, 1.0f, doh + r0 * ldq, ldq, v.data() + g * dh, ldkv, 0.0f,
           ds.data() + r0 * tokens, tokens);
    }
    ParallelRange(tokens, tokens * 2, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const float* p = ph + i * tokens;
        float* d = ds.data() + i * tokens;
        double rowsum = 0.0;
        for (int64_t j = 0; j <= i; ++j) rowsum += static_cast<double>(p[j]) * d[j];
        const float rs = static_cast<float>(rowsum);
        for (int64_t j = 0; j <= i; ++j) d[j] = p[j] * (d[j] - rs);
        std::fill(d + i + 1, d + BlockEnd(i, tokens), 0.0f);  // masked part the gemms read
      }
    });
    for (int64_t r0 = 0; r0 < tokens; r0 += kRowBlock) {
      const int64_t r1 = std::min(tokens, r0 + kRowBlock);
      const float* dsb = ds.data() + r0 * tokens;
      if (!dq.empty())
        Gemm(false, false, r1 - r0, dh, r1, scale, dsb, tokens, k.data() + g * dh, ldkv, 1.0f,
             dq.data() + r0 * ldq + h * dh, ldq);
      if (!dk.empty())
        Gemm(true, false, r1, dh, r1 - r0, scale, dsb, tokens, q.data() + r0 * ldq + h * dh, ldq,
             1.0f, dk.data() + g * dh, ldkv);
    }
  }
}

}  // namespace pq::compute::cpu
