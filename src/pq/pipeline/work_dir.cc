// Work-dir files <-> structs (work_dir.h). The JSON field readers keep the first error, which
// names the file and the field ("probe.json: linears[3].candidates[0].bytes: expected an
// unsigned integer, got string"); writers build the same JSON values the stages always wrote.
#include "pq/pipeline/work_dir.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "pq/io/file_util.h"
#include "pq/io/json_util.h"
#include "pq/io/safetensors.h"

namespace pq::pipeline {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string Numbered(const std::string& dir, const char* prefix, int64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s_%04lld", prefix, static_cast<long long>(n));
  return dir + "/" + buf;
}

// ---- Typed field reading with a sticky error ----

class Reader {
 public:
  Reader(std::string file, std::string hint) : file_(std::move(file)), hint_(std::move(hint)) {}
  void Fail(const std::string& field, const std::string& what) {
    if (error_.empty()) error_ = file_ + ": " + field + ": " + what + " (" + hint_ + ")";
  }
  Status status() const { return error_.empty() ? Status::Ok() : DataLoss(error_); }

 private:
  std::string file_, hint_, error_;
};

// One JSON object of a file at `path` ("", "model", "linears[3]").
class Obj {
 public:
  Obj(Reader* r, const json* j, std::string path) : r_(r), j_(j), path_(std::move(path)) {
    if (!j_->is_object()) {
      r_->Fail(path_.empty() ? "top level" : path_,
               "expected an object, got " + io::JsonTypeName(*j_));
      j_ = &Empty();
    }
  }
  bool Has(const char* k) const { return j_->contains(k) && !(*j_)[k].is_null(); }
  // The member `k`; nullptr (and an error if required) when absent.
  const json* Get(const char* k, bool required = true) const {
    const auto it = j_->find(k);
    if (it != j_->end()) return &*it;
    if (required) r_->Fail(Field(k), "missing");
    return nullptr;
  }
  std::string Str(const char* k) const {
    const json* v = Get(k);
    if (!v || !Is(*v, v->is_string(), k, "a string")) return "";
    return v->get<std::string>();
  }
  int64_t Int(const char* k, std::optional<int64_t> dflt = std::nullopt) const {
    const json* v = Get(k, !dflt);
    if (!v) return dflt.value_or(0);
    const bool ok =
        v->is_number_integer() && (!v->is_number_unsigned() || v->get<uint64_t>() <= INT64_MAX);
    return Is(*v, ok, k, "an integer") ? v->get<int64_t>() : 0;
  }
  uint64_t U64(const char* k, std::optional<uint64_t> dflt = std::nullopt) const {
    const json* v = Get(k, !dflt);
    if (!v) return dflt.value_or(0);
    const bool ok = v->is_number_unsigned() || (v->is_number_integer() && v->get<int64_t>() >= 0);
    return Is(*v, ok, k, "an unsigned integer") ? v->get<uint64_t>() : 0;
  }
  double Num(const char* k, std::optional<double> dflt = std::nullopt) const {
    const json* v = Get(k, !dflt);
    if (!v) return dflt.value_or(0);
    return Is(*v, v->is_number(), k, "a number") ? v->get<double>() : 0;
  }
  bool Bool(const char* k, std::optional<bool> dflt = std::nullopt) const {
    const json* v = Get(k, !dflt);
    if (!v) return dflt.value_or(false);
    return Is(*v, v->is_boolean(), k, "true or false") && v->get<bool>();
  }
  // Absent or null: nullopt.
  std::optional<double> OptNum(const char* k) const {
    if (!Has(k)) return std::nullopt;
    return Num(k);
  }
  std::optional<int64_t> OptInt(const char* k) const {
    if (!Has(k)) return std::nullopt;
    return Int(k);
  }
  std::optional<std::string> OptStr(const char* k) const {
    if (!Has(k)) return std::nullopt;
    return Str(k);
  }
  Obj Child(const char* k) const {
    const json* v = Get(k);
    return Obj(r_, v ? v : &Empty(), Field(k));
  }
  // The elements of array `k` (an error and none if it is not one).
  std::vector<const json*> Array(const char* k) const {
    std::vector<const json*> out;
    const json* v = Get(k);
    if (!v || !Is(*v, v->is_array(), k, "an array")) return out;
    for (const json& e : *v) out.push_back(&e);
    return out;
  }
  Obj Element(const char* k, size_t i, const json* e) const {
    return Obj(r_, e, Field(k) + "[" + std::to_string(i) + "]");
  }
  std::vector<std::string> Strings(const char* k) const {
    std::vector<std::string> out;
    const auto items = Array(k);
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i]->is_string()) {
        r_->Fail(Field(k) + "[" + std::to_string(i) + "]",
                 "expected a string, got " + io::JsonTypeName(*items[i]));
        return {};
      }
      out.push_back(items[i]->get<std::string>());
    }
    return out;
  }
  const json& Raw(const char* k) const {
    const json* v = Get(k);
    return v ? *v : Empty();
  }
  const json& self() const { return *j_; }
  std::string Field(const char* k) const { return path_.empty() ? k : path_ + "." + k; }

 private:
  bool Is(const json& v, bool ok, const char* k, const char* want) const {
    if (!ok) r_->Fail(Field(k), std::string("expected ") + want + ", got " + io::JsonTypeName(v));
    return ok;
  }
  static const json& Empty() {
    static const json kEmpty = json::object();
    return kEmpty;
  }
  Reader* r_;
  const json* j_;
  std::string path_;
};

