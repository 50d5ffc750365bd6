// The probe's observer (DESIGN §2–§3): while a layer is resident in the reverse sweep it
// accumulates, per Linear (and per expert), the calibration statistics of linear_stats.h and,
// for every candidate format, the output-error energies that price the candidate with its
// exact quantizer — RTN exactly as export writes it (fused siblings share the NVFP4 weight
// global scale) and the run-time activation quantization of formats that quantize inputs
// (NVFP4 with its calibrated input_global_scale, MXFP8, MXFP4, FP8).
// Export-aware pricing (options.passes other than rtn): each candidate is instead the weight
// the calibrated export writes — quant::QuantizeLinear with the export's passes on the
// Linear's input Hessian (BeginLayer's `hessians`, from the same calibration samples) — so the
// energies price the error export leaves after scale search and GPTQ, not RTN's.
//
// Use: Forward(keep_all, &probe) records each Linear's input amax (OnLinearInput); then per
// layer BeginLayer(weights) → Backward's OnLinear calls → FinishLayer() returns the results.
// Like LinearStatsObserver, each OnLinear call must carry exactly one calibration sample.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/dist/block_fold.h"
#include "pq/engine/hessian_observer.h"
#include "pq/engine/linear_stats.h"
#include "pq/formats/format.h"
#include "pq/model/weights.h"
#include "pq/quant/cost.h"
#include "pq/quant/export_quantizer.h"

namespace pq::engine {

struct CandidateResult {
  formats::FormatId format;
  uint64_t bytes = 0;     // exact bytes on disk (scales included, bias excluded)
  double weight_mse = 0;  // mean (W − Ŵ)²
  std::array<double, quant::kNumEstimators> cost{};  // predicted Δloss, nats/token
  // MoE-layer units priced at the block output: calibration tokens whose top-k expert set
  // changed when this candidate's unit was quantized (the unit's count, on every member).
  std::optional<int64_t> routing_changes;
};

struct LinearResult {
  std::string module;
  int64_t rows = 0, cols = 0;
  int64_t samples = 0, tokens = 0;          // samples that reached it, rows seen (routed tokens)
  double fisher_trace = 0;                  // fisher_sum / T
  float input_amax = 0;                     // calibration inputs (forward sweep)
  std::vector<float> g2_out, x2_in;         // per-token means: g2_out / T, x2_in / T
  std::vector<CandidateResult> candidates;  // feasible formats only, in requested order
};

struct ProbeObserverOptions {
  std::vector<formats::FormatId> formats;
  // Global-scale group of every Linear (LinearInfo::scale_group: fused siblings share the
  // NVFP4 weight and input global scales); absent = its own.
  std::map<std::string, std::string> unit_of;
  // Routed experts' Linears (model::LinearInfo::is_routed_expert): they see a few of the
  // tokens, so X·ΔWᵀ per sample costs less than ΔW H ΔWᵀ once; they keep it (per_token off).
  std::set<std::string> routed;
  int64_t total_tokens = 0;  // T: scored calibration tokens
  // Cache the candidates' dequantized weights of a layer up to this many bytes; beyond it
  // RTN candidates are re-quantized on every call and export-aware ones are kept packed and
  // dequantized on every call (slower, less memory).
  uint64_t cache_bytes = 2ull << 30;
  // The passes the candidates are priced after (rtn: RTN; otherwise export-aware where
  // BeginLayer gets hessians). min_tokens and gptq as the calibrated export's.
  quant::Passes passes = quant::Passes::kRtn;
  int64_t min_tokens = 32;
  quant::GptqOptions gptq;
  // false: the estimators that need each token's output error (output, token) are not
  // recorded — their prices are NaN — and no per-token weight error is formed: e_weight comes
  // from the priced tokens' own input Hessian H_p = Σ XᵀX (accumulated once per input group,
  // as the export's H is) as ΔW_o H_p ΔW_oᵀ, exactly the Σ_t (X ΔWᵀ)² it equals, instead of
  // one X·ΔWᵀ per sample and format — where that is cheaper: not for routed experts nor where
  // K > total_tokens, and only for the layer's first input groups whose H_p fit cache_bytes.
  // Likewise the activation error energy of the formats that quantize inputs, Σ_t ((X −
  // Q(X)) Wᵀ)², comes from Σ ΔXᵀΔX per input group where that costs less than the products
  // (K < 2 × the group's output rows: q/k/v, gate/up, not down_proj).
  bool per_token = true;
};

class ProbeObserver : public model::LinearObserver {
 public:
  explicit ProbeObserver(ProbeObserverOptions o);

