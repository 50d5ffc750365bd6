// Multiple-choice knapsack: hulls + LP relaxation, a local-search incumbent, and an exact
// Pareto DP over the core left by reduced-cost fixing (see knapsack.h for the outline).
#include "pq/alloc/knapsack.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

namespace pq::alloc {
namespace {

constexpr double kRelTol = 1e-12;  // costs closer than kRelTol · Σ max|cost| are equal

// A non-dominated candidate of one unit.
struct Point {
  uint64_t bytes;
  double cost;
  int cand;  // index into Unit::candidates
};

// ΔCost/ΔBytes from a to b (b.bytes > a.bytes).
double Slope(const Point& a, const Point& b) {
  return (b.cost - a.cost) / static_cast<double>(b.bytes - a.bytes);
}

// One step along a unit's hull, from vertex `pos` to `pos + 1`.
struct Segment {
  int unit;
  int pos;
  uint64_t dbytes;  // > 0
  double dcost;     // < 0
  double slope;     // dcost / dbytes, strictly increasing along one unit's hull
};

bool SegmentLess(const Segment& a, const Segment& b) {
  if (a.slope != b.slope) return a.slope < b.slope;
  if (a.unit != b.unit) return a.unit < b.unit;
  return a.pos < b.pos;
}

// Lower convex hull of pts (bytes strictly ascending, cost strictly descending): indices into
// pts whose consecutive slopes, as computed by Slope(), strictly increase.
std::vector<int> LowerHull(const std::vector<Point>& pts, const std::vector<int>& idx) {
  std::vector<int> h;
  for (int i : idx) {
    while (h.size() >= 2 && Slope(pts[h[h.size() - 2]], pts[h.back()]) >=
                                Slope(pts[h.back()], pts[i])) {
      h.pop_back();
    }
    h.push_back(i);
  }
  return h;
}

// Appends the hull segments of `unit` (hull = indices into pts) to out.
void AppendSegments(int unit, const std::vector<Point>& pts, const std::vector<int>& hull,
                    std::vector<Segment>* out) {
  for (size_t p = 0; p + 1 < hull.size(); ++p) {
    const Point& a = pts[hull[p]];
    const Point& b = pts[hull[p + 1]];
    out->push_back({unit, static_cast<int>(p), b.bytes - a.bytes, b.cost - a.cost, Slope(a, b)});
  }
}

// Budget-independent preprocessing, shared by all points of a sweep.
struct Prepared {
  std::vector<std::vector<Point>> nd;  // [units] non-dominated: bytes asc, cost strictly desc
  std::vector<std::vector<int>> hull;  // [units] hull vertices, indices into nd
  std::vector<Segment> segs;           // every hull segment, SegmentLess order
  uint64_t min_bytes = 0;
  int64_t params = 0;
  double tol = 0.0;
};

Prepared Prepare(const Problem& problem) {
  Prepared p;
  const size_t n = problem.units.size();
  p.nd.resize(n);
  p.hull.resize(n);
  double scale = 0.0;
  for (size_t u = 0; u < n; ++u) {
    const std::vector<Candidate>& cands = problem.units[u].candidates;
    std::vector<int> order(cands.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) {
      if (cands[a].bytes != cands[b].bytes) return cands[a].bytes < cands[b].bytes;
      if (cands[a].cost != cands[b].cost) return cands[a].cost < cands[b].cost;
      return a < b;
    });
    double max_abs = 0.0;
    for (int c : order) {
      max_abs = std::max(max_abs, std::fabs(cands[c].cost));
      if (p.nd[u].empty() || cands[c].cost < p.nd[u].back().cost) {
        p.nd[u].push_back({cands[c].bytes, cands[c].cost, c});
      }
    }
    scale += max_abs;
    std::vector<int> all(p.nd[u].size());
    std::iota(all.begin(), all.end(), 0);
    p.hull[u] = LowerHull(p.nd[u], all);
    AppendSegments(static_cast<int>(u), p.nd[u], p.hull[u], &p.segs);
    p.min_bytes += p.nd[u].front().bytes;
    p.params += problem.units[u].params;
  }
  std::sort(p.segs.begin(), p.segs.end(), SegmentLess);
  p.tol = kRelTol * scale;
  return p;
}

// A choice per unit as indices into Prepared::nd.
struct Assignment {
  std::vector<int> at;
  uint64_t bytes = 0;
  double cost = 0.0;
};

struct LpResult {
  Assignment integral;  // the LP solution without its fractional segment
  double bound = 0.0;   // LP optimum
  double lambda = 0.0;  // −slope of the fractional segment (0 if none)
};

LpResult SolveLp(const Prepared& p, uint64_t budget) {
  LpResult r;
  const size_t n = p.nd.size();
  std::vector<int> hull_pos(n, 0);
  uint64_t left = budget - p.min_bytes;
  double cost = 0.0;
  for (size_t u = 0; u < n; ++u) cost += p.nd[u].front().cost;
  r.bound = cost;
  bool fractional = false;
  for (const Segment& s : p.segs) {
    if (s.dbytes <= left) {
      left -= s.dbytes;
      cost += s.dcost;
      hull_pos[s.unit] = s.pos + 1;
      continue;
    }
    r.bound = cost + s.slope * static_cast<double>(left);
    r.lambda = -s.slope;
    fractional = true;
    break;
  }
  if (!fractional) r.bound = cost;
  r.integral.at.resize(n);
  r.integral.bytes = budget - left;
  r.integral.cost = cost;
  for (size_t u = 0; u < n; ++u) r.integral.at[u] = p.hull[u][hull_pos[u]];
  return r;
}

// Applies the single change (one unit to another candidate within the leftover budget) with
// the largest cost decrease until none decreases the cost by more than tol.
void FillSingles(const Prepared& p, uint64_t budget, Assignment* a) {
  for (;;) {
    const uint64_t left = budget - a->bytes;
    double best_gain = p.tol;
    int best_u = -1, best_k = -1;
    for (size_t u = 0; u < p.nd.size(); ++u) {
      const std::vector<Point>& pts = p.nd[u];
      const Point& cur = pts[a->at[u]];
      // Costs fall as bytes grow, so the largest affordable candidate is the best one.
      int k = a->at[u];
      while (k + 1 < static_cast<int>(pts.size()) && pts[k + 1].bytes - cur.bytes <= left) ++k;
      const double gain = cur.cost - pts[k].cost;
      if (gain > best_gain) {
        best_gain = gain;
        best_u = static_cast<int>(u);
        best_k = k;
      }
    }
    if (best_u < 0) return;
    const Point& from = p.nd[best_u][a->at[best_u]];
    const Point& to = p.nd[best_u][best_k];
    a->bytes = a->bytes - from.bytes + to.bytes;
    a->cost += to.cost - from.cost;
    a->at[best_u] = best_k;
  }
}

// One unit moved to fewer bytes (frees `bytes`, costs `delta` more) or more bytes.
struct Move {
  uint64_t bytes;
  double delta;  // |cost change|
  int unit;
  int to;
};

// Applies the best pair move (one unit up, another down, net bytes within the leftover budget)
// if it lowers the cost by more than tol. Returns whether it did.
bool BestPairMove(const Prepared& p, uint64_t budget, Assignment* a) {
  std::vector<Move> down, up;
  for (size_t u = 0; u < p.nd.size(); ++u) {
    const std::vector<Point>& pts = p.nd[u];
    const int at = a->at[u];
    for (int k = 0; k < static_cast<int>(pts.size()); ++k) {
      if (k < at) {
        down.push_back({pts[at].bytes - pts[k].bytes, pts[k].cost - pts[at].cost,
                        static_cast<int>(u), k});
      } else if (k > at) {
        up.push_back({pts[k].bytes - pts[at].bytes, pts[at].cost - pts[k].cost,
                      static_cast<int>(u), k});
      }
    }
  }
  if (down.empty() || up.empty()) return false;
  // Down moves by freed bytes descending; prefix minima of delta over two distinct units.
  std::sort(down.begin(), down.end(), [](const Move& x, const Move& y) {
    if (x.bytes != y.bytes) return x.bytes > y.bytes;
    if (x.delta != y.delta) return x.delta < y.delta;
    if (x.unit != y.unit) return x.unit < y.unit;
    return x.to < y.to;
  });
  std::vector<int> best1(down.size()), best2(down.size(), -1);
  for (size_t i = 0; i < down.size(); ++i) {
    int b1 = i ? best1[i - 1] : -1, b2 = i ? best2[i - 1] : -1;
    const int c = static_cast<int>(i);
    if (b1 < 0 || down[c].delta < down[b1].delta) {
      if (b1 >= 0 && down[b1].unit != down[c].unit) b2 = b1;
      b1 = c;
    } else if (down[c].unit != down[b1].unit && (b2 < 0 || down[c].delta < down[b2].delta)) {
      b2 = c;
    }
    best1[i] = b1;
    best2[i] = b2;
  }
  const uint64_t left = budget - a->bytes;
  double best_gain = p.tol;
  int best_up = -1, best_down = -1;
  for (size_t i = 0; i < up.size(); ++i) {
    const uint64_t need = up[i].bytes > left ? up[i].bytes - left : 0;
    // Last down move freeing >= need bytes.
    const auto it = std::partition_point(down.begin(), down.end(),
                                         [&](const Move& m) { return m.bytes >= need; });
    if (it == down.begin()) continue;
    const size_t last = static_cast<size_t>(it - down.begin()) - 1;
    int d = best1[last];
    if (down[d].unit == up[i].unit) d = best2[last];
    if (d < 0) continue;
    const double gain = up[i].delta - down[d].delta;
    if (gain > best_gain) {
      best_gain = gain;
      best_up = static_cast<int>(i);
      best_down = d;
    }
  }
  if (best_up < 0) return false;
  for (const Move* m : {&up[best_up], &down[best_down]}) {
    const Point& from = p.nd[m->unit][a->at[m->unit]];
    const Point& to = p.nd[m->unit][m->to];
    a->bytes = a->bytes - from.bytes + to.bytes;
    a->cost += to.cost - from.cost;
    a->at[m->unit] = m->to;
  }
  return true;
}

void Improve(const Prepared& p, uint64_t budget, Assignment* a) {
  constexpr int kMaxRounds = 256;
  FillSingles(p, budget, a);
  for (int round = 0; round < kMaxRounds && BestPairMove(p, budget, a); ++round) {
    FillSingles(p, budget, a);
  }
}

// LP relaxation of a set of units as a function of the bytes allowed on top of their minimum.
struct LpCurve {
  uint64_t base_bytes = 0;
  double base_cost = 0.0;
  std::vector<uint64_t> cum_bytes;  // [segments] Σ dbytes of segments 0..s
  std::vector<double> cum_cost;     // [segments] Σ dcost of segments 0..s
  std::vector<double> slope;        // [segments]