// Parses `path`: NotFound (with `missing_hint`) if absent, DataLoss if not JSON, InvalidArgument
// if its "schema" is not `schema`.
Result<json> ReadSchemaFile(const std::string& path, const char* schema,
                            const std::string& missing_hint, const std::string& damaged_hint) {
  if (!fs::exists(path)) return NotFound(path + " not found: " + missing_hint);
  PQ_ASSIGN_OR_RETURN(std::string text, io::ReadFileToString(path));
  auto j = io::ParseJson(text, path);
  if (!j.ok()) return DataLoss(j.status().message() + " (" + damaged_hint + ")");
  const std::string have = j->is_object() && j->contains("schema") && (*j)["schema"].is_string()
                               ? (*j)["schema"].get<std::string>()
                               : "";
  if (have != schema)
    return InvalidArgument(path + " has schema \"" + have + "\", expected " + schema);
  return std::move(*j);
}

// ---- Probe records ----

ProbeCandidate ParseCandidate(const Obj& o) {
  ProbeCandidate c;
  c.format = o.Str("format");
  c.bytes = o.U64("bytes");
  c.weight_mse = o.Num("weight_mse");
  const Obj cost = o.Child("cost");
  for (int e = 0; e < quant::kNumEstimators; ++e) {
    const auto est = static_cast<quant::CostEstimator>(e);
    const std::string name(quant::EstimatorName(est));
    // "block" is written only where it differs from "hessian" (block-priced MoE units); files
    // of dense models and those probed before it existed have none. Files probed before
    // "token" existed have no "token": it reads as "hessian" too.
    // null: not recorded by the probe (probe --estimators), NaN in memory.
    if (const json* v = cost.Get(name.c_str(), false); v && v->is_null()) {
      c.cost[static_cast<size_t>(e)] = std::nan("");
      continue;
    }
    if ((est == quant::CostEstimator::kBlock || est == quant::CostEstimator::kToken) &&
        !cost.Has(name.c_str())) {
      c.cost[static_cast<size_t>(e)] = c.Cost(quant::CostEstimator::kHessian);
      continue;
    }
    c.cost[static_cast<size_t>(e)] = cost.Num(name.c_str());
  }
  c.routing_changes = o.OptInt("routing_changes");
  return c;
}

json CandidateJson(const ProbeCandidate& c) {
  json cost = json::object();
  for (int e = 0; e < quant::kNumEstimators; ++e) {
    const auto est = static_cast<quant::CostEstimator>(e);
    if ((est == quant::CostEstimator::kBlock || est == quant::CostEstimator::kToken) &&
        c.Cost(est) == c.Cost(quant::CostEstimator::kHessian))
      continue;  // absent = the hessian value (ParseCandidate)
    const std::string name(quant::EstimatorName(est));
    if (std::isnan(c.Cost(est))) {
      cost[name] = nullptr;  // not recorded
    } else {
      cost[name] = c.Cost(est);
    }
  }
  json j = {{"format", c.format}, {"bytes", c.bytes}, {"weight_mse", c.weight_mse}, {"cost", cost}};
  if (c.routing_changes) j["routing_changes"] = *c.routing_changes;
  return j;
}

