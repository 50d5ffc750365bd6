// Block-output pricing of the decision units of an MoE decoder layer (quant/cost.h "block";
// DESIGN §3 "Cost of a candidate format"). A Linear's own statistics price its output error;
// in an MoE model that error also moves routers' top-k choices — of its own layer (units
// upstream of the router: attention, DeltaNet) and of the layers after it (every unit) — and an
// expert's error is mixed with the other experts', which no per-Linear score sees. Here the
// unit's layer is re-run from its stored input boundary once per (unit, candidate format), with
// every Linear of the unit replaced by its candidate — Ŵ and the run-time activation
// quantization export writes — and followed through a window of the next layers; the change of
// the window's output is weighted by the loss gradient there, token by token. Tokens whose
// top-k expert set changed are counted, in every MoE layer of the window.
//
// Cost: one forward of the window's layers over the calibration tokens per (unit, format),
// plus one for the unquantized reference; dense layers are never re-run.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/engine/runner.h"
#include "pq/formats/format.h"
#include "pq/model/weights.h"

namespace pq::engine {

struct BlockUnitSpec {
  std::string unit;                        // decision unit (model::LinearInfo::unit)
  std::vector<std::string> modules;        // its Linears in this layer
  std::vector<formats::FormatId> formats;  // candidates to price (every member holds them)
};

struct BlockCandidateCost {
  formats::FormatId format = formats::FormatId::kBF16;
  double energy = 0;            // Σ_t Σ_d dy² (ŷ − y)²  (quant::BlockEnergy)
  double cost = 0;              // quant::BlockCost(energy, T), nats/token
  int64_t routing_changes = 0;  // tokens whose top-k expert set changed
  // energy of each of the runner's sample blocks (Runner::BlockRows) in the re-run rows;
  // energy is their left fold (the probe folds them across MPI ranks).
  std::vector<double> block_energy;
};

struct BlockUnitCost {
  std::string unit;
  std::vector<BlockCandidateCost> candidates;  // in BlockUnitSpec::formats order
};

// What replaces one Linear of a unit for format f: its candidate weight (may live in
// `scratch`) and, for NVFP4, its calibrated input global scale.
struct LinearReplacement {
  std::span<const float> w_hat;
  float input_global_scale = 1;
};
using ReplacementFn = std::function<Result<LinearReplacement>(
    const std::string& module, formats::FormatId f, std::vector<float>& scratch)>;

struct BlockPricingOptions {
  int64_t total_tokens = 0;     // T: scored calibration tokens (> 0)
  int64_t batch_tokens = 4096;  // tokens per rerun batch (sequences are independent)
  // false: the experts run on the unquantized layer's top-k choices (the routing frozen) —
  // the ablation that shows what the routing changes cost; routing_changes are then 0.
  bool reroute = true;
  // Re-run only the first `samples` calibration sequences (0: all); total_tokens must then
  // count the scored tokens of those. Costs one window forward of them per (unit, format).
  size_t samples = 0;
};

// Where a unit's error is measured: the unit's layer `first` (layers[0]) re-run from its
// stored input, then the following layers (layers[1..]) on its output, and the change of the
// last one's output weighted by dy = dL/d(that output) [sum T, D] (its first rows when only
// some samples are re-run). With one layer dy is Runner::BackwardFrom's on_layer argument.
struct BlockWindow {
  int64_t first = 0;
  std::vector<const model::LayerWeights*> layers;
  std::span<const float> dy;
  // layers[0] itself, writable (optional): candidates are swapped into it and the loaded
  // weights swapped back after each run — on success and on failure — instead of into a copy
  // of the layer (at Qwen3.6's size a copy is 3.2 GB).
  model::LayerWeights* swap_into = nullptr;
};

// Prices every unit of `units` (Linears of layers[0]). routing_changes sum over the window's
// MoE layers. Needs runner.Forward(true).
Result<std::vector<BlockUnitCost>> PriceBlockUnits(const Runner& runner, const BlockWindow& window,
                                                   std::span<const BlockUnitSpec> units,
                                                   const ReplacementFn& replace,
                                                   const BlockPricingOptions& o);

// Tokens whose set of k chosen experts differs between a and b ([T, k] each).
int64_t CountRoutingChanges(std::span<const int32_t> a, std::span<const int32_t> b, int64_t k);

}  // namespace pq::engine
