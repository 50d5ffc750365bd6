// The input Hessian H = Σ XᵀX of Linears, accumulated from their forward inputs
// (OnLinearInput; for an expert, the rows routed to it) while a layer runs. GPTQ and the
// scale search of the calibrated export consume it (DESIGN §3 "Export quantizers").
//
// Linears of one global-scale group (q/k/v, in_proj_qkv/z, in_proj_b/a, an expert's gate/up,
// …) read the same input, so they share one H: the group's first wanted member accumulates it
// and the others read it. At Qwen3.6 size this halves the experts' 256 × 2 Hessians of 2048².
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/dist/block_fold.h"
#include "pq/model/decoder.h"

namespace pq::engine {

class HessianObserver : public model::LinearObserver {
 public:
  struct Entry {
    std::vector<float> h;  // [K, K]
    int64_t rows = 0;      // input rows accumulated
  };

  // Accumulate H for `linear`, shared with the earlier wanted members of `group`.
  void Want(const model::LinearWeights& linear, const std::string& group);
  // Every H and its row count, by group (dist/block_fold.h).
  void AddSums(dist::Sums& sums);
  // The H of `module`; nullptr if it was not wanted.
  const Entry* Find(const std::string& module) const;
  // Every H and its row count as floats (the rows bit-copied into two), by group: what Load
  // reads back into an observer that wanted the same Linears. Kept by the probe between its
  // forward and reverse sweeps (engine::BoundaryStore), never persisted.
  int64_t SavedFloats() const;
  void Save(std::span<float> out) const;
  Status Load(std::span<const float> in);
  // Whether `module` accumulates its group's H (the group's first wanted member).
  bool Leads(const std::string& module) const { return leader_.count(module) > 0; }

  void OnLinear(const model::LinearWeights&, std::span<const float>, std::span<const float>,
                int64_t) override {}
  // H += xᵀx for x [rows, K] of a wanted group leader.
  void OnLinearInput(const model::LinearWeights& linear, std::span<const float> x,
                     int64_t rows) override;

 private:
  std::map<std::string, Entry> h_;               // by group
  std::map<std::string, std::string> group_of_;  // module -> group
  std::map<std::string, bool> leader_;           // modules that accumulate their group's H
};

}  // namespace pq::engine
