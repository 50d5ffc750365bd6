// ProbeObserver's sums over samples, registered for the canonical fold (dist/block_fold.h).
// Kept apart from probe_observer.cc: the list every accumulator of the observer must be in.
#include "pq/engine/probe_observer.h"

namespace pq::engine {

void ProbeObserver::AddSums(dist::Sums& sums) {
  for (const std::string& m : order_) {
    Active& a = active_.at(m);
    stats_.AddSums(*a.linear, sums);
    for (Candidate& c : a.cands) {
      sums.Add(std::span(c.e.e_weight));
      sums.Add(std::span(c.e.e_act));
      sums.Add(std::span(c.e.e_out));
      sums.Add(std::span(c.e.dx2));
      sums.Add(std::span(c.e.e_token));
    }
  }
  priced_h_.AddSums(sums);  // H_p of the h_route Linears (e_weight is formed from it)
  for (auto& [format, moments] : act_h_) moments.AddSums(sums);  // ΔH of act_route ones
}

}  // namespace pq::engine
