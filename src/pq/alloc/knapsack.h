// The bit allocator: a multiple-choice knapsack (MCKP) over decision units (DESIGN §3).
//
// A decision unit is a set of Linears that must share one format (fused siblings, all experts
// of one MoE layer, or one Linear alone). Each unit offers candidates; a candidate is one format
// with the exact on-disk bytes of the whole unit in it and its predicted Δloss ("cost"). Solve
// picks exactly one candidate per unit, minimising Σ cost subject to Σ bytes <= budget. Bytes
// outside the units (embeddings, norms, routers, a fixed-format lm_head, ...) are the caller's:
// for a whole-checkpoint budget it subtracts them first (BudgetForTotalBytes).
//
// Algorithm (all arithmetic on bytes is exact uint64; costs are doubles):
//  1. Per unit: drop dominated candidates (another has <= bytes and <= cost; ties keep the
//     smaller bytes, then the lower candidate index), then take the lower convex hull of the
//     remaining (bytes, cost) points. Shared by every budget of a SolveMany sweep.
//  2. LP relaxation: start every unit at its smallest candidate and walk all hull segments in
//     order of Δcost/Δbytes (most negative first; ties by unit, then segment). The first
//     segment that no longer fits is taken fractionally: this is the LP optimum (lp_bound) and
//     its slope gives the Lagrange multiplier λ >= 0 (0 if every segment fits; then the LP
//     solution is integral and optimal).
//  3. Heuristic incumbent in exact bytes: the LP solution without the fractional segment, then
//     repeatedly (a) the single candidate change with the largest cost decrease that fits the
//     leftover budget, (b) the best pair move (one unit up, another down) that fits, until
//     neither improves.
//  4. Exact phase (closes the integrality gap): with reduced costs rc = c + λ·b − min(c + λ·b)
//     every solution costs >= lp_bound + Σ rc, so candidates with rc > incumbent − lp_bound
//     cannot improve on the incumbent and are removed ("reduced-cost fixing"). Units left with
//     one candidate are fixed; the rest (the "core", usually a few dozen units) go through an
//     exact dynamic program over Pareto-optimal (bytes, cost) partial states in exact bytes,
//     pruned by capacity, by the Lagrangian bound and by a suffix LP bound. When it finishes,
//     the answer is optimal (Solution::optimal). If the number of states exceeds
//     SolveOptions::max_states the DP keeps the most promising states (a beam), the answer is
//     still feasible and never worse than the incumbent, optimal is false and cost − lp_bound
//     bounds the gap.
// The answer never exceeds the budget. Ties: the result is a deterministic function of the
// input (candidate and unit order break ties in every sort); costs equal to within ~1e-12 of
// the total cost scale count as equal.
#pragma once

#include <cstdint>
#include <optional>
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
  std::string name;     // for reports only
  int64_t params = 0;   // weights in the unit (the same for every candidate), >= 0
  std::vector<Candidate> candidates;  // >= 1
};

struct Problem {
  std::vector<Unit> units;
};

struct SolveOptions {
  // Cap on the live partial states of the exact phase (each ~40 bytes); above it the DP
  // becomes a beam search and Solution::optimal is false.
  int64_t max_states = 1 << 20;
};

struct Solution {
  std::vector<int> choice;   // [units] index into Unit::candidates
  uint64_t budget = 0;       // bytes allowed
  uint64_t bytes = 0;        // Σ chosen bytes, <= budget
  double cost = 0.0;         // Σ chosen costs (summed in unit order)
  double bits_per_param = 0.0;  // 8·bytes / Σ params (0 if there are no params)
  double lp_bound = 0.0;     // LP-relaxation optimum: no solution within budget costs less
  bool optimal = false;      // proven optimal (to within the tie tolerance)
  int core_units = 0;        // units left free by reduced-cost fixing
  int64_t dp_states = 0;     // partial states the exact phase created
};

// Checks the problem: every unit has candidates and params >= 0, costs are finite, byte and
// param totals do not overflow.
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

// Kneedle knee of a decreasing convex Pareto curve (x: bits/param or bytes, y: predicted
// cost). Points are ordered by x (ties by y, then index); both axes are normalised to [0, 1]
// by their min and max; the chord joins the first and the last ordered point; the knee is the
// point with the largest vertical distance below the chord, (chord(x_i) − y_i), which for
// normalised endpoints (0, 1) and (1, 0) is 1 − x_i − y_i (the original's argmin(y − (1 − x)))
// and is proportional to the perpendicular distance. Ties go to the smaller x. Returns the
// index into the inputs, or nullopt with fewer than 3 points, mismatched sizes, non-finite
// values, a zero x or y range, or no point strictly below the chord (straight or concave).
std::optional<int> KneeIndex(std::span<const double> x, std::span<const double> y);

}  // namespace pq::alloc