  // LP minimum cost with Σ bytes <= base_bytes + extra.
  double Eval(uint64_t extra) const {
    const size_t s = static_cast<size_t>(
        std::upper_bound(cum_bytes.begin(), cum_bytes.end(), extra) - cum_bytes.begin());
    double c = base_cost;
    uint64_t used = 0;
    if (s > 0) {
      c += cum_cost[s - 1];
      used = cum_bytes[s - 1];
    }
    if (s < slope.size()) c += slope[s] * static_cast<double>(extra - used);
    return c;
  }
};

LpCurve MakeCurve(uint64_t base_bytes, double base_cost, const std::vector<Segment>& segs) {
  LpCurve c;
  c.base_bytes = base_bytes;
  c.base_cost = base_cost;
  uint64_t b = 0;
  double d = 0.0;
  for (const Segment& s : segs) {
    b += s.dbytes;
    d += s.dcost;
    c.cum_bytes.push_back(b);
    c.cum_cost.push_back(d);
    c.slope.push_back(s.slope);
  }
  return c;
}

// A unit left free by reduced-cost fixing: its surviving points (indices into nd, bytes asc).
struct CoreUnit {
  int unit;
  std::vector<int> opts;
};

// Partial state of the exact DP over the first t core units.
struct State {
  uint64_t bytes;  // Σ core bytes so far
  double cost;     // Σ core cost so far
  double bound;    // lower bound on the total cost of any completion
  int32_t parent;  // index into the previous stage
  int32_t opt;     // index into CoreUnit::opts
};

struct ExactResult {
  bool complete = true;  // no beam truncation: the search was exhaustive
  int core_units = 0;
  int64_t states = 0;
};

// Keeps the `cap` states with the lowest bound (ties by position), preserving order.
void Truncate(size_t cap, std::vector<State>* states) {
  std::vector<std::pair<double, size_t>> key(states->size());
  for (size_t i = 0; i < states->size(); ++i) key[i] = {(*states)[i].bound, i};
  std::nth_element(key.begin(), key.begin() + static_cast<std::ptrdiff_t>(cap), key.end());
  std::vector<char> keep(states->size(), 0);
  for (size_t i = 0; i < cap; ++i) keep[key[i].second] = 1;
  size_t w = 0;
  for (size_t i = 0; i < states->size(); ++i) {
    if (keep[i]) (*states)[w++] = (*states)[i];
  }
  states->resize(w);
}

// Searches for a solution cheaper than *inc by more than tol; replaces *inc if found.
ExactResult ExactPhase(const Prepared& p, uint64_t budget, const LpResult& lp,
                       const SolveOptions& options, Assignment* inc) {
  ExactResult res;
  const size_t n = p.nd.size();
  const double lambda = lp.lambda;
  // Lagrangian: any solution costs >= Σ_u h_u − λ·budget + Σ_u rc_u.
  std::vector<double> h(n);
  double lagr = -lambda * static_cast<double>(budget);
  for (size_t u = 0; u < n; ++u) {
    h[u] = std::numeric_limits<double>::infinity();
    for (const Point& q : p.nd[u]) h[u] = std::min(h[u], q.cost + lambda * static_cast<double>(q.bytes));
    lagr += h[u];
  }
  const double slack = p.tol + kRelTol * lambda * static_cast<double>(budget);
  const double gap = inc->cost - std::min(lp.bound, lagr) + slack;
  if (inc->cost - lp.bound <= p.tol) return res;

  // Reduced-cost fixing; the rest is the core.
  std::vector<CoreUnit> core;
  uint64_t fixed_bytes = 0;
  double fixed_cost = 0.0;
  std::vector<int> fixed_at(n, -1);
  for (size_t u = 0; u < n; ++u) {
    CoreUnit cu{static_cast<int>(u), {}};
    for (int k = 0; k < static_cast<int>(p.nd[u].size()); ++k) {
      const Point& q = p.nd[u][k];
      if (q.cost + lambda * static_cast<double>(q.bytes) - h[u] <= gap) cu.opts.push_back(k);
    }
    if (cu.opts.size() == 1) {
      fixed_at[u] = cu.opts[0];
      fixed_bytes += p.nd[u][cu.opts[0]].bytes;
      fixed_cost += p.nd[u][cu.opts[0]].cost;
    } else {
      core.push_back(std::move(cu));
    }
  }
  res.core_units = static_cast<int>(core.size());
  if (core.empty() || fixed_bytes > budget) return res;
  const uint64_t cap = budget - fixed_bytes;
  // Big units first: few, widely spaced states early; small units refine them at the end.
  std::stable_sort(core.begin(), core.end(), [&](const CoreUnit& a, const CoreUnit& b) {
    const auto range = [&](const CoreUnit& c) {
      return p.nd[c.unit][c.opts.back()].bytes - p.nd[c.unit][c.opts.front()].bytes;
    };
    return range(a) > range(b);
  });

  // Suffix LP curves over the survivors: curves[t] covers core units t..m−1.
  const size_t m = core.size();
  std::vector<LpCurve> curves(m + 1);
  std::vector<uint64_t> suffix_min(m + 1, 0);
  {
    std::vector<Segment> merged, mine, next;
    double base_cost = 0.0;
    curves[m] = MakeCurve(0, 0.0, merged);
    for (size_t t = m; t-- > 0;) {
      const CoreUnit& cu = core[t];
      const std::vector<Point>& pts = p.nd[cu.unit];
      suffix_min[t] = suffix_min[t + 1] + pts[cu.opts.front()].bytes;
      base_cost += pts[cu.opts.front()].cost;
      mine.clear();
      AppendSegments(cu.unit, pts, LowerHull(pts, cu.opts), &mine);
      next.resize(merged.size() + mine.size());
      std::merge(merged.begin(), merged.end(), mine.begin(), mine.end(), next.begin(),
                 SegmentLess);
      merged.swap(next);
      curves[t] = MakeCurve(suffix_min[t], base_cost, merged);
    }
  }
  if (suffix_min[0] > cap) return res;

  const double target = inc->cost - p.tol;  // states must be able to beat this
  const size_t max_states = static_cast<size_t>(std::max<int64_t>(1, options.max_states));
  std::vector<State> cur{{0, 0.0, -std::numeric_limits<double>::infinity(), -1, -1}};
  std::vector<std::vector<std::pair<int32_t, int32_t>>> back(m);  // [stage][state] parent, opt
  std::vector<std::vector<State>> lists;
  std::vector<size_t> heads;
  std::vector<State> merged;
  for (size_t t = 0; t < m && !cur.empty(); ++t) {
    const CoreUnit& cu = core[t];
    const std::vector<Point>& pts = p.nd[cu.unit];
    // One child list per option, each sorted by bytes ascending.
    lists.assign(cu.opts.size(), {});
    for (size_t o = 0; o < cu.opts.size(); ++o) {
      const Point& q = pts[cu.opts[o]];
      for (size_t s = 0; s < cur.size(); ++s) {
        const uint64_t b = cur[s].bytes + q.bytes;
        if (b > cap || cap - b < suffix_min[t + 1]) continue;
        const double c = cur[s].cost + q.cost;
        const double bound = fixed_cost + c + curves[t + 1].Eval(cap - b - suffix_min[t + 1]);
        if (bound >= target) continue;
        lists[o].push_back({b, c, bound, static_cast<int32_t>(s), static_cast<int32_t>(o)});
      }
    }
    // Merge, keeping only Pareto-optimal states (cost strictly falls as bytes grow).
    merged.clear();
    heads.assign(lists.size(), 0);
    for (;;) {
      int best = -1;
      for (size_t o = 0; o < lists.size(); ++o) {
        if (heads[o] == lists[o].size()) continue;
        const State& s = lists[o][heads[o]];
        if (best < 0) {
          best = static_cast<int>(o);
          continue;
        }
        const State& b = lists[best][heads[best]];
        if (s.bytes < b.bytes || (s.bytes == b.bytes && s.cost < b.cost)) {
          best = static_cast<int>(o);
        }
      }
      if (best < 0) break;
      const State& s = lists[best][heads[best]++];
      if (merged.empty() || s.cost < merged.back().cost) merged.push_back(s);
    }
    if (merged.size() > max_states) {
      Truncate(max_states, &merged);
      res.complete = false;
    }
    res.states += static_cast<int64_t>(merged.size());
    back[t].resize(merged.size());
    for (size_t s = 0; s < merged.size(); ++s) back[t][s] = {merged[s].parent, merged[s].opt};
    cur.swap(merged);
  }
  if (cur.empty() || back[m - 1].empty()) return res;
  // Cheapest final state; ties keep the fewest bytes (the first).
  size_t best = 0;
  for (size_t s = 1; s < cur.size(); ++s) {
    if (cur[s].cost < cur[best].cost) best = s;
  }
  if (fixed_cost + cur[best].cost >= target) return res;
  Assignment a;
  a.at = fixed_at;
  int32_t s = static_cast<int32_t>(best);
  for (size_t t = m; t-- > 0;) {
    const auto [parent, opt] = back[t][s];
    a.at[core[t].unit] = core[t].opts[opt];
    s = parent;
  }
  a.bytes = fixed_bytes + cur[best].bytes;
  a.cost = fixed_cost + cur[best].cost;
  *inc = std::move(a);
  return res;
}

std::string Bpp(uint64_t bytes, int64_t params) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6f", BitsPerParam(bytes, params));
  return buf;
}

