#include "pq/formats/compressed_tensors.h"

#include <set>

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

std::optional<FormatId> FormatOfGroup(const json& group) {
  if (!group.is_object() || !group.contains("weights") || !group["weights"].is_object())
    return std::nullopt;
  const json& in = group.contains("input_activations") ? group["input_activations"] : json();
  for (const auto& f : AllFormats()) {
    if (f.id == FormatId::kBF16) continue;
    const json w = WeightArgs(f.id), a = InputArgs(f.id);
    auto same = [](const json& want, const json& got) {
      if (want.is_null()) return got.is_null();
      if (!got.is_object()) return false;
      // An absent key reads as null (published configs may omit "group_size": null).
      for (const char* key : {"num_bits", "type", "strategy", "group_size", "symmetric"})
        if ((got.contains(key) ? got[key] : json()) != want[key]) return false;
      return true;
    };
    const json& fmt = group.contains("format") ? group["format"] : json(f.ct_format);
    if (same(w, group["weights"]) && same(a, in) && fmt.is_string() && fmt == f.ct_format)
      return f.id;
  }
  return std::nullopt;
}

}  // namespace pq::formats
