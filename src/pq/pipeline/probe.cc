#include "pq/pipeline/probe.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "pq/core/hash.h"
#include "pq/core/log.h"
#include "pq/engine/probe_observer.h"
#include "pq/engine/runner.h"
#include "pq/io/file_util.h"
#include "pq/io/json_util.h"
#include "pq/io/safetensors.h"
#include "pq/model/weights.h"
#include "pq/quant/cost.h"

namespace pq::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string ProbeDir(const std::string& work) { return work + "/probe"; }

std::string UnitDir(const std::string& work, int64_t layer) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "layer_%04lld", static_cast<long long>(layer));
  return ProbeDir(work) + "/" + buf;
}
std::string HeadDir(const std::string& work) { return ProbeDir(work) + "/head"; }
std::string GradDir(const std::string& work, int64_t boundary) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "grad_%04lld", static_cast<long long>(boundary));
  return ProbeDir(work) + "/" + buf;
}

// Bytes of every tensor that is not a probed Linear weight as export writes it (floating
// tensors in BF16, others unchanged): embeddings, norms, biases, routers, buffers.
Result<uint64_t> OtherTensorBytes(const std::string& model, const model::ModelLayout& layout) {
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(model));
  uint64_t bytes = 0;
  for (const std::string& n : layout.other_tensors) {
    const io::TensorInfo* t = ckpt->Find(n);
    if (!t) return NotFound(model + ": tensor " + n);
    bytes += IsFloatingPoint(t->dtype) ? static_cast<uint64_t>(t->numel()) * 2 : t->bytes.size();
  }
  return bytes;
}

json LinearJson(const engine::LinearResult& r, const model::LinearInfo& li) {
  json cands = json::array();
  for (const auto& c : r.candidates) {
    json cost = json::object();
    for (int e = 0; e < quant::kNumEstimators; ++e)
      cost[std::string(quant::EstimatorName(static_cast<quant::CostEstimator>(e)))] =
          c.cost[static_cast<size_t>(e)];
    cands.push_back({{"format", std::string(formats::Spec(c.format).name)},
                     {"bytes", c.bytes},
                     {"weight_mse", c.weight_mse},
                     {"cost", cost}});
  }
  return {{"module", r.module},    {"layer", li.layer},
          {"unit", li.unit},       {"scale_group", li.scale_group}, {"rows", r.rows},
          {"cols", r.cols},        {"is_lm_head", li.is_lm_head}, {"is_mtp", li.is_mtp},
          {"tied", li.tied},       {"samples", r.samples},
          {"tokens", r.tokens},    {"fisher_trace", r.fisher_trace},
          {"input_amax", r.input_amax}, {"candidates", cands}};
}

// One finished unit of work (a layer or the head), written atomically as a directory.
Status SaveUnit(const std::string& dir, const std::vector<engine::LinearResult>& results,
                const std::map<std::string, const model::LinearInfo*>& info, json extra) {
  PQ_ASSIGN_OR_RETURN(auto w, io::CheckpointWriter::Create(dir));
  json linears = json::array();
  for (const auto& r : results) {
    linears.push_back(LinearJson(r, *info.at(r.module)));
    for (const auto& [suffix, v] : {std::pair{".g2_out", &r.g2_out}, {".x2_in", &r.x2_in}}) {
      const auto* p = reinterpret_cast<const uint8_t*>(v->data());
      PQ_RETURN_IF_ERROR(w->AddTensor(r.module + suffix, DType::kF32,
                                      {static_cast<int64_t>(v->size())},
                                      {p, v->size() * sizeof(float)}));
    }
  }
  if (results.empty()) {  // a checkpoint needs a tensor; keep the format uniform
    const float zero = 0;
    PQ_RETURN_IF_ERROR(w->AddTensor("empty", DType::kF32, {1},
                                    {reinterpret_cast<const uint8_t*>(&zero), sizeof zero}));
  }
  extra["schema"] = kProbeSchema;
  extra["linears"] = linears;
  PQ_RETURN_IF_ERROR(w->AddFile("results.json", extra.dump(1) + "\n"));
  return w->Commit();
}