// Hand-made files may omit scale_group (then: its own), is_mtp and is_visual.
ProbeLinear ParseLinear(const Obj& o) {
  ProbeLinear l;
  l.module = o.Str("module");
  l.layer = o.Int("layer");
  l.unit = o.Str("unit");
  l.scale_group = o.Has("scale_group") ? o.Str("scale_group") : l.module;
  l.rows = o.Int("rows");
  l.cols = o.Int("cols");
  l.is_lm_head = o.Bool("is_lm_head");
  l.is_mtp = o.Bool("is_mtp", false);
  l.is_visual = o.Bool("is_visual", false);
  l.tied = o.Bool("tied");
  l.samples = o.Int("samples");
  l.tokens = o.Int("tokens");
  l.fisher_trace = o.Num("fisher_trace");
  l.input_amax = static_cast<float>(o.Num("input_amax"));
  const auto cands = o.Array("candidates");
  for (size_t i = 0; i < cands.size(); ++i)
    l.candidates.push_back(ParseCandidate(o.Element("candidates", i, cands[i])));
  return l;
}

// Probed Linears carry "is_mtp"; vision Linears (not probed) "is_visual" instead.
json LinearJson(const ProbeLinear& l) {
  json cands = json::array();
  for (const auto& c : l.candidates) cands.push_back(CandidateJson(c));
  json j = {{"module", l.module},
            {"layer", l.layer},
            {"unit", l.unit},
            {"scale_group", l.scale_group},
            {"rows", l.rows},
            {"cols", l.cols},
            {"is_lm_head", l.is_lm_head},
            {"tied", l.tied},
            {"samples", l.samples},
            {"tokens", l.tokens},
            {"fisher_trace", l.fisher_trace},
            {"input_amax", l.input_amax},
            {"candidates", cands}};
  if (l.is_visual)
    j["is_visual"] = true;
  else
    j["is_mtp"] = l.is_mtp;
  return j;
}

std::vector<ProbeLinear> ParseLinears(const Obj& o) {
  std::vector<ProbeLinear> out;
  const auto items = o.Array("linears");
  for (size_t i = 0; i < items.size(); ++i)
    out.push_back(ParseLinear(o.Element("linears", i, items[i])));
  return out;
}

json LinearsJson(const std::vector<ProbeLinear>& ls) {
  json a = json::array();
  for (const auto& l : ls) a.push_back(LinearJson(l));
  return a;
}

ProbeModel ParseModel(const Obj& o) {
  ProbeModel m;
  m.path = o.Str("path");
  m.architecture = o.Str("architecture");
  m.num_layers = o.Int("num_layers");
  m.mtp_layers = o.Int("mtp_layers", 0);
  m.hidden = o.Int("hidden");
  m.num_experts = o.Int("num_experts");
  m.tie_word_embeddings = o.Bool("tie_word_embeddings");
  m.other_tensor_bytes = o.U64("other_tensor_bytes");
  return m;
}

ProbeCalibration ParseCalibration(const Obj& o) {
  ProbeCalibration c;
  c.samples = o.Int("samples");
  c.seqlen = o.Int("seqlen");
  c.seed = o.U64("seed", 0);
  c.stream_tokens = o.Int("stream_tokens", 0);
  c.tokens = o.Int("tokens");
  c.nll = o.Num("nll");
  c.mtp_nll = o.OptNum("mtp_nll");
  return c;
}

json ProbeJson(const ProbeFile& p) {
  const ProbeModel& m = p.model;
  const ProbeCalibration& c = p.calibration;
  return {{"schema", kProbeSchema},
          {"inputs", p.inputs},
          {"model",
           {{"path", m.path},
            {"architecture", m.architecture},
            {"num_layers", m.num_layers},
            {"mtp_layers", m.mtp_layers},
            {"hidden", m.hidden},
            {"num_experts", m.num_experts},
            {"tie_word_embeddings", m.tie_word_embeddings},
            {"other_tensor_bytes", m.other_tensor_bytes}}},
          {"calibration",
           {{"samples", c.samples},
            {"seqlen", c.seqlen},
            {"seed", c.seed},
            {"stream_tokens", c.stream_tokens},
            {"tokens", c.tokens},
            {"nll", c.nll},
            {"mtp_nll", c.mtp_nll ? json(*c.mtp_nll) : json(nullptr)}}},
          {"estimators", p.estimators},
          {"formats", p.formats},
          {"linears", LinearsJson(p.linears)}};
}

