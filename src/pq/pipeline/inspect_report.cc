// Text and JSON renderings of an InspectReport.
#include <cstdio>
#include <map>

#include "pq/pipeline/inspect.h"
#include "pq/pipeline/linear_totals.h"

namespace pq::pipeline {
namespace {

std::map<std::string, LinearTotals> ByFormat(const std::vector<InspectedLinear>& ls,
                                             LinearTotals* all) {
  std::map<std::string, LinearTotals> m;
  for (const auto& l : ls) {
    if (l.bytes == 0) continue;  // tied head
    m[std::string(formats::Spec(l.format).name)].Add(l.params, l.bytes);
    all->Add(l.params, l.bytes);
  }
  return m;
}

}  // namespace

nlohmann::json InspectReport::ToJson() const {
  LinearTotals all;
  nlohmann::json fj = nlohmann::json::object();
  for (const auto& [name, t] : ByFormat(linears, &all))
    fj[name] = {{"linears", t.count},
                {"params", t.params},
                {"bytes", t.bytes},
                {"bits_per_param", t.BitsPerParam()}};
  nlohmann::json lj = nlohmann::json::array();
  for (const auto& l : linears)
    lj.push_back({{"module", l.module},
                  {"format", std::string(formats::Spec(l.format).name)},
                  {"group", l.group},
                  {"params", l.params},
                  {"bytes", l.bytes}});
  return {{"path", path},
          {"architecture", architecture},
          {"compressed", compressed},
          {"ok", ok()},
          {"violations", violations},
          {"formats", fj},
          {"linear_params", all.params},
          {"linear_bytes", all.bytes},
          {"linear_bits_per_param", all.BitsPerParam()},
          {"total_bytes", total_bytes},
          {"num_tensors", num_tensors},
          {"linears", lj}};
}

std::string InspectReport::ToText() const {
  LinearTotals all;
  const auto by_format = ByFormat(linears, &all);
  std::string s;
  char line[512];
  std::snprintf(line, sizeof line, "%s: %s, %zu tensors, %llu bytes%s\n\n", path.c_str(),
                architecture.c_str(), num_tensors, static_cast<unsigned long long>(total_bytes),
                compressed ? ", compressed-tensors" : ", dense");
  s += line;
  std::snprintf(line, sizeof line, "%-10s %8s %14s %14s %10s\n", "format", "linears", "params",
                "bytes", "bits/param");
  s += line;
  for (const auto& [name, t] : by_format) {
    std::snprintf(line, sizeof line, "%-10s %8zu %14lld %14llu %10.3f\n", name.c_str(), t.count,
                  static_cast<long long>(t.params), static_cast<unsigned long long>(t.bytes),
                  t.BitsPerParam());
    s += line;
  }
  std::snprintf(line, sizeof line, "%-10s %8zu %14lld %14llu %10.3f\n", "all", all.count,
                static_cast<long long>(all.params), static_cast<unsigned long long>(all.bytes),
                all.BitsPerParam());
  s += line;
  if (violations.empty()) {
    s += "\nvLLM loader rules: OK\n";
  } else {
    s += "\nvLLM loader rules: " + std::to_string(violations.size()) + " violation(s)\n";
    for (const auto& v : violations) s += "  - " + v + "\n";
  }
  return s;
}

}  // namespace pq::pipeline
