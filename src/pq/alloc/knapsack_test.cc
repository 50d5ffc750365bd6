// Allocator: exact optimality against brute force and an independent byte DP, feasibility at
// every budget, exact infeasibility, monotone Pareto sweeps, and the bits/param target on a
// 35B-MoE-shaped instance.
#include "pq/alloc/knapsack.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "pq/alloc/synthetic.h"

namespace pq::alloc {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// prefix + index (built by append: GCC 12 warns falsely on "literal" + std::string).
std::string Name(const char* prefix, int index) {
  std::string s(prefix);
  s += std::to_string(index);
  return s;
}

// Checks that sol is a valid choice for problem within budget and that its totals add up.
void ExpectConsistent(const Problem& problem, const Solution& sol, uint64_t budget) {
  ASSERT_EQ(sol.choice.size(), problem.units.size());
  uint64_t bytes = 0;
  double cost = 0.0;
  for (size_t u = 0; u < problem.units.size(); ++u) {
    ASSERT_GE(sol.choice[u], 0);
    ASSERT_LT(sol.choice[u], static_cast<int>(problem.units[u].candidates.size()));
    bytes += problem.units[u].candidates[sol.choice[u]].bytes;
    cost += problem.units[u].candidates[sol.choice[u]].cost;
  }
  EXPECT_EQ(sol.bytes, bytes);
  EXPECT_EQ(sol.cost, cost);
  EXPECT_LE(sol.bytes, budget);
  EXPECT_EQ(sol.budget, budget);
}

double CostScale(const Problem& p) {
  double s = 1e-300;
  for (const Unit& u : p.units) {
    double m = 0.0;
    for (const Candidate& c : u.candidates) m = std::max(m, std::fabs(c.cost));
    s += m;
  }
  return s;
}

// Minimum cost over all combinations within budget (kInf if none).
double BruteForce(const Problem& p, uint64_t budget) {
  double best = kInf;
  std::vector<size_t> idx(p.units.size(), 0);
  for (;;) {
    uint64_t b = 0;
    double c = 0.0;
    for (size_t u = 0; u < idx.size(); ++u) {
      b += p.units[u].candidates[idx[u]].bytes;
      c += p.units[u].candidates[idx[u]].cost;
    }
    if (b <= budget) best = std::min(best, c);
    size_t u = 0;
    while (u < idx.size() && ++idx[u] == p.units[u].candidates.size()) idx[u++] = 0;
    if (u == idx.size()) return best;
  }
}

// Independent exact DP over integer bytes (small byte values only): [b] = min cost of any
// choice with Σ bytes <= b, for b in 0..budget.
std::vector<double> ByteDpTable(const Problem& p, uint64_t budget) {
  std::vector<double> dp(budget + 1, kInf), next;
  dp[0] = 0.0;
  for (const Unit& u : p.units) {
    next.assign(budget + 1, kInf);
    for (size_t b = 0; b <= budget; ++b) {
      if (dp[b] == kInf) continue;
      for (const Candidate& c : u.candidates) {
        if (b + c.bytes <= budget) next[b + c.bytes] = std::min(next[b + c.bytes], dp[b] + c.cost);
      }
    }
    dp.swap(next);
  }
  for (size_t b = 1; b <= budget; ++b) dp[b] = std::min(dp[b], dp[b - 1]);
  return dp;
}

double ByteDp(const Problem& p, uint64_t budget) { return ByteDpTable(p, budget).back(); }

// Random small problem: many ties in bytes and costs, zero and (sometimes) negative costs,
// dominated candidates, byte values on `byte_scale`.
Problem RandomProblem(std::mt19937_64& rng, int max_units, int max_cands, uint64_t max_bytes,
                      uint64_t byte_scale) {
  std::uniform_int_distribution<int> nu(1, max_units), nc(1, max_cands), kind(0, 5);
  std::uniform_int_distribution<uint64_t> by(0, max_bytes);
  std::uniform_int_distribution<int> small(0, 4);
  std::uniform_real_distribution<double> real(0.0, 10.0);
  const bool negative = kind(rng) == 0;
  Problem p;
  const int units = nu(rng);
  for (int u = 0; u < units; ++u) {
    Unit unit;
    unit.name = Name("u", u);
    unit.params = static_cast<int64_t>(by(rng) + 1) * 16;
    const int cands = nc(rng);
    for (int c = 0; c < cands; ++c) {
      double cost = 0.0;
      switch (kind(rng)) {
        case 0:
          cost = 0.0;
          break;
        case 1:
        case 2:
          cost = small(rng);
          break;
        default:
          cost = real(rng);
          break;
      }
      if (negative) cost -= 5.0;
      unit.candidates.push_back({Name("f", c), by(rng) * byte_scale, cost});
    }
    p.units.push_back(std::move(unit));
  }
  return p;
}

void CheckAgainst(const Problem& p, uint64_t budget, double expected, const char* what) {
  const uint64_t min_bytes = MinBytes(p).value();
  Result<Solution> r = Solve(p, budget);
  if (budget < min_bytes) {
    ASSERT_EQ(expected, kInf);
    ASSERT_FALSE(r.ok()) << what << " budget " << budget;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    return;
  }
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_NE(expected, kInf);
  ExpectConsistent(p, *r, budget);
  const double tol = 1e-9 * CostScale(p);
  EXPECT_NEAR(r->cost, expected, tol) << what << " budget " << budget;
  EXPECT_LE(r->lp_bound, r->cost + tol);
  EXPECT_TRUE(r->optimal);
}

TEST(Knapsack, MatchesBruteForceOnRandomSmallProblems) {
  std::mt19937_64 rng(1234);
  int checked = 0;
  for (int trial = 0; trial < 600; ++trial) {
    const Problem p = RandomProblem(rng, 6, 5, 12, trial % 3 == 0 ? 1'000'003 : 1);
    uint64_t max_total = 0;
    for (const Unit& u : p.units) {
      uint64_t m = 0;
      for (const Candidate& c : u.candidates) m = std::max(m, c.bytes);
      max_total += m;
    }
    const uint64_t min_bytes = MinBytes(p).value();
    // Every budget around the interesting range when small, else a sample including the ends.
    std::vector<uint64_t> budgets;
    if (max_total < 200) {
      for (uint64_t b = 0; b <= max_total + 1; ++b) budgets.push_back(b);
    } else {
      std::uniform_int_distribution<uint64_t> pick(min_bytes, max_total);
      for (int i = 0; i < 25; ++i) budgets.push_back(pick(rng));
      for (uint64_t b : {min_bytes - (min_bytes > 0), min_bytes, max_total, max_total + 7}) {
        budgets.push_back(b);
      }
    }
    for (uint64_t b : budgets) {
      CheckAgainst(p, b, BruteForce(p, b), "brute force");
      ++checked;
      if (HasFatalFailure() || HasFailure()) return;
    }
  }
  EXPECT_GT(checked, 5000);
}

TEST(Knapsack, MatchesByteDpOnMediumProblems) {
  // 20..60 units: far beyond brute force, small integer bytes so a plain DP is exact.
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 60; ++trial) {
    Problem p;
    std::uniform_int_distribution<int> units(20, 60), cands(1, 8);
    std::uniform_int_distribution<uint64_t> by(1, 60);
    std::uniform_real_distribution<double> cost(0.0, 1.0);
    const int n = units(rng);
    for (int u = 0; u < n; ++u) {
      Unit unit{Name("u", u), 100, {}};
      const int k = cands(rng);
      for (int c = 0; c < k; ++c) {
        const uint64_t b = by(rng);
        // Mostly "more bytes, less loss", with noise so hulls are not trivially convex.
        unit.candidates.push_back(
            {"f", b, std::max(0.0, 1.0 - static_cast<double>(b) / 60.0 + 0.3 * cost(rng))});
      }
      p.units.push_back(std::move(unit));
    }
    const uint64_t min_bytes = MinBytes(p).value();
    std::uniform_int_distribution<uint64_t> pick(min_bytes, min_bytes + 30 * n);
    for (int i = 0; i < 8; ++i) {
      const uint64_t b = pick(rng);
      CheckAgainst(p, b, ByteDp(p, b), "byte dp");
      if (HasFailure()) return;
    }
  }
}

