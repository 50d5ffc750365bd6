// Gradient checks of every `ref` backward op (double): central differences of a random
// objective L = sum(R . y) against the analytic backward, over small awkward shapes. Gradient
// buffers start nonzero, so the checks also prove that backward ops accumulate.
#include <cmath>
#include <span>

#include "pq/compute/ops.h"
#include "pq/compute/ops_test_util.h"

namespace pq::compute {
namespace {

using testing::ExpectGradient;
using testing::GradBuffer;
using testing::Random;
using testing::Vec;

TEST(RefGrad, MatMul) {
  std::mt19937 rng(1);
  struct Case {
    int64_t t, k, n;
    bool bias;
  };
  for (const Case c : {Case{5, 7, 6, true}, Case{5, 7, 6, false}, Case{1, 3, 1, true}}) {
    SCOPED_TRACE(::testing::Message() << "T=" << c.t << " K=" << c.k << " N=" << c.n);
    Vec x = Random(c.t * c.k, rng), w = Random(c.n * c.k, rng);
    Vec b = c.bias ? Random(c.n, rng) : Vec{};
    Vec y(static_cast<size_t>(c.t * c.n));
    auto forward = [&] {
      ref::MatMul(x, w, b, y, c.t, c.k, c.n);
      return y;
    };
    const Vec r = Random(c.t * c.n, rng);
    GradBuffer dx(c.t * c.k, rng), dw(c.n * c.k, rng), db(c.bias ? c.n : 0, rng);
    ref::MatMulBackward(r, x, w, dx.value, dw.value, db.value, c.t, c.k, c.n);
    ExpectGradient(x, dx.Delta(), forward, r, "MatMul dx");
    ExpectGradient(w, dw.Delta(), forward, r, "MatMul dw");
    if (c.bias) ExpectGradient(b, db.Delta(), forward, r, "MatMul db");
  }
}

TEST(RefGrad, RmsNorm) {
  std::mt19937 rng(2);
  const int64_t t = 5, d = 10;
  for (const float offset : {0.0f, 1.0f}) {
    SCOPED_TRACE(::testing::Message() << "offset " << offset);
    Vec x = Random(t * d, rng, -2.0, 2.0);
    Vec w = Random(d, rng, 0.5 - offset, 1.5 - offset);
    Vec y(static_cast<size_t>(t * d)), rstd(static_cast<size_t>(t));
    const float eps = 1e-3f;
    auto forward = [&] {
      ref::RmsNorm(x, w, eps, offset, y, rstd, t, d);
      return y;
    };
    forward();
    const Vec r = Random(t * d, rng);
    GradBuffer dx(t * d, rng), dw(d, rng);
    ref::RmsNormBackward(r, x, w, rstd, offset, dx.value, dw.value, t, d);
    ExpectGradient(x, dx.Delta(), forward, r, "RmsNorm dx");
    ExpectGradient(w, dw.Delta(), forward, r, "RmsNorm dw");
  }
}

TEST(RefGrad, Rope) {
  std::mt19937 rng(3);
  const int64_t t = 5, heads = 3;
  for (const RopeSpec spec : {RopeSpec{10, 6}, RopeSpec{6, 6}, RopeSpec{10, 2}}) {
    SCOPED_TRACE(::testing::Message() << "Dh=" << spec.head_dim << " rot=" << spec.rot_dim);
    const int64_t half = spec.rot_dim / 2;
    const std::vector<int32_t> positions = {0, 3, 7, 11, 100};
    Vec inv_freq(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i)
      inv_freq[static_cast<size_t>(i)] =
          std::pow(10000.0, -2.0 * static_cast<double>(i) / static_cast<double>(spec.rot_dim));
    std::vector<float> cos(static_cast<size_t>(t * half)), sin(cos.size());
    RopeTables(positions, inv_freq, cos, sin);
    Vec x = Random(t * heads * spec.head_dim, rng);
    auto forward = [&] {
      Vec y = x;
      ref::Rope(y, cos, sin, t, heads, spec);
      return y;
    };
    const Vec r = Random(t * heads * spec.head_dim, rng);
    Vec dx = r;  // backward is in place: d(loss)/dx = R^T r
    ref::RopeBackward(dx, cos, sin, t, heads, spec);
    ExpectGradient(x, dx, forward, r, "Rope dx");
  }
}

TEST(RefGrad, Attention) {
  std::mt19937 rng(4);
  struct Case {
    int64_t t, h, hkv, dh;
  };
  for (const Case c : {Case{5, 6, 2, 6}, Case{5, 6, 3, 10}, Case{4, 2, 2, 3}, Case{1, 3, 1, 4}}) {
    SCOPED_TRACE(::testing::Message()
                 << "T=" << c.t << " H=" << c.h << " Hkv=" << c.hkv << " Dh=" << c.dh);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.dh));
    Vec q = Random(c.t * c.h * c.dh, rng, -2.0, 2.0),
        k = Random(c.t * c.hkv * c.dh, rng, -2.0, 2.0), v = Random(c.t * c.hkv * c.dh, rng);
    Vec o(q.size()), probs(static_cast<size_t>(c.h * c.t * c.t));
    auto forward = [&] {
      ref::Attention(q, k, v, o, probs, c.t, c.h, c.hkv, c.dh, scale);
      return o;
    };
    forward();
    const Vec r = Random(static_cast<int64_t>(o.size()), rng);
    GradBuffer dq(c.t * c.h * c.dh, rng), dk(c.t * c.hkv * c.dh, rng), dv(c.t * c.hkv * c.dh, rng);
    ref::AttentionBackward(r, q, k, v, probs, dq.value, dk.value, dv.value, c.t, c.h, c.hkv, c.dh,
                           scale);
    // At T=1 the output is v whatever q and k are: only dv is informative.
    if (c.t > 1) {
      ExpectGradient(q, dq.Delta(), forward, r, "Attention dq");
      ExpectGradient(k, dk.Delta(), forward, r, "Attention dk");
    }
    ExpectGradient(v, dv.Delta(), forward, r, "Attention dv");
  }
}

