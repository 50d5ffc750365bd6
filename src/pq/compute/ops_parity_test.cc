// Float ops against ref<double> on the same (float-representable) inputs: the fast `cpu`
// ops at 1 and 2 threads, and ref<float>. Forward outputs and every gradient (accumulated
// onto random initial values) are compared in the scaled metric max|err| / max|ref|.
// Shapes are awkward on purpose: T=1, odd sizes, sizes not multiples of 8/16, GQA ratio 3,
// several attention row blocks, large-enough work to actually split across threads.
#include <cmath>
#include <span>
#include <utility>

#include "pq/compute/ops.h"
#include "pq/compute/ops_test_util.h"

namespace pq::compute {
namespace {

using testing::ExpectScaledNear;
using testing::FVec;
using testing::ToFloat;
using testing::Vec;

// Tolerances (scaled error, float vs double); observed maxima are 10-20x smaller.
constexpr double kMatMulTol = 1e-5;
constexpr double kRmsNormTol = 2e-6;
constexpr double kRopeTol = 1e-6;
constexpr double kAttentionTol = 5e-6;
constexpr double kSwiGluTol = 2e-6;
constexpr double kRouterTol = 2e-6;
constexpr double kEmbeddingBackwardTol = 1e-6;  // forward is an exact copy
constexpr double kCrossEntropyTol = 1e-6;
// Logits ~1000: the saved float logsumexp alone is off by up to ulp(1000)/2 = 3e-5, which
// every softmax value in backward inherits. (Without max-subtraction the result is NaN.)
constexpr double kCrossEntropyLargeLogitTol = 1e-4;

#define PQ_FORWARD_OP(ns, Name)      \
  template <typename... A>           \
  static void Name(A&&... a) {       \
    ns::Name(std::forward<A>(a)...); \
  }
#define PQ_OP_SET(ns)                     \
  PQ_FORWARD_OP(ns, MatMul)               \
  PQ_FORWARD_OP(ns, MatMulBackward)       \
  PQ_FORWARD_OP(ns, GramUpdate)           \
  PQ_FORWARD_OP(ns, RmsNorm)              \
  PQ_FORWARD_OP(ns, RmsNormBackward)      \
  PQ_FORWARD_OP(ns, Rope)                 \
  PQ_FORWARD_OP(ns, RopeBackward)         \
  PQ_FORWARD_OP(ns, Attention)            \
  PQ_FORWARD_OP(ns, AttentionBackward)    \
  PQ_FORWARD_OP(ns, SwiGlu)               \
  PQ_FORWARD_OP(ns, SwiGluBackward)       \
  PQ_FORWARD_OP(ns, RouterTopK)           \
  PQ_FORWARD_OP(ns, RouterTopKBackward)   \
  PQ_FORWARD_OP(ns, Embedding)            \
  PQ_FORWARD_OP(ns, EmbeddingBackward)    \
  PQ_FORWARD_OP(ns, CrossEntropy)         \
  PQ_FORWARD_OP(ns, CrossEntropyBackward) \
  PQ_FORWARD_OP(ns, CrossEntropyBackwardChunk)

struct CpuOps {
  PQ_OP_SET(cpu)
};
struct RefFloatOps {
  PQ_OP_SET(ref)
};

// The same values as double (for ref) and float (for the op under test).
struct Tensor {
  Vec d;
  FVec f;
  Vec init;  // initial values (what a gradient accumulates onto)
  explicit Tensor(Vec v) : d(std::move(v)), f(ToFloat(d)), init(d) {}
  Tensor(int64_t n, std::mt19937& rng, double lo = -1.0, double hi = 1.0)
      : Tensor(testing::Random(n, rng, lo, hi)) {}
  // An op output (initial values overwritten): scaled by max |ref|.
  void Expect(double tol, const std::string& what) const { ExpectScaledNear(f, d, tol, what); }
  // An accumulated gradient: scaled by the larger of the result and the op's contribution,
  // so a sum that happens to cancel to ~0 is not judged by its own tiny size.
  void ExpectGrad(double tol, const std::string& what) const {
    ExpectScaledNear(f, d, tol, what,
                     std::max(testing::MaxAbs(d), testing::MaxAbs(testing::Minus(d, init))));
  }
};

template <class Ops>
void MatMulCase(std::mt19937& rng, int64_t t, int64_t k, int64_t n, bool bias) {
  SCOPED_TRACE(::testing::Message()
               << "MatMul T=" << t << " K=" << k << " N=" << n << " bias=" << bias);
  const Tensor x(t * k, rng), w(n * k, rng), b(bias ? n : 0, rng), dy(t * n, rng);
  Tensor y(t * n, rng), dx(t * k, rng), dw(n * k, rng), db(bias ? n : 0, rng);
  ref::MatMul(x.d, w.d, b.d, y.d, t, k, n);
  Ops::MatMul(x.f, w.f, b.f, y.f, t, k, n);
  y.Expect(kMatMulTol, "y");
  ref::MatMulBackward(dy.d, x.d, w.d, dx.d, dw.d, db.d, t, k, n);
  Ops::MatMulBackward(dy.f, x.f, w.f, dx.f, dw.f, db.f, t, k, n);
  dx.ExpectGrad(kMatMulTol, "dx");
  dw.ExpectGrad(kMatMulTol, "dw");
  db.ExpectGrad(kMatMulTol, "db");
}

template <class Ops>
void GramCase(std::mt19937& rng, int64_t t, int64_t k) {
  SCOPED_TRACE(::testing::Message() << "GramUpdate T=" << t << " K=" << k);
  const Tensor x(t * k, rng);
  Vec sym(static_cast<size_t>(k * k));  // a symmetric start, as an accumulated Gram matrix is
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j <= i; ++j)
      sym[static_cast<size_t>(i * k + j)] = sym[static_cast<size_t>(j * k + i)] =
          std::ldexp(static_cast<double>((i * 7 + j * 3) % 11) - 5.0, -3);
  Tensor h(sym);
  ref::GramUpdate(x.d, h.d, t, k);
  Ops::GramUpdate(x.f, h.f, t, k);
  h.ExpectGrad(kMatMulTol, "h");
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < i; ++j)
      ASSERT_EQ(h.f[static_cast<size_t>(i * k + j)], h.f[static_cast<size_t>(j * k + i)])
          << "not symmetric at " << i << "," << j;
}

