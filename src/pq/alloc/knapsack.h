// The bit allocator: a multiple-choice knapsack (MCKP) over decision units (DESIGN §3).
//
// A decision unit is a set of Linears that must share one format (fused siblings, all experts
// of one MoE layer, or one Linear alone). Each unit offers candidates; a candidate is one format
// with the exact on-disk bytes of the whole unit in it and its predicted Δloss ("cost"). Solve
// picks exactly one candidate per unit, minimising Σ cost subject to Σ bytes <= budget. Bytes
// outside the units (embeddings, norms, routers, a fixed-format lm_head, ...) are the caller's:
// for a whole-checkpoint budget it subtracts them first (BudgetForTotalBytes).
//
// Algorithm (bytes are exact uint64 throughout; costs are doubles):
//  1. Per unit (shared by every budget of a SolveMany sweep): drop dominated candidates
//     (another has <= bytes and <= cost; equal costs keep the fewer bytes, then the lower
//     index) and take the lower convex hull of the rest in the (bytes, cost) plane.
//  2. LP relaxation: every unit at its smallest candidate, then all hull segments in order of
//     Δcost/Δbytes (most negative first; ties by unit, then segment) while they fit. The first
//     that does not fit is taken fractionally: that is the LP optimum (Solution::lp_bound, a
//     lower bound on any answer), and its slope is the Lagrange multiplier λ >= 0.
//  3. Incumbent: the LP solution with the fractional segment rounded down, and rounded up with
//     the least efficient other segments undone until it fits; each improved by the best
//     single change that fits the leftover bytes and the best pair move (one unit up, another
//     down), repeated; the cheaper wins.
//  4. Reduced-cost fixing: rc = c + λ·b − min_k(c_k + λ·b_k) >= 0 and every solution costs at
//     least lp_bound + Σ rc(chosen), so candidates with rc > incumbent − lp_bound cannot beat
//     the incumbent. Units left with one candidate are fixed; the rest form the core.
//  5. Exact DP over the core in exact bytes (largest byte range first): each stage keeps only
//     the Pareto-optimal (bytes, cost) partial states whose bound — cost so far + fixed units +
//     the LP relaxation of the remaining core units in the bytes left (a Fenwick tree over
//     their hull segments, O(log n) per state) — is below the incumbent. It runs twice: a
//     64-state beam (cheap; usually finds the optimum, which shrinks the core), then, unless
//     the beam never had to cut, the exhaustive search. When that finishes without cutting
//     (SolveOptions::max_states), the answer is optimal (Solution::optimal); otherwise it
//     is the best found, never worse than the incumbent, and cost − lp_bound bounds the gap.
// Measured (bench/alloc_bench.cc, 500 units x 8 formats like a 35B MoE): a few ms per budget,
// every point proven optimal; 20000 units: < 0.1 s.
//
// The answer never exceeds the budget. Costs equal to within 1e-12 · Σ_u max|cost| count as
// equal. Among equally cheap answers the one found first wins (fewer bytes, then candidate and
// unit order), so a cost model with exact ties (e.g. several zero-cost formats) may leave
// budget unused. Deterministic: the same problem gives the same answer.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"

namespace pq::alloc {

// One format for one unit.
struct Candidate {
  std::string format;  // label for reports ("NVFP4"); opaque to the solver
  uint64_t bytes = 0;  // exact on-disk bytes of the whole unit in this format
  double cost = 0.0;   // predicted Δloss (nats/token); any finite value
};

struct Unit {
  std::string name;                   // for reports only
  int64_t params = 0;                 // weights in the unit (the same for every candidate), >= 0
  std::vector<Candidate> candidates;  // >= 1
};

struct Problem {
  std::vector<Unit> units;
};

struct SolveOptions {
  // Partial states the exact search may create (8 bytes each are kept for backtracking). A
  // stage keeps at most max(64, states left / stages left); past that the search keeps the
  // states with the lowest bounds and Solution::optimal is false. Values < 64 also narrow the
  // heuristic beam (tests use 1 to exercise the fallback).
  int64_t max_states = int64_t{1} << 22;
};

struct Solution {
  std::vector<int> choice;      // [units] index into Unit::candidates
  uint64_t budget = 0;          // bytes allowed
  uint64_t bytes = 0;           // Σ chosen bytes, <= budget
  double cost = 0.0;            // Σ chosen costs (summed in unit order)
  double bits_per_param = 0.0;  // 8·bytes / Σ params (0 if there are no params)
  double lp_bound = 0.0;        // LP-relaxation optimum: no solution within budget costs less
  bool optimal = false;         // proven optimal (to within the tie tolerance)
  int core_units = 0;           // units left free by reduced-cost fixing
  int64_t dp_states = 0;        // partial states the exact phase created
};

// Checks the problem: every unit has candidates and params >= 0, costs are finite, and the
// totals (Σ max bytes, Σ params, Σ max |cost|) do not overflow.
Status Validate(const Problem& problem);

// Σ params over the units.
int64_t TotalParams(const Problem& problem);

// The smallest achievable Σ bytes (each unit at its smallest candidate). Validates.
Result<uint64_t> MinBytes(const Problem& problem);

// floor(target_bits · Σ params / 8): the byte budget for a bits-per-parameter target over the
// units. InvalidArgument for a non-finite or negative target or a problem without params.
Result<uint64_t> BudgetForBits(const Problem& problem, double target_bits);

// total_budget − fixed_bytes: the units' share of a whole-checkpoint budget.
// InvalidArgument if the fixed bytes alone exceed it.
Result<uint64_t> BudgetForTotalBytes(uint64_t total_budget, uint64_t fixed_bytes);

// 8·bytes / params (0 when params == 0).
double BitsPerParam(uint64_t bytes, int64_t params);

// The cheapest choice with Σ bytes <= budget_bytes. InvalidArgument for an invalid problem or
// a budget below MinBytes (the message names the minimum in bytes and bits/param).
Result<Solution> Solve(const Problem& problem, uint64_t budget_bytes,
                       const SolveOptions& options = {});

// Solve at each budget (any order), sharing the per-unit preprocessing. The answers are
// returned in the order of `budgets` and are monotone: a larger budget never costs more (a
// point whose own answer costs more than a smaller budget's reuses that answer). Fails like
// Solve if the problem is invalid or any budget is infeasible.
Result<std::vector<Solution>> SolveMany(const Problem& problem, std::span<const uint64_t> budgets,
                                        const SolveOptions& options = {});

}  // namespace pq::alloc