// The unit's vectors from its model.safetensors.
Status ReadUnitVectors(const std::string& dir, ProbeUnit* u) {
  PQ_ASSIGN_OR_RETURN(auto r, io::CheckpointReader::Open(dir));
  for (const ProbeLinear& l : u->linears)
    for (auto [suffix, n, out] :
         {std::tuple{".g2_out", l.rows, &u->g2_out}, std::tuple{".x2_in", l.cols, &u->x2_in}}) {
      const io::TensorInfo* t = r->Find(l.module + suffix);
      if (!t || t->dtype != DType::kF32 || t->numel() != n)
        return DataLoss(dir + ": tensor " + l.module + suffix + " is missing or not F32 [" +
                        std::to_string(n) + "]; delete " + dir);
      out->emplace_back(static_cast<size_t>(n));
      std::memcpy(out->back().data(), t->bytes.data(), static_cast<size_t>(n) * sizeof(float));
    }
  return Status::Ok();
}

// ---- Allocation ----

AllocationTarget ParseTarget(const Obj& o, Reader* r) {
  AllocationTarget t;
  if (o.Has("size_bytes")) {
    t.kind = AllocationTarget::Kind::kSize;
    t.size_bytes = o.U64("size_bytes");
    t.kv_reserve_bytes = o.U64("kv_reserve_bytes", 0);
  } else if (o.Has("bits") && o.Raw("bits") == "knee") {
    t.kind = AllocationTarget::Kind::kKnee;
    t.bits = o.Num("knee_bits");
  } else if (o.Has("bits")) {
    t.bits = o.Num("bits");
  } else {
    r->Fail(o.Field("bits"), "missing (and no size_bytes)");
  }
  return t;
}

json TargetJson(const AllocationTarget& t) {
  switch (t.kind) {
    case AllocationTarget::Kind::kBits:
      return {{"bits", t.bits}};
    case AllocationTarget::Kind::kKnee:
      return {{"bits", "knee"}, {"knee_bits", t.bits}};
    case AllocationTarget::Kind::kSize:
      return {{"size_bytes", t.size_bytes}, {"kv_reserve_bytes", t.kv_reserve_bytes}};
  }
  return nullptr;
}

LayerConfig ParseLayerConfig(const Obj& o, Reader* r) {
  LayerConfig c;
  c.probe_inputs = o.Raw("probe_inputs");
  c.cost = o.Str("cost");
  c.lm_head = o.Str("lm_head");
  c.visual = o.OptStr("visual");
  c.target = ParseTarget(o.Child("target"), r);
  const Obj a = o.Child("achieved");
  c.achieved.bits_per_param = a.Num("bits_per_param");
  c.achieved.unit_bytes = a.U64("unit_bytes");
  c.achieved.total_bytes = a.U64("total_bytes");
  c.achieved.predicted_dloss = a.Num("predicted_dloss");
  c.achieved.optimal = a.Bool("optimal");
  c.knee_bits = o.OptNum("knee_bits");
  c.mtp_weight = o.OptNum("mtp_weight");
  c.measured_costs = o.OptStr("measured_costs");
  const Obj f = o.Child("formats");
  for (const auto& [module, v] : f.self().items()) {
    if (!v.is_string()) {
      r->Fail(f.Field(module.c_str()), "expected a string, got " + io::JsonTypeName(v));
      break;
    }
    c.formats[module] = v.get<std::string>();
  }
  return c;
}

// ---- Pareto CSV ----

bool ParseNumber(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(*v);
}

std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string f;
  while (std::getline(ss, f, ',')) out.push_back(f);
  if (!line.empty() && line.back() == ',') out.emplace_back();
  return out;
}

constexpr const char* kParetoColumns[] = {"target_bits", "achieved_bits",   "unit_bytes",
                                          "total_bytes", "predicted_dloss", "optimal"};

// A count or byte size: a whole number in [0, 2^53] (exact in a double); false otherwise.
template <typename T>
bool ToWhole(double v, T* out) {
  if (!(v >= 0.0 && v <= 9007199254740992.0) || v != std::floor(v)) return false;
  *out = static_cast<T>(v);
  return true;
}