Status CheckBudget(const Prepared& p, uint64_t budget) {
  if (budget >= p.min_bytes) return Status::Ok();
  return InvalidArgument("budget of " + std::to_string(budget) + " bytes (" +
                         Bpp(budget, p.params) +
                         " bits/param) is below the minimum achievable " +
                         std::to_string(p.min_bytes) + " bytes (" + Bpp(p.min_bytes, p.params) +
                         " bits/param, every unit at its smallest format)");
}

Solution SolvePrepared(const Problem& problem, const Prepared& p, uint64_t budget,
                       const SolveOptions& options) {
  const LpResult lp = SolveLp(p, budget);
  Assignment a = lp.integral;
  Improve(p, budget, &a);
  const ExactResult ex = ExactPhase(p, budget, lp, options, &a);
  Solution sol;
  sol.budget = budget;
  sol.lp_bound = lp.bound;
  sol.optimal = ex.complete;
  sol.core_units = ex.core_units;
  sol.dp_states = ex.states;
  sol.choice.resize(p.nd.size());
  for (size_t u = 0; u < p.nd.size(); ++u) {
    const Point& q = p.nd[u][a.at[u]];
    sol.choice[u] = q.cand;
    sol.bytes += q.bytes;
    sol.cost += problem.units[u].candidates[q.cand].cost;
  }
  sol.bits_per_param = BitsPerParam(sol.bytes, p.params);
  return sol;
}

}  // namespace

