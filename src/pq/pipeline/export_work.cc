#include "pq/pipeline/export_work.h"

#include <algorithm>
#include <map>

#include "pq/io/safetensors.h"
#include "pq/model/arch.h"
#include "pq/pipeline/probe.h"
#include "pq/pipeline/work_dir.h"

namespace pq::pipeline {
namespace {

// The probe and the allocation of `work`, checked to belong together and to `model`.
Result<std::pair<ProbeFile, LayerConfig>> ReadAllocation(const std::string& model,
                                                         const WorkDir& w) {
  PQ_ASSIGN_OR_RETURN(ProbeFile probe, ReadProbeFile(w));
  PQ_ASSIGN_OR_RETURN(LayerConfig cfg, ReadLayerConfig(w));
  if (cfg.probe_inputs != probe.inputs)
    return InvalidArgument(w.layer_config_json() +
                           " was allocated from another probe; re-run allocate");
  PQ_ASSIGN_OR_RETURN(std::string fp, ModelFingerprint(model));
  if (probe.model_fingerprint() != fp)
    return InvalidArgument(w.root() + " was probed from a different model than " + model +
                           " (fingerprints differ); probe this model first");
  return std::pair{std::move(probe), std::move(cfg)};
}

}  // namespace

Result<UnitPlan> PlanFromWork(const std::string& model, const std::string& work) {
  const WorkDir w(work);
  PQ_ASSIGN_OR_RETURN(auto alloc, ReadAllocation(model, w));
  const auto& [probe, cfg] = alloc;
  const std::string path = w.layer_config_json();
  std::map<std::string, float> amax;
  for (const ProbeLinear& li : probe.linears) amax[li.module] = li.input_amax;
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(model));
  PQ_ASSIGN_OR_RETURN(nlohmann::json config, model::ReadConfig(model));
  PQ_ASSIGN_OR_RETURN(model::ModelLayout layout, model::ResolveLayout(config, *ckpt));
  UnitPlan plan;
  for (const auto& li : layout.linears) {
    const auto chosen = cfg.formats.find(li.module);
    if (chosen == cfg.formats.end())
      return InvalidArgument(path + " has no format for " + li.module);
    const std::string& name = chosen->second;
    const auto f = formats::ParseFormat(name);
    if (!f) return DataLoss(path + ": unknown format \"" + name + "\" for " + li.module);
    PQ_RETURN_IF_ERROR(formats::CheckShape(*f, li.rows, li.cols).WithContext(li.module));
    auto [it, added] = plan.format.emplace(li.unit, *f);
    if (!added && it->second != *f)
      return InvalidArgument(path + ": " + li.module + " is " + name + " but its unit " + li.unit +
                             " (fused in vLLM) is " + std::string(formats::Spec(it->second).name));
    const auto a = amax.find(li.module);
    if (a != amax.end())
      plan.input_amax[li.scale_group] = std::max(plan.input_amax[li.scale_group], a->second);
  }
  return plan;
}

}  // namespace pq::pipeline
