// The `allocate` stage: turns a probe (W/probe.json) into one format per Linear under a bit
// or size budget with the pure knapsack of alloc/, sweeps a Pareto curve, finds its knee,
// and writes
//   W/layer_config.json  LayerConfig (work_dir.h): one format per Linear incl. lm_head, plus
//                        the target, what was achieved and the estimator used
//   W/pareto.csv         ParetoTable (work_dir.h): one row per swept target
// Decision units are the probe's units (fused siblings; all experts of an MoE layer), so
// coupled Linears always share a format; a format one member cannot hold is not offered to
// the unit. Bits are over the units' Linears (lm_head excluded: it has a fixed format);
// bytes are exact (every scale and global scale).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/formats/format.h"
#include "pq/pipeline/work_dir.h"
#include "pq/quant/cost.h"

namespace pq::pipeline {

struct AllocateOptions {
  std::string work;
  // Exactly one target: bits/param over the units, "knee" of the sweep, or whole-checkpoint
  // bytes (every tensor as exported; safetensors headers and config files not counted).
  std::optional<double> target_bits;
  bool target_knee = false;
  std::optional<uint64_t> target_size;
  uint64_t kv_reserve = 0;                 // subtracted from target_size
  std::vector<formats::FormatId> formats;  // allowed formats (empty: every probed one)
  // Default: the measured winner (README "Which cost estimator", scripts/cost_experiment.sh and
  // scripts/moe_cost_experiment.sh): block — the block-output price for MoE-layer units, the
  // hessian price (the winner on dense Linears) everywhere else, so dense models allocate as
  // with hessian.
  quant::CostEstimator cost = quant::CostEstimator::kBlock;
  std::vector<double> pareto_bits;  // empty: 11 points from the minimum to the maximum
  formats::FormatId lm_head = formats::FormatId::kBF16;
  // Vision-tower Linears (not calibrated yet): one fixed format, counted in the total bytes.
  formats::FormatId visual = formats::FormatId::kBF16;
  // The MTP head's units are priced in MTP-loss nats (its loss only moves speculative-decoding
  // acceptance, not the model's outputs): their costs count this much against the body's.
  // Default 0.5: on the trained hybrid the allocation at uniform NVFP4's bytes then beats
  // uniform NVFP4A16 on the body's KL with the same MTP acceptance; at 1 it lost on both
  // (README "MTP head: what its bytes buy", scripts/mtp_weight_experiment.sh).
  double mtp_weight = 0.5;
  // Price each decision unit by its measured KL instead (a check-costs --per-unit CSV: the
  // unit quantized alone exactly as the probe priced it, the model evaluated; README "Measured
  // prices"). Every (unit, allowed format) must be measured, except BF16 where the probe prices
  // it exactly 0 and the MTP units, which check-costs cannot measure (they keep `cost`).
  std::string measured_costs;
};

struct AllocateResult {
  std::vector<std::string> formats;  // column order of the per-format counts
  std::vector<ParetoPoint> pareto;
  std::optional<size_t> knee;  // index into pareto
  ParetoPoint chosen;
  uint64_t fixed_bytes = 0;  // everything outside the units (embeddings, norms, lm_head, ...)
  double min_bits = 0, max_bits = 0;
  int64_t units = 0, linears = 0;
  std::string layer_config, pareto_csv;  // paths written

  // Everything above; a point's counts as units_per_format {format: units}.
  nlohmann::json ToJson() const;
};

// The options' own consistency, checked before any work (quantize calls it before the probe):
// exactly one target, target bits finite and > 0, target size > 0 and above --kv-reserve.
Status ValidateAllocateOptions(const AllocateOptions& o);

Result<AllocateResult> Allocate(const AllocateOptions& o);

}  // namespace pq::pipeline
