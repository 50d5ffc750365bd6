#include "pq/pipeline/inspect.h"

#include <cmath>
#include <cstring>

#include "pq/formats/compressed_tensors.h"
#include "pq/model/quant_config.h"

namespace pq::pipeline {
std::map<std::string, InspectedLinear> ResolveFormats(const nlohmann::json& config,
                                                      const model::ModelLayout& layout,
                                                      std::vector<std::string>* violations) {
  std::map<std::string, InspectedLinear> out;
  const auto formats = model::ResolveLinearFormats(config, layout, violations);
  for (const auto& li : layout.linears) {
    const auto& f = formats.at(li.module);
    out[li.module] = {li.module, f.format, f.group, li.rows * li.cols, 0};
  }
  return out;
}

namespace {
using formats::FormatId;
using nlohmann::json;
}  // namespace

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
    // A tied head is the embedding; packed 3-D experts of a dense source are slices.
    if ((li.tied || !li.packed_tensor.empty()) && r.format == FormatId::kBF16) {
      rep.linears.push_back(r);
      continue;
    }
    // The scheme's tensor set, exactly: the format table's layout, nothing extra.
    std::vector<formats::QTensorView> views;
    std::vector<std::string> suffixes;  // owns the views' suffix strings
    suffixes.reserve(ckpt->names().size());
    for (const auto& name : ckpt->names()) {
      if (name.rfind(li.module + ".", 0) != 0) continue;
      const std::string suffix = name.substr(li.module.size() + 1);
      if (suffix.find('.') != std::string::npos || suffix == "bias") continue;
      const io::TensorInfo* t = ckpt->Find(name);
      if (!formats::FindTensor(r.format, suffix)) {
        rep.violations.push_back(name + ": unexpected tensor for a " +
                                 std::string(formats::Spec(r.format).name) + " Linear");
        continue;
      }
      r.bytes += t->bytes.size();
      suffixes.push_back(suffix);
      views.push_back({suffixes.back(), t->dtype, t->shape, t->bytes});
    }
    // BF16 passthrough may be stored as F16/F32 too; everything else must match the
    // layout's names, dtypes and shapes.
    const bool dense_float = r.format == FormatId::kBF16 && views.size() == 1;
    if (!dense_float || views[0].dtype == DType::kBF16) {
      auto m = formats::MatchTensors(r.format, views, li.rows, li.cols);
      if (!m.ok())
        rep.violations.push_back(li.module + " (" + std::string(formats::Spec(r.format).name) +
                                 "): " + m.status().message());
    }
    // Global scales (NVFP4's): finite, > 0 and shared by the fused siblings.
    for (const auto& v : views) {
      if (!formats::IsGlobalScale(formats::FindTensor(r.format, v.suffix)->role)) continue;
      float value = 0.0f;
      if (v.bytes.size() == sizeof value) std::memcpy(&value, v.bytes.data(), sizeof value);
      if (!(value > 0.0f) || !std::isfinite(value))
        rep.violations.push_back(li.module + "." + std::string(v.suffix) + " is " +
                                 std::to_string(value) + "; a global scale must be finite and > 0");
      const std::string key = li.scale_group + "/" + std::string(v.suffix);
      std::vector<uint8_t> bytes(v.bytes.begin(), v.bytes.end());
      auto [g, new_unit] = unit_global.emplace(key, std::pair{bytes, li.module});
      if (!new_unit && g->second.first != bytes)
        rep.violations.push_back(li.module + "." + std::string(v.suffix) + " differs from " +
                                 g->second.second + "'s; fused siblings must share it");
    }
    rep.linears.push_back(r);
  }
  return rep;
}

}  // namespace pq::pipeline