template <class Ops>
void RmsNormCase(std::mt19937& rng, int64_t t, int64_t d, float offset) {
  SCOPED_TRACE(::testing::Message() << "RmsNorm T=" << t << " D=" << d << " offset=" << offset);
  const Tensor x(t * d, rng, -2.0, 2.0), w(d, rng, 0.5 - offset, 1.5 - offset), dy(t * d, rng);
  Tensor y(t * d, rng), rstd(t, rng), dx(t * d, rng), dw(d, rng);
  ref::RmsNorm(x.d, w.d, 1e-6f, offset, y.d, rstd.d, t, d);
  Ops::RmsNorm(x.f, w.f, 1e-6f, offset, y.f, rstd.f, t, d);
  y.Expect(kRmsNormTol, "y");
  rstd.Expect(kRmsNormTol, "rstd");
  ref::RmsNormBackward(dy.d, x.d, w.d, rstd.d, offset, dx.d, dw.d, t, d);
  Ops::RmsNormBackward(dy.f, x.f, w.f, rstd.f, offset, dx.f, dw.f, t, d);
  dx.ExpectGrad(kRmsNormTol, "dx");
  dw.ExpectGrad(kRmsNormTol, "dw");
}

template <class Ops>
void RopeCase(std::mt19937& rng, int64_t t, int64_t heads, RopeSpec spec) {
  SCOPED_TRACE(::testing::Message() << "Rope T=" << t << " heads=" << heads
                                    << " Dh=" << spec.head_dim << " rot=" << spec.rot_dim);
  const int64_t half = spec.rot_dim / 2;
  std::vector<int32_t> positions(static_cast<size_t>(t));
  std::uniform_int_distribution<int32_t> pos(0, 4095);
  for (int32_t& p : positions) p = pos(rng);
  Vec inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[static_cast<size_t>(i)] =
        std::pow(1e6, -2.0 * static_cast<double>(i) / static_cast<double>(spec.rot_dim));
  FVec cos(static_cast<size_t>(t * half)), sin(cos.size());
  RopeTables(positions, inv_freq, cos, sin);
  Tensor x(t * heads * spec.head_dim, rng);
  ref::Rope(x.d, cos, sin, t, heads, spec);
  Ops::Rope(x.f, cos, sin, t, heads, spec);
  x.Expect(kRopeTol, "y");
  Tensor dx(t * heads * spec.head_dim, rng);
  ref::RopeBackward(dx.d, cos, sin, t, heads, spec);
  Ops::RopeBackward(dx.f, cos, sin, t, heads, spec);
  dx.ExpectGrad(kRopeTol, "dx");
}

