// Test and benchmark fixture: a random allocation problem shaped like a 35B MoE checkpoint
// (~500 decision units of 1e6..5e8 params, 8 candidate formats, exact-ish byte counts).
// Not used by the solver itself.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include "pq/alloc/knapsack.h"

namespace pq::alloc {

// Formats as (name, element bits, scale bytes per scale, elements per scale along K (0 = one
// per output row), extra bytes per unit, relative error factor).
struct SyntheticFormat {
  const char* name;
  int element_bits;
  int scale_bytes;
  int group;  // 0: per output channel
  int extra_bytes;
  double error;  // multiplies 4^-element_bits in the cost; 0 for lossless
};

inline constexpr SyntheticFormat kSyntheticFormats[] = {
    {"BF16", 16, 0, 0, 0, 0.0},  {"MXFP8", 8, 1, 32, 0, 1.3}, {"FP8", 8, 2, 0, 0, 1.0},
    {"INT8", 8, 2, 0, 0, 0.8},   {"NVFP4", 4, 1, 16, 8, 1.6}, {"NVFP4A16", 4, 1, 16, 4, 1.0},
    {"MXFP4", 4, 1, 32, 0, 1.9}, {"INT4", 4, 2, 128, 0, 1.4},
};

// Exact bytes of a [rows, cols] weight in format f (elements + scales + extras).
inline uint64_t SyntheticBytes(const SyntheticFormat& f, int64_t rows, int64_t cols) {
  const uint64_t n = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols);
  const uint64_t scales = static_cast<uint64_t>(rows) *
                          (f.group == 0 ? (f.scale_bytes ? 1u : 0u)
                                        : static_cast<uint64_t>((cols + f.group - 1) / f.group));
  return (n * static_cast<uint64_t>(f.element_bits) + 7) / 8 +
         scales * static_cast<uint64_t>(f.scale_bytes) + static_cast<uint64_t>(f.extra_bytes);
}

// `num_units` units with log-uniform sizes in [1e6, 5e8] params. Every 5th unit (like an MoE
// layer under a serving profile) allows only BF16 and the 4-bit floating formats; every 7th
// lacks MXFP8 (a shape rule). Costs: sensitivity (log-uniform over 4 decades) · params ·
// error · 4^-bits · noise(0.8..1.25); BF16 costs 0.
inline Problem MakeSyntheticMoeProblem(uint32_t seed, int num_units = 500) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit01(0.0, 1.0);
  Problem p;
  p.units.reserve(static_cast<size_t>(num_units));
  for (int u = 0; u < num_units; ++u) {
    const double params = std::exp(std::log(1e6) + unit01(rng) * (std::log(5e8) - std::log(1e6)));
    const int64_t cols = int64_t{1024} << (rng() % 3);
    const int64_t rows =
        std::max<int64_t>(128, std::llround(params / static_cast<double>(cols) / 128.0) * 128);
    const double sensitivity = std::pow(10.0, -10.0 + 4.0 * unit01(rng));
    Unit unit;
    unit.name = "unit";
    unit.name += std::to_string(u);
    unit.params = rows * cols;
    for (const SyntheticFormat& f : kSyntheticFormats) {
      const std::string name = f.name;
      if (u % 5 == 4 && name != "BF16" && name != "NVFP4" && name != "NVFP4A16" &&
          name != "MXFP4") {
        continue;
      }
      if (u % 7 == 3 && name == "MXFP8") continue;
      const double noise = 0.8 + 0.45 * unit01(rng);
      const double cost = sensitivity * static_cast<double>(unit.params) * f.error *
                          std::pow(4.0, -f.element_bits) * noise;
      unit.candidates.push_back({name, SyntheticBytes(f, rows, cols), cost});
    }
    p.units.push_back(std::move(unit));
  }
  return p;
}

}  // namespace pq::alloc
