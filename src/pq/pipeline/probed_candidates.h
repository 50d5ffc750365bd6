// The candidates of a finished probe rebuilt from its work dir, bit for bit as the probe priced
// them (check-costs quantizes with these): RTN for probes with --passes rtn (and for lm_head,
// which export writes by RTN); otherwise the export's passes (quant::QuantizeLinear) on each
// Linear's input Hessian, recomputed from the probe's own calibration samples
// (W/probe/calibration) through the unquantized model exactly as the probe ran them — with the
// scale group's NVFP4 weight global scale and calibrated input global scale.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/engine/hessian_observer.h"
#include "pq/engine/runner.h"
#include "pq/formats/format.h"
#include "pq/model/weights.h"
#include "pq/pipeline/work_dir.h"
#include "pq/quant/export_quantizer.h"

namespace pq::pipeline {

// One Linear replaced by its candidate: the weight and run-time activation quantization export
// writes (act_format = the format; input_global_scale for NVFP4 only).
struct ProbedCandidate {
  std::string module;
  formats::FormatId format = formats::FormatId::kBF16;
  std::vector<float> w_hat;
  std::optional<float> input_global_scale;
  void ApplyTo(model::LinearWeights& l) const;
};

class ProbedCandidates {
 public:
  // `src` and `probe` must outlive this; `work` holds the probe's calibration samples.
  static Result<std::unique_ptr<ProbedCandidates>> Open(const model::WeightSource& src,
                                                        const ProbeFile& probe,
                                                        const std::string& work);
  // The candidate of `linear` (a body Linear or lm_head; not MTP or vision) in `f`.
  Result<ProbedCandidate> Make(const ProbeLinear& linear, formats::FormatId f);
  quant::Passes passes() const { return passes_; }

 private:
  ProbedCandidates(const model::WeightSource& src, const ProbeFile& probe)
      : src_(src), probe_(probe) {}
  // The scale group's bf16 weight amax and calibration input amax (as the probe's BeginLayer).
  Result<std::pair<float, float>> GroupAmax(const ProbeLinear& linear);
  // The Hessians of layer `layer`'s Linears (cached for the last layer asked).
  Result<const engine::HessianObserver*> Hessians(int64_t layer);

  const model::WeightSource& src_;
  const ProbeFile& probe_;
  quant::Passes passes_ = quant::Passes::kRtn;
  std::vector<engine::Sequence> samples_;
  std::unique_ptr<engine::Runner> runner_;  // export-aware: the probe's forward, boundaries kept
  int64_t h_layer_ = -1;
  std::unique_ptr<engine::HessianObserver> h_;
  std::map<std::string, std::pair<float, float>> group_amax_;
};

}  // namespace pq::pipeline
