// The streaming layer runner (DESIGN §2) — the one layer sweep of probe, calibrated export and
// eval: at most one decoder layer's weights resident, sequences batched up to batch_tokens,
// layer-boundary hidden states kept (spilled to the work dir beyond a memory budget), a
// forward sweep, the loss head (and the MTP head), and a reverse sweep that recomputes each
// layer from its saved input and backpropagates.
//
// Where per-layer work plugs in:
//   - model::LinearObserver (model/decoder.h): sees every Linear's input rows in a forward
//     pass (OnLinearInput: input amax, HessianObserver) and (x, dy) rows in the reverse sweep
//     (OnLinear: Fisher and probe statistics, ProbeObserver); experts see their routed rows.
//   - SweepHooks (below): per step of a forward sweep, observe the step's inputs on the
//     current boundary, then replace its weights (e.g. quantize them) before it computes the
//     next boundary — sequential calibrated export, block-level re-runs.
//   - LayerFn / BoundaryGradFn of BackwardFrom: a layer loaded / its input gradient ready.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/engine/boundary_store.h"
#include "pq/model/decoder.h"
#include "pq/model/weights.h"

namespace pq::engine {

// One sequence: its tokens and, per position, the token that position predicts
// (-1: not scored). Positions are 0..T-1 (each sequence is independent).
struct Sequence {
  std::vector<int32_t> ids;
  std::vector<int32_t> targets;
};

struct RunnerOptions {
  uint64_t memory_budget_bytes = 8ull << 30;  // for the stored layer boundaries
  std::string work_dir;                       // where boundaries spill ("" = /tmp)
  int64_t batch_tokens = 2048;                // sequences run together up to this many tokens
  bool progress = true;
  std::string forward_label = "forward";  // Forward's progress line
  // The loss head's logits (and their gradient) are computed in chunks of at most this many
  // bytes (engine/loss_head.h), never as one [T, V] matrix per sequence.
  uint64_t head_chunk_bytes = 64ull << 20;
  // Sample blocks (dist/block_fold.h): the sequences are samples first_sample, first_sample+1,
  // ... of a run cut into blocks of sample_block samples (0: one block). No batch crosses a
  // block, and on_block_end(last) runs after each block's last sequence in Forward's layer
  // passes, Head, Mtp, ObserveLayer and BackwardFrom (last: the runner's last block), where
  // sums over samples are folded.
  int64_t sample_block = 0;
  int64_t first_sample = 0;
  std::function<void(bool last)> on_block_end;
};

// One step of a forward sweep: the Linears that are about to compute their outputs from the
// current boundary — a decoder layer (0..L-1; L = the MTP layer) or the MTP's input
// projection mtp.fc alone.
struct SweepStep {
  int64_t layer = 0;
  bool mtp_fc = false;
  std::vector<model::LinearWeights*> linears;  // model::ForEachLinear order
};

// Per-step hooks of Runner::Forward / Runner::MtpForward. For every step, in order:
//   1. Observe(step): an observer returned here sees the step's Linear inputs computed from
//      the current boundary with the weights as loaded — an extra pass over the calibration
//      tokens; nullptr skips it;
//   2. Replace(step): may change the step's Linears (w, act_format, input_global_scale);
//   3. the step, with the replaced weights, computes the next boundary; an observer returned
//      by Along(step) (Forward only; it replaces Forward's `observer` for that run) sees its
//      Linear inputs — no extra pass;
//   4. After(step).
class SweepHooks {
 public:
  virtual ~SweepHooks() = default;
  virtual model::LinearObserver* Observe(const SweepStep& step) = 0;
  virtual Status Replace(const SweepStep& step) = 0;
  virtual model::LinearObserver* Along(const SweepStep&) { return nullptr; }
  virtual Status After(const SweepStep&) { return Status::Ok(); }
};

// The MTP head's tensors, its decoder layer and the head, as a caller already holds them
// (Runner::Mtp loads whichever is null).
struct MtpParts {
  const model::MtpWeights* mtp = nullptr;
  const model::LayerWeights* layer = nullptr;
  const model::HeadWeights* head = nullptr;
};

struct HeadResult {
  double nll_sum = 0;             // sum over scored tokens, nats
  int64_t scored = 0;             // number of scored tokens
  std::vector<double> block_nll;  // nll_sum of each sample block, from zero (RunnerOptions)
};

class Runner {
 public:
  Runner(const model::WeightSource& source, std::span<const Sequence> seqs, RunnerOptions o);