  void OnLinearInput(const model::LinearWeights& linear, std::span<const float> x,
                     int64_t rows) override;
  // Prepares the candidates of `linears` (which must stay alive until FinishLayer).
  // `hessians`: H of every linear (HessianObserver::Want'ed by scale group) from the layer's
  // calibration inputs, for export-aware pricing; nullptr prices RTN candidates (lm_head,
  // which export writes by RTN).
  // `formats`: the candidates priced for these Linears (empty: options.formats).
  Status BeginLayer(const std::vector<const model::LinearWeights*>& linears,
                    const HessianObserver* hessians = nullptr,
                    std::span<const formats::FormatId> formats = {});
  void OnLinear(const model::LinearWeights& linear, std::span<const float> x,
                std::span<const float> dy, int64_t rows) override;
  // The same for output rows [row0, row0 + n) (the chunked loss head's lm_head): RTN candidates
  // that are not cached are quantized for those rows alone (every format's scales are
  // row-local given the unit's global scales), so no [N, K] or [T, N] scratch is needed.
  void OnLinearRows(const model::LinearWeights& linear, int64_t row0, int64_t n,
                    std::span<const float> x, std::span<const float> dy, int64_t rows) override;
  // Costs of every candidate of the layer's Linears (in BeginLayer order); resets state.
  Result<std::vector<LinearResult>> FinishLayer();

  // A candidate of the current layer as it was priced (between BeginLayer and FinishLayer):
  // Ŵ (held in `scratch` when not cached) and the NVFP4 input global scale of its Linear.
  struct PricedCandidate {
    std::span<const float> w_hat;
    float input_global_scale = 1;
  };
  Result<PricedCandidate> Priced(const std::string& module, formats::FormatId f,
                                 std::vector<float>& scratch) const;

  // Every sum over samples of the current layer (statistics and candidate energies, in
  // BeginLayer order) for the canonical fold across sample blocks and ranks (probe_sums.cc).
  // An accumulator added to this class must be added there too (tests/dist checks R = 1, 2, 3).
  void AddSums(dist::Sums& sums);

  const std::map<std::string, float>& input_amax() const { return amax_; }
  void set_input_amax(std::map<std::string, float> a) { amax_ = std::move(a); }

 private:
  struct Candidate {
    formats::FormatId format;
    quant::CandidateEnergies e;
    std::vector<float> w_hat;              // cached dequantized weight, or empty
    std::vector<formats::QTensor> packed;  // export-aware and not cached: the stored tensors
  };
  struct Active {
    const model::LinearWeights* linear = nullptr;
    float weight_global_scale = 1, input_global_scale = 1;
    bool h_route = false;    // e_weight from priced_h_ at FinishLayer (see ChooseHRoute)
    bool act_route = false;  // e_act and dx2 from act_h_ at FinishLayer (see ChooseHRoute)
    std::vector<Candidate> cands;
  };
  Result<std::vector<float>> CandidateWeight(const Active& a, formats::FormatId f) const;
  // Export-aware: the candidate exactly as the export's passes write it on H.
  // `factors`: H's factorisations, shared by the layer's formats and fused siblings.
  Result<quant::QuantizedLinear> ExportCandidate(const Active& a, formats::FormatId f,
                                                 const HessianObserver& hessians,
                                                 quant::GptqFactorCache* factors) const;
  Status PrepareCandidate(const Active& a, Candidate& c, bool cache,
                          const HessianObserver* hessians, quant::GptqFactorCache* factors) const;
  Status PrepareCandidates(std::vector<Active>& acts, bool cache,
                           const HessianObserver* hessians) const;
  // Ŵ of c: cached, dequantized from its packed tensors, or re-quantized by RTN into `fresh`;
  // rows [row0, row0 + n) of it (n < 0: all rows).
  Result<std::span<const float>> WeightOf(const Active& a, const Candidate& c,
                                          std::vector<float>& fresh, int64_t row0 = 0,
                                          int64_t n = -1) const;
  // Energies of output rows [row0, row0 + n) from one sample's x[T, K] and dy[T, n].
  Status Accumulate(Active& a, std::span<const float> x, std::span<const float> dy, int64_t rows,
                    int64_t row0, int64_t n);
  std::string UnitOf(const std::string& module) const;  // its global-scale (input) group
  // The energies formed at FinishLayer from the second moments: e_weight from H_p (h_route),
  // e_act and dx2 from the activation-error moments (act_route).
  Status EnergiesFromMoments(const Active& a, std::span<const float> w_hat, Candidate& c) const;
  // Sets each Active's h_route and act_route (ProbeObserverOptions::per_token) and wants
  // their moments.
  void ChooseHRoute(std::vector<Active>& acts);
  // One sample's activation-error moments ΔXᵀΔX of a group leader with act_route.
  Status AccumulateActMoments(const Active& a, std::span<const float> x, int64_t rows);

  ProbeObserverOptions opt_;
  std::map<std::string, float> amax_;
  LinearStatsObserver stats_;
  HessianObserver priced_h_;  // H_p of the priced samples (h_route layers)
  // Per activation format f, Σ ΔXᵀΔX with ΔX = X − Q_f(X) over the priced samples, one per
  // input group (act_route): e_act[o] = W_o ΔH W_oᵀ and dx2 = diag ΔH at FinishLayer, instead
  // of one (X − Q(X))·Wᵀ per sample, Linear and format.
  std::map<formats::FormatId, HessianObserver> act_h_;
  std::vector<std::string> order_;
  std::map<std::string, Active> active_;
  Status error_;  // first failure inside OnLinear (which cannot return one)
};

}  // namespace pq::engine
