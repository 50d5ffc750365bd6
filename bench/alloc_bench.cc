// Allocator speed on a 35B-MoE-shaped problem (src/pq/alloc/synthetic.h: ~500 units x 8
// formats): median milliseconds per Pareto point of an 11-target sweep, single Solve and
// SolveMany. Usage: alloc_bench [reps=5] [units=500] [seed=42]. One JSON object per line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "pq/alloc/knapsack.h"
#include "pq/alloc/synthetic.h"

namespace {

double Seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  const int units = argc > 2 ? std::atoi(argv[2]) : 500;
  const uint32_t seed = argc > 3 ? static_cast<uint32_t>(std::atoi(argv[3])) : 42u;
  using namespace pq::alloc;
  const Problem p = MakeSyntheticMoeProblem(seed, units);
  const double targets[] = {4.25, 4.5, 4.75, 5.0, 5.25, 5.5, 6.0, 6.5, 7.0, 7.75, 8.5};
  std::vector<uint64_t> budgets;
  for (double t : targets) {
    auto b = BudgetForBits(p, t);
    if (!b.ok()) return std::fprintf(stderr, "%s\n", b.status().ToString().c_str()), 1;
    budgets.push_back(*b);
  }
  for (size_t i = 0; i < budgets.size(); ++i) {
    std::vector<double> ms;
    Solution last;
    for (int r = 0; r < reps; ++r) {
      const auto a = std::chrono::steady_clock::now();
      auto s = Solve(p, budgets[i]);
      ms.push_back(1e3 * Seconds(a));
      if (!s.ok()) return std::fprintf(stderr, "%s\n", s.status().ToString().c_str()), 1;
      last = std::move(s).value();
    }
    std::printf(
        "{\"target_bpp\": %.3f, \"bpp\": %.6f, \"median_ms\": %.3f, \"optimal\": %s, "
        "\"lp_gap_rel\": %.3e, \"core_units\": %d, \"dp_states\": %lld}\n",
        targets[i], last.bits_per_param, Median(ms), last.optimal ? "true" : "false",
        (last.cost - last.lp_bound) / last.cost, last.core_units,
        static_cast<long long>(last.dp_states));
  }
  std::vector<double> per_point;
  for (int r = 0; r < reps; ++r) {
    const auto a = std::chrono::steady_clock::now();
    auto all = SolveMany(p, budgets);
    per_point.push_back(1e3 * Seconds(a) / static_cast<double>(budgets.size()));
    if (!all.ok()) return std::fprintf(stderr, "%s\n", all.status().ToString().c_str()), 1;
  }
  std::printf("{\"sweep_points\": %zu, \"units\": %d, \"median_ms_per_point\": %.3f}\n",
              budgets.size(), units, Median(per_point));
  return 0;
}
