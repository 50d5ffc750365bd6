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

constexpr double kRelTol = 1e-12;    // costs closer than kRelTol · Σ max|cost| are equal
constexpr int64_t kBeamStates = 64;  // states per stage of the heuristic beam pass

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
    while (h.size() >= 2 &&
           Slope(pts[h[h.size() - 2]], pts[h.back()]) >= Slope(pts[h.back()], pts[i])) {
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
  Assignment integral;        // the LP solution without its fractional segment
  std::vector<int> hull_pos;  // [units] hull vertex of the integral part
  size_t frac = 0;            // index of the fractional segment in Prepared::segs, or size()
  double bound = 0.0;         // LP optimum
  double lambda = 0.0;        // −slope of the fractional segment (0 if none)
};

LpResult SolveLp(const Prepared& p, uint64_t budget) {
  LpResult r;
  const size_t n = p.nd.size();
  r.hull_pos.assign(n, 0);
  uint64_t left = budget - p.min_bytes;
  double cost = 0.0;
  for (size_t u = 0; u < n; ++u) cost += p.nd[u].front().cost;
  r.frac = p.segs.size();
  for (size_t i = 0; i < p.segs.size(); ++i) {
    const Segment& s = p.segs[i];
    if (s.dbytes > left) {
      r.frac = i;
      r.lambda = -s.slope;
      break;
    }
    left -= s.dbytes;
    cost += s.dcost;
    r.hull_pos[s.unit] = s.pos + 1;
  }
  r.bound = cost;
  if (r.frac < p.segs.size()) r.bound += p.segs[r.frac].slope * static_cast<double>(left);
  r.integral.at.resize(n);
  r.integral.bytes = budget - left;
  r.integral.cost = cost;
  for (size_t u = 0; u < n; ++u) r.integral.at[u] = p.hull[u][r.hull_pos[u]];
  return r;
}

