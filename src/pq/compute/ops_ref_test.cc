// Forward checks of the `ref` ops against independent formulas and hand-worked values.
#include <cmath>
#include <numbers>
#include <span>

#include "pq/compute/ops.h"
#include "pq/compute/ops_test_util.h"

namespace pq::compute {
namespace {

using testing::Random;
using testing::Vec;

constexpr double kExact = 1e-12;  // double results of short exact-ish formulas

TEST(RefOps, MatMulHandExample) {
  const Vec x = {1, 2, 3, 4, 5, 6};     // [2,3]
  const Vec w = {1, 0, -1, 2, 1, 0.5};  // [2,3]
  const Vec b = {10, 20};
  Vec y(4);
  ref::MatMul(x, w, b, y, 2, 3, 2);
  EXPECT_EQ(y, (Vec{1 - 3 + 10, 2 + 2 + 1.5 + 20, 4 - 6 + 10, 8 + 5 + 3 + 20}));
  ref::MatMul(x, w, {}, y, 2, 3, 2);
  EXPECT_EQ(y, (Vec{-2, 5.5, -2, 16}));
}

TEST(RefOps, RmsNormUnitRms) {
  std::mt19937 rng(11);
  const int64_t t = 4, d = 9;
  const Vec x = Random(t * d, rng, -3.0, 3.0);
  Vec y(x.size()), rstd(static_cast<size_t>(t));
  for (const float offset : {0.0f, 1.0f}) {
    const Vec w(static_cast<size_t>(d), 1.0 - offset);  // effective weight 1
    ref::RmsNorm(x, w, 0.0f, offset, y, rstd, t, d);
    for (int64_t i = 0; i < t; ++i) {
      double ss = 0.0, xs = 0.0;
      for (int64_t j = 0; j < d; ++j) {
        ss += y[static_cast<size_t>(i * d + j)] * y[static_cast<size_t>(i * d + j)];
        xs += x[static_cast<size_t>(i * d + j)] * x[static_cast<size_t>(i * d + j)];
      }
      EXPECT_NEAR(std::sqrt(ss / static_cast<double>(d)), 1.0, kExact);
      EXPECT_NEAR(rstd[static_cast<size_t>(i)], 1.0 / std::sqrt(xs / static_cast<double>(d)),
                  kExact);
    }
  }
}

TEST(RefOps, RopeTablesMatchCosSin) {
  const std::vector<int32_t> positions = {0, 1, 5, 4095};
  const Vec inv_freq = {1.0, 0.1, 1e-4};
  std::vector<float> cos(12), sin(12);
  RopeTables(positions, inv_freq, cos, sin);
  for (size_t t = 0; t < positions.size(); ++t) {
    for (size_t i = 0; i < inv_freq.size(); ++i) {
      const double a = positions[t] * inv_freq[i];
      EXPECT_EQ(cos[t * 3 + i], static_cast<float>(std::cos(a)));
      EXPECT_EQ(sin[t * 3 + i], static_cast<float>(std::sin(a)));
    }
  }
}

TEST(RefOps, RopeRotatesHalfPairsOnly) {
  std::mt19937 rng(12);
  const RopeSpec spec{8, 4};  // pairs (0,2), (1,3); dims 4..7 pass through
  const int64_t t = 2, heads = 2;
  // Position 0: identity. Position 1 with angle pi/2 on pair 0, angle 0.3 on pair 1.
  const std::vector<float> cos = {1, 1, 0, static_cast<float>(std::cos(0.3))};
  const std::vector<float> sin = {0, 0, 1, static_cast<float>(std::sin(0.3))};
  const Vec x = Random(t * heads * 8, rng);
  Vec y = x;
  ref::Rope(y, cos, sin, t, heads, spec);
  for (int64_t h = 0; h < heads; ++h) {
    const double* x0 = x.data() + h * 8;
    const double* y0 = y.data() + h * 8;
    for (int i = 0; i < 8; ++i) EXPECT_EQ(y0[i], x0[i]) << "position 0 must be the identity";
    const double* x1 = x.data() + (heads + h) * 8;
    const double* y1 = y.data() + (heads + h) * 8;
    EXPECT_NEAR(y1[0], -x1[2], kExact);  // rotate by pi/2: (a, b) -> (-b, a)
    EXPECT_NEAR(y1[2], x1[0], kExact);
    const double c = cos[3], s = sin[3];
    EXPECT_NEAR(y1[1], x1[1] * c - x1[3] * s, kExact);
    EXPECT_NEAR(y1[3], x1[3] * c + x1[1] * s, kExact);
    for (int i = 4; i < 8; ++i) EXPECT_EQ(y1[i], x1[i]) << "dims past rot_dim must not change";
  }
  // Orthogonal: backward undoes forward (up to cos^2 + sin^2 = 1 in float).
  ref::RopeBackward(y, cos, sin, t, heads, spec);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 1e-7);
}

TEST(RefOps, AttentionSingleTokenReturnsV) {
  std::mt19937 rng(13);
  const int64_t h = 6, hkv = 2, dh = 5;
  const Vec q = Random(h * dh, rng), k = Random(hkv * dh, rng), v = Random(hkv * dh, rng);
  Vec o(q.size()), probs(static_cast<size_t>(h));
  ref::Attention(q, k, v, o, probs, 1, h, hkv, dh, 0.5f);
  for (int64_t i = 0; i < h; ++i) {
    EXPECT_EQ(probs[static_cast<size_t>(i)], 1.0);
    for (int64_t d = 0; d < dh; ++d)  // query head i reads kv head i / (H / Hkv)
      EXPECT_NEAR(o[static_cast<size_t>(i * dh + d)], v[static_cast<size_t>((i / 3) * dh + d)],
                  kExact);
  }
}

TEST(RefOps, AttentionEqualKeysAverageCausally) {
  std::mt19937 rng(14);
  const int64_t t = 6, h = 3, hkv = 3, dh = 4;
  const Vec q = Random(t * h * dh, rng), v = Random(t * hkv * dh, rng);
  Vec k(static_cast<size_t>(t * hkv * dh));
  for (size_t i = 0; i < k.size(); ++i) k[i] = 0.25 * static_cast<double>(i % dh);
  Vec o(q.size()), probs(static_cast<size_t>(h * t * t));
  ref::Attention(q, k, v, o, probs, t, h, hkv, dh, 1.0f);
  for (int64_t hh = 0; hh < h; ++hh) {
    for (int64_t i = 0; i < t; ++i) {
      for (int64_t j = 0; j < t; ++j)
        EXPECT_NEAR(probs[static_cast<size_t>((hh * t + i) * t + j)],
                    j <= i ? 1.0 / static_cast<double>(i + 1) : 0.0, kExact);
      for (int64_t d = 0; d < dh; ++d) {
        double mean = 0.0;
        for (int64_t j = 0; j <= i; ++j) mean += v[static_cast<size_t>((j * hkv + hh) * dh + d)];
        mean /= static_cast<double>(i + 1);
        EXPECT_NEAR(o[static_cast<size_t>((i * h + hh) * dh + d)], mean, kExact);
      }
    }
  }
}

TEST(RefOps, SwiGluValues) {
  const Vec g = {0.0, 1.0, -2.0, 40.0, -800.0}, u = {3.0, 2.0, 1.0, 0.5, 7.0};
  Vec h(5);
  ref::SwiGlu(g, u, h);
  EXPECT_EQ(h[0], 0.0);
  EXPECT_NEAR(h[1], 2.0 / (1.0 + std::exp(-1.0)), kExact);
  EXPECT_NEAR(h[2], -2.0 / (1.0 + std::exp(2.0)), kExact);
  EXPECT_NEAR(h[3], 20.0, kExact);
  EXPECT_TRUE(std::isfinite(h[4]) && std::abs(h[4]) < 1e-300);
}

TEST(RefOps, RouterTiesAndNormalisation) {
  // Token 0: ties among 1, 2 and 4; token 1: huge logits must not overflow.
  const Vec logits = {0.0, 2.0, 2.0, -1.0, 2.0, 1.0, 1000.0, -1000.0, 999.0, 0.0, 1000.0, 3.0};
  const int64_t t = 2, e = 6, k = 3;
  Vec probs(12), weights(6);
  std::vector<int32_t> idx(6);
  ref::RouterTopK(logits, probs, idx, weights, t, e, k, false);
  EXPECT_EQ(idx, (std::vector<int32_t>{1, 2, 4, 0, 4, 2}));
  for (int64_t i = 0; i < t; ++i) {
    double sum = 0.0;
    for (int64_t j = 0; j < e; ++j) sum += probs[static_cast<size_t>(i * e + j)];
    EXPECT_NEAR(sum, 1.0, kExact);
    for (int64_t j = 0; j < k; ++j)
      EXPECT_EQ(weights[static_cast<size_t>(i * k + j)],
                probs[static_cast<size_t>(i * e + idx[static_cast<size_t>(i * k + j)])]);
  }
  const double d = std::exp(-1.0);  // token 1: probs of 1000, 1000, 999 over their sum
  EXPECT_NEAR(weights[3], 1.0 / (2.0 + d + std::exp(-1000.0 + 3.0)), kExact);
  ref::RouterTopK(logits, probs, idx, weights, t, e, k, true);
  EXPECT_NEAR(weights[0] + weights[1] + weights[2], 1.0, kExact);
  EXPECT_NEAR(weights[0], 1.0 / 3.0, kExact);
  EXPECT_NEAR(weights[5], d / (2.0 + d), kExact);
  ref::RouterTopK(logits, probs, std::span(idx).first(2), std::span(weights).first(2), t, e, 1,
                  true);
  EXPECT_EQ(weights[0], 1.0);
  EXPECT_EQ(weights[1], 1.0);
}

TEST(RefOps, EmbeddingCopiesRows) {
  const Vec table = {0, 1, 10, 11, 20, 21};  // [3,2]
  const std::vector<int32_t> ids = {2, 0, 2};
  Vec y(6);
  ref::Embedding(table, ids, y, 2);
  EXPECT_EQ(y, (Vec{20, 21, 0, 1, 20, 21}));
}

TEST(RefOps, CrossEntropyUniformAndStable) {
  const int64_t vocab = 11;
  Vec logits(3 * vocab, 0.25);
  for (int64_t i = 0; i < vocab; ++i)  // token 2: huge logits, target 3
    logits[static_cast<size_t>(2 * vocab + i)] = i == 3 ? 5000.0 : 4990.0;
  const std::vector<int32_t> targets = {4, -1, 3};
  Vec nll(3), lse(3);
  ref::CrossEntropy(logits, targets, nll, lse, 3, vocab);
  EXPECT_NEAR(nll[0], std::log(static_cast<double>(vocab)), kExact);
  EXPECT_NEAR(lse[0], 0.25 + std::log(static_cast<double>(vocab)), kExact);
  EXPECT_EQ(nll[1], 0.0);                                         // ignored
  EXPECT_NEAR(nll[2], std::log1p(10.0 * std::exp(-10.0)), 1e-9);  // lse ~ 5000
}

TEST(RefOps, FloatInstantiationWorks) {
  // The float ref ops sum in double and round once: a long dot product stays exact-ish.
  const int64_t k = 4096;
  std::vector<float> x(static_cast<size_t>(k), 0.1f), w(static_cast<size_t>(k), 1.0f), y(1);
  ref::MatMul(std::span<const float>(x), w, {}, y, 1, k, 1);
  EXPECT_EQ(y[0], static_cast<float>(static_cast<double>(0.1f) * k));
}

}  // namespace
}  // namespace pq::compute
