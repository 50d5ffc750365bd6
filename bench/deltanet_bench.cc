// Gated DeltaNet recurrence, forward + backward, at the Qwen3.6-35B-A3B DeltaNet size
// (T=256 tokens, H=32 value heads, Dk=Dv=128): ref::GatedDeltaRule(Backward) (float
// interface, double inside) vs cpu::GatedDeltaRule(Backward) on all threads. Prints the
// median of `reps` runs (default 5) of each and the ratio, as one JSON object per line.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "pq/compute/deltanet.h"
#include "pq/compute/hybrid_ops.h"
#include "pq/compute/ops.h"

namespace {

using FVec = std::vector<float>;

double MedianSeconds(int reps, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// rows x dim uniform values, each row scaled to L2 norm `norm` (as q, k after l2norm).
FVec Rows(int64_t rows, int64_t dim, float norm, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  FVec x(static_cast<size_t>(rows * dim));
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x.data() + r * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) {
      xr[i] = u(rng);
      ss += static_cast<double>(xr[i]) * xr[i];
    }
    for (int64_t i = 0; i < dim; ++i) xr[i] *= norm / static_cast<float>(std::sqrt(ss));
  }
  return x;
}

FVec Uniform(int64_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(lo, hi);
  FVec x(static_cast<size_t>(n));
  for (float& v : x) v = u(rng);
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  namespace c = pq::compute;
  const int64_t t = 256, h = 32, dk = 128, dv = 128;
  const int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  std::mt19937 rng(0);
  const FVec q = Rows(t * h, dk, 1.0f / std::sqrt(static_cast<float>(dk)), rng);
  const FVec k = Rows(t * h, dk, 1.0f, rng), v = Uniform(t * h * dv, -1.0f, 1.0f, rng);
  const FVec g = Uniform(t * h, -1.0f, 0.0f, rng), beta = Uniform(t * h, 0.01f, 1.0f, rng);
  const FVec dout = Uniform(t * h * dv, -1.0f, 1.0f, rng);
  FVec out(dout.size()), dq(q.size()), dkk(k.size()), dvv(v.size()), dg(g.size()), db(g.size());
  const double ref_s = MedianSeconds(reps, [&] {
    c::ref::GatedDeltaRule(std::span<const float>(q), k, v, g, beta, out, {}, t, h, dk, dv);
    c::ref::GatedDeltaRuleBackward(std::span<const float>(dout), q, k, v, g, beta, dq, dkk, dvv, dg,
                                   db, t, h, dk, dv);
  });
  const double cpu_s = MedianSeconds(reps, [&] {
    c::cpu::GatedDeltaRule(q, k, v, g, beta, out, {}, t, h, dk, dv);
    c::cpu::GatedDeltaRuleBackward(dout, q, k, v, g, beta, dq, dkk, dvv, dg, db, t, h, dk, dv);
  });
  std::printf(
      "{\"op\": \"GatedDeltaRule fwd+bwd\", \"T\": %lld, \"H\": %lld, \"Dk\": %lld, \"Dv\": %lld, "
      "\"threads\": %d, \"ref_median_s\": %.4f, \"cpu_median_s\": %.4f, \"ref_over_cpu\": %.1f}\n",
      static_cast<long long>(t), static_cast<long long>(h), static_cast<long long>(dk),
      static_cast<long long>(dv), c::cpu::NumThreads(), ref_s, cpu_s, ref_s / cpu_s);
  return 0;
}