Result<json> ReadUnit(const std::string& dir) {
  PQ_ASSIGN_OR_RETURN(std::string text, io::ReadFileToString(dir + "/results.json"));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || j.value("schema", "") != kProbeSchema)
    return DataLoss(dir + "/results.json is damaged or from another version; delete " + dir);
  return j;
}

Status SaveGrad(const std::string& work, int64_t boundary, std::span<const float> g) {
  io::WriterOptions wo;
  wo.overwrite = true;  // a killed run may have saved it before finishing the layer
  PQ_ASSIGN_OR_RETURN(auto w, io::CheckpointWriter::Create(GradDir(work, boundary), wo));
  PQ_RETURN_IF_ERROR(w->AddTensor("grad", DType::kF32, {static_cast<int64_t>(g.size())},
                                  {reinterpret_cast<const uint8_t*>(g.data()), g.size() * 4}));
  return w->Commit();
}

Result<std::vector<float>> LoadGrad(const std::string& work, int64_t boundary, size_t size) {
  const std::string dir = GradDir(work, boundary);
  PQ_ASSIGN_OR_RETURN(auto r, io::CheckpointReader::Open(dir));
  const io::TensorInfo* t = r->Find("grad");
  if (!t || t->dtype != DType::kF32 || static_cast<size_t>(t->numel()) != size)
    return DataLoss(dir + " does not hold the expected gradient; delete " + ProbeDir(work));
  std::vector<float> g(size);
  std::memcpy(g.data(), t->bytes.data(), size * sizeof(float));
  return g;
}

// The chosen samples as I32 tensors "ids" and "targets" [samples, seqlen] (for export's
// calibration and for independent checks).
Status SaveCalibration(const std::string& dir, const Calibration& c) {
  std::vector<int32_t> ids, targets;
  for (const auto& s : c.samples) {
    ids.insert(ids.end(), s.ids.begin(), s.ids.end());
    targets.insert(targets.end(), s.targets.begin(), s.targets.end());
  }
  const std::vector<int64_t> shape = {static_cast<int64_t>(c.samples.size()),
                                      static_cast<int64_t>(c.samples.front().ids.size())};
  PQ_ASSIGN_OR_RETURN(auto w, io::CheckpointWriter::Create(dir));
  for (const auto& [name, v] : {std::pair{"ids", &ids}, {"targets", &targets}})
    PQ_RETURN_IF_ERROR(w->AddTensor(name, DType::kI32, shape,
                                    {reinterpret_cast<const uint8_t*>(v->data()), v->size() * 4}));
  return w->Commit();
}

// Creates W/probe/inputs.json, or checks that an existing one has the same inputs.
Status CheckInputs(const std::string& work, const json& inputs) {
  std::error_code ec;
  fs::create_directories(ProbeDir(work), ec);
  if (ec) return IoError(ProbeDir(work) + ": cannot create: " + ec.message());
  const std::string path = ProbeDir(work) + "/inputs.json";
  const json want = {{"schema", kProbeSchema}, {"inputs", inputs}};
  if (!fs::exists(path)) return io::WriteFileAtomic(path, want.dump(1) + "\n");
  PQ_ASSIGN_OR_RETURN(std::string text, io::ReadFileToString(path));
  const json have = json::parse(text, nullptr, false);
  if (have == want) return Status::Ok();
  std::string diff;
  if (!have.is_discarded() && have.contains("inputs") && have["inputs"].is_object())
    for (const auto& [k, v] : inputs.items())
      if (!have["inputs"].contains(k) || have["inputs"][k] != v) diff += " " + k;
  return InvalidArgument(work + " holds a probe made with different inputs (differs in:" +
                         (diff.empty() ? std::string(" schema") : diff) +
                         "); use another --work directory or delete " + ProbeDir(work));
}