TEST(RefGrad, SwiGlu) {
  std::mt19937 rng(5);
  Vec g = Random(13, rng, -3.0, 3.0), u = Random(13, rng);
  g[0] = 9.0;  // saturated sigmoid on both sides
  g[1] = -9.0;
  Vec h(g.size());
  auto forward = [&] {
    ref::SwiGlu(g, u, h);
    return h;
  };
  const Vec r = Random(13, rng);
  GradBuffer dg(13, rng), du(13, rng);
  ref::SwiGluBackward(r, g, u, dg.value, du.value);
  ExpectGradient(g, dg.Delta(), forward, r, "SwiGlu dg");
  ExpectGradient(u, du.Delta(), forward, r, "SwiGlu du");
}

// Distinct logits at least 0.05 apart, so a finite-difference step never changes the top-k.
Vec SpacedLogits(int64_t tokens, int64_t experts, std::mt19937& rng) {
  Vec l(static_cast<size_t>(tokens * experts));
  std::vector<int> order(static_cast<size_t>(experts));
  for (int64_t t = 0; t < tokens; ++t) {
    for (size_t e = 0; e < order.size(); ++e) order[e] = static_cast<int>(e);
    std::shuffle(order.begin(), order.end(), rng);
    const Vec jitter = Random(experts, rng, 0.0, 0.05);
    for (int64_t e = 0; e < experts; ++e)
      l[static_cast<size_t>(t * experts + e)] =
          0.3 * order[static_cast<size_t>(e)] + jitter[static_cast<size_t>(e)] - 1.0;
  }
  return l;
}

TEST(RefGrad, RouterTopK) {
  std::mt19937 rng(6);
  struct Case {
    int64_t t, e, k;
  };
  for (const Case c : {Case{5, 7, 3}, Case{3, 4, 1}, Case{2, 5, 5}}) {
    for (const bool norm : {true, false}) {
      // One selected expert renormalised is the constant 1; all experts renormalised are the
      // probs, whose gradient check is the norm=false case.
      if (norm && (c.k == 1 || c.k == c.e)) continue;
      SCOPED_TRACE(::testing::Message()
                   << "T=" << c.t << " E=" << c.e << " K=" << c.k << " norm=" << norm);
      Vec logits = SpacedLogits(c.t, c.e, rng);
      Vec probs(logits.size()), weights(static_cast<size_t>(c.t * c.k));
      std::vector<int32_t> idx(weights.size()), idx0;
      auto forward = [&] {
        ref::RouterTopK(logits, probs, idx, weights, c.t, c.e, c.k, norm);
        EXPECT_EQ(idx, idx0) << "selection changed under a finite-difference step";
        return weights;
      };
      ref::RouterTopK(logits, probs, idx, weights, c.t, c.e, c.k, norm);
      idx0 = idx;
      const Vec r = Random(static_cast<int64_t>(weights.size()), rng);
      GradBuffer dl(c.t * c.e, rng);
      ref::RouterTopKBackward(r, probs, idx, dl.value, c.t, c.e, c.k, norm);
      ExpectGradient(logits, dl.Delta(), forward, r, "RouterTopK dlogits");
    }
  }
}

TEST(RefGrad, Embedding) {
  std::mt19937 rng(7);
  const int64_t rows = 11, d = 4;
  const std::vector<int32_t> ids = {3, 0, 3, 10, 7, 3};
  Vec table = Random(rows * d, rng);
  Vec y(ids.size() * static_cast<size_t>(d));
  auto forward = [&] {
    ref::Embedding(table, ids, y, d);
    return y;
  };
  const Vec r = Random(static_cast<int64_t>(y.size()), rng);
  GradBuffer dt(rows * d, rng);
  ref::EmbeddingBackward(r, ids, dt.value, d);
  ExpectGradient(table, dt.Delta(), forward, r, "Embedding dtable");
}

TEST(RefGrad, CrossEntropy) {
  std::mt19937 rng(8);
  const int64_t t = 5, vocab = 11;
  const std::vector<int32_t> targets = {2, -1, 10, 0, 2};
  Vec logits = Random(t * vocab, rng, -3.0, 3.0);
  Vec nll(static_cast<size_t>(t)), lse(static_cast<size_t>(t));
  auto forward = [&] {
    ref::CrossEntropy(logits, targets, nll, lse, t, vocab);
    return nll;
  };
  forward();
  const double scale = 0.7;  // L = scale * sum_t nll[t]
  const Vec r(static_cast<size_t>(t), scale);
  GradBuffer dl(t * vocab, rng);
  ref::CrossEntropyBackward(logits, targets, lse, scale, dl.value, t, vocab);
  ExpectGradient(logits, dl.Delta(), forward, r, "CrossEntropy dlogits");
  // The ignored token gets no gradient at all.
  const Vec delta = dl.Delta();
  for (int64_t i = 0; i < vocab; ++i) EXPECT_EQ(delta[static_cast<size_t>(vocab + i)], 0.0);
}

}  // namespace
}  // namespace pq::compute