Status Validate(const Problem& problem) {
  constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();
  uint64_t max_total = 0;
  int64_t params = 0;
  for (size_t u = 0; u < problem.units.size(); ++u) {
    const Unit& unit = problem.units[u];
    const std::string where = "unit " + std::to_string(u) + " (" + unit.name + ")";
    if (unit.candidates.empty()) return InvalidArgument(where + " has no candidate formats");
    if (unit.candidates.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
      return InvalidArgument(where + " has too many candidates");
    }
    if (unit.params < 0) return InvalidArgument(where + " has negative params");
    if (unit.params > std::numeric_limits<int64_t>::max() - params) {
      return InvalidArgument("total params overflow int64");
    }
    params += unit.params;
    uint64_t max_bytes = 0;
    for (const Candidate& c : unit.candidates) {
      if (!std::isfinite(c.cost)) {
        return InvalidArgument(where + " format " + c.format + " has a non-finite cost");
      }
      max_bytes = std::max(max_bytes, c.bytes);
    }
    if (max_bytes > kMaxU64 - max_total) return InvalidArgument("total bytes overflow uint64");
    max_total += max_bytes;
  }
  return Status::Ok();
}

int64_t TotalParams(const Problem& problem) {
  int64_t total = 0;
  for (const Unit& u : problem.units) total += u.params;
  return total;
}