// Removes W/probe entries whose names start with `prefix`.
void RemoveEntries(const std::string& work, const std::string& prefix) {
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (const auto& e : fs::directory_iterator(ProbeDir(work), ec))
    if (e.path().filename().string().rfind(prefix, 0) == 0) doomed.push_back(e.path());
  for (const auto& p : doomed) fs::remove_all(p, ec);
}

std::vector<const model::LinearWeights*> LayerLinears(const model::LayerWeights& w) {
  std::vector<const model::LinearWeights*> v;
  model::ForEachLinear(w, [&](const model::LinearWeights& l) { v.push_back(&l); });
  return v;
}

}  // namespace

// Identity of a checkpoint without reading all of it: config, every tensor's name, dtype and
// shape, and up to 4 KiB of each tensor's data.
Result<std::string> ModelFingerprint(const std::string& model) {
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(model));
  PQ_ASSIGN_OR_RETURN(json config, model::ReadConfig(model));
  Hasher h;
  h.Str(config.dump());
  for (const std::string& n : ckpt->names()) {
    const io::TensorInfo* t = ckpt->Find(n);
    h.Str(n).Int(static_cast<uint64_t>(t->dtype)).Ints(std::span<const int64_t>(t->shape));
    const size_t m = std::min<size_t>(t->bytes.size(), 4096);
    h.Bytes(t->bytes.data(), m);
    io::ReleaseTensorPages(*t);
  }
  return h.hex();
}