template <class Ops>
void AttentionCase(std::mt19937& rng, int64_t t, int64_t h, int64_t hkv, int64_t dh) {
  SCOPED_TRACE(::testing::Message()
               << "Attention T=" << t << " H=" << h << " Hkv=" << hkv << " Dh=" << dh);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  const Tensor q(t * h * dh, rng, -2.0, 2.0), k(t * hkv * dh, rng, -2.0, 2.0), v(t * hkv * dh, rng),
      d_o(t * h * dh, rng);
  Tensor o(t * h * dh, rng), probs(h * t * t, rng);
  ref::Attention(q.d, k.d, v.d, o.d, probs.d, t, h, hkv, dh, scale);
  Ops::Attention(q.f, k.f, v.f, o.f, probs.f, t, h, hkv, dh, scale);
  o.Expect(kAttentionTol, "o");
  probs.Expect(kAttentionTol, "probs");
  Tensor dq(t * h * dh, rng), dk(t * hkv * dh, rng), dv(t * hkv * dh, rng);
  ref::AttentionBackward(d_o.d, q.d, k.d, v.d, probs.d, dq.d, dk.d, dv.d, t, h, hkv, dh, scale);
  Ops::AttentionBackward(d_o.f, q.f, k.f, v.f, probs.f, dq.f, dk.f, dv.f, t, h, hkv, dh, scale);
  dq.ExpectGrad(kAttentionTol, "dq");
  dk.ExpectGrad(kAttentionTol, "dk");
  dv.ExpectGrad(kAttentionTol, "dv");
}

template <class Ops>
void SwiGluCase(std::mt19937& rng, int64_t n) {
  SCOPED_TRACE(::testing::Message() << "SwiGlu n=" << n);
  Vec gv = testing::Random(n, rng, -6.0, 6.0);
  if (n > 2) gv[1] = -100.0;  // saturated sigmoid (not alone: the metric needs a scale)
  const Tensor g(gv), u(n, rng), dh(n, rng);
  Tensor h(n, rng), dg(n, rng), du(n, rng);
  ref::SwiGlu(g.d, u.d, h.d);
  Ops::SwiGlu(g.f, u.f, h.f);
  h.Expect(kSwiGluTol, "h");
  ref::SwiGluBackward(dh.d, g.d, u.d, dg.d, du.d);
  Ops::SwiGluBackward(dh.f, g.f, u.f, dg.f, du.f);
  dg.ExpectGrad(kSwiGluTol, "dg");
  du.ExpectGrad(kSwiGluTol, "du");
}

template <class Ops>
void RouterCase(std::mt19937& rng, int64_t t, int64_t e, int64_t k, bool norm) {
  SCOPED_TRACE(::testing::Message()
               << "Router T=" << t << " E=" << e << " K=" << k << " norm=" << norm);
  const Tensor logits(t * e, rng, -3.0, 3.0), dw(t * k, rng);
  Tensor probs(t * e, rng), weights(t * k, rng), dl(t * e, rng);
  std::vector<int32_t> idx_d(static_cast<size_t>(t * k)), idx_f(idx_d.size());
  ref::RouterTopK(logits.d, probs.d, idx_d, weights.d, t, e, k, norm);
  Ops::RouterTopK(logits.f, probs.f, idx_f, weights.f, t, e, k, norm);
  ASSERT_EQ(idx_f, idx_d);
  probs.Expect(kRouterTol, "probs");
  weights.Expect(kRouterTol, "weights");
  ref::RouterTopKBackward(dw.d, probs.d, idx_d, dl.d, t, e, k, norm);
  Ops::RouterTopKBackward(dw.f, probs.f, idx_f, dl.f, t, e, k, norm);
  dl.ExpectGrad(kRouterTol, "dlogits");
}