Result<uint64_t> MinBytes(const Problem& problem) {
  PQ_RETURN_IF_ERROR(Validate(problem));
  uint64_t total = 0;
  for (const Unit& u : problem.units) {
    uint64_t m = u.candidates.front().bytes;
    for (const Candidate& c : u.candidates) m = std::min(m, c.bytes);
    total += m;
  }
  return total;
}

Result<uint64_t> BudgetForBits(const Problem& problem, double target_bits) {
  PQ_RETURN_IF_ERROR(Validate(problem));
  if (!std::isfinite(target_bits) || target_bits < 0.0) {
    return InvalidArgument("target bits/param must be finite and >= 0");
  }
  const int64_t params = TotalParams(problem);
  if (params == 0) return InvalidArgument("the problem has no params to spread bits over");
  const long double bytes =
      std::floor(static_cast<long double>(target_bits) * static_cast<long double>(params) / 8.0L);
  if (bytes >= 18446744073709551615.0L) return InvalidArgument("byte budget overflows uint64");
  return static_cast<uint64_t>(bytes);
}

Result<uint64_t> BudgetForTotalBytes(uint64_t total_budget, uint64_t fixed_bytes) {
  if (fixed_bytes > total_budget) {
    return InvalidArgument("the fixed bytes outside the units (" + std::to_string(fixed_bytes) +
                           ") exceed the total budget (" + std::to_string(total_budget) + ")");
  }
  return total_budget - fixed_bytes;
}

