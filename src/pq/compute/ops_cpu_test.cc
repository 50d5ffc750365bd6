// The cpu ops' contract beyond numerics: empty gradient spans are skipped (and the others are
// unchanged by that), zero tokens are fine, thread settings, and shape mismatches abort.
#include <cmath>
#include <span>

#include "pq/compute/ops.h"
#include "pq/compute/ops_test_util.h"

namespace pq::compute {
namespace {

using testing::FVec;
using testing::Random;
using testing::ToFloat;

FVec RandomF(int64_t n, std::mt19937& rng) { return ToFloat(Random(n, rng)); }

TEST(CpuOps, NumThreadsSetting) {
  cpu::SetNumThreads(3);
  EXPECT_EQ(cpu::NumThreads(), 3);
  cpu::SetNumThreads(0);
  EXPECT_GE(cpu::NumThreads(), 1);
}

// Products are cut into blocks by their shape, not by the thread count (Gemm), so results are
// bit-identical with any number of threads — row blocks (many tokens) and column blocks (few
// tokens, wide outputs), forward and backward.
TEST(CpuOps, MatMulIsBitIdenticalOnAnyThreadCount) {
  std::mt19937 rng(5);
  struct Shape {
    int64_t t, k, n;
  };
  for (const Shape& s : {Shape{700, 96, 300}, Shape{3, 200, 5000}, Shape{300, 257, 129}}) {
    const FVec x = RandomF(s.t * s.k, rng), w = RandomF(s.n * s.k, rng),
               dy = RandomF(s.t * s.n, rng);
    auto run = [&](int threads) {
      cpu::SetNumThreads(threads);
      FVec y(static_cast<size_t>(s.t * s.n)), dx(x.size()), dw(w.size());
      cpu::MatMul(x, w, {}, y, s.t, s.k, s.n);
      cpu::MatMulBackward(dy, x, w, dx, dw, {}, s.t, s.k, s.n);
      return std::vector<FVec>{y, dx, dw};
    };
    const auto one = run(1);
    for (int threads : {2, 3, 4, 7}) EXPECT_EQ(run(threads), one) << "threads " << threads;
  }
  cpu::SetNumThreads(0);
}

TEST(CpuOps, GramUpdateIsBitIdenticalOnAnyThreadCount) {
  std::mt19937 rng(6);
  for (const auto& [t, k] : {std::pair<int64_t, int64_t>{700, 300}, {64, 1100}, {3, 70}}) {
    const FVec x = RandomF(t * k, rng), h0 = RandomF(k * k, rng);
    auto run = [&](int threads) {
      cpu::SetNumThreads(threads);
      FVec h = h0;
      cpu::GramUpdate(x, h, t, k);
      return h;
    };
    const FVec one = run(1);
    for (int threads : {2, 3, 5}) EXPECT_EQ(run(threads), one) << "threads " << threads;
  }
  cpu::SetNumThreads(0);
}

TEST(CpuOps, EmptyGradientSpansAreSkipped) {
  std::mt19937 rng(21);
  const int64_t t = 9, k = 5, n = 6;
  const FVec x = RandomF(t * k, rng), w = RandomF(n * k, rng), dy = RandomF(t * n, rng);
  const FVec dx0 = RandomF(t * k, rng), dw0 = RandomF(n * k, rng), db0 = RandomF(n, rng);
  FVec dx = dx0, dw = dw0, db = db0;
  cpu::MatMulBackward(dy, x, w, dx, dw, db, t, k, n);
  FVec only_dw = dw0;  // x is not needed for dx, nor w for dw: pass them empty too
  cpu::MatMulBackward(dy, x, {}, {}, only_dw, {}, t, k, n);
  EXPECT_EQ(only_dw, dw);
  FVec only_dx = dx0, only_db = db0;
  cpu::MatMulBackward(dy, {}, w, only_dx, {}, {}, t, k, n);
  cpu::MatMulBackward(dy, {}, {}, {}, {}, only_db, t, k, n);
  EXPECT_EQ(only_dx, dx);
  EXPECT_EQ(only_db, db);

  const int64_t h = 6, hkv = 2, dh = 4;
  const FVec q = RandomF(t * h * dh, rng), kk = RandomF(t * hkv * dh, rng),
             v = RandomF(t * hkv * dh, rng), d_o = RandomF(t * h * dh, rng);
  FVec o(q.size()), probs(static_cast<size_t>(h * t * t));
  cpu::Attention(q, kk, v, o, probs, t, h, hkv, dh, 0.5f);
  FVec dq(q.size(), 1.0f), dk(kk.size(), 2.0f), dv(v.size(), 3.0f);
  cpu::AttentionBackward(d_o, q, kk, v, probs, dq, dk, dv, t, h, hkv, dh, 0.5f);
  FVec dq1(q.size(), 1.0f), dk1(kk.size(), 2.0f), dv1(v.size(), 3.0f);
  cpu::AttentionBackward(d_o, q, kk, v, probs, dq1, {}, {}, t, h, hkv, dh, 0.5f);
  cpu::AttentionBackward(d_o, q, kk, v, probs, {}, dk1, {}, t, h, hkv, dh, 0.5f);
  cpu::AttentionBackward(d_o, q, kk, v, probs, {}, {}, dv1, t, h, hkv, dh, 0.5f);
  EXPECT_EQ(dq1, dq);
  EXPECT_EQ(dk1, dk);
  EXPECT_EQ(dv1, dv);

  const FVec g = RandomF(t, rng), u = RandomF(t, rng);
  FVec dg(g.size(), 0.5f), du(g.size(), 0.5f), dg1 = dg, du1 = du;
  cpu::SwiGluBackward(g, g, u, dg, du);
  cpu::SwiGluBackward(g, g, u, dg1, {});
  cpu::SwiGluBackward(g, g, u, {}, du1);
  EXPECT_EQ(dg1, dg);
  EXPECT_EQ(du1, du);
}

TEST(CpuOps, ZeroTokens) {
  const std::span<float> e;
  const std::span<int32_t> ei;
  const FVec w(4, 1.0f);
  cpu::MatMul(e, w, {}, e, 0, 2, 2);
  cpu::MatMulBackward(e, e, w, e, e, e, 0, 2, 2);
  cpu::RmsNorm(e, w, 1e-6f, 0.0f, e, e, 0, 4);
  cpu::Rope(e, e, e, 0, 2, {4, 4});
  cpu::Attention(e, e, e, e, e, 0, 2, 1, 4, 1.0f);
  cpu::AttentionBackward(e, e, e, e, e, e, e, e, 0, 2, 1, 4, 1.0f);
  cpu::SwiGlu(e, e, e);
  cpu::RouterTopK(e, e, ei, e, 0, 4, 2, true);
  cpu::RouterTopKBackward(e, e, ei, e, 0, 4, 2, true);
  cpu::Embedding(w, ei, e, 2);
  cpu::CrossEntropy(e, ei, e, e, 0, 7);
  cpu::CrossEntropyBackward(e, ei, e, 1.0f, e, 0, 7);
  // Accumulating zero tokens into dw leaves it as it was.
  FVec dw(4, 2.0f);
  cpu::MatMulBackward(e, e, w, e, dw, e, 0, 2, 2);
  EXPECT_EQ(dw, FVec(4, 2.0f));
}

TEST(CpuOps, ZeroInnerDimension) {
  // K = 0: y is the bias (or 0); no BLAS call with a zero leading dimension.
  const FVec b = {1.5f, -2.0f};
  FVec y(6, 9.0f);
  cpu::MatMul({}, {}, b, y, 3, 0, 2);
  EXPECT_EQ(y, (FVec{1.5f, -2.0f, 1.5f, -2.0f, 1.5f, -2.0f}));
  cpu::MatMul({}, {}, {}, y, 3, 0, 2);
  EXPECT_EQ(y, FVec(6, 0.0f));
}

TEST(CpuOps, RouterTiesPickLowerIndex) {
  // Exact ties (equal logits give bit-equal probs), and logits that overflow exp unshifted.
  const FVec logits = {0, 2, 2, -1, 2, 1, 1000, -1000, 999, 0, 1000, 3, 5, 5, 5, 5, 5, 5};
  FVec probs(18), weights(9);
  std::vector<int32_t> idx(9);
  cpu::RouterTopK(logits, probs, idx, weights, 3, 6, 3, true);
  EXPECT_EQ(idx, (std::vector<int32_t>{1, 2, 4, 0, 4, 2, 0, 1, 2}));
  for (const float w : weights) EXPECT_TRUE(std::isfinite(w));
  EXPECT_FLOAT_EQ(weights[0], 1.0f / 3.0f);
  EXPECT_FLOAT_EQ(weights[8], 1.0f / 3.0f);
}

using CpuOpsDeathTest = ::testing::Test;

TEST_F(CpuOpsDeathTest, ShapeMismatchesAbortWithTheTensorName) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  FVec x(6), w(6), y(4), small(3);
  EXPECT_DEATH(cpu::MatMul(small, w, {}, y, 2, 3, 2), "MatMul: x\\[T,K\\] has 3 elements");
  EXPECT_DEATH(ref::MatMul(std::span<const float>(x), w, small, y, 2, 3, 2), "MatMul: b\\[N\\]");
  EXPECT_DEATH(cpu::MatMulBackward(y, x, w, small, {}, {}, 2, 3, 2), "dx\\[T,K\\]");
  FVec probs(2 * 3 * 3), o(2 * 3 * 2);
  EXPECT_DEATH(cpu::Attention(o, small, small, o, probs, 3, 2, 4, 2, 1.0f), "multiple of kv_heads");
  EXPECT_DEATH(cpu::Attention(o, x, x, o, small, 3, 2, 1, 2, 1.0f), "probs\\[H,T,T\\]");
  FVec cos(3), sin(3);
  EXPECT_DEATH(cpu::Rope(x, cos, sin, 1, 1, {6, 5}), "rot_dim must be even");
  std::vector<int32_t> targets = {0, 7};
  FVec logits(14), nll(2), lse(2);
  EXPECT_DEATH(cpu::CrossEntropy(logits, targets, nll, lse, 2, 7), "target >= vocab");
  std::vector<int32_t> ids = {0, 3};
  EXPECT_DEATH(cpu::Embedding(x, ids, y, 2), "id out of range");
  std::vector<int32_t> idx(2);
  EXPECT_DEATH(cpu::RouterTopK(x, x, idx, y, 2, 3, 1, true), "weights\\[T,K\\]");
  std::vector<double> h(2);
  EXPECT_DEATH(ref::SwiGlu(std::span<const double>(), {}, h), "SwiGlu: h\\[n\\]");
}

}  // namespace
}  // namespace pq::compute
