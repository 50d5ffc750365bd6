// `prismaquant inspect`: summarise a checkpoint and verify the vLLM loader rules
// (compressed-tensors-format.md §4): every Linear targeted by exactly one group or
// ignored; fused siblings and MoE experts share one scheme; NVFP4 siblings share global
// scales; each scheme's tensor set complete with the right dtypes and shapes.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/formats/format.h"
#include "pq/io/safetensors.h"
#include "pq/model/arch.h"

namespace pq::pipeline {

struct InspectedLinear {
  std::string module;
  formats::FormatId format = formats::FormatId::kBF16;
  std::string group;  // config group name, or "ignore" / "" (unquantized checkpoint)
  int64_t params = 0;
  uint64_t bytes = 0;
};

struct InspectReport {
  std::string path;
  std::string architecture;
  bool compressed = false;  // has a compressed-tensors quantization_config
  std::vector<InspectedLinear> linears;
  std::vector<std::string> violations;
  uint64_t total_bytes = 0;
  size_t num_tensors = 0;

  bool ok() const { return violations.empty(); }
  nlohmann::json ToJson() const;
  std::string ToText() const;
};

// Fails only when the checkpoint cannot be read at all; rule violations are listed in the
// report.
Result<InspectReport> Inspect(const std::string& path);

// Resolves which format each Linear of `layout` has under `config`'s quantization_config
// (BF16 when ignored or the checkpoint is dense). Violations are appended to `violations`.
std::map<std::string, InspectedLinear> ResolveFormats(const nlohmann::json& config,
                                                      const model::ModelLayout& layout,
                                                      std::vector<std::string>* violations);

}  // namespace pq::pipeline
