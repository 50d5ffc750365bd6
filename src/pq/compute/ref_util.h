// Scalar helpers shared by the reference ops (ops_ref*.cc, hybrid_ops_ref.cc, deltanet_ref.cc):
// every intermediate in double, rounded to the element type once.
#pragma once

#include <cmath>

namespace pq::compute::ref_util {

template <typename T>
T Round(double v) {
  return static_cast<T>(v);
}

// Numerically stable logistic sigmoid (architectures.md §6.10).
inline double Sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

}  // namespace pq::compute::ref_util
