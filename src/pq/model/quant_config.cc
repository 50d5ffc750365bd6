#include "pq/model/quant_config.h"

#include <regex>

#include "pq/formats/compressed_tensors.h"

namespace pq::model {
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

std::map<std::string, LinearFormat> ResolveLinearFormats(const json& config,
                                                         const ModelLayout& layout,
                                                         std::vector<std::string>* violations) {
  std::map<std::string, LinearFormat> out;
  const json qc = config.contains("quantization_config") ? config["quantization_config"] : json();
  const bool compressed = qc.is_object() && qc.value("quant_method", "") == "compressed-tensors";
  const std::vector<std::string> ignore =
      compressed ? Strings(qc.value("ignore", json())) : std::vector<std::string>{};
  const json groups = compressed ? qc.value("config_groups", json::object()) : json::object();
  for (const auto& li : layout.linears) {
    LinearFormat r{FormatId::kBF16, ""};
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

}  // namespace pq::model