// One data row; false if it is not header-many numbers.
bool ParseParetoRow(const std::string& line, const std::vector<std::string>& header,
                    const std::vector<std::string>& formats, ParetoPoint* p) {
  const std::vector<std::string> f = SplitCsv(line);
  if (f.size() != header.size()) return false;
  std::map<std::string, double> v;
  for (size_t i = 0; i < f.size(); ++i)
    if (!ParseNumber(f[i], &v[header[i]])) return false;
  p->target_bits = v["target_bits"];
  p->achieved_bits = v["achieved_bits"];
  if (!ToWhole(v["unit_bytes"], &p->unit_bytes) || !ToWhole(v["total_bytes"], &p->total_bytes))
    return false;
  p->predicted_dloss = v["predicted_dloss"];
  p->optimal = v["optimal"] != 0;
  for (const std::string& fmt : formats) {
    int64_t count = 0, params = 0;
    if (!ToWhole(v["count_" + fmt], &count) || !ToWhole(v["params_" + fmt], &params)) return false;
    p->count.push_back(count);
    p->params.push_back(params);
  }
  return true;
}

std::string ParetoCsvText(const ParetoTable& t) {
  std::ostringstream os;
  os << "target_bits,achieved_bits,unit_bytes,total_bytes,predicted_dloss,optimal";
  for (const auto& f : t.formats) os << ",count_" << f;
  for (const auto& f : t.formats) os << ",params_" << f;
  os << "\n";
  char buf[64];
  for (const ParetoPoint& p : t.points) {
    std::snprintf(buf, sizeof buf, "%.6f,%.6f,", p.target_bits, p.achieved_bits);
    os << buf << p.unit_bytes << "," << p.total_bytes << ",";
    std::snprintf(buf, sizeof buf, "%.9g", p.predicted_dloss);
    os << buf << "," << (p.optimal ? 1 : 0);
    for (int64_t c : p.count) os << "," << c;
    for (int64_t c : p.params) os << "," << c;
    os << "\n";
  }
  return os.str();
}

}  // namespace

std::string WorkDir::unit_dir(int64_t layer) const { return Numbered(probe_dir(), "layer", layer); }
std::string WorkDir::grad_dir(int64_t boundary) const {
  return Numbered(probe_dir(), "grad", boundary);
}

bool ProbeCandidate::operator==(const ProbeCandidate& o) const {
  for (size_t i = 0; i < cost.size(); ++i)
    if (!(cost[i] == o.cost[i] || (std::isnan(cost[i]) && std::isnan(o.cost[i])))) return false;
  return format == o.format && bytes == o.bytes && weight_mse == o.weight_mse &&
         routing_changes == o.routing_changes;
}

const ProbeCandidate* ProbeLinear::Find(std::string_view format) const {
  for (const auto& c : candidates)
    if (c.format == format) return &c;
  return nullptr;
}

nlohmann::json ProbeInputs::ToJson() const {
  json j = {{"model_fingerprint", model_fingerprint},
            {"calib_tokens_hash", calib_tokens_hash},
            {"samples", samples},
            {"seqlen", seqlen},
            {"seed", seed},
            {"formats", formats},
            {"probe_lm_head", probe_lm_head},
            {"passes", passes}};
  // Only when not the default, so work dirs probed before these options keep their identity.
  if (probe_lm_head && !lm_head_formats.empty()) j["lm_head_formats"] = lm_head_formats;
  if (!block_cost) j["block_cost"] = false;
  if (block_frozen_routing) j["block_routing"] = "frozen";
  if (block_cost && block_layers != 2) j["block_layers"] = block_layers;
  if (block_cost && block_samples > 0 && block_samples < samples)
    j["block_samples"] = block_samples;
  if (hessian_samples > 0) j["hessian_samples"] = hessian_samples;
  if (sample_block > 0 && sample_block < samples) j["sample_block"] = sample_block;
  if (!per_token) j["estimators"] = {"trace", "channel", "hessian", "block"};
  return j;
}

std::string ProbeFile::model_fingerprint() const {
  const auto it = inputs.find("model_fingerprint");
  return inputs.is_object() && it != inputs.end() && it->is_string() ? it->get<std::string>() : "";
}