TEST(Knapsack, MatchesByteDpOnACoarsenedMoeProblem) {
  // The 500-unit MoE-shaped problem with bytes in MB (many equal byte counts): one byte DP
  // gives the optimum at every budget; the solver must match it at all 11 Pareto targets.
  const Problem original = MakeSyntheticMoeProblem(7);
  const double targets[] = {4.25, 4.5, 4.75, 5.0, 5.25, 5.5, 6.0, 6.5, 7.0, 7.75, 8.5};
  std::vector<uint64_t> budgets;
  for (double t : targets) budgets.push_back(BudgetForBits(original, t).value() / 1'000'000);
  Problem p = original;
  for (Unit& u : p.units) {
    for (Candidate& c : u.candidates) c.bytes = (c.bytes + 999'999) / 1'000'000;
  }
  const std::vector<double> table = ByteDpTable(p, budgets.back());
  Result<std::vector<Solution>> many = SolveMany(p, budgets);
  ASSERT_TRUE(many.ok()) << many.status().ToString();
  for (size_t i = 0; i < budgets.size(); ++i) {
    ExpectConsistent(p, (*many)[i], budgets[i]);
    EXPECT_NEAR((*many)[i].cost, table[budgets[i]], 1e-9 * CostScale(p)) << targets[i];
    EXPECT_TRUE((*many)[i].optimal);
  }
}

TEST(Knapsack, GreedyTrapNeedsTheExactPhase) {
  // Efficiency order takes unit 1 first and then cannot afford unit 0; optimum is the reverse.
  Problem p;
  p.units.push_back({"big", 10, {{"lo", 0, 10.0}, {"hi", 10, 0.0}}});
  p.units.push_back({"small", 1, {{"lo", 0, 2.0}, {"hi", 1, 0.0}}});
  Result<Solution> r = Solve(p, 10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->choice, (std::vector<int>{1, 0}));
  EXPECT_DOUBLE_EQ(r->cost, 2.0);
  EXPECT_DOUBLE_EQ(r->lp_bound, 1.0);
  EXPECT_TRUE(r->optimal);
}

TEST(Knapsack, PicksACandidateOffTheConvexHull) {
  Problem p;
  p.units.push_back({"u", 8, {{"a", 0, 10.0}, {"b", 5, 6.0}, {"c", 10, 0.0}}});
  Result<Solution> r = Solve(p, 7);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->choice, std::vector<int>{1});
  EXPECT_EQ(r->bytes, 5u);
}

