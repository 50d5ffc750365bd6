// compressed-tensors naming and `quantization_config` (compressed-tensors-format.md §3).
// The keys and strings written here are read by vLLM and by compressed-tensors: an ABI.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pq/formats/format.h"

namespace pq::formats {

// The compressed-tensors version whose schema we write (informational `version` key).
inline constexpr const char* kCtSchemaVersion = "0.15.0.1";

// QuantizationArgs for the format's weights / input activations (null when none).
nlohmann::json WeightArgs(FormatId id);
nlohmann::json InputArgs(FormatId id);

// The group (scheme) object: {"format", "targets", "weights", "input_activations",
// "output_activations"}.
nlohmann::json ConfigGroup(FormatId id, const std::vector<std::string>& targets);

// Builds the whole quantization_config from a module -> format assignment.
// Each quantized format becomes one group whose targets are exact module names
// (disjoint by construction); BF16 modules go to `ignore` (also exact names).
nlohmann::json QuantizationConfig(const std::map<std::string, FormatId>& module_formats,
                                  const std::vector<std::string>& extra_ignore = {});

// Parses a group back to a FormatId by the arguments that decide its arithmetic (num_bits,
// type, strategy, group_size, symmetric, dynamic, actorder "group", block_structure, and the
// format string), an absent key read as compressed-tensors' default; observers and scale
// dtypes are ignored. nullopt if the group is not one of our formats.
std::optional<FormatId> FormatOfGroup(const nlohmann::json& group);

// Why FormatOfGroup rejects `group`: the closest of our formats and each differing argument
// ("closest is INT8, but input_activations: want none, got {...}").
std::string ExplainGroup(const nlohmann::json& group);

}  // namespace pq::formats
