// The work dir that `probe`, `allocate`, `export` and `report` share, as typed structs. Every
// file is parsed and validated once here (a damaged file is a DataLoss naming the file and the
// field; another schema an InvalidArgument) and written from the structs. Persisted names and
// bytes are an ABI (schemas "prismaquant.probe/1" and "prismaquant.layer_config/1"):
//   W/probe/inputs.json            {"schema", "inputs"}: fingerprint of (model, calibration
//                                  tokens, options); a rerun with other inputs is refused
//                                  (block pricing options appear only when not the default)
//   W/probe/calibration/           model.safetensors: I32 "ids", "targets" [samples, seqlen]
//   W/probe/hessian_calibration/   the same for the Hessian samples (calibration.h), only when
//                                  the probe had some ("hessian_samples" in inputs.json)
//   W/probe/head/, layer_NNNN/     one finished unit of work each (ProbeUnit), written
//                                  atomically: results.json + model.safetensors (per Linear
//                                  "<module>.g2_out" [N], "<module>.x2_in" [K], F32)
//   W/probe/grad_NNNN/             dL/d(boundary NNNN) after the last finished layer (resume),
//                                  and those MoE layers' block windows below still need
//   W/probe.json                   ProbeFile: everything allocate needs
//   W/layer_config.json            LayerConfig: one format per Linear (from allocate)
//   W/pareto.csv                   ParetoTable: the allocator's sweep
// A candidate's "cost" object holds one number per quant::CostEstimator name, except that
// "block" is written only where it differs from "hessian" (MoE-layer units priced at the block
// output), and "token" likewise only where it differs from "hessian": absent, either reads as
// the hessian value — so dense models' files, and files probed before "block" / "token"
// existed, read and write back unchanged.
// JSON is written with nlohmann's dump(1) (keys sorted, shortest round-trip numbers) plus a
// newline; integer and floating fields keep their JSON number kinds, so read -> write gives
// back the same bytes.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pq/core/status.h"
#include "pq/engine/runner.h"
#include "pq/quant/cost.h"

namespace pq::pipeline {

inline constexpr const char* kProbeSchema = "prismaquant.probe/1";
inline constexpr const char* kLayerConfigSchema = "prismaquant.layer_config/1";

// Paths inside one work dir.
class WorkDir {
 public:
  explicit WorkDir(std::string root) : root_(std::move(root)) {}
  const std::string& root() const { return root_; }
  std::string probe_dir() const { return root_ + "/probe"; }
  std::string inputs_json() const { return probe_dir() + "/inputs.json"; }
  std::string calibration_dir() const { return probe_dir() + "/calibration"; }
  std::string hessian_calibration_dir() const { return probe_dir() + "/hessian_calibration"; }
  std::string head_dir() const { return probe_dir() + "/head"; }
  std::string unit_dir(int64_t layer) const;     // W/probe/layer_NNNN
  std::string grad_dir(int64_t boundary) const;  // W/probe/grad_NNNN
  std::string probe_json() const { return root_ + "/probe.json"; }
  std::string layer_config_json() const { return root_ + "/layer_config.json"; }
  std::string pareto_csv() const { return root_ + "/pareto.csv"; }