Result<ProbeFile> ReadProbeFile(const WorkDir& w) {
  const std::string path = w.probe_json();
  PQ_ASSIGN_OR_RETURN(json j,
                      ReadSchemaFile(path, kProbeSchema,
                                     "run `prismaquant probe MODEL --work " + w.root() + "` first",
                                     "re-run the probe"));
  Reader r(path, "re-run the probe");
  const Obj o(&r, &j, "");
  ProbeFile p;
  p.inputs = o.Raw("inputs");
  p.model = ParseModel(o.Child("model"));
  p.calibration = ParseCalibration(o.Child("calibration"));
  p.estimators = o.Strings("estimators");
  p.formats = o.Strings("formats");
  p.linears = ParseLinears(o);
  PQ_RETURN_IF_ERROR(r.status());
  return p;
}

Status WriteProbeFile(const WorkDir& w, const ProbeFile& p) {
  return io::WriteFileAtomic(w.probe_json(), ProbeJson(p).dump(1) + "\n");
}

Status WriteProbeUnit(const std::string& dir, const ProbeUnit& u) {
  if (u.g2_out.size() != u.linears.size() || u.x2_in.size() != u.linears.size())
    return Internal(dir + ": a unit needs g2_out and x2_in for every Linear");
  PQ_ASSIGN_OR_RETURN(auto w, io::CheckpointWriter::Create(dir));
  for (size_t i = 0; i < u.linears.size(); ++i)
    for (const auto& [suffix, v] : {std::pair{".g2_out", &u.g2_out[i]}, {".x2_in", &u.x2_in[i]}}) {
      const auto* p = reinterpret_cast<const uint8_t*>(v->data());
      PQ_RETURN_IF_ERROR(w->AddTensor(u.linears[i].module + suffix, DType::kF32,
                                      {static_cast<int64_t>(v->size())},
                                      {p, v->size() * sizeof(float)}));
    }
  if (u.linears.empty()) {  // a checkpoint needs a tensor; keep the format uniform
    const float zero = 0;
    PQ_RETURN_IF_ERROR(w->AddTensor("empty", DType::kF32, {1},
                                    {reinterpret_cast<const uint8_t*>(&zero), sizeof zero}));
  }
  json j = {{"schema", kProbeSchema}, {"linears", LinearsJson(u.linears)}};
  if (u.layer) j["layer"] = *u.layer;
  if (u.nll_sum) j["nll_sum"] = *u.nll_sum;
  if (u.scored) j["scored"] = *u.scored;
  if (u.mtp_nll_sum) j["mtp_nll_sum"] = *u.mtp_nll_sum;
  if (u.mtp_scored) j["mtp_scored"] = *u.mtp_scored;
  PQ_RETURN_IF_ERROR(w->AddFile("results.json", j.dump(1) + "\n"));
  return w->Commit();
}

Result<ProbeUnit> ReadProbeUnit(const std::string& dir, bool with_vectors) {
  const std::string path = dir + "/results.json";
  const std::string hint = "delete " + dir + " and re-run the probe";
  auto j = ReadSchemaFile(path, kProbeSchema, hint, hint);
  if (!j.ok() && j.status().code() == StatusCode::kInvalidArgument)
    return DataLoss(j.status().message() + "; " + hint);
  PQ_RETURN_IF_ERROR(j.status());
  Reader r(path, hint);
  const Obj o(&r, &*j, "");
  ProbeUnit u;
  u.layer = o.OptInt("layer");
  u.nll_sum = o.OptNum("nll_sum");
  u.scored = o.OptInt("scored");
  u.mtp_nll_sum = o.OptNum("mtp_nll_sum");
  u.mtp_scored = o.OptInt("mtp_scored");
  u.linears = ParseLinears(o);
  PQ_RETURN_IF_ERROR(r.status());
  if (with_vectors) PQ_RETURN_IF_ERROR(ReadUnitVectors(dir, &u));
  return u;
}

Status CheckProbeInputs(const WorkDir& w, const nlohmann::json& inputs) {
  std::error_code ec;
  fs::create_directories(w.probe_dir(), ec);
  if (ec) return IoError(w.probe_dir() + ": cannot create: " + ec.message());
  const std::string path = w.inputs_json();
  const json want = {{"schema", kProbeSchema}, {"inputs", inputs}};
  if (!fs::exists(path)) return io::WriteFileAtomic(path, want.dump(1) + "\n");
  PQ_ASSIGN_OR_RETURN(std::string text, io::ReadFileToString(path));
  const json have = json::parse(text, nullptr, false);
  if (have == want) return Status::Ok();
  std::string diff;
  if (!have.is_discarded() && have.contains("inputs") && have["inputs"].is_object())
    for (const auto& [k, v] : inputs.items())
      if (!have["inputs"].contains(k) || have["inputs"][k] != v) diff += " " + k;
  return InvalidArgument(w.root() + " holds a probe made with different inputs (differs in:" +
                         (diff.empty() ? std::string(" schema") : diff) +
                         "); use another --work directory or delete " + w.probe_dir());
}

