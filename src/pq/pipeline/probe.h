// The `probe` stage (DESIGN §2–§3): one streaming pass over calibration samples that prices
// every candidate format of every Linear, written to a work dir another stage (allocate,
// report, export) reads without the model.
//
// Its work dir (W/probe/..., W/probe.json) is described and read/written by work_dir.h. A
// killed run resumes after the last finished layer (the forward sweep is recomputed; the
// reverse sweep restarts from the saved gradient) and produces byte-identical files, given
// the same --threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pq/core/exec_context.h"
#include "pq/core/status.h"
#include "pq/formats/format.h"
#include "pq/model/arch.h"
#include "pq/pipeline/calibration.h"
#include "pq/pipeline/work_dir.h"
#include "pq/quant/export_quantizer.h"

namespace pq::pipeline {

struct ProbeOptions {
  std::string model;
  std::string work;
  CalibrationOptions calib;
  std::vector<formats::FormatId> formats;  // empty: every format
  bool probe_lm_head = true;
  // lm_head's candidates when probed (empty: `formats`). quantize prices only the lm_head
  // format it exports (allocate keeps lm_head at a fixed format; the others' prices would
  // change no decision, and at a 49k vocabulary they cost as much as all the layers).
  std::vector<formats::FormatId> lm_head_formats;
  uint64_t memory_budget_bytes = 1000000000;  // stored boundaries and H (spill beyond)
  uint64_t cache_bytes = 2ull << 30;          // dequantized candidates of one layer
  // The passes candidates are priced after: the calibrated export's (search+gptq by default),
  // each candidate quantized by quant::QuantizeLinear on its H from the probe's own samples
  // (run through the layer in batches of hessian_batch_tokens, as export runs them, so layer
  // 0's H and candidates are the export's bits); rtn prices round-to-nearest. lm_head is
  // priced by RTN (export writes it so).
  quant::Passes passes = quant::Passes::kSearchGptq;
  int64_t min_tokens = 32;  // fewer calibration rows: priced by RTN, as export writes them
  quant::GptqOptions gptq;
  int64_t hessian_batch_tokens = 4096;  // also the batches of the block reruns
  // MoE layers: price every decision unit at the layer's output with the router re-run
  // (engine/block_cost.h, estimator "block"); off, "block" is the hessian value everywhere.
  bool block_cost = true;
  // false: the block reruns keep the unquantized layer's routing (an ablation; recorded in
  // the probe's inputs as "block_routing": "frozen").
  bool block_reroute = true;
  // Layers the block reruns follow a unit's error through: 1 the unit's own layer, weighted by
  // dL/d(its output); N: also the next N−1 layers (their routers too), weighted at the N-th
  // layer's output; 0: up to the last layer. Default 2: the next layer's routing changes are
  // most of what one layer misses (README "Which cost estimator", MoE).
  int64_t block_layers = 2;
  // Re-run only the first N calibration samples in the block reruns (0: all; the samples are
  // a seeded random choice, so the first N are a random subset): N/samples of their cost.
  int64_t block_samples = 0;
  // Sums over samples are accumulated per block of this many samples and the blocks' sums
  // folded in order (dist/block_fold.h): the same bytes on any number of MPI ranks, which take
  // whole blocks (at least one each). 0: one block, the plain running sums.
  int64_t sample_block = 0;
  // false: the estimators that need every token's output error, output and token, are not
  // recorded (null in probe.json; allocate refuses them) and the weight-error energies come
  // from each Linear's H over the priced tokens instead of one X·ΔWᵀ per sample and format
  // (engine::ProbeObserverOptions::per_token): most of the probe's per-sample matmuls.
  bool per_token = true;
  ExecContext exec;  // threads, progress, log level: installed for the call
};

struct ProbeSummary {
  std::string probe_json;  // W/probe.json
  int64_t linears = 0, layers = 0, resumed_layers = 0;
  int64_t tokens = 0;    // scored calibration tokens
  double calib_nll = 0;  // mean NLL of the model on the calibration samples

  // {probe, linears, layers, resumed_layers, tokens, calibration_nll}
  nlohmann::json ToJson() const;
};

Result<ProbeSummary> RunProbe(const ProbeOptions& o);

// Bytes of every tensor that is not a Linear weight as export writes it (floating tensors in
// BF16, others unchanged): embeddings, norms, biases, routers, buffers.
Result<uint64_t> OtherTensorBytes(const std::string& model, const model::ModelLayout& layout);

// Identity of a checkpoint without reading all of it (config, every tensor's name, dtype,
// shape and first 4 KiB): recorded by the probe, checked by export.
Result<std::string> ModelFingerprint(const std::string& model);

}  // namespace pq::pipeline
