#include "pq/model/quant_config.h"

#include <cctype>
#include <regex>

#include "pq/formats/compressed_tensors.h"

namespace pq::model {
namespace {

using formats::FormatId;
using nlohmann::json;

// One target of a config group, as vLLM matches it (compressed_tensors/utils.py): "re:<regex>"
// is Python re.match (anchored at the start only); a bare string matches a layer name exactly,
// or a module class name as a case-insensitive substring.
bool NameMatches(const std::string& target, const std::string& module) {
  if (target.rfind("re:", 0) == 0) {
    try {
      return std::regex_search(module, std::regex(target.substr(3)),
                               std::regex_constants::match_continuous);
    } catch (const std::regex_error&) {
      return false;
    }
  }
  return target == module;
}

bool ClassMatches(const std::string& target, const std::string& class_name) {
  if (target.rfind("re:", 0) == 0) return NameMatches(target, class_name);
  std::string t = target, c = class_name;
  for (char& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (char& ch : c) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return !t.empty() && c.find(t) != std::string::npos;
}

// The module classes vLLM sees for a Linear: every dense Linear is a *Linear class; routed
// experts are one FusedMoE module, which vLLM also resolves through a "Linear" target.
std::vector<std::string> ClassNames(const LinearInfo& li) {
  if (li.module.find(".experts.") != std::string::npos) return {"FusedMoE", "Linear"};
  return {"Linear"};
}

std::vector<std::string> Strings(const json& j) {
  std::vector<std::string> out;
  if (j.is_array())
    for (const auto& v : j)
      if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

// vLLM's target -> group map: targets in order of first appearance over the groups; a target
// listed by several groups belongs to the last of them.
struct TargetMap {
  std::vector<std::string> order;
  std::map<std::string, std::string> group;
};

TargetMap Targets(const json& groups) {
  TargetMap m;
  for (const auto& [name, g] : groups.items()) {
    if (!g.is_object()) continue;
    for (const auto& t : Strings(g.value("targets", json()))) {
      if (!m.group.count(t)) m.order.push_back(t);
      m.group[t] = name;
    }
  }
  return m;
}

// vLLM's precedence: the first target matching the layer name (exact or regex), else the
// first matching a module class name; "" when none does.
std::string MatchedGroup(const TargetMap& m, const LinearInfo& li) {
  for (const auto& t : m.order)
    if (NameMatches(t, li.module)) return m.group.at(t);
  for (const auto& cls : ClassNames(li))
    for (const auto& t : m.order)
      if (ClassMatches(t, cls)) return m.group.at(t);
  return "";
}

}  // namespace

// vLLM applies `ignore` first (exact names and "re:" patterns), then the target precedence
// above; a Linear neither ignored nor targeted fails to load ("Unable to find matching
// target"), except lm_head, which vLLM leaves unquantized unless targeted.
std::map<std::string, LinearFormat> ResolveLinearFormats(const json& config,
                                                         const ModelLayout& layout,
                                                         std::vector<std::string>* violations) {
  std::map<std::string, LinearFormat> out;
  const json qc = config.contains("quantization_config") ? config["quantization_config"] : json();
  const json method = qc.is_object() ? qc.value("quant_method", json()) : json();
  const bool compressed = method.is_string() && method.get<std::string>() == "compressed-tensors";
  const std::vector<std::string> ignore =
      compressed ? Strings(qc.value("ignore", json())) : std::vector<std::string>{};
  const json groups_in = compressed ? qc.value("config_groups", json::object()) : json::object();
  const json groups = groups_in.is_object() ? groups_in : json::object();
  const TargetMap targets = Targets(groups);
  for (const auto& li : layout.linears) {
    LinearFormat r{FormatId::kBF16, ""};
    if (compressed) {
      bool ignored = false;
      for (const auto& t : ignore) ignored |= NameMatches(t, li.module);
      const std::string group = ignored ? "" : MatchedGroup(targets, li);
      if (ignored) {
        r.group = "ignore";
      } else if (group.empty()) {
        if (!li.is_lm_head)
          violations->push_back(li.module +
                                ": not targeted by any config group and not ignored "
                                "(vLLM: \"Unable to find matching target\")");
      } else {
        r.group = group;
        auto f = formats::FormatOfGroup(groups[group]);
        if (!f)
          violations->push_back(li.module + ": group " + group +
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
