#include "pq/model/quant_config.h"

#include <cctype>
#include <optional>

#include "pq/formats/compressed_tensors.h"
#include "pq/model/target_pattern.h"

namespace pq::model {
namespace {

using formats::FormatId;
using nlohmann::json;

// Matches targets as vLLM does (compressed_tensors/utils.py): "re:<regex>" is Python re.match
// (anchored at the start only); a bare string matches a layer name exactly, or a module class
// name as a case-insensitive substring. Each pattern is compiled once; one that is invalid or
// gives up (TargetPattern's limits) matches nothing and is reported once as a violation.
class Matcher {
 public:
  explicit Matcher(std::vector<std::string>* violations) : violations_(violations) {}

  bool Name(const std::string& target, const std::string& name) {
    if (target.rfind("re:", 0) != 0) return target == name;
    auto it = patterns_.find(target);
    if (it == patterns_.end()) {
      auto p = TargetPattern::Compile(std::string_view(target).substr(3));
      if (!p.ok()) Report(p.status());
      it = patterns_.emplace(target, p.ok() ? std::optional(std::move(*p)) : std::nullopt).first;
    }
    if (!it->second) return false;
    auto m = it->second->MatchesPrefix(name);
    if (!m.ok()) {
      Report(m.status());
      it->second.reset();  // once failed, never again
      return false;
    }
    return *m;
  }

  bool Class(const std::string& target, const std::string& class_name) {
    if (target.rfind("re:", 0) == 0) return Name(target, class_name);
    std::string t = target, c = class_name;
    for (char& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    for (char& ch : c) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return !t.empty() && c.find(t) != std::string::npos;
  }

 private:
  void Report(const Status& s) { violations_->push_back(s.message()); }
  std::vector<std::string>* violations_;
  std::map<std::string, std::optional<TargetPattern>> patterns_;
};

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
std::string MatchedGroup(const TargetMap& m, const LinearInfo& li, Matcher& match) {
  for (const auto& t : m.order)
    if (match.Name(t, li.module)) return m.group.at(t);
  for (const auto& cls : ClassNames(li))
    for (const auto& t : m.order)
      if (match.Class(t, cls)) return m.group.at(t);
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
  Matcher match(violations);
  for (const auto& li : layout.linears) {
    LinearFormat r{FormatId::kBF16, ""};
    if (compressed) {
      bool ignored = false;
      for (const auto& t : ignore) ignored = ignored || match.Name(t, li.module);
      const std::string group = ignored ? "" : MatchedGroup(targets, li, match);
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