 private:
  std::string root_;
};

// ---- Probe results ----

// One candidate format of a Linear.
struct ProbeCandidate {
  std::string format;
  uint64_t bytes = 0;     // exact bytes on disk (scales included, bias excluded)
  double weight_mse = 0;  // mean (W − Ŵ)²
  std::array<double, quant::kNumEstimators> cost{};  // predicted Δloss by quant::CostEstimator
  // Linears of MoE layers (priced at the block output): calibration tokens whose top-k set
  // changed with this candidate's whole unit quantized (the unit's count, on every member).
  std::optional<int64_t> routing_changes;
  double Cost(quant::CostEstimator e) const { return cost[static_cast<size_t>(e)]; }
  // Costs not recorded (NaN) compare equal to each other.
  bool operator==(const ProbeCandidate& o) const;
};

// One Linear's probe record (probe.json "linears", results.json "linears").
struct ProbeLinear {
  std::string module;
  int64_t layer = -1;             // -1: lm_head and vision; L + j: MTP layer j
  std::string unit, scale_group;  // decision unit; NVFP4 global-scale group
  int64_t rows = 0, cols = 0;
  bool is_lm_head = false, is_mtp = false, is_visual = false, tied = false;
  int64_t samples = 0, tokens = 0;
  double fisher_trace = 0;
  float input_amax = 0;
  std::vector<ProbeCandidate> candidates;  // feasible formats, in probed order
  const ProbeCandidate* Find(std::string_view format) const;
  bool operator==(const ProbeLinear&) const = default;
};

// A finished unit of work: W/probe/head (nll_sum, scored), a layer (layer) or the MTP unit
// (layer, mtp_nll_sum, mtp_scored). `g2_out` / `x2_in` are parallel to `linears` (per-token
// means, [rows] / [cols]); ReadProbeUnit fills them only when asked.
struct ProbeUnit {
  std::optional<int64_t> layer;
  std::optional<double> nll_sum, mtp_nll_sum;
  std::optional<int64_t> scored, mtp_scored;
  std::vector<ProbeLinear> linears;
  std::vector<std::vector<float>> g2_out, x2_in;
  bool operator==(const ProbeUnit&) const = default;
};

struct ProbeModel {
  std::string path, architecture;
  int64_t num_layers = 0, mtp_layers = 0, hidden = 0, num_experts = 0;
  bool tie_word_embeddings = false;
  uint64_t other_tensor_bytes = 0;  // every tensor that is not a probed Linear, as exported
  bool operator==(const ProbeModel&) const = default;
};

struct ProbeCalibration {
  int64_t samples = 0, seqlen = 0;
  uint64_t seed = 0;
  int64_t stream_tokens = 0, tokens = 0;  // tokens in the input stream; scored tokens
  double nll = 0;                         // mean NLL of the model, nats/token
  std::optional<double> mtp_nll;          // of the MTP head (null without one)
  bool operator==(const ProbeCalibration&) const = default;
};

// What identifies a probe (W/probe/inputs.json, probe.json "inputs", layer_config.json
// "probe_inputs"). Compared and copied whole, so it stays a JSON value.
struct ProbeInputs {
  std::string model_fingerprint, calib_tokens_hash;
  int64_t samples = 0, seqlen = 0;
  uint64_t seed = 0;
  std::vector<std::string> formats;
  bool probe_lm_head = true;
  std::vector<std::string> lm_head_formats;  // lm_head's candidates (empty: formats)
  std::string passes = "rtn";         // quant::PassesName of the pricing (export-aware unless rtn)
  bool block_cost = true;             // MoE units priced at the block output (ProbeOptions)
  bool block_frozen_routing = false;  // ... with the routing frozen (an ablation)
  int64_t block_layers = 2;           // ... through this many layers (ProbeOptions)
  int64_t block_samples = 0;          // ... re-running this many samples (0: all)
  int64_t hessian_samples = 0;        // the Hessians' own samples (0: the samples')
  int64_t sample_block = 0;           // samples per block of the canonical sums (0: one)
  bool per_token = true;              // output and token recorded (ProbeOptions::per_token)
  nlohmann::json ToJson() const;
};

// W/probe.json.
struct ProbeFile {
  nlohmann::json inputs;  // ProbeInputs::ToJson() (any object in hand-made files)
  ProbeModel model;
  ProbeCalibration calibration;
  std::vector<std::string> estimators;  // names of quant::CostEstimator, in order
  std::vector<std::string> formats;     // probed, in order
  std::vector<ProbeLinear> linears;
  std::string model_fingerprint() const;  // from `inputs`; "" if absent
  bool operator==(const ProbeFile&) const = default;
};

// NotFound (naming the probe command) when W/probe.json is missing.
Result<ProbeFile> ReadProbeFile(const WorkDir& w);
Status WriteProbeFile(const WorkDir& w, const ProbeFile& p);

// A unit's results.json (+ model.safetensors), atomically as the directory `dir`.
Status WriteProbeUnit(const std::string& dir, const ProbeUnit& u);
Result<ProbeUnit> ReadProbeUnit(const std::string& dir, bool with_vectors = false);

// Creates W/probe/inputs.json, or checks that an existing one holds the same inputs
// (InvalidArgument naming the differing keys otherwise).
Status CheckProbeInputs(const WorkDir& w, const nlohmann::json& inputs);

// W/probe/calibration: the chosen samples, I32 "ids" and "targets" [samples, seqlen]
// (`dir`: another directory of the same layout, e.g. hessian_calibration_dir()).
Status WriteCalibrationSamples(const WorkDir& w, const std::vector<engine::Sequence>& samples,
                               const std::string& dir = "");
Result<std::vector<engine::Sequence>> ReadCalibrationSamples(const WorkDir& w,
                                                             const std::string& dir = "");
// The samples the Linears' Hessians come from: W/probe/hessian_calibration when the probe
// wrote it, else the calibration samples themselves (older work dirs, --hessian-samples 0).
Result<std::vector<engine::Sequence>> ReadHessianSamples(const WorkDir& w);

// ---- Resume state of an unfinished probe ----

struct ProbeProgress {
  bool head = false;        // W/probe/head is finished
  bool mtp = false;         // the MTP unit (layer_LLLL, L = num_layers) is finished
  int64_t next_layer = -1;  // the next layer of the reverse sweep (-1: all finished)
  int64_t finished_layers = 0;
};
ProbeProgress ScanProbeProgress(const WorkDir& w, int64_t num_layers);

// dL/d(boundary) as W/probe/grad_NNNN (replaced if present); loading checks its size.
Status WriteBoundaryGrad(const WorkDir& w, int64_t boundary, std::span<const float> g);
Result<std::vector<float>> ReadBoundaryGrad(const WorkDir& w, int64_t boundary, size_t size);
void RemoveBoundaryGrad(const WorkDir& w, int64_t boundary);
// Removes W/probe entries whose names start with `prefix` ("grad_", "." for temp dirs).
void RemoveProbeEntries(const WorkDir& w, const std::string& prefix);

// ---- Allocation ----

struct AllocationTarget {
  enum class Kind { kBits, kKnee, kSize };
  Kind kind = Kind::kBits;
  double bits = 0;                                // kBits: the target; kKnee: the knee's bits
  uint64_t size_bytes = 0, kv_reserve_bytes = 0;  // kSize
  bool operator==(const AllocationTarget&) const = default;
};

struct AllocationAchieved {
  double bits_per_param = 0;
  uint64_t unit_bytes = 0, total_bytes = 0;
  double predicted_dloss = 0;
  bool optimal = false;
  bool operator==(const AllocationAchieved&) const = default;
};

// W/layer_config.json.
struct LayerConfig {
  nlohmann::json probe_inputs;        // the probe's "inputs"
  std::string cost;                   // estimator name
  std::string lm_head;                // its fixed format
  std::optional<std::string> visual;  // vision Linears' fixed format (null: no vision tower)
  AllocationTarget target;
  AllocationAchieved achieved;
  std::optional<double> knee_bits;
  // allocate --mtp-weight (the MTP units' costs were scaled by it); absent without an MTP
  // head (and in work dirs allocated before the option: weight 1).
  std::optional<double> mtp_weight;
  // allocate --measured-costs: the check-costs CSV whose measured KLs priced the units (`cost`
  // then prices only what it does not measure: MTP units, lm_head); absent otherwise.
  std::optional<std::string> measured_costs;
  std::map<std::string, std::string> formats;  // module -> format, every Linear
  bool operator==(const LayerConfig&) const = default;
};

// NotFound (naming the allocate command) when W/layer_config.json is missing.
Result<LayerConfig> ReadLayerConfig(const WorkDir& w);
Status WriteLayerConfig(const WorkDir& w, const LayerConfig& c);

// One point of the allocator's sweep (a row of W/pareto.csv).
struct ParetoPoint {
  double target_bits = 0, achieved_bits = 0;
  uint64_t unit_bytes = 0, total_bytes = 0;
  double predicted_dloss = 0;
  bool optimal = false;
  std::vector<int64_t> count, params;  // per format of the table (decision units, parameters)
  bool operator==(const ParetoPoint&) const = default;
};

// W/pareto.csv: target_bits, achieved_bits, unit_bytes, total_bytes, predicted_dloss,
// optimal, then count_<F> and params_<F> for every format F.
struct ParetoTable {
  std::vector<std::string> formats;
  std::vector<ParetoPoint> points;
  bool operator==(const ParetoTable&) const = default;
};

Result<ParetoTable> ReadParetoTable(const WorkDir& w);
Status WriteParetoTable(const WorkDir& w, const ParetoTable& t);

}  // namespace pq::pipeline
