#include "pq/engine/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <optional>

#include "pq/compute/ops.h"
#include "pq/model/decoder.h"

namespace pq::engine {
namespace {

namespace ops = compute::cpu;

// splitmix64 (Steele, Lea, Flood 2014), as in pipeline/calibration.cc.
uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1): the top 53 bits of one draw.
double Uniform01(uint64_t& state) {
  return static_cast<double>(SplitMix64(state) >> 11) * 0x1.0p-53;
}

uint64_t LinearBytes(const model::LinearWeights& l) {
  return static_cast<uint64_t>(l.w.size() + l.b.size()) * sizeof(float);
}

// float32 bytes of a loaded layer.
uint64_t LayerBytes(const model::LayerWeights& w) {
  uint64_t b = static_cast<uint64_t>(w.input_norm.size() + w.post_norm.size() + w.q_norm.size() +
                                     w.k_norm.size()) *
               sizeof(float);
  for (const auto* l : {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down, &w.router})
    b += LinearBytes(*l);
  for (const auto& e : w.experts)
    for (const auto* l : {&e.gate, &e.up, &e.down}) b += LinearBytes(*l);
  return b;
}

// The model's next-token logits for a sequence: layers resident or streamed.
class NextTokenModel {
 public:
  NextTokenModel(const model::WeightSource& src, int64_t max_tokens)
      : src_(src), rope_(model::RopeCache::Make(src.config(), std::max<int64_t>(max_tokens, 1))) {}

  Status Load(uint64_t resident_bytes) {
    PQ_ASSIGN_OR_RETURN(head_, src_.LoadHead());
    const int64_t layers = src_.config().num_layers;
    if (layers == 0) return Status::Ok();
    PQ_ASSIGN_OR_RETURN(model::LayerWeights first, src_.LoadLayer(0));
    // Layer 0's size times the layer count: about the total (MoE and dense layers may differ).
    if (LayerBytes(first) * static_cast<uint64_t>(layers) > resident_bytes) return Status::Ok();
    layers_.push_back(std::move(first));
    for (int64_t l = 1; l < layers; ++l) {
      PQ_ASSIGN_OR_RETURN(model::LayerWeights w, src_.LoadLayer(l));
      layers_.push_back(std::move(w));
    }
    return Status::Ok();
  }

  bool resident() const { return !layers_.empty() || src_.config().num_layers == 0; }

  // logits[V] after the last token of `ids`.
  Status Logits(std::span<const int32_t> ids, std::span<float> logits) {
    const model::ModelConfig& c = src_.config();
    const int64_t d = c.hidden, t = static_cast<int64_t>(ids.size());
    h_.resize(static_cast<size_t>(t * d));
    next_.resize(h_.size());
    PQ_RETURN_IF_ERROR(src_.Embed(ids, h_));
    const int64_t lens[1] = {t};
    for (int64_t l = 0; l < c.num_layers; ++l) {
      std::optional<model::LayerWeights> streamed;
      const model::LayerWeights* w = nullptr;
      if (resident()) {
        w = &layers_[static_cast<size_t>(l)];
      } else {
        PQ_ASSIGN_OR_RETURN(streamed, src_.LoadLayer(l));
        w = &*streamed;
      }
      model::DecoderLayerForward(c, *w, rope_, h_, next_, lens, nullptr);
      h_.swap(next_);
    }
    // Only the last position: the norm and lm_head are row-wise.
    std::vector<float> n(static_cast<size_t>(d)), rstd(1);
    ops::RmsNorm(std::span<const float>(h_).subspan(static_cast<size_t>((t - 1) * d)),
                 head_.final_norm, static_cast<float>(c.rms_eps), c.norm_offset, n, rstd, 1, d);
    model::LinearForward(n, head_.lm_head, logits, 1);
    return Status::Ok();
  }

 private:
  const model::WeightSource& src_;
  model::RopeCache rope_;
  model::HeadWeights head_;
  std::vector<model::LayerWeights> layers_;  // all of them, or none (streamed)
  std::vector<float> h_, next_;
};

// -log softmax(logits)[tok], in double.
double TokenNll(std::span<const float> logits, int32_t tok) {
  const double mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - mx);
  return mx + std::log(sum) - static_cast<double>(logits[static_cast<size_t>(tok)]);
}

}  // namespace

const char* StopReasonName(StopReason r) {
  switch (r) {
    case StopReason::kEos:
      return "eos";
    case StopReason::kMaxPositions:
      return "max_positions";
    case StopReason::kMaxNewTokens:
      break;
  }
  return "max_new_tokens";
}

