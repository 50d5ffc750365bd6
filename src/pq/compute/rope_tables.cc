// RoPE cos/sin tables: angles positions[t] * inv_freq[i] in double, stored as float.
#include <cmath>

#include "pq/compute/op_checks.h"
#include "pq/compute/ops.h"

namespace pq::compute {

void RopeTables(std::span<const int32_t> positions, std::span<const double> inv_freq,
                std::span<float> cos, std::span<float> sin) {
  const int64_t tokens = static_cast<int64_t>(positions.size());
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  PQ_CHECK_SIZE(cos, tokens * half, "RopeTables: cos[T,rot_dim/2]");
  PQ_CHECK_SIZE(sin, tokens * half, "RopeTables: sin[T,rot_dim/2]");
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(positions.data()[t]) * inv_freq.data()[i];
      cos.data()[t * half + i] = static_cast<float>(std::cos(angle));
      sin.data()[t * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

}  // namespace pq::compute