// The LP solution with its fractional segment rounded up, made feasible by undoing the least
// efficient other segments (reverse LP order). False if that cannot fit the budget.
bool RoundUp(const Prepared& p, uint64_t budget, const LpResult& lp, Assignment* a) {
  if (lp.frac >= p.segs.size()) return false;
  std::vector<int> pos = lp.hull_pos;
  const Segment& f = p.segs[lp.frac];
  pos[f.unit] += 1;
  uint64_t bytes = lp.integral.bytes + f.dbytes;
  double cost = lp.integral.cost + f.dcost;
  for (size_t i = lp.frac; i-- > 0 && bytes > budget;) {
    const Segment& s = p.segs[i];
    if (s.unit == f.unit || pos[s.unit] != s.pos + 1) continue;
    pos[s.unit] = s.pos;
    bytes -= s.dbytes;
    cost -= s.dcost;
  }
  if (bytes > budget) return false;
  a->at.resize(pos.size());
  for (size_t u = 0; u < pos.size(); ++u) a->at[u] = p.hull[u][pos[u]];
  a->bytes = bytes;
  a->cost = cost;
  return true;
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
        down.push_back(
            {pts[at].bytes - pts[k].bytes, pts[k].cost - pts[at].cost, static_cast<int>(u), k});
      } else if (k > at) {
        up.push_back(
            {pts[k].bytes - pts[at].bytes, pts[at].cost - pts[k].cost, static_cast<int>(u), k});
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

// LP relaxation of a shrinking set of units as a function of the bytes allowed on top of
// their minimum: their hull segments in slope order in a Fenwick tree of (Σ bytes, Σ cost), so
// removing a unit and evaluating are O(log segments) and memory is O(segments).
class LpTree {
 public:
  // segs: every segment of the set, SegmentLess order.
  explicit LpTree(const std::vector<Segment>& segs)
      : bytes_(segs.size() + 1, 0), cost_(segs.size() + 1, 0.0), seg_(segs) {
    for (size_t i = 0; i < segs.size(); ++i) Add(i, segs[i].dbytes, segs[i].dcost);
    top_ = 1;
    while (top_ * 2 <= segs.size()) top_ *= 2;
  }

  void Remove(size_t i) { Add(i, -seg_[i].dbytes, -seg_[i].dcost); }  // dbytes wraps mod 2^64

  // LP minimum of Σ dcost over the remaining segments with Σ dbytes <= extra.
  double Eval(uint64_t extra) const {
    // Longest prefix whose bytes fit (removed segments weigh 0); the next one is fractional.
    size_t pos = 0;
    double c = 0.0;
    for (size_t step = seg_.empty() ? 0 : top_; step > 0; step /= 2) {
      if (pos + step < bytes_.size() && bytes_[pos + step] <= extra) {
        pos += step;
        extra -= bytes_[pos];
        c += cost_[pos];
      }
    }
    if (pos < seg_.size()) c += seg_[pos].slope * static_cast<double>(extra);
    return c;
  }

 private:
  void Add(size_t i, uint64_t b, double c) {
    for (size_t k = i + 1; k < bytes_.size(); k += k & (~k + 1)) {
      bytes_[k] += b;
      cost_[k] += c;
    }
  }

  std::vector<uint64_t> bytes_;  // Fenwick, 1-based
  std::vector<double> cost_;     // Fenwick, 1-based
  std::vector<Segment> seg_;
  size_t top_ = 0;  // highest power of two <= segments
};

// Units left free by reduced-cost fixing, and the fixed choice of all others.
struct Core {
  struct Free {
    int unit;
    std::vector<int> opts;  // surviving points, indices into nd, bytes ascending
  };
  std::vector<Free> free;     // in DP order
  std::vector<int> fixed_at;  // [units] nd index, −1 for free units
  uint64_t fixed_bytes = 0;
  double fixed_cost = 0.0;
};

// Reduced costs at the LP multiplier λ: rc = c + λ·b − min_k(c_k + λ·b_k) >= 0. Every solution
// within budget costs >= L(λ) + Σ rc(chosen) with L(λ) = Σ_u min_k(c_k + λ·b_k) − λ·budget
// (= the LP bound at the LP's λ), so a candidate with rc > ub − L cannot be part of a solution
// cheaper than ub. Free units are ordered by byte range, largest first: few, widely spaced
// states early; small units refine them at the end (measured: 10x fewer states than the
// reverse).
Core FixByReducedCost(const Prepared& p, uint64_t budget, const LpResult& lp, double ub) {
  const size_t n = p.nd.size();
  const double lambda = lp.lambda;
  std::vector<double> h(n, std::numeric_limits<double>::infinity());
  double lagrangian = -lambda * static_cast<double>(budget);
  for (size_t u = 0; u < n; ++u) {
    for (const Point& q : p.nd[u]) {
      h[u] = std::min(h[u], q.cost + lambda * static_cast<double>(q.bytes));
    }
    lagrangian += h[u];
  }
  // Rounding slack: L(λ) carries errors of order ε·λ·budget.
  const double gap =
      ub - std::min(lp.bound, lagrangian) + p.tol + kRelTol * lambda * static_cast<double>(budget);
  Core core;
  core.fixed_at.assign(n, -1);
  for (size_t u = 0; u < n; ++u) {
    Core::Free f{static_cast<int>(u), {}};
    for (int k = 0; k < static_cast<int>(p.nd[u].size()); ++k) {
      const Point& q = p.nd[u][k];
      if (q.cost + lambda * static_cast<double>(q.bytes) - h[u] <= gap) f.opts.push_back(k);
    }
    if (f.opts.size() == 1) {
      core.fixed_at[u] = f.opts[0];
      core.fixed_bytes += p.nd[u][f.opts[0]].bytes;
      core.fixed_cost += p.nd[u][f.opts[0]].cost;
    } else {
      core.free.push_back(std::move(f));
    }
  }
  const auto range = [&](const Core::Free& f) {
    return p.nd[f.unit][f.opts.back()].bytes - p.nd[f.unit][f.opts.front()].bytes;
  };
  std::stable_sort(core.free.begin(), core.free.end(),
                   [&](const Core::Free& a, const Core::Free& b) { return range(a) > range(b); });
  return core;
}

// Partial state of the exact DP after some free units.
struct State {
  uint64_t bytes;  // Σ free-unit bytes so far
  double cost;     // Σ free-unit cost so far
  double bound;    // lower bound on the total cost of any completion
  int32_t parent;  // index into the previous stage
  int32_t opt;     // index into Core::Free::opts
};

// Merges child lists (each sorted by bytes ascending) into *out, keeping the Pareto-optimal
// states: cost strictly falls as bytes grow. Equal (bytes, cost) keep the lower list index.
void MergePareto(const std::vector<std::vector<State>>& lists, std::vector<State>* out) {
  out->clear();
  std::vector<size_t> head(lists.size(), 0);
  for (;;) {
    int best = -1;
    for (size_t o = 0; o < lists.size(); ++o) {
      if (head[o] == lists[o].size()) continue;
      const State& s = lists[o][head[o]];
      const State* b = best < 0 ? nullptr : &lists[best][head[best]];
      if (!b || s.bytes < b->bytes || (s.bytes == b->bytes && s.cost < b->cost)) {
        best = static_cast<int>(o);
      }
    }
    if (best < 0) return;
    const State& s = lists[best][head[best]++];
    if (out->empty() || s.cost < out->back().cost) out->push_back(s);
  }
}

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

struct ExactResult {
  bool complete = true;  // no truncation: the search was exhaustive
  int core_units = 0;
  int64_t states = 0;
};

// Searches for a solution cheaper than *inc by more than tol and replaces *inc if it finds
// one. A DP over the free units in exact bytes: stage t holds the Pareto-optimal (bytes, cost)
// partial choices of free units 0..t whose bound — their cost + the fixed units' cost + the LP
// relaxation of the remaining free units in the bytes left — is below the incumbent. Each
// stage keeps at most max(stage_floor, (total_cap − states so far) / stages left) states.
ExactResult ExactPhase(const Prepared& p, uint64_t budget, const LpResult& lp, int64_t stage_floor,
                       int64_t total_cap, Assignment* inc) {
  ExactResult res;
  if (inc->cost - lp.bound <= p.tol) return res;
  const Core core = FixByReducedCost(p, budget, lp, inc->cost);
  const size_t m = core.free.size();
  res.core_units = static_cast<int>(m);
  if (m == 0 || core.fixed_bytes > budget) return res;
  const uint64_t cap = budget - core.fixed_bytes;

  // While stage t runs, the tree holds the hull segments of free units t+1..m−1.
  std::vector<uint64_t> suffix_min(m + 1, 0);   // Σ min bytes of free units t..m−1
  std::vector<double> suffix_base(m + 1, 0.0);  // Σ cost of those min-bytes points
  std::vector<Segment> segs;
  for (size_t t = m; t-- > 0;) {
    const Core::Free& f = core.free[t];
    const std::vector<Point>& pts = p.nd[f.unit];
    suffix_min[t] = suffix_min[t + 1] + pts[f.opts.front()].bytes;
    suffix_base[t] = suffix_base[t + 1] + pts[f.opts.front()].cost;
    AppendSegments(static_cast<int>(t), pts, LowerHull(pts, f.opts), &segs);  // unit := t
  }
  if (suffix_min[0] > cap) return res;
  std::sort(segs.begin(), segs.end(), SegmentLess);
  std::vector<std::vector<size_t>> seg_of(m);  // [stage] ranks of its unit's segments
  for (size_t i = 0; i < segs.size(); ++i) seg_of[segs[i].unit].push_back(i);
  LpTree tree(segs);

  const double target = inc->cost - p.tol;  // states must be able to beat this
  std::vector<State> cur{{0, 0.0, -std::numeric_limits<double>::infinity(), -1, -1}}, next;
  std::vector<std::vector<std::pair<int32_t, int32_t>>> back(m);  // [stage][state] parent, opt
  std::vector<std::vector<State>> lists;
  for (size_t t = 0; t < m && !cur.empty(); ++t) {
    const Core::Free& f = core.free[t];
    for (size_t i : seg_of[t]) tree.Remove(i);
    const double rest_base = core.fixed_cost + suffix_base[t + 1];
    lists.assign(f.opts.size(), {});
    for (size_t o = 0; o < f.opts.size(); ++o) {
      const Point& q = p.nd[f.unit][f.opts[o]];
      for (size_t s = 0; s < cur.size(); ++s) {
        const uint64_t b = cur[s].bytes + q.bytes;
        if (b > cap || cap - b < suffix_min[t + 1]) continue;
        const double c = cur[s].cost + q.cost;
        const double bound = rest_base + c + tree.Eval(cap - b - suffix_min[t + 1]);
        if (bound >= target) continue;
        lists[o].push_back({b, c, bound, static_cast<int32_t>(s), static_cast<int32_t>(o)});
      }
    }
    MergePareto(lists, &next);
    int64_t stage_cap = std::max<int64_t>(1, stage_floor);
    if (total_cap > res.states) {
      stage_cap = std::max(stage_cap, (total_cap - res.states) / static_cast<int64_t>(m - t));
    }
    if (next.size() > static_cast<size_t>(stage_cap)) {
      Truncate(static_cast<size_t>(stage_cap), &next);
      res.complete = false;
    }
    res.states += static_cast<int64_t>(next.size());
    back[t].resize(next.size());
    for (size_t s = 0; s < next.size(); ++s) back[t][s] = {next[s].parent, next[s].opt};
    cur.swap(next);
  }
  if (cur.empty()) return res;
  // Cheapest final state; ties keep the fewest bytes (the first).
  size_t best = 0;
  for (size_t s = 1; s < cur.size(); ++s) {
    if (cur[s].cost < cur[best].cost) best = s;
  }
  if (core.fixed_cost + cur[best].cost >= target) return res;
  inc->at = core.fixed_at;
  int32_t s = static_cast<int32_t>(best);
  for (size_t t = m; t-- > 0;) {
    const auto [parent, opt] = back[t][s];
    inc->at[core.free[t].unit] = core.free[t].opts[opt];
    s = parent;
  }
  inc->bytes = core.fixed_bytes + cur[best].bytes;
  inc->cost = core.fixed_cost + cur[best].cost;
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
                         Bpp(budget, p.params) + " bits/param) is below the minimum achievable " +
                         std::to_string(p.min_bytes) + " bytes (" + Bpp(p.min_bytes, p.params) +
                         " bits/param, every unit at its smallest format)");
}

