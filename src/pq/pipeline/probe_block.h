// The probe's block-output pricing of MoE layers (ProbeOptions::block_*, estimator "block";
// engine/block_cost.h does the reruns): the decision units each MoE layer prices and the
// formats all their members hold, the window of layers a unit's error is followed through,
// the boundary gradients those windows need above a layer's own output — kept in memory and
// left in W/probe/grad_NNNN until no layer below needs them, so a resumed run prices exactly
// as an uninterrupted one — and how a unit's cost is written over its Linears.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/engine/block_cost.h"
#include "pq/engine/probe_observer.h"
#include "pq/engine/runner.h"
#include "pq/model/arch.h"
#include "pq/pipeline/probe.h"
#include "pq/pipeline/work_dir.h"

namespace pq::pipeline {

class ProbeBlockPricing {
 public:
  // `info`: every Linear by module. All references must outlive this.
  // `samples`: the calibration samples (the first block_samples of them are re-run).
  ProbeBlockPricing(const ProbeOptions& o, const model::ModelConfig& config,
                    const std::map<std::string, const model::LinearInfo*>& info,
                    const std::vector<formats::FormatId>& formats, const WorkDir& work,
                    const std::vector<engine::Sequence>& samples);

  // Before the reverse sweep from layer `top` (dy = dL/d(boundary top+1)): keeps dy if a
  // window ends there and reads the gradients above it that an interrupted run left.
  Status Start(int64_t top, std::span<const float> dy);
  // After the observer's BeginLayer of layer l (weights lw, dy = dL/d(its output)): prices
  // the layer's units when it is an MoE layer (loading the window's other layers from `src`).
  Status PriceLayer(const engine::Runner& runner, const engine::ProbeObserver& probe,
                    const model::WeightSource& src, int64_t l, model::LayerWeights& lw,
                    std::span<const float> dy);
  // Writes the layer's unit costs over their members (quant::SplitUnitCost: in proportion to
  // each member's own "output" cost) with the units' routing changes.
  void Apply(std::vector<engine::LinearResult>& results) const;
  // After layer l is saved with grad = dL/d(boundary l) in W/probe/grad_l: keeps grad if a
  // window below ends there, and drops from memory and W/probe the gradients above l that no
  // layer below needs.
  void Finished(int64_t l, std::span<const float> grad);

  // Across MPI ranks: this rank's samples are token rows [row0, row0 + its rows) of
  // total_rows (the saved gradients hold every rank's rows).
  // Its samples are [first_sample, first_sample + samples) of the calibration samples (the
  // block reruns take those below block_samples: some ranks may have none).
  void SetRankRows(int64_t row0, int64_t total_rows, int64_t first_sample, int64_t samples) {
    row0_ = row0;
    total_rows_ = total_rows;
    first_sample_ = first_sample;
    rank_samples_ = samples;
  }

  // The window of layer l ends at this boundary (its output is l + 1).
  int64_t WindowEnd(int64_t l) const;

 private:
  // Whether an MoE layer at or below `below` has a window ending at b above its own output.
  bool Needed(int64_t b, int64_t below) const;
  // The units' energies folded over the sample blocks of every rank (rank 0), their routing
  // changes summed; costs from the folded energies.
  Status ReduceUnits();

  const ProbeOptions& o_;
  const model::ModelConfig& config_;
  const std::map<std::string, const model::LinearInfo*>& info_;
  const std::vector<formats::FormatId>& formats_;
  const WorkDir& work_;
  int64_t scored_tokens_ = 0;                    // of the re-run samples
  int64_t row0_ = 0, total_rows_ = -1;           // SetRankRows (-1: this rank has all)
  int64_t first_sample_ = 0, rank_samples_ = -1;  // SetRankRows (-1: this rank has all)
  std::map<int64_t, std::vector<float>> grads_;  // dL/d(boundary) by boundary
  std::vector<engine::BlockUnitCost> units_;     // the current layer's
};

}  // namespace pq::pipeline
