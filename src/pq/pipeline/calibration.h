// Calibration samples for the probe (and export): documents from text, JSON lines or
// pre-tokenized input (eval_text.h), each BOS + tokens, concatenated into one token stream
// that is cut into consecutive non-overlapping chunks of seqlen + 1 tokens; `samples` of them
// are chosen by a seeded shuffle (our own splitmix64 generator, so the choice is the same on
// every platform and library version). A sample scores every position: ids = chunk[0, T),
// targets = chunk[1, T].
//
// Hessian samples: further chunks of the same shuffle (disjoint from the samples; the samples
// are the same whatever their number) from which the probe and the calibrated export build the
// Linears' input Hessians H = XᵀX for scale search and GPTQ. The probe then prices each
// candidate on tokens its GPTQ did not see: on SmolLM2's down_proj (K = 1536) GPTQ fitted to
// 16k calibration tokens halves its output error on those tokens but not on others (README
// "Pricing out of sample"), so pricing on the same tokens under-predicts it ~2×.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/engine/runner.h"
#include "pq/pipeline/eval_text.h"

namespace pq::pipeline {

struct CalibrationOptions {
  EvalInput input;
  int64_t samples = 64;
  int64_t seqlen = 512;
  uint64_t seed = 0;
  // Hessian samples: kAutoHessianSamples = `samples` when at least that many chunks are left
  // beyond the samples, else 0 (3 × samples until 2026-12-08: the export's KL was the same,
  // README "Pricing out of sample"); 0 = the Hessians come from the samples themselves.
  int64_t hessian_samples = kAutoHessianSamples;
  static constexpr int64_t kAutoHessianSamples = -1;
};

struct Calibration {
  std::vector<engine::Sequence> samples;
  std::vector<engine::Sequence> hessian_samples;  // disjoint from samples (may be empty)
  int64_t stream_tokens = 0;  // tokens in the whole input stream
  std::string tokens_hash;    // hex fingerprint of the chosen samples' ids
  int64_t scored_tokens() const;
};

// InvalidArgument (with the numbers and what to change) when the input has fewer than
// (samples + hessian_samples) * (seqlen + 1) tokens (auto hessian_samples: samples * ...).
Result<Calibration> LoadCalibration(const std::string& model_dir, const CalibrationOptions& o);

// Picks `samples` of the `chunks` chunk indices (distinct, in selection order), seeded.
std::vector<int64_t> ChooseChunks(int64_t chunks, int64_t samples, uint64_t seed);

}  // namespace pq::pipeline
