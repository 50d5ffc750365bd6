#include "pq/pipeline/inspect.h"

#include <cmath>
#include <cstring>
#include <regex>
#include <set>

#include "pq/formats/compressed_tensors.h"

namespace pq::pipeline {
namespace {

using formats::FormatId;
using nlohmann::json;

// compressed-tensors target semantics: "re:<regex>" is Python re.match (anchored at the
// start only), a bare string is an exact module name or a module class name ("Linear").
bool TargetMatches(const std::string& target, const std::string& module) {
  if (target.rfind("re:", 0) == 0) {
    try {
      return std::regex_search(module, std::regex(target.substr(3)),
                               std::regex_constants::match_continuous);
    } catch (const std::regex_error&) {
      return false;
    }
  }
  return target == module || target == "Linear";
}

std::vector<std::string> Strings(const json& j) {
  std::vector<std::string> out;
  if (j.is_array())
    for (const auto& v : j)
      if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

}  // namespace

std::map<std::string, InspectedLinear> ResolveFormats(const json& config,
                                                      const model::ModelLayout& layout,
                                                      std::vector<std::string>* violations) {
  std::map<std::string, InspectedLinear> out;
  const json qc = config.contains("quantization_config") ? config["quantization_config"] : json();
  const bool compressed = qc.is_object() && qc.value("quant_method", "") == "compressed-tensors";
  const std::vector<std::string> ignore =
      compressed ? Strings(qc.value("ignore", json())) : std::vector<std::string>{};
  const json groups = compressed ? qc.value("config_groups", json::object()) : json::object();
  for (const auto& li : layout.linears) {
    InspectedLinear r{li.module, FormatId::kBF16, "", li.rows * li.cols, 0};
    if (compressed) {
      bool ignored = false;
      for (const auto& t : ignore) ignored |= TargetMatches(t, li.module);
      std::vector<std::string> hits;
      for (const auto& [name, g] : groups.items())
        for (const auto& t : Strings(g.value("targets", json())))
          if (TargetMatches(t, li.module)) {
            hits.push_back(name);
            break;
          }
      if (ignored) r.group = "ignore";
      if (hits.size() > 1 || (ignored && !hits.empty()))
        violations->push_back(li.module + ": matched by several groups/ignore (" +
                              std::to_string(hits.size()) + " groups" +
                              (ignored ? " + ignore" : "") + "); targets must be disjoint");
      if (!ignored && hits.empty() && !li.is_lm_head)
        violations->push_back(li.module +
                              ": not targeted by any config group and not ignored "
                              "(vLLM: \"Unable to find matching target\")");
      if (!ignored && !hits.empty()) {
        r.group = hits.front();
        auto f = formats::FormatOfGroup(groups[hits.front()]);
        if (!f)
          violations->push_back(li.module + ": group " + hits.front() +
                                " is not a scheme vLLM serves as we know it");
        else
          r.format = *f;
      }
    }
    out[li.module] = r;
  }
  return out;
}

Result<InspectReport> Inspect(const std::string& path) {
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(path));
  PQ_ASSIGN_OR_RETURN(json config, model::ReadConfig(ckpt->dir()));
  PQ_ASSIGN_OR_RETURN(model::ModelLayout layout, model::ResolveLayout(config, *ckpt));
  InspectReport rep;
  rep.path = path;
  rep.architecture = std::string(layout.arch->name);
  rep.compressed = config.contains("quantization_config");
  rep.num_tensors = ckpt->names().size();
  for (const auto& n : ckpt->names()) rep.total_bytes += ckpt->Find(n)->bytes.size();
  auto formats_by_module = ResolveFormats(config, layout, &rep.violations);

  std::map<std::string, std::pair<FormatId, std::string>> unit_scheme;
  std::map<std::string, std::pair<std::vector<uint8_t>, std::string>> unit_global;
  for (const auto& li : layout.linears) {
    InspectedLinear r = formats_by_module.at(li.module);
    // The unit (fused siblings / experts of a layer) must share one scheme.
    auto [it, first] = unit_scheme.emplace(li.unit, std::pair{r.format, li.module});
    if (!first && it->second.first != r.format)
      rep.violations.push_back(li.module + " is " + std::string(formats::Spec(r.format).name) +
                               " but its fused sibling " + it->second.second + " is " +
                               std::string(formats::Spec(it->second.first).name) +
                               "; vLLM needs one scheme per fused layer");
    if (li.tied && r.format == FormatId::kBF16) {
      rep.linears.push_back(r);
      continue;
    }
    // The scheme's tensor set, exactly.
    std::vector<formats::QTensorView> views;
    std::vector<std::string> suffixes;  // owns the views' suffix strings
    suffixes.reserve(ckpt->names().size());
    std::set<std::string> expected;
    for (auto s : formats::TensorSuffixes(r.format)) expected.insert(std::string(s));
    for (const auto& name : ckpt->names()) {
      if (name.rfind(li.module + ".", 0) != 0) continue;
      const std::string suffix = name.substr(li.module.size() + 1);
      if (suffix.find('.') != std::string::npos || suffix == "bias") continue;
      const io::TensorInfo* t = ckpt->Find(name);
      if (!expected.count(suffix)) {
        rep.violations.push_back(name + ": unexpected tensor for a " +
                                 std::string(formats::Spec(r.format).name) + " Linear");
        continue;
      }
      r.bytes += t->bytes.size();
      suffixes.push_back(suffix);
      views.push_back({suffixes.back(), t->dtype, t->shape, t->bytes});
    }
    // BF16 passthrough may be stored as F16/F32 too; everything else must decode.
    const bool dense_float = r.format == FormatId::kBF16 && views.size() == 1;
    if (!dense_float || views[0].dtype == DType::kBF16) {
      auto d = formats::Dequantize(r.format, views, li.rows, li.cols);
      if (!d.ok())
        rep.violations.push_back(li.module + " (" + std::string(formats::Spec(r.format).name) +
                                 "): " + d.status().message());
    }
    if (formats::Spec(r.format).group_size == 16) {  // NVFP4: siblings share global scales
      for (const auto& v : views) {
        if (v.suffix != "weight_global_scale" && v.suffix != "input_global_scale") continue;
        float value = 0.0f;
        if (v.bytes.size() == sizeof value) std::memcpy(&value, v.bytes.data(), sizeof value);
        if (!(value > 0.0f) || !std::isfinite(value))
          rep.violations.push_back(li.module + "." + std::string(v.suffix) + " is " +
                                   std::to_string(value) +
                                   "; a global scale must be finite and > 0");
        const std::string key = li.unit + "/" + std::string(v.suffix);
        std::vector<uint8_t> bytes(v.bytes.begin(), v.bytes.end());
        auto [g, new_unit] = unit_global.emplace(key, std::pair{bytes, li.module});
        if (!new_unit && g->second.first != bytes)
          rep.violations.push_back(li.module + "." + std::string(v.suffix) + " differs from " +
                                   g->second.second + "'s; fused siblings must share it");
      }
    }
    rep.linears.push_back(r);
  }
  return rep;
}

}  // namespace pq::pipeline