double BitsPerParam(uint64_t bytes, int64_t params) {
  if (params <= 0) return 0.0;
  return 8.0 * static_cast<double>(bytes) / static_cast<double>(params);
}

Result<Solution> Solve(const Problem& problem, uint64_t budget_bytes, const SolveOptions& options) {
  PQ_RETURN_IF_ERROR(Validate(problem));
  const Prepared p = Prepare(problem);
  PQ_RETURN_IF_ERROR(CheckBudget(p, budget_bytes));
  return SolvePrepared(problem, p, budget_bytes, options);
}

Result<std::vector<Solution>> SolveMany(const Problem& problem, std::span<const uint64_t> budgets,
                                        const SolveOptions& options) {
  PQ_RETURN_IF_ERROR(Validate(problem));
  const Prepared p = Prepare(problem);
  for (uint64_t b : budgets) PQ_RETURN_IF_ERROR(CheckBudget(p, b));
  std::vector<Solution> out;
  out.reserve(budgets.size());
  for (uint64_t b : budgets) out.push_back(SolvePrepared(problem, p, b, options));
  // Monotone: walking budgets upwards, a point costing more than a cheaper, smaller-budget
  // answer takes that answer (it fits the larger budget too).
  std::vector<size_t> order(budgets.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return budgets[a] < budgets[b]; });
  for (size_t i = 1; i < order.size(); ++i) {
    const Solution& prev = out[order[i - 1]];
    Solution& s = out[order[i]];
    if (s.cost > prev.cost) {
      const Solution keep = s;
      s = prev;
      s.budget = keep.budget;
      s.lp_bound = keep.lp_bound;
      s.optimal = false;
      s.core_units = keep.core_units;
      s.dp_states = keep.dp_states;
    }
  }
  return out;
}

