#include "pq/formats/compressed_tensors.h"

#include <set>
#include <string_view>

namespace pq::formats {
namespace {

using nlohmann::json;

json Args(int bits, const char* type, const char* strategy, json group_size, json dynamic,
          json scale_dtype, json observer) {
  return json{{"num_bits", bits},           {"type", type},
              {"symmetric", true},          {"strategy", strategy},
              {"group_size", group_size},   {"block_structure", nullptr},
              {"dynamic", dynamic},         {"actorder", nullptr},
              {"scale_dtype", scale_dtype}, {"zp_dtype", nullptr},
              {"observer", observer},       {"observer_kwargs", json::object()}};
}

}  // namespace

json WeightArgs(FormatId id) {
  switch (id) {
    case FormatId::kBF16:
      return nullptr;
    case FormatId::kNVFP4:
    case FormatId::kNVFP4A16:
      return Args(4, "float", "tensor_group", 16, false, "torch.float8_e4m3fn", "static_minmax");
    case FormatId::kMXFP8:
      return Args(8, "float", "group", 32, false, "torch.uint8", "memoryless_minmax");
    case FormatId::kMXFP4:
      return Args(4, "float", "group", 32, false, "torch.uint8", "memoryless_minmax");
    case FormatId::kFP8:
      return Args(8, "float", "channel", nullptr, false, nullptr, "memoryless_minmax");
    case FormatId::kINT4:
      return Args(4, "int", "group", 128, false, nullptr, "memoryless_minmax");
    case FormatId::kINT8:
      return Args(8, "int", "channel", nullptr, false, nullptr, "memoryless_minmax");
  }
  return nullptr;
}

json InputArgs(FormatId id) {
  switch (id) {
    case FormatId::kNVFP4:
      return Args(4, "float", "tensor_group", 16, "local", "torch.float8_e4m3fn", "static_minmax");
    case FormatId::kMXFP8:
      return Args(8, "float", "group", 32, true, "torch.uint8", nullptr);
    case FormatId::kMXFP4:
      return Args(4, "float", "group", 32, true, "torch.uint8", nullptr);
    case FormatId::kFP8:
      return Args(8, "float", "token", nullptr, true, nullptr, nullptr);
    default:
      return nullptr;
  }
}

json ConfigGroup(FormatId id, const std::vector<std::string>& targets) {
  return json{{"format", std::string(Spec(id).ct_format)},
              {"targets", targets},
              {"weights", WeightArgs(id)},
              {"input_activations", InputArgs(id)},
              {"output_activations", nullptr}};
}

json QuantizationConfig(const std::map<std::string, FormatId>& module_formats,
                        const std::vector<std::string>& extra_ignore) {
  std::map<FormatId, std::vector<std::string>> by_format;
  std::set<std::string> ignore(extra_ignore.begin(), extra_ignore.end());
  for (const auto& [module, fmt] : module_formats) {
    if (fmt == FormatId::kBF16)
      ignore.insert(module);
    else
      by_format[fmt].push_back(module);
  }
  json groups = json::object();
  std::set<std::string_view> ct_formats;
  int index = 0;
  for (const auto& [fmt, targets] : by_format) {
    groups["group_" + std::to_string(index++)] = ConfigGroup(fmt, targets);
    ct_formats.insert(Spec(fmt).ct_format);
  }
  const std::string top =
      ct_formats.size() == 1 ? std::string(*ct_formats.begin()) : "mixed-precision";
  return json{{"quant_method", "compressed-tensors"},
              {"format", ct_formats.empty() ? "dense" : top},
              {"quantization_status", "compressed"},
              {"version", kCtSchemaVersion},
              {"global_compression_ratio", nullptr},
              {"kv_cache_scheme", nullptr},
              {"sparsity_config", json::object()},
              {"transform_config", json::object()},
              {"ignore", std::vector<std::string>(ignore.begin(), ignore.end())},
              {"config_groups", groups}};
}

namespace {

// A QuantizationArgs key as compressed-tensors reads it: an absent key takes the pydantic
// default (symmetric true, dynamic false, group_size / actorder null).
json ArgOf(const json& args, const char* key) {
  if (args.contains(key)) return args[key];
  if (std::string_view(key) == "symmetric") return true;
  if (std::string_view(key) == "dynamic") return false;
  return nullptr;
}

// The keys that decide the arithmetic of a scheme; observers, scale dtypes and the like
// only say how the values were found.
constexpr const char* kArgKeys[] = {"num_bits",  "type",    "strategy", "group_size",
                                    "symmetric", "dynamic", "actorder", "block_structure"};

// "key: want X, got Y" for each differing key of one side (weights / input_activations).
void ArgDiffs(const char* side, const json& want, const json& got,
              std::vector<std::string>* diffs) {
  if (want.is_null() || !got.is_object()) {
    if (!want.is_null() || !got.is_null())
      diffs->push_back(std::string(side) + ": want " + (want.is_null() ? "none" : "present") +
                       ", got " + (got.is_null() ? "none" : got.dump()));
    return;
  }
  for (const char* key : kArgKeys) {
    json w = ArgOf(want, key), g = ArgOf(got, key);
    // A weight-only scheme's activations or an unordered GPTQ's "static"/"weight" actorder
    // store nothing extra: only actorder "group" (weight_g_idx permutation) changes the math.
    if (std::string_view(key) == "actorder" && g != "group") g = w;
    if (w != g)
      diffs->push_back(std::string(side) + "." + key + ": want " + w.dump() + ", got " + g.dump());
  }
}

std::vector<std::string> GroupDiffs(FormatId id, const json& group) {
  std::vector<std::string> d;
  const json in = group.contains("input_activations") ? group["input_activations"] : json();
  ArgDiffs("weights", WeightArgs(id), group.value("weights", json()), &d);
  ArgDiffs("input_activations", InputArgs(id), in, &d);
  const json fmt = group.contains("format") ? group["format"] : json(Spec(id).ct_format);
  if (!fmt.is_string() || fmt != Spec(id).ct_format)
    d.push_back("format: want \"" + std::string(Spec(id).ct_format) + "\", got " + fmt.dump());
  return d;
}

}  // namespace

std::optional<FormatId> FormatOfGroup(const json& group) {
  if (!group.is_object() || !group.contains("weights") || !group["weights"].is_object())
    return std::nullopt;
  for (const auto& f : AllFormats())
    if (f.id != FormatId::kBF16 && GroupDiffs(f.id, group).empty()) return f.id;
  return std::nullopt;
}

std::string ExplainGroup(const json& group) {
  if (!group.is_object() || !group.contains("weights") || !group["weights"].is_object())
    return "no \"weights\" quantization (activation-only or malformed group)";
  std::optional<FormatId> best;
  std::vector<std::string> best_diffs;
  for (const auto& f : AllFormats()) {
    if (f.id == FormatId::kBF16) continue;
    auto d = GroupDiffs(f.id, group);
    if (!best || d.size() < best_diffs.size()) best = f.id, best_diffs = std::move(d);
  }
  if (best_diffs.empty()) return "matches " + std::string(Spec(*best).name);
  std::string s = "closest is " + std::string(Spec(*best).name) + ", but ";
  for (size_t i = 0; i < best_diffs.size(); ++i) s += (i ? "; " : "") + best_diffs[i];
  return s;
}

}  // namespace pq::formats