  // Forward sweep over all layers. keep_all: store every boundary (needed by Backward).
  // `observer` (optional) sees every Linear's input rows (OnLinearInput) in the pass that
  // computes the next boundary; `hooks` (optional) observe and replace each layer first.
  Status Forward(bool keep_all, model::LinearObserver* observer = nullptr,
                 SweepHooks* hooks = nullptr);
  // Boundary b in 0..L (0 = embeddings, L = last layer's output, before the final norm) of
  // all sequences, concatenated: [sum T, D]. All boundaries need Forward(true).
  Status Boundary(int64_t b, std::span<float> out) const;

  // Final norm + lm_head + cross-entropy per sequence. on_logits(s, row0, logits[R, V]) is
  // called for each sequence's token rows row0 .. row0+R-1 in order, in chunks of at most
  // head_chunk_bytes (may be empty; not with backward). With backward, also computes
  // dL/d(boundary L) for L = loss_scale * sum of scored NLLs.
  using LogitsFn = std::function<Status(size_t seq, int64_t row0, std::span<const float> logits)>;
  // `observer` (optional) sees lm_head's input rows (OnLinearInput) and, with backward,
  // its output gradients (OnLinear).
  // `weights` (optional): the head as the caller already holds it (e.g. to price lm_head) —
  // otherwise loaded here; at Qwen3.6's size each copy of lm_head is 2 GB.
  Result<HeadResult> Head(const LogitsFn& on_logits, bool backward, double loss_scale,
                          model::LinearObserver* observer = nullptr,
                          const model::HeadWeights* weights = nullptr);

  // The MTP head (architectures.md §4) on the last boundary: for each sequence and t = 0..T-3,
  // inputs embed(ids[t+1]) and the body's final-normed hidden state at t, target
  // targets[t+1] (= ids[t+2]); positions 0..T-3. on_logits(s, row0, logits[R, V]) per sequence
  // in chunks of rows as Head's.
  // With backward, the MTP layer's and mtp.fc's (x, dy) go to `observer` (not lm_head's: its
  // statistics stay the body's); the body is not differentiated (detached, as in training).
  // `observer` also sees every MTP Linear's input rows. L = loss_scale * sum of MTP NLLs.
  // `weights` (optional): the MTP tensors, its decoder layer and the head as the caller already
  // holds them — otherwise loaded here (an MTP layer of 256 experts is 3.2 GB in float32).
  Result<HeadResult> Mtp(const LogitsFn& on_logits, bool backward, double loss_scale,
                         model::LinearObserver* observer = nullptr, const MtpParts& weights = {});

  // The MTP head's forward sweep for sequential export (after Forward): step mtp.fc on the MTP
  // inputs [embed(t+1) ; final-normed body_t], then step the MTP layer (one sequence of T-2
  // positions at a time) on fc's outputs. The MTP layer's outputs have no consumer here.
  Status MtpForward(SweepHooks& hooks);

  // Reverse sweep from the head's gradient. `observer` sees every Linear (x, dy) rows;
  // on_grad(b, grad[sum T, D]) receives dL/d(boundary b) for b = L-1 .. 0.
  using BoundaryGradFn = std::function<Status(int64_t b, std::span<const float> grad)>;
  Status Backward(model::LinearObserver* observer, const BoundaryGradFn& on_grad);

