// Helpers of the fast CPU ops (internal): work splitting over threads and a checked sgemm.
#pragma once

#include <cstdint>
#include <functional>

namespace pq::compute::cpu::internal {

// Calls fn(begin, end) on chunks of [0, n), on up to NumThreads() threads; runs inline when
// n * work_per_item is too small to pay for starting threads.
void ParallelRange(int64_t n, int64_t work_per_item,
                   const std::function<void(int64_t, int64_t)>& fn);

// Row-major C[m,n] = alpha * op(A) . op(B) + beta * C with op(A)[m,k], op(B)[k,n] (cblas_sgemm
// with the same leading-dimension rules). Handles empty sizes; beta 1 accumulates.
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace pq::compute::cpu::internal
