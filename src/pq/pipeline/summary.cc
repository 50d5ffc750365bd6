// Human- and machine-readable summaries of an export.
#include <cstdio>
#include <map>

#include "pq/pipeline/export_uniform.h"

namespace pq::pipeline {
namespace {

struct Totals {
  size_t count = 0;
  int64_t params = 0;
  uint64_t bytes = 0;
};

double Bpp(uint64_t bytes, int64_t params) {
  return params ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0.0;
}

std::map<formats::FormatId, Totals> ByFormat(const std::vector<ExportedLinear>& ls) {
  std::map<formats::FormatId, Totals> m;
  for (const auto& l : ls) {
    if (l.bytes == 0) continue;  // tied head: stored once, as the embedding
    auto& t = m[l.format];
    ++t.count;
    t.params += l.params;
    t.bytes += l.bytes;
  }
  return m;
}

}  // namespace

nlohmann::json ExportSummary::ToJson() const {
  nlohmann::json j;
  j["out_dir"] = out_dir;
  j["total_bytes"] = total_bytes;
  Totals all, quantized;
  nlohmann::json formats_j = nlohmann::json::object();
  for (const auto& [fmt, t] : ByFormat(linears)) {
    formats_j[std::string(formats::Spec(fmt).name)] = {{"linears", t.count},
                                                       {"params", t.params},
                                                       {"bytes", t.bytes},
                                                       {"bits_per_param", Bpp(t.bytes, t.params)}};
    all.params += t.params;
    all.bytes += t.bytes;
    if (fmt != formats::FormatId::kBF16) {
      quantized.params += t.params;
      quantized.bytes += t.bytes;
    }
  }
  j["formats"] = formats_j;
  j["linear_params"] = all.params;
  j["linear_bytes"] = all.bytes;
  j["linear_bits_per_param"] = Bpp(all.bytes, all.params);
  j["quantized_bits_per_param"] = Bpp(quantized.bytes, quantized.params);
  nlohmann::json fb = nlohmann::json::array();
  for (const auto& l : linears)
    if (!l.fallback.empty() && l.bytes > 0)
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