int32_t ChooseToken(std::span<const float> logits, double temperature, double top_p,
                    uint64_t& rng_state) {
  const size_t v = logits.size();
  if (temperature <= 0) {
    size_t best = 0;
    for (size_t i = 1; i < v; ++i)
      if (logits[i] > logits[best] || (std::isnan(logits[best]) && !std::isnan(logits[i])))
        best = i;
    return static_cast<int32_t>(best);
  }
  double mx = -INFINITY;
  for (float x : logits)
    if (x > mx) mx = x;
  std::vector<double> p(v);
  for (size_t i = 0; i < v; ++i) {
    const double e = std::exp((static_cast<double>(logits[i]) - mx) / temperature);
    p[i] = std::isnan(e) ? 0.0 : e;
  }
  std::vector<int32_t> order(v);
  std::iota(order.begin(), order.end(), 0);
  size_t keep = v;
  double mass = 0;
  if (top_p < 1.0) {
    // Most probable first; equal probabilities by id, so the order is fully specified.
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      const double pa = p[static_cast<size_t>(a)], pb = p[static_cast<size_t>(b)];
      return pa != pb ? pa > pb : a < b;
    });
    const double total = std::accumulate(p.begin(), p.end(), 0.0);
    keep = 0;
    while (keep < v && (keep == 0 || mass < top_p * total))
      mass += p[static_cast<size_t>(order[keep++])];
  } else {
    for (double x : p) mass += x;
  }
  const double u = Uniform01(rng_state) * mass;
  double acc = 0;
  for (size_t j = 0; j < keep; ++j) {
    acc += p[static_cast<size_t>(order[j])];
    if (u < acc) return order[j];
  }
  // u == mass after rounding: the last kept token with nonzero probability.
  for (size_t j = keep; j-- > 0;)
    if (p[static_cast<size_t>(order[j])] > 0) return order[j];
  return order[0];
}

Result<GenerateResult> Generate(const model::WeightSource& model,
                                std::span<const int32_t> prompt_ids, const GenerateOptions& o,
                                const std::function<void(int32_t)>& on_token) {
  const model::ModelConfig& c = model.config();
  if (prompt_ids.empty())
    return InvalidArgument("generate: the prompt has no tokens (give a prompt or keep BOS)");
  if (o.max_new_tokens < 0) return InvalidArgument("generate: -n must be >= 0");
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
    return InvalidArgument("generate: --temperature must be a finite number >= 0");
  if (!(o.top_p > 0 && o.top_p <= 1)) return InvalidArgument("generate: --top-p must be in (0, 1]");
  const auto prompt_len = static_cast<int64_t>(prompt_ids.size());
  const int64_t max_pos = c.max_positions;
  if (max_pos > 0 && prompt_len > max_pos)
    return InvalidArgument("generate: the prompt has " + std::to_string(prompt_len) +
                           " tokens, more than the model's max_position_embeddings " +
                           std::to_string(max_pos));
  std::vector<int32_t> eos = o.eos_ids;
  if (eos.empty() && c.eos_id >= 0) eos.push_back(c.eos_id);

  const auto load_start = std::chrono::steady_clock::now();
  int64_t cap = prompt_len + o.max_new_tokens;
  if (max_pos > 0) cap = std::min(cap, max_pos);
  NextTokenModel m(model, cap);
  PQ_RETURN_IF_ERROR(m.Load(o.resident_bytes));

  GenerateResult r;
  r.resident = m.resident();
  const auto start = std::chrono::steady_clock::now();
  r.load_seconds = std::chrono::duration<double>(start - load_start).count();
  std::vector<int32_t> seq(prompt_ids.begin(), prompt_ids.end());
  std::vector<float> logits(static_cast<size_t>(c.vocab));
  uint64_t rng = o.seed;
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    if (max_pos > 0 && static_cast<int64_t>(seq.size()) >= max_pos) {
      r.stop = StopReason::kMaxPositions;
      break;
    }
    PQ_RETURN_IF_ERROR(m.Logits(seq, logits));
    const int32_t tok = ChooseToken(logits, o.temperature, o.top_p, rng);
    seq.push_back(tok);
    r.tokens.push_back(tok);
    r.nll.push_back(TokenNll(logits, tok));
    if (on_token) on_token(tok);
    if (std::find(eos.begin(), eos.end(), tok) != eos.end()) {
      r.stop = StopReason::kEos;
      break;
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!r.tokens.empty()) {
    r.mean_nll = std::accumulate(r.nll.begin(), r.nll.end(), 0.0) /
                 static_cast<double>(r.tokens.size());
    r.tokens_per_s = r.seconds > 0 ? static_cast<double>(r.tokens.size()) / r.seconds : 0;
  }
  return r;
}

}  // namespace pq::engine
