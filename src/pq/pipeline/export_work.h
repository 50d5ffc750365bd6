// The plan of `prismaquant export MODEL --work W -o OUT`: the allocation of a work dir
// (W/layer_config.json, from `allocate`), every Linear in its allocated format, NVFP4 (W4A4)
// input global scales calibrated from the probe's input amax (fused siblings share one).
// Refuses a work dir probed from another model, or an allocation made from another probe.
#pragma once

#include <string>

#include "pq/core/status.h"
#include "pq/pipeline/export_uniform.h"

namespace pq::pipeline {

// The plan W/layer_config.json describes for MODEL's layout (validated against the probe).
Result<UnitPlan> PlanFromWork(const std::string& model, const std::string& work);

}  // namespace pq::pipeline
