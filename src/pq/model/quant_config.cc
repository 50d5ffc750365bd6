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

// The quantization_config's method: "" for a dense checkpoint (no or null block),
// "compressed-tensors", or whatever else the block names (read by nobody here).
std::string QuantMethod(const json& config) {
  if (!config.is_object() || !config.contains("quantization_config")) return "";
  const json& qc = config["quantization_config"];
  if (qc.is_null()) return "";
  const json m = qc.is_object() ? qc.value("quant_method", json()) : json();
  return m.is_string() ? m.get<std::string>() : m.dump();
}

// The config groups, each group without its own "format" (absent or null, as AutoRound
// writes it) given the block's top-level one (as vLLM and compressed-tensors read them).
json GroupsWithFormat(const json& qc) {
  const json in = qc.is_object() ? qc.value("config_groups", json::object()) : json::object();
  json groups = in.is_object() ? in : json::object();
  const json top = qc.is_object() ? qc.value("format", json()) : json();
  for (auto& [name, g] : groups.items())
    if (g.is_object()) {
      if (g.contains("format") && g["format"].is_null()) g.erase("format");
      if (!g.contains("format") && top.is_string()) g["format"] = top;
    }
  return groups;
}

// One violation per config group we cannot represent, naming the group, why (the closest
// of our formats and each differing argument), and how many Linears it would hold.
void ReportUnreadableGroups(const std::map<std::string, std::vector<std::string>>& unreadable,
                            const json& groups, std::vector<std::string>* violations) {
  for (const auto& [group, modules] : unreadable)
    violations->push_back("config group \"" + group + "\" is not a scheme prismaquant reads (" +
                          formats::ExplainGroup(groups[group]) + "); it holds " +
                          std::to_string(modules.size()) + " Linear(s), e.g. " + modules.front() +
                          "; readable: " + formats::FormatNameList());
}

}  // namespace

// vLLM applies `ignore` first (exact names and "re:" patterns), then the target precedence
// above; a Linear neither ignored nor targeted fails to load ("Unable to find matching
// target"), except lm_head, which vLLM leaves unquantized unless targeted. A checkpoint
// quantized by another method (GPTQ, AWQ, bitsandbytes, ModelOpt, ...) is refused outright:
// its tensors are not compressed-tensors', and reading them as dense would be silently wrong.
std::map<std::string, LinearFormat> ResolveLinearFormats(const json& config,
                                                         const ModelLayout& layout,
                                                         std::vector<std::string>* violations) {
  std::map<std::string, LinearFormat> out;
  const std::string method = QuantMethod(config);
  const bool compressed = method == "compressed-tensors";
  if (!method.empty() && !compressed)
    violations->push_back("quantization_config.quant_method is \"" + method +
                          "\"; prismaquant reads dense and compressed-tensors checkpoints only");
  const json qc = compressed ? config["quantization_config"] : json();
  const std::vector<std::string> ignore =
      compressed ? Strings(qc.value("ignore", json())) : std::vector<std::string>{};
  const json groups = GroupsWithFormat(qc);
  const TargetMap targets = Targets(groups);
  Matcher match(violations);
  std::map<std::string, std::vector<std::string>> unreadable;  // group -> its Linears
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
          unreadable[group].push_back(li.module);
        else
          r.format = *f;
      }
    }
    out[li.module] = r;
  }
  ReportUnreadableGroups(unreadable, groups, violations);
  return out;
}

}  // namespace pq::model