template <class Ops>
void EmbeddingCase(std::mt19937& rng, int64_t rows, int64_t d, int64_t t) {
  SCOPED_TRACE(::testing::Message() << "Embedding rows=" << rows << " D=" << d << " T=" << t);
  std::vector<int32_t> ids(static_cast<size_t>(t));
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(rows - 1));
  for (int32_t& i : ids) i = id(rng);
  const Tensor table(rows * d, rng), dy(t * d, rng);
  Tensor y(t * d, rng), dt(rows * d, rng);
  ref::Embedding(table.d, ids, y.d, d);
  Ops::Embedding(table.f, ids, y.f, d);
  y.Expect(0.0, "y");
  ref::EmbeddingBackward(dy.d, ids, dt.d, d);
  Ops::EmbeddingBackward(dy.f, ids, dt.f, d);
  dt.ExpectGrad(kEmbeddingBackwardTol, "dtable");
}

template <class Ops>
void CrossEntropyCase(std::mt19937& rng, int64_t t, int64_t vocab, double logit_range,
                      double tol = kCrossEntropyTol) {
  SCOPED_TRACE(::testing::Message()
               << "CrossEntropy T=" << t << " V=" << vocab << " range=" << logit_range);
  std::vector<int32_t> targets(static_cast<size_t>(t));
  std::uniform_int_distribution<int32_t> target(-1, static_cast<int32_t>(vocab - 1));
  for (int32_t& i : targets) i = target(rng);
  const Tensor logits(t * vocab, rng, -logit_range, logit_range);
  Tensor nll(t, rng), lse(t, rng), dl(t * vocab, rng);
  ref::CrossEntropy(logits.d, targets, nll.d, lse.d, t, vocab);
  Ops::CrossEntropy(logits.f, targets, nll.f, lse.f, t, vocab);
  nll.Expect(tol, "nll");
  lse.Expect(tol, "logsumexp");
  const double scale = 1.0 / static_cast<double>(t);
  ref::CrossEntropyBackward(logits.d, targets, lse.d, scale, dl.d, t, vocab);
  Ops::CrossEntropyBackward(logits.f, targets, lse.f, static_cast<float>(scale), dl.f, t, vocab);
  dl.ExpectGrad(tol, "dlogits");
  // The same gradient in vocabulary chunks of `chunk` columns (the last one ragged): against
  // the reference, and bit for bit against the whole-vocabulary op of the same implementation.
  for (const int64_t chunk : {int64_t{1}, int64_t{7}, vocab}) {
    Tensor dc(t * vocab, rng);
    std::vector<float> whole(dc.f.begin(), dc.f.end());
    Ops::CrossEntropyBackward(logits.f, targets, lse.f, static_cast<float>(scale), whole, t, vocab);
    for (int64_t v0 = 0; v0 < vocab; v0 += chunk) {
      const int64_t vc = std::min(chunk, vocab - v0);
      std::vector<double> ld(static_cast<size_t>(t * vc)), dd(ld.size());
      std::vector<float> lf(ld.size()), df(ld.size());
      for (int64_t r = 0; r < t; ++r)
        for (int64_t i = 0; i < vc; ++i) {
          const auto a = static_cast<size_t>(r * vocab + v0 + i),
                     b = static_cast<size_t>(r * vc + i);
          ld[b] = logits.d[a];
          lf[b] = logits.f[a];
          dd[b] = dc.d[a];
          df[b] = dc.f[a];
        }
      ref::CrossEntropyBackwardChunk(ld, targets, lse.d, scale, dd, t, v0, vc);
      Ops::CrossEntropyBackwardChunk(lf, targets, lse.f, static_cast<float>(scale), df, t, v0, vc);
      for (int64_t r = 0; r < t; ++r)
        for (int64_t i = 0; i < vc; ++i) {
          const auto a = static_cast<size_t>(r * vocab + v0 + i),
                     b = static_cast<size_t>(r * vc + i);
          dc.d[a] = dd[b];
          dc.f[a] = df[b];
        }
    }
    dc.ExpectGrad(tol, "dlogits in chunks");
    for (size_t i = 0; i < whole.size(); ++i)
      ASSERT_EQ(whole[i], dc.f[i]) << "chunk " << chunk << " element " << i;
  }
}

