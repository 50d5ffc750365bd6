// Which stored format each Linear of a checkpoint has, from its compressed-tensors
// quantization_config (compressed-tensors-format.md §3.5 target semantics).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pq/formats/format.h"
#include "pq/model/arch.h"

namespace pq::model {

struct LinearFormat {
  formats::FormatId format = formats::FormatId::kBF16;
  std::string group;  // config group name, "ignore", or "" (dense checkpoint)
};

// Format per Linear module of `layout` (BF16 when ignored or the checkpoint is dense).
// Targeting problems (none or several matches, unknown schemes) go to `violations`.
std::map<std::string, LinearFormat> ResolveLinearFormats(const nlohmann::json& config,
                                                         const ModelLayout& layout,
                                                         std::vector<std::string>* violations);

}  // namespace pq::model