std::optional<int> KneeIndex(std::span<const double> x, std::span<const double> y) {
  if (x.size() != y.size() || x.size() < 3) return std::nullopt;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) return std::nullopt;
  }
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (x[a] != x[b]) return x[a] < x[b];
    if (y[a] != y[b]) return y[a] < y[b];
    return a < b;
  });
  const auto [xmin, xmax] = std::minmax_element(x.begin(), x.end());
  const auto [ymin, ymax] = std::minmax_element(y.begin(), y.end());
  const double xr = *xmax - *xmin, yr = *ymax - *ymin;
  if (!(xr > 0.0) || !(yr > 0.0)) return std::nullopt;
  const auto nx = [&](size_t i) { return (x[i] - *xmin) / xr; };
  const auto ny = [&](size_t i) { return (y[i] - *ymin) / yr; };
  const size_t first = order.front(), last = order.back();
  const double x0 = nx(first), y0 = ny(first), x1 = nx(last), y1 = ny(last);
  double best = 0.0;
  std::optional<int> knee;
  for (size_t j = 1; j + 1 < order.size(); ++j) {
    const size_t i = order[j];
    const double chord = y0 + (y1 - y0) * (nx(i) - x0) / (x1 - x0);
    const double d = chord - ny(i);
    if (d > best) {
      best = d;
      knee = static_cast<int>(i);
    }
  }
  return knee;
}

}  // namespace pq::alloc