Status WriteCalibrationSamples(const WorkDir& w, const std::vector<engine::Sequence>& samples,
                               const std::string& dir) {
  if (samples.empty()) return InvalidArgument("no calibration samples to write");
  std::vector<int32_t> ids, targets;
  for (const auto& s : samples) {
    ids.insert(ids.end(), s.ids.begin(), s.ids.end());
    targets.insert(targets.end(), s.targets.begin(), s.targets.end());
  }
  const std::vector<int64_t> shape = {static_cast<int64_t>(samples.size()),
                                      static_cast<int64_t>(samples.front().ids.size())};
  PQ_ASSIGN_OR_RETURN(auto cw,
                      io::CheckpointWriter::Create(dir.empty() ? w.calibration_dir() : dir));
  for (const auto& [name, v] : {std::pair{"ids", &ids}, {"targets", &targets}})
    PQ_RETURN_IF_ERROR(cw->AddTensor(name, DType::kI32, shape,
                                     {reinterpret_cast<const uint8_t*>(v->data()), v->size() * 4}));
  return cw->Commit();
}

Result<std::vector<engine::Sequence>> ReadCalibrationSamples(const WorkDir& w,
                                                             const std::string& from) {
  const std::string dir = from.empty() ? w.calibration_dir() : from;
  PQ_ASSIGN_OR_RETURN(auto r, io::CheckpointReader::Open(dir));
  const io::TensorInfo* ids = r->Find("ids");
  const io::TensorInfo* targets = r->Find("targets");
  for (const auto& [name, t] : {std::pair{"ids", ids}, {"targets", targets}})
    if (!t || t->dtype != DType::kI32 || t->shape.size() != 2 || t->shape != ids->shape)
      return DataLoss(dir + " has no I32 " + name + " [samples, seqlen]; re-run the probe");
  const int64_t n = ids->shape[0], len = ids->shape[1];
  const size_t row = static_cast<size_t>(len) * sizeof(int32_t);
  std::vector<engine::Sequence> out(static_cast<size_t>(n));
  for (int64_t s = 0; s < n; ++s) {
    auto& q = out[static_cast<size_t>(s)];
    q.ids.resize(static_cast<size_t>(len));
    q.targets.resize(static_cast<size_t>(len));
    std::memcpy(q.ids.data(), ids->bytes.data() + static_cast<size_t>(s) * row, row);
    std::memcpy(q.targets.data(), targets->bytes.data() + static_cast<size_t>(s) * row, row);
  }
  return out;
}

Result<std::vector<engine::Sequence>> ReadHessianSamples(const WorkDir& w) {
  if (fs::exists(w.hessian_calibration_dir()))
    return ReadCalibrationSamples(w, w.hessian_calibration_dir());
  return ReadCalibrationSamples(w);
}

ProbeProgress ScanProbeProgress(const WorkDir& w, int64_t num_layers) {
  ProbeProgress p;
  p.head = fs::exists(w.head_dir());
  p.mtp = fs::exists(w.unit_dir(num_layers));
  p.next_layer = num_layers - 1;
  while (p.next_layer >= 0 && fs::exists(w.unit_dir(p.next_layer))) --p.next_layer;
  p.finished_layers = num_layers - 1 - p.next_layer;
  return p;
}

Status WriteBoundaryGrad(const WorkDir& w, int64_t boundary, std::span<const float> g) {
  io::WriterOptions wo;
  wo.overwrite = true;  // a killed run may have saved it before finishing the layer
  PQ_ASSIGN_OR_RETURN(auto cw, io::CheckpointWriter::Create(w.grad_dir(boundary), wo));
  PQ_RETURN_IF_ERROR(cw->AddTensor("grad", DType::kF32, {static_cast<int64_t>(g.size())},
                                   {reinterpret_cast<const uint8_t*>(g.data()), g.size() * 4}));
  return cw->Commit();
}