TEST(Knapsack, TiesAndDominatedCandidatesAreDeterministic) {
  // Duplicates: the first of equal (bytes, cost) candidates wins; dominated ones never chosen.
  Problem p;
  p.units.push_back({"u0", 8, {{"x", 4, 1.0}, {"dup", 4, 1.0}, {"dom", 6, 1.0}, {"z", 2, 3.0}}});
  p.units.push_back({"u1", 8, {{"a", 3, 0.0}, {"b", 3, 0.0}}});
  for (int rep = 0; rep < 3; ++rep) {
    Result<Solution> r = Solve(p, 100);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->choice, (std::vector<int>{0, 0}));
  }
  Result<Solution> r = Solve(p, 5);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->choice, (std::vector<int>{3, 0}));
}

TEST(Knapsack, InfeasibleBudgetNamesTheMinimum) {
  Problem p;
  p.units.push_back({"a", 16, {{"x", 10, 0.0}, {"y", 8, 1.0}}});
  p.units.push_back({"b", 16, {{"x", 4, 0.0}}});
  EXPECT_EQ(MinBytes(p).value(), 12u);
  Result<Solution> r = Solve(p, 11);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("12 bytes"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("3.000000 bits/param"), std::string::npos);
  EXPECT_TRUE(Solve(p, 12).ok());
  const uint64_t budgets[] = {20, 11};
  EXPECT_FALSE(SolveMany(p, budgets).ok());
}

