#include "pq/pipeline/export_work.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "pq/io/file_util.h"
#include "pq/io/safetensors.h"
#include "pq/model/arch.h"
#include "pq/pipeline/allocate.h"
#include "pq/pipeline/probe.h"

namespace pq::pipeline {

using nlohmann::json;

Result<UnitPlan> PlanFromWork(const std::string& model, const std::string& work) {
  PQ_ASSIGN_OR_RETURN(json probe, ReadProbe(work));
  const std::string path = work + "/layer_config.json";
  auto text = io::ReadFileToString(path);
  if (!text.ok())
    return NotFound(path + " not found: run `prismaquant allocate --work " + work +
                    " --target-bits B` first");
  const json cfg = json::parse(*text, nullptr, false);
  if (cfg.is_discarded() || cfg.value("schema", "") != kLayerConfigSchema ||
      !cfg.contains("formats") || !cfg["formats"].is_object())
    return DataLoss(path + " is damaged or not a " + kLayerConfigSchema + " file");
  if (cfg.value("probe_inputs", json()) != probe["inputs"])
    return InvalidArgument(path + " was allocated from another probe; re-run allocate");
  PQ_ASSIGN_OR_RETURN(std::string fp, ModelFingerprint(model));
  if (probe["inputs"].value("model_fingerprint", "") != fp)
    return InvalidArgument(work + " was probed from a different model than " + model +
                           " (fingerprints differ); probe this model first");

  std::map<std::string, float> amax;
  for (const json& li : probe["linears"])
    amax[li["module"].get<std::string>()] = li["input_amax"].get<float>();
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(model));
  PQ_ASSIGN_OR_RETURN(json config, model::ReadConfig(model));
  PQ_ASSIGN_OR_RETURN(model::ModelLayout layout, model::ResolveLayout(config, *ckpt));
  UnitPlan plan;
  for (const auto& li : layout.linears) {
    if (!cfg["formats"].contains(li.module))
      return InvalidArgument(path + " has no format for " + li.module);
    const std::string name = cfg["formats"][li.module].get<std::string>();
    const auto f = formats::ParseFormat(name);
    if (!f) return DataLoss(path + ": unknown format \"" + name + "\" for " + li.module);
    PQ_RETURN_IF_ERROR(formats::CheckShape(*f, li.rows, li.cols).WithContext(li.module));
    auto [it, added] = plan.format.emplace(li.unit, *f);
    if (!added && it->second != *f)
      return InvalidArgument(path + ": " + li.module + " is " + name + " but its unit " +
                             li.unit + " (fused in vLLM) is " +
                             std::string(formats::Spec(it->second).name));
    const auto a = amax.find(li.module);
    if (a != amax.end())
      plan.input_amax[li.scale_group] = std::max(plan.input_amax[li.scale_group], a->second);
  }
  return plan;
}

Result<ExportSummary> ExportFromWork(const WorkExportOptions& o) {
  PQ_ASSIGN_OR_RETURN(UnitPlan plan, PlanFromWork(o.model, o.work));
  return ExportUnits(o.model, o.out, plan, o.write);
}

}  // namespace pq::pipeline