Solution SolvePrepared(const Problem& problem, const Prepared& p, uint64_t budget,
                       const SolveOptions& options) {
  const LpResult lp = SolveLp(p, budget);
  Assignment a = lp.integral;
  Improve(p, budget, &a);
  if (Assignment up; RoundUp(p, budget, lp, &up)) {
    Improve(p, budget, &up);
    if (up.cost < a.cost) a = std::move(up);
  }
  // A narrow beam first: cheap, and its better incumbent shrinks the exact search's core.
  const int64_t beam = std::min(kBeamStates, options.max_states);
  ExactResult ex = ExactPhase(p, budget, lp, beam, 0, &a);
  if (!ex.complete) {
    const int64_t beam_states = ex.states;
    ex = ExactPhase(p, budget, lp, beam, options.max_states, &a);
    ex.states += beam_states;
  }
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
  double cost_scale = 0.0;  // Σ_u max |cost|
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
    double max_abs_cost = 0.0;
    for (const Candidate& c : unit.candidates) {
      max_abs_cost = std::max(max_abs_cost, std::fabs(c.cost));
    }
    cost_scale += max_abs_cost;
  }
  if (!std::isfinite(cost_scale)) return InvalidArgument("costs too large: their sum overflows");
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

}  // namespace pq::alloc
