// Human- and machine-readable summaries of an export.
#include <cstdio>
#include <map>

#include "pq/pipeline/export_uniform.h"
#include "pq/pipeline/linear_totals.h"

namespace pq::pipeline {
namespace {

std::map<formats::FormatId, LinearTotals> ByFormat(const std::vector<ExportedLinear>& ls) {
  std::map<formats::FormatId, LinearTotals> m;
  for (const auto& l : ls) {
    if (l.bytes == 0) continue;  // tied head: stored once, as the embedding
    m[l.format].Add(l.params, l.bytes);
  }
  return m;
}

}  // namespace

nlohmann::json ExportSummary::ToJson() const {
  nlohmann::json j;
  j["out_dir"] = out_dir;
  j["total_bytes"] = total_bytes;
  LinearTotals all, quantized;
  nlohmann::json formats_j = nlohmann::json::object();
  for (const auto& [fmt, t] : ByFormat(linears)) {
    formats_j[std::string(formats::Spec(fmt).name)] = {{"linears", t.count},
                                                       {"params", t.params},
                                                       {"bytes", t.bytes},
                                                       {"bits_per_param", t.BitsPerParam()}};
    all.Add(t.params, t.bytes);
    if (fmt != formats::FormatId::kBF16) {
      quantized.Add(t.params, t.bytes);
    }
  }
  j["formats"] = formats_j;
  j["linear_params"] = all.params;
  j["linear_bytes"] = all.bytes;
  j["linear_bits_per_param"] = all.BitsPerParam();
  j["quantized_bits_per_param"] = quantized.BitsPerParam();
  nlohmann::json fb = nlohmann::json::array();
  for (const auto& l : linears)
    if (!l.fallback.empty())
      fb.push_back({{"module", l.module}, {"reason", l.fallback}});
  j["kept_bf16"] = fb;
  return j;
}

std::string ExportSummary::ToText() const {
  const nlohmann::json j = ToJson();
  std::string s;
  char line[256];
  std::snprintf(line, sizeof line, "wrote %s\n\n%-10s %8s %14s %14s %10s\n", out_dir.c_str(),
                "format", "linears", "params", "bytes", "bits/param");
  s += line;
  for (const auto& [name, f] : j["formats"].items()) {
    std::snprintf(line, sizeof line, "%-10s %8zu %14lld %14llu %10.3f\n", name.c_str(),
                  f["linears"].get<size_t>(), static_cast<long long>(f["params"].get<int64_t>()),
                  static_cast<unsigned long long>(f["bytes"].get<uint64_t>()),
                  f["bits_per_param"].get<double>());
    s += line;
  }
  std::snprintf(line, sizeof line,
                "\nLinears: %lld params in %llu bytes = %.3f bits/param (quantized ones: %.3f)\n"
                "checkpoint tensors: %llu bytes\n",
                static_cast<long long>(j["linear_params"].get<int64_t>()),
                static_cast<unsigned long long>(j["linear_bytes"].get<uint64_t>()),
                j["linear_bits_per_param"].get<double>(),
                j["quantized_bits_per_param"].get<double>(),
                static_cast<unsigned long long>(total_bytes));
  s += line;
  if (!j["kept_bf16"].empty()) {
    s += "kept in BF16 because the format cannot hold their shape:\n";
    for (const auto& f : j["kept_bf16"])
      s += "  " + f["module"].get<std::string>() + " (" + f["reason"].get<std::string>() + ")\n";
  }
  return s;
}

}  // namespace pq::pipeline