  // The reverse sweep from layer `top` down to 0, starting from dy = dL/d(boundary top+1)
  // [sum T, D] (e.g. saved by an interrupted run). on_layer(l, weights, dy) runs after layer l
  // is loaded and before its batches, with dy = dL/d(boundary l+1), the gradient at the
  // layer's output; on_grad as above. Needs Forward(true).
  // on_layer may change w (block pricing swaps candidates in) but must leave it as loaded.
  using LayerFn =
      std::function<Status(int64_t l, model::LayerWeights& w, std::span<const float> dy)>;
  Status BackwardFrom(int64_t top, std::vector<float> dy, model::LinearObserver* observer,
                      const LayerFn& on_layer, const BoundaryGradFn& on_grad);
  // Layer l (weights w) run forward again from its stored input boundary (needs Forward(true)),
  // in batches of up to `batch_tokens`, for `observer` to see its Linears' inputs
  // (OnLinearInput) — e.g. the Hessians of the probe's export-aware pricing. The output is
  // discarded.
  Status ObserveLayer(int64_t l, const model::LayerWeights& w, model::LinearObserver& observer,
                      int64_t batch_tokens) const;
  // Layer l (weights w, e.g. with some Linears replaced) run forward again from its stored
  // input boundary (needs Forward(true)) in batches of up to `batch_tokens`: y[R, D] its output
  // for the first R token rows, which must be whole sequences (R = offset(n), or all). An MoE
  // layer's top-k choices [R, top_k] go to `topk` (optional); `fixed_topk` (optional,
  // [R, top_k]) routes by those instead (model::DecoderLayerForward).
  Status RerunLayer(int64_t l, const model::LayerWeights& w, int64_t batch_tokens,
                    std::span<float> y, std::vector<int32_t>* topk = nullptr,
                    std::span<const int32_t> fixed_topk = {}) const;
  // As RerunLayer, from the input x[R, D] instead of the stored boundary (e.g. the output of
  // an earlier RerunLayer: a window of layers run with a perturbation).
  Status RunLayerOn(int64_t l, const model::LayerWeights& w, std::span<const float> x,
                    int64_t batch_tokens, std::span<float> y, std::vector<int32_t>* topk = nullptr,
                    std::span<const int32_t> fixed_topk = {}) const;

  // dL/d(boundary L) from the last Head(..., backward=true).
  const std::vector<float>& head_grad() const { return d_final_; }

  int64_t total_tokens() const { return total_tokens_; }
  const model::ModelConfig& config() const { return src_.config(); }
  // Whether the stored boundaries went to the spill file.
  bool spilled() const { return store_.spilled(); }
  size_t offset(size_t seq) const { return offsets_[seq]; }
  // The first token row of each sample block (RunnerOptions::sample_block), then the end row.
  std::vector<size_t> BlockRows() const;
  size_t sequences() const { return seqs_.size(); }

 private:
  const model::WeightSource& src_;
  std::vector<Sequence> seqs_;
  RunnerOptions opt_;
  std::vector<size_t> offsets_;  // token offset of each sequence
  struct Batch {
    size_t offset = 0;  // first token row
    int64_t tokens = 0;
    std::vector<int64_t> lens;  // its sequences' lengths
  };
  std::vector<Batch> batches_;  // consecutive sequences run through a layer together

  // fn(first token row, lens) for consecutive sequences of the first `seqs` up to
  // batch_tokens each (at least one sequence per call).
  using BatchFn = std::function<void(size_t off, std::span<const int64_t> lens)>;
  void ForEachBatch(int64_t batch_tokens, size_t seqs, const BatchFn& fn) const;
  // Whether sequence s is the last of its sample block (RunnerOptions::sample_block).
  bool EndsBlock(size_t s) const;
  void BlockEnd(size_t s) const {
    if (opt_.on_block_end && EndsBlock(s)) opt_.on_block_end(s + 1 == seqs_.size());
  }
  // The last sequence of the batch at token row `off` of `lens` sequences.
  size_t LastSequence(size_t off, std::span<const int64_t> lens) const;
  // The number of leading sequences that hold exactly `rows` token rows (nullopt: none).
  std::optional<size_t> SequencesIn(size_t rows) const;
  // Runs every batch of h [sum T, D] through layer w into next [sum T, D].
  void RunLayer(const model::LayerWeights& w, const model::RopeCache& rope,
                std::span<const float> h, std::span<float> next,
                model::LinearObserver* observer) const;
  // The MTP inputs of sequence s: x[T-2, 2D] = [RMSNorm_e(embed(ids[t+1])) ;
  // RMSNorm_h(RMSNorm_final(boundary L)_t)] for t = 0..T-3 (needs T > 2).
  Status MtpInput(size_t s, const model::HeadWeights& hw, const model::MtpWeights& mw,
                  std::span<float> x) const;
  int64_t total_tokens_ = 0, max_tokens_ = 0;
  BoundaryStore store_;
  std::vector<float> final_;    // boundary L [sum T, D]
  std::vector<float> d_final_;  // dL/d boundary L
};

}  // namespace pq::engine