Result<std::vector<float>> ReadBoundaryGrad(const WorkDir& w, int64_t boundary, size_t size) {
  const std::string dir = w.grad_dir(boundary);
  PQ_ASSIGN_OR_RETURN(auto r, io::CheckpointReader::Open(dir));
  const io::TensorInfo* t = r->Find("grad");
  if (!t || t->dtype != DType::kF32 || static_cast<size_t>(t->numel()) != size)
    return DataLoss(dir + " does not hold the expected gradient; delete " + w.probe_dir());
  std::vector<float> g(size);
  std::memcpy(g.data(), t->bytes.data(), size * sizeof(float));
  return g;
}

void RemoveBoundaryGrad(const WorkDir& w, int64_t boundary) {
  std::error_code ec;
  fs::remove_all(w.grad_dir(boundary), ec);
}

void RemoveProbeEntries(const WorkDir& w, const std::string& prefix) {
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (const auto& e : fs::directory_iterator(w.probe_dir(), ec))
    if (e.path().filename().string().rfind(prefix, 0) == 0) doomed.push_back(e.path());
  for (const auto& p : doomed) fs::remove_all(p, ec);
}

Result<LayerConfig> ReadLayerConfig(const WorkDir& w) {
  const std::string path = w.layer_config_json();
  PQ_ASSIGN_OR_RETURN(json j, ReadSchemaFile(path, kLayerConfigSchema,
                                             "run `prismaquant allocate --work " + w.root() +
                                                 " --target-bits B` first",
                                             "re-run allocate"));
  Reader r(path, "re-run allocate");
  const Obj o(&r, &j, "");
  LayerConfig c = ParseLayerConfig(o, &r);
  PQ_RETURN_IF_ERROR(r.status());
  return c;
}

Status WriteLayerConfig(const WorkDir& w, const LayerConfig& c) {
  json j = {{"schema", kLayerConfigSchema},
            {"probe_inputs", c.probe_inputs},
            {"cost", c.cost},
            {"lm_head", c.lm_head},
            {"visual", c.visual ? json(*c.visual) : json(nullptr)},
            {"target", TargetJson(c.target)},
            {"achieved",
             {{"bits_per_param", c.achieved.bits_per_param},
              {"unit_bytes", c.achieved.unit_bytes},
              {"total_bytes", c.achieved.total_bytes},
              {"predicted_dloss", c.achieved.predicted_dloss},
              {"optimal", c.achieved.optimal}}},
            {"knee_bits", c.knee_bits ? json(*c.knee_bits) : json(nullptr)},
            {"formats", c.formats}};
  if (c.mtp_weight) j["mtp_weight"] = *c.mtp_weight;
  if (c.measured_costs) j["measured_costs"] = *c.measured_costs;
  return io::WriteFileAtomic(w.layer_config_json(), j.dump(1) + "\n");
}

Status WriteParetoTable(const WorkDir& w, const ParetoTable& t) {
  return io::WriteFileAtomic(w.pareto_csv(), ParetoCsvText(t));
}

// Columns are found by name; count_<F> columns name the formats (params_<F> may be absent).
Result<ParetoTable> ReadParetoTable(const WorkDir& w) {
  const std::string path = w.pareto_csv();
  const std::string hint =
      "run `prismaquant allocate --work " + w.root() + " --target-bits B` first";
  if (!fs::exists(path)) return NotFound(path + " not found: " + hint);
  PQ_ASSIGN_OR_RETURN(std::string text, io::ReadFileToString(path, 64ull << 20));
  std::stringstream ss(text);
  std::string line;
  std::getline(ss, line);
  const std::vector<std::string> header = SplitCsv(line);
  for (const char* need : kParetoColumns)
    if (std::find(header.begin(), header.end(), need) == header.end())
      return DataLoss(path + ": header has no column \"" + need + "\" (re-run allocate)");
  ParetoTable t;
  for (const std::string& h : header)
    if (h.rfind("count_", 0) == 0) t.formats.push_back(h.substr(6));
  for (int n = 2; std::getline(ss, line); ++n) {
    if (line.empty()) continue;
    ParetoPoint p;
    if (!ParseParetoRow(line, header, t.formats, &p))
      return DataLoss(path + " line " + std::to_string(n) + ": not " +
                      std::to_string(header.size()) +
                      " numbers with whole counts and byte sizes (re-run allocate)");
    t.points.push_back(std::move(p));
  }
  if (t.points.empty()) return DataLoss(path + " has no points (re-run allocate)");
  return t;
}

}  // namespace pq::pipeline
