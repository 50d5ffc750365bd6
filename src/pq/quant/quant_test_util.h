// Test-only helpers shared by the quantizer tests.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "pq/core/minifloat.h"

namespace pq::quant::testing {

// bf16 weights [n, k] ~ N(0, 0.02²), one in `one_in` scaled by `outlier` (seeded).
inline std::vector<float> RandomWeights(int64_t n, int64_t k, uint32_t seed, int one_in,
                                        float outlier) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 0.02f);
  std::uniform_int_distribution<int> pick(0, one_in - 1);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& x : w) x = RoundBf16(g(rng) * (pick(rng) == 0 ? outlier : 1.0f));
  return w;
}

}  // namespace pq::quant::testing