Result<ProbeSummary> RunProbe(const ProbeOptions& o) {
  ScopedExecContext exec_scope(o.exec);
  if (o.work.empty()) return InvalidArgument("probe needs --work DIR");
  PQ_ASSIGN_OR_RETURN(auto src, model::WeightSource::Open(o.model));
  const model::ModelLayout& layout = src->layout();
  const int64_t layers = layout.num_layers;
  std::vector<formats::FormatId> fmts = o.formats;
  if (fmts.empty())
    for (const auto& f : formats::AllFormats()) fmts.push_back(f.id);
  PQ_ASSIGN_OR_RETURN(Calibration calib, LoadCalibration(o.model, o.calib));
  PQ_ASSIGN_OR_RETURN(std::string fingerprint, ModelFingerprint(o.model));
  json fmt_names = json::array();
  for (auto f : fmts) fmt_names.push_back(std::string(formats::Spec(f).name));
  const json inputs = {{"model_fingerprint", fingerprint},
                       {"calib_tokens_hash", calib.tokens_hash},
                       {"samples", o.calib.samples},
                       {"seqlen", o.calib.seqlen},
                       {"seed", o.calib.seed},
                       {"formats", fmt_names},
                       {"probe_lm_head", o.probe_lm_head}};
  PQ_RETURN_IF_ERROR(CheckInputs(o.work, inputs));
  RemoveEntries(o.work, ".");  // temp dirs of a killed run's unfinished writes
  if (!fs::exists(ProbeDir(o.work) + "/calibration")) {
    PQ_RETURN_IF_ERROR(SaveCalibration(ProbeDir(o.work) + "/calibration", calib));
  }

  std::map<std::string, const model::LinearInfo*> info;
  engine::ProbeObserverOptions po;
  for (const auto& li : layout.linears) {
    info[li.module] = &li;
    po.unit_of[li.module] = li.scale_group;
  }
  po.formats = fmts;
  po.total_tokens = calib.scored_tokens();
  po.cache_bytes = o.cache_bytes;
  engine::ProbeObserver probe(po);

  engine::RunnerOptions ro;
  ro.memory_budget_bytes = o.memory_budget_bytes;
  ro.work_dir = o.work;
  ro.batch_tokens = 1;  // one sample per observer call (per-sample Fisher)
  ro.progress = o.progress;
  engine::Runner runner(*src, calib.samples, ro);
  PQ_RETURN_IF_ERROR(runner.Forward(/*keep_all=*/true, &probe));

  ProbeSummary sum;
  sum.layers = layers;
  sum.tokens = po.total_tokens;
  const size_t grad_size = static_cast<size_t>(runner.total_tokens() * src->config().hidden);
  int64_t top = layers - 1;  // next layer to run in the reverse sweep
  std::vector<float> dy;
  while (top >= 0 && fs::exists(UnitDir(o.work, top))) --top;
  if (fs::exists(HeadDir(o.work))) {
    sum.resumed_layers = layers - 1 - top;
    if (top >= 0) {
      PQ_ASSIGN_OR_RETURN(dy, LoadGrad(o.work, top + 1, grad_size));
    }
    if (sum.resumed_layers > 0)
      LogInfo("probe: resuming after " + std::to_string(sum.resumed_layers) + " finished layers");
  } else {
    PQ_ASSIGN_OR_RETURN(model::HeadWeights hw, src->LoadHead());
    std::vector<engine::LinearResult> head_results;
    if (o.probe_lm_head) {
      PQ_RETURN_IF_ERROR(runner.Head(nullptr, false, 1.0, &probe).status());  // input amax
      PQ_RETURN_IF_ERROR(probe.BeginLayer({&hw.lm_head}));
    }
    PQ_ASSIGN_OR_RETURN(engine::HeadResult hr, runner.Head(nullptr, true, 1.0, &probe));
    if (o.probe_lm_head) {
      PQ_ASSIGN_OR_RETURN(head_results, probe.FinishLayer());
    }
    PQ_RETURN_IF_ERROR(SaveGrad(o.work, layers, runner.head_grad()));
    PQ_RETURN_IF_ERROR(SaveUnit(HeadDir(o.work), head_results, info,
                                {{"nll_sum", hr.nll_sum}, {"scored", hr.scored}}));
    dy = runner.head_grad();
  }
  const auto begin_layer = [&](int64_t, const model::LayerWeights& w) {
    return probe.BeginLayer(LayerLinears(w));
  };
  const auto finish_layer = [&](int64_t l, std::span<const float> grad) -> Status {
    PQ_ASSIGN_OR_RETURN(auto results, probe.FinishLayer());
    PQ_RETURN_IF_ERROR(SaveGrad(o.work, l, grad));
    PQ_RETURN_IF_ERROR(SaveUnit(UnitDir(o.work, l), results, info, {{"layer", l}}));
    std::error_code ec;
    fs::remove_all(GradDir(o.work, l + 1), ec);
    return Status::Ok();
  };
  if (layout.has_mtp() && !fs::exists(UnitDir(o.work, layers))) {
    // The MTP head with its own objective (architectures.md §4): unit L, after the head.
    PQ_ASSIGN_OR_RETURN(model::LayerWeights mw, src->LoadLayer(layers));
    PQ_ASSIGN_OR_RETURN(model::MtpWeights mtp, src->LoadMtp());
    PQ_RETURN_IF_ERROR(runner.Mtp(nullptr, false, 1.0, &probe).status());  // input amax
    std::vector<const model::LinearWeights*> linears = LayerLinears(mw);
    linears.push_back(&mtp.fc);
    PQ_RETURN_IF_ERROR(probe.BeginLayer(linears));
    PQ_ASSIGN_OR_RETURN(engine::HeadResult mr, runner.Mtp(nullptr, true, 1.0, &probe));
    PQ_ASSIGN_OR_RETURN(auto results, probe.FinishLayer());
    PQ_RETURN_IF_ERROR(SaveUnit(UnitDir(o.work, layers), results, info,
                                {{"layer", layers}, {"mtp_nll_sum", mr.nll_sum},
                                 {"mtp_scored", mr.scored}}));
  }
  if (top >= 0) {
    PQ_RETURN_IF_ERROR(runner.BackwardFrom(top, std::move(dy), &probe, begin_layer, finish_layer));
  }

  // Assemble W/probe.json from the finished units.
  PQ_ASSIGN_OR_RETURN(json head, ReadUnit(HeadDir(o.work)));
  PQ_ASSIGN_OR_RETURN(uint64_t other_bytes, OtherTensorBytes(o.model, layout));
  json linears = json::array();
  std::optional<double> mtp_nll;
  for (int64_t l = 0; l < layers + layout.mtp_layers; ++l) {
    PQ_ASSIGN_OR_RETURN(json u, ReadUnit(UnitDir(o.work, l)));
    for (auto& li : u["linears"]) linears.push_back(std::move(li));
    if (u.contains("mtp_nll_sum"))
      mtp_nll = u["mtp_nll_sum"].get<double>() / std::max<double>(1, u["mtp_scored"].get<double>());
  }
  for (auto& li : head["linears"]) linears.push_back(std::move(li));
  // Vision Linears: not probed (no image calibration yet); allocate gives them --visual-format.
  for (const auto& li : layout.linears)
    if (li.is_visual)
      linears.push_back({{"module", li.module}, {"layer", -1}, {"unit", li.unit},
                         {"scale_group", li.scale_group}, {"rows", li.rows}, {"cols", li.cols},
                         {"is_lm_head", false}, {"is_visual", true}, {"tied", false},
                         {"samples", 0}, {"tokens", 0}, {"fisher_trace", 0.0},
                         {"input_amax", 0.0}, {"candidates", json::array()}});
  const model::ModelConfig& c = src->config();
  json out = {
      {"schema", kProbeSchema},
      {"inputs", inputs},
      {"model",
       {{"path", o.model},
        {"architecture", std::string(layout.arch->name)},
        {"num_layers", layers},
        {"mtp_layers", layout.mtp_layers},
        {"hidden", c.hidden},
        {"num_experts", layout.num_experts},
        {"tie_word_embeddings", layout.tie_word_embeddings},
        {"other_tensor_bytes", other_bytes}}},
      {"calibration",
       {{"samples", o.calib.samples},
        {"seqlen", o.calib.seqlen},
        {"seed", o.calib.seed},
        {"stream_tokens", calib.stream_tokens},
        {"tokens", po.total_tokens},
        {"nll", head["nll_sum"].get<double>() / static_cast<double>(head["scored"].get<int64_t>())},
        {"mtp_nll", mtp_nll ? json(*mtp_nll) : json(nullptr)}}},
      {"estimators", {"trace", "channel", "hessian", "output"}},
      {"formats", fmt_names},
      {"linears", linears}};
  sum.probe_json = o.work + "/probe.json";
  PQ_RETURN_IF_ERROR(io::WriteFileAtomic(sum.probe_json, out.dump(1) + "\n"));
  RemoveEntries(o.work, "grad_");
  sum.linears = static_cast<int64_t>(linears.size());
  sum.calib_nll = out["calibration"]["nll"].get<double>();
  return sum;
}

Result<json> ReadProbe(const std::string& work) {
  const std::string path = work + "/probe.json";
  if (!fs::exists(path))
    return NotFound(path + " not found: run `prismaquant probe MODEL --work " + work + "` first");
  PQ_ASSIGN_OR_RETURN(std::string text, io::ReadFileToString(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return DataLoss(path + " is not valid JSON (re-run the probe)");
  if (j.value("schema", "") != kProbeSchema)
    return InvalidArgument(path + " has schema \"" + j.value("schema", "") + "\", expected " +
                           kProbeSchema);
  if (!j.contains("linears") || !j["linears"].is_array() || !j.contains("model"))
    return DataLoss(path + " is incomplete (re-run the probe)");
  return j;
}

}  // namespace pq::pipeline