template <class Ops>
void AllCases() {
  std::mt19937 rng(42);
  for (const bool bias : {false, true}) {
    MatMulCase<Ops>(rng, 1, 1, 1, bias);
    MatMulCase<Ops>(rng, 1, 7, 5, bias);
    MatMulCase<Ops>(rng, 5, 13, 17, bias);
    MatMulCase<Ops>(rng, 67, 33, 19, bias);
    MatMulCase<Ops>(rng, 3, 100, 9, bias);
    MatMulCase<Ops>(rng, 200, 33, 200, bias);
  }
  GramCase<Ops>(rng, 1, 1);
  GramCase<Ops>(rng, 5, 13);
  GramCase<Ops>(rng, 67, 100);   // two row blocks of 64 and 36
  GramCase<Ops>(rng, 30, 257);   // a last block of one row
  GramCase<Ops>(rng, 130, 700);  // eleven blocks, enough work for the threads
  for (const float offset : {0.0f, 1.0f}) {
    RmsNormCase<Ops>(rng, 1, 3, offset);  // D=1 is pure cancellation
    RmsNormCase<Ops>(rng, 1, 7, offset);
    RmsNormCase<Ops>(rng, 5, 33, offset);
    RmsNormCase<Ops>(rng, 67, 130, offset);
    RmsNormCase<Ops>(rng, 67, 1000, offset);
  }
  RopeCase<Ops>(rng, 1, 1, {2, 2});
  RopeCase<Ops>(rng, 5, 3, {10, 6});
  RopeCase<Ops>(rng, 67, 3, {10, 10});
  RopeCase<Ops>(rng, 7, 2, {6, 0});
  RopeCase<Ops>(rng, 300, 8, {64, 64});
  RopeCase<Ops>(rng, 67, 5, {256, 64});
  AttentionCase<Ops>(rng, 1, 1, 1, 1);
  AttentionCase<Ops>(rng, 1, 3, 1, 5);
  AttentionCase<Ops>(rng, 5, 6, 2, 6);
  AttentionCase<Ops>(rng, 67, 6, 2, 10);
  AttentionCase<Ops>(rng, 67, 3, 3, 7);
  AttentionCase<Ops>(rng, 200, 4, 2, 16);  // two row blocks, the second partial
  AttentionCase<Ops>(rng, 257, 3, 1, 9);   // three row blocks, GQA ratio 3
  for (const int64_t n : {1, 7, 1000, 5000}) SwiGluCase<Ops>(rng, n);
  for (const bool norm : {false, true}) {
    RouterCase<Ops>(rng, 1, 1, 1, norm);
    RouterCase<Ops>(rng, 5, 7, 3, norm);
    RouterCase<Ops>(rng, 3, 9, 9, norm);
    RouterCase<Ops>(rng, 67, 64, 8, norm);
    RouterCase<Ops>(rng, 200, 16, 4, norm);
    RouterCase<Ops>(rng, 512, 64, 8, norm);  // enough work to split backward too
  }
  EmbeddingCase<Ops>(rng, 1, 1, 1);
  EmbeddingCase<Ops>(rng, 11, 7, 5);
  EmbeddingCase<Ops>(rng, 11, 33, 67);
  EmbeddingCase<Ops>(rng, 50, 130, 300);
  CrossEntropyCase<Ops>(rng, 1, 1, 5.0);
  CrossEntropyCase<Ops>(rng, 5, 11, 5.0);
  CrossEntropyCase<Ops>(rng, 67, 257, 5.0);
  CrossEntropyCase<Ops>(rng, 3, 5000, 5.0);
  CrossEntropyCase<Ops>(rng, 64, 1100, 5.0);
  CrossEntropyCase<Ops>(rng, 5, 300, 1000.0, kCrossEntropyLargeLogitTol);
}

TEST(CpuParity, AllOpsOneThread) {
  cpu::SetNumThreads(1);
  EXPECT_EQ(cpu::NumThreads(), 1);
  AllCases<CpuOps>();
  cpu::SetNumThreads(0);
}

TEST(CpuParity, AllOpsTwoThreads) {
  cpu::SetNumThreads(2);
  EXPECT_EQ(cpu::NumThreads(), 2);
  AllCases<CpuOps>();
  cpu::SetNumThreads(0);
}

TEST(RefFloatParity, AllOps) { AllCases<RefFloatOps>(); }

}  // namespace
}  // namespace pq::compute
