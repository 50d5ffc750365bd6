#include "pq/engine/perturbed_eval.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "pq/compute/ops.h"
#include "pq/engine/loss_head.h"

namespace pq::engine {
namespace {

namespace ops = compute::cpu;

// log Σ_j exp(z_j) in double (the cross-entropy's float log-sum-exp is off by ~1e-7 nats,
// as much as a small perturbation's KL per token).
double LogSumExp(std::span<const float> z) {
  const float mx = *std::max_element(z.begin(), z.end());
  double sum = 0;
  for (float x : z) sum += std::exp(static_cast<double>(x - mx));
  return mx + std::log(sum);
}

// Σ_j p_j z_j − lse · Σ_j p_j = Σ_j p_j log q_j for q = softmax(z): one code path for the
// source's own term and every perturbation's, so the identity perturbation gives KL = 0 exactly.
double ExpectedLogProb(std::span<const float> p, std::span<const float> z, double lse) {
  double dot = 0, mass = 0;
  for (size_t j = 0; j < p.size(); ++j) {
    dot += static_cast<double>(p[j]) * z[j];
    mass += p[j];
  }
  return dot - lse * mass;
}

uint64_t LayerBytes(model::LayerWeights& w) {
  uint64_t n = w.input_norm.size() + w.post_norm.size() + w.router.w.size();
  model::ForEachLinear(w, [&](model::LinearWeights& l) { n += l.w.size(); });
  return n * sizeof(float);
}

}  // namespace

Result<std::unique_ptr<PerturbedEval>> PerturbedEval::Create(const model::WeightSource& src,
                                                             std::span<const Sequence> windows,
                                                             const PerturbedEvalOptions& o) {
  int64_t scored = 0;
  for (const Sequence& s : windows)
    for (int32_t t : s.targets) scored += t >= 0;
  if (scored == 0) return InvalidArgument("no tokens to score (is the text empty?)");
  const uint64_t probs_bytes =
      static_cast<uint64_t>(scored) * static_cast<uint64_t>(src.config().vocab) * sizeof(float);
  if (probs_bytes > o.max_probs_bytes)
    return InvalidArgument("the source's next-token probabilities at " + std::to_string(scored) +
                           " scored tokens take " + std::to_string(probs_bytes >> 20) +
                           " MiB (limit " + std::to_string(o.max_probs_bytes >> 20) +
                           " MiB): measure on fewer tokens (--max-docs)");
  std::unique_ptr<PerturbedEval> e(new PerturbedEval(src, windows, o));
  PQ_RETURN_IF_ERROR(e->runner_.Forward(/*keep_all=*/true));
  PQ_ASSIGN_OR_RETURN(e->head_, src.LoadHead());
  uint64_t cached = 0;
  for (int64_t l = 0; l < src.config().num_layers; ++l) {
    PQ_ASSIGN_OR_RETURN(model::LayerWeights w, src.LoadLayer(l));
    cached += LayerBytes(w);
    if (cached > o.layer_cache_bytes) break;
    e->cache_.push_back(std::move(w));
  }
  std::vector<float> h(static_cast<size_t>(e->runner_.total_tokens() * src.config().hidden));
  PQ_RETURN_IF_ERROR(e->runner_.Boundary(src.config().num_layers, h));
  e->scored_ = scored;
  e->probs_.reserve(static_cast<size_t>(probs_bytes / sizeof(float)));
  PQ_ASSIGN_OR_RETURN(PerturbedSums base, e->HeadSums(h, e->head_));
  e->base_nll_ = base.nll;
  return e;
}

Result<const model::LayerWeights*> PerturbedEval::Layer(int64_t l, model::LayerWeights& scratch) {
  if (static_cast<size_t>(l) < cache_.size()) return &cache_[static_cast<size_t>(l)];
  PQ_ASSIGN_OR_RETURN(scratch, src_.LoadLayer(l));
  return &scratch;
}

Result<PerturbedSums> PerturbedEval::Measure(int64_t layer, const ReplaceFn& replace) {
  const model::ModelConfig& c = src_.config();
  const int64_t layers = c.num_layers;
  if (layer < 0 || layer > layers)
    return InvalidArgument("PerturbedEval::Measure: layer " + std::to_string(layer) +
                           " is not in 0.." + std::to_string(layers));
  const int64_t batch = opt_.runner.batch_tokens;
  std::vector<float> h(static_cast<size_t>(runner_.total_tokens() * c.hidden)), next(h.size());
  if (layer == layers) {
    PQ_RETURN_IF_ERROR(runner_.Boundary(layers, h));
    model::HeadWeights head = head_;
    PQ_RETURN_IF_ERROR(replace(head.lm_head));
    return HeadSums(h, head);
  }
  {
    model::LayerWeights scratch;
    PQ_ASSIGN_OR_RETURN(const model::LayerWeights* src_layer, Layer(layer, scratch));
    model::LayerWeights w = *src_layer;
    Status st = Status::Ok();
    model::ForEachLinear(w, [&](model::LinearWeights& l) {
      if (st.ok()) st = replace(l);
    });
    PQ_RETURN_IF_ERROR(st);
    PQ_RETURN_IF_ERROR(runner_.RerunLayer(layer, w, batch, h));
  }
  for (int64_t l = layer + 1; l < layers; ++l) {
    model::LayerWeights scratch;
    PQ_ASSIGN_OR_RETURN(const model::LayerWeights* w, Layer(l, scratch));
    PQ_RETURN_IF_ERROR(runner_.RunLayerOn(l, *w, h, batch, next));
    h.swap(next);
  }
  return HeadSums(h, head_);
}

Result<PerturbedSums> PerturbedEval::HeadSums(std::span<const float> h,
                                              const model::HeadWeights& head) {
  const model::ModelConfig& c = src_.config();
  const int64_t d = c.hidden, v = c.vocab;
  const auto vs = static_cast<size_t>(v);
  const bool record = probs_.empty();
  PerturbedSums sums;
  size_t k = 0;  // scored position
  for (size_t s = 0; s < seqs_.size(); ++s) {
    const Sequence& seq = seqs_[s];
    const auto t = static_cast<int64_t>(seq.ids.size());
    std::vector<float> n(static_cast<size_t>(t * d)), rstd(static_cast<size_t>(t)),
        nll(static_cast<size_t>(t)), lse(static_cast<size_t>(t));
    ops::RmsNorm(h.subspan(runner_.offset(s) * static_cast<size_t>(d), static_cast<size_t>(t * d)),
                 head.final_norm, static_cast<float>(c.rms_eps), c.norm_offset, n, rstd, t, d);
    PQ_RETURN_IF_ERROR(LogitsByTokenChunks(
        head.lm_head, n, t, opt_.runner.head_chunk_bytes,
        [&](int64_t row0, std::span<const float> logits) -> Status {
          const auto r0 = static_cast<size_t>(row0), rows = logits.size() / vs;
          ops::CrossEntropy(logits, std::span(seq.targets).subspan(r0, rows),
                            std::span(nll).subspan(r0, rows), std::span(lse).subspan(r0, rows),
                            static_cast<int64_t>(rows), v);
          for (size_t i = 0; i < rows; ++i) {
            if (seq.targets[r0 + i] < 0) continue;
            const auto z = logits.subspan(i * vs, vs);
            const double lse_z = LogSumExp(z);
            sums.nll += nll[r0 + i];
            if (record) {
              const size_t at = probs_.size();
              probs_.resize(at + vs);
              for (size_t j = 0; j < vs; ++j)
                probs_[at + j] = static_cast<float>(std::exp(static_cast<double>(z[j]) - lse_z));
              plogp_.push_back(
                  ExpectedLogProb(std::span<const float>(probs_).subspan(at, vs), z, lse_z));
            } else {
              sums.kl +=
                  plogp_[k] -
                  ExpectedLogProb(std::span<const float>(probs_).subspan(k * vs, vs), z, lse_z);
            }
            ++k;
          }
          return Status::Ok();
        }));
  }
  return sums;
}

}  // namespace pq::engine