TEST(Knapsack, RejectsInvalidProblems) {
  Problem empty_unit;
  empty_unit.units.push_back({"e", 1, {}});
  EXPECT_FALSE(Solve(empty_unit, 100).ok());
  Problem nan_cost;
  nan_cost.units.push_back({"n", 1, {{"x", 1, std::nan("")}}});
  EXPECT_FALSE(Solve(nan_cost, 100).ok());
  Problem negative;
  negative.units.push_back({"n", -1, {{"x", 1, 0.0}}});
  EXPECT_FALSE(Solve(negative, 100).ok());
  Problem overflow;
  const uint64_t big = std::numeric_limits<uint64_t>::max() / 2 + 1;
  overflow.units.push_back({"a", 1, {{"x", big, 0.0}}});
  overflow.units.push_back({"b", 1, {{"x", big, 0.0}}});
  EXPECT_FALSE(Solve(overflow, 100).ok());
  // No units: the empty choice fits any budget.
  Result<Solution> r = Solve(Problem{}, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->choice.empty());
  EXPECT_EQ(r->bytes, 0u);
}

TEST(Knapsack, BudgetHelpers) {
  Problem p;
  p.units.push_back({"a", 1000, {{"x", 1, 0.0}}});
  p.units.push_back({"b", 3, {{"x", 1, 0.0}}});
  EXPECT_EQ(TotalParams(p), 1003);
  EXPECT_EQ(BudgetForBits(p, 4.5).value(), 564u);  // floor(4.5 * 1003 / 8) = floor(564.19)
  EXPECT_EQ(BudgetForBits(p, 8.0).value(), 1003u);
  EXPECT_FALSE(BudgetForBits(p, -1.0).ok());
  EXPECT_FALSE(BudgetForBits(p, std::nan("")).ok());
  EXPECT_FALSE(BudgetForBits(Problem{}, 4.0).ok());
  EXPECT_EQ(BudgetForTotalBytes(100, 30).value(), 70u);
  EXPECT_FALSE(BudgetForTotalBytes(30, 100).ok());
  EXPECT_DOUBLE_EQ(BitsPerParam(564, 1003), 8.0 * 564 / 1003);
  EXPECT_EQ(BitsPerParam(5, 0), 0.0);
}

TEST(Knapsack, BeamFallbackStaysFeasibleAndMonotone) {
  // max_states = 1 turns the exact search into a width-1 beam: answers stay feasible, above
  // the true optimum and the LP bound, flagged non-optimal when truncated, and SolveMany still
  // returns a monotone curve.
  std::mt19937_64 rng(7);
  int non_optimal = 0;
  SolveOptions tiny;
  tiny.max_states = 1;
  for (int trial = 0; trial < 300; ++trial) {
    const Problem p = RandomProblem(rng, 6, 5, 12, 1);
    const uint64_t min_bytes = MinBytes(p).value();
    const double tol = 1e-9 * CostScale(p);
    std::vector<uint64_t> budgets;
    for (uint64_t b = min_bytes; b < min_bytes + 40; b += 2) budgets.push_back(b);
    Result<std::vector<Solution>> many = SolveMany(p, budgets, tiny);
    ASSERT_TRUE(many.ok());
    for (size_t i = 0; i < budgets.size(); ++i) {
      const Solution& s = (*many)[i];
      ExpectConsistent(p, s, budgets[i]);
      const double best = BruteForce(p, budgets[i]);
      EXPECT_GE(s.cost, best - tol);
      EXPECT_GE(s.cost, s.lp_bound - tol);
      if (s.optimal) {
        EXPECT_NEAR(s.cost, best, tol);
      } else {
        ++non_optimal;
      }
      if (i > 0) {
        EXPECT_LE(s.cost, (*many)[i - 1].cost);
      }
    }
  }
  EXPECT_GT(non_optimal, 0);
  // A dense sweep where width-1 beam answers alone are not monotone.
  const Problem p = MakeSyntheticMoeProblem(0, 20);
  std::vector<uint64_t> budgets;
  for (int i = 0; i <= 420; ++i) budgets.push_back(BudgetForBits(p, 4.3 + 0.01 * i).value());
  Result<std::vector<Solution>> many = SolveMany(p, budgets, tiny);
  ASSERT_TRUE(many.ok());
  for (size_t i = 1; i < budgets.size(); ++i) {
    ExpectConsistent(p, (*many)[i], budgets[i]);
    EXPECT_LE((*many)[i].cost, (*many)[i - 1].cost) << i;
  }
}

TEST(Knapsack, SolveManyIsMonotoneAndMatchesSolve) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 40; ++trial) {
    const Problem p = RandomProblem(rng, 6, 5, 40, trial % 2 ? 1 : 4099);
    const uint64_t min_bytes = MinBytes(p).value();
    std::vector<uint64_t> budgets;
    std::uniform_int_distribution<uint64_t> pick(min_bytes, min_bytes + 200 * 4099);
    for (int i = 0; i < 30; ++i) budgets.push_back(pick(rng));
    Result<std::vector<Solution>> many = SolveMany(p, budgets);
    ASSERT_TRUE(many.ok());
    ASSERT_EQ(many->size(), budgets.size());
    for (size_t i = 0; i < budgets.size(); ++i) {
      ExpectConsistent(p, (*many)[i], budgets[i]);
      Result<Solution> one = Solve(p, budgets[i]);
      ASSERT_TRUE(one.ok());
      EXPECT_EQ((*many)[i].choice, one->choice);
      for (size_t j = 0; j < budgets.size(); ++j) {
        if (budgets[j] >= budgets[i]) {
          EXPECT_LE((*many)[j].cost, (*many)[i].cost);
        }
      }
    }
  }
}

TEST(Knapsack, SyntheticMoeLandsOnTheBitTarget) {
  const Problem p = MakeSyntheticMoeProblem(42);
  ASSERT_EQ(p.units.size(), 500u);
  const int64_t params = TotalParams(p);
  EXPECT_GT(params, 20'000'000'000);
  EXPECT_LT(BitsPerParam(MinBytes(p).value(), params), 4.25);
  const double targets[] = {4.25, 4.5, 4.75, 5.0, 5.25, 5.5, 6.0, 6.5, 7.0, 7.75, 8.5};
  std::vector<uint64_t> budgets;
  for (double t : targets) budgets.push_back(BudgetForBits(p, t).value());
  Result<std::vector<Solution>> many = SolveMany(p, budgets);
  ASSERT_TRUE(many.ok()) << many.status().ToString();
  for (size_t i = 0; i < budgets.size(); ++i) {
    const Solution& s = (*many)[i];
    ExpectConsistent(p, s, budgets[i]);
    EXPECT_LE(s.bits_per_param, targets[i]);
    EXPECT_GE(s.bits_per_param, targets[i] - 0.005) << targets[i];
    // Proven optimal; the LP gap left is the instance's own integrality gap.
    const double rel_gap = (s.cost - s.lp_bound) / s.cost;
    EXPECT_TRUE(s.optimal) << targets[i];
    EXPECT_GE(rel_gap, -1e-12);
    EXPECT_LT(rel_gap, 1e-2) << targets[i];
    std::printf(
        "target %.2f bpp: %.6f bpp, cost %.6e, lp gap %.2e, optimal %d, core %d, "
        "states %lld\n",
        targets[i], s.bits_per_param, s.cost, rel_gap, s.optimal, s.core_units,
        static_cast<long long>(s.dp_states));
    if (i > 0) {
      EXPECT_LE(s.cost, (*many)[i - 1].cost);
    }
  }
}

}  // namespace
}  // namespace pq::alloc
