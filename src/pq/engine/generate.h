// Text generation with our own forward pass (the `generate` command's engine).
//
// Each step runs the model over the whole current sequence (there is no KV cache) and takes
// the last position's logits: O(n^2) in the sequence length, fine for the small models this
// is meant for. When all decoder layers fit in `resident_bytes` (float32), they are loaded
// once and kept; otherwise each step streams them one at a time as the Runner does.
//
// Choice of the next token: temperature 0 is greedy (argmax, the lowest id on ties, as
// torch.argmax); temperature T > 0 samples from softmax(logits / T), restricted to the
// smallest set of most probable tokens whose probability reaches top_p (ties in probability
// ordered by id). The random numbers are our own splitmix64 stream seeded with `seed`, one
// draw per step, turned into a double in [0, 1) from its top 53 bits: the same seed gives the
// same draws on every platform (no std::*_distribution).
//
// Stops after max_new_tokens new tokens, at an EOS (the EOS is the last new token), or when
// the sequence reaches the model's max_position_embeddings.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/model/weights.h"

namespace pq::engine {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  double temperature = 0;        // 0: greedy
  double top_p = 1.0;            // (0, 1]; used only when temperature > 0
  uint64_t seed = 0;             // sampling RNG seed
  std::vector<int32_t> eos_ids;  // stop tokens; empty: the model config's eos_token_id
  uint64_t resident_bytes = 4ull << 30;  // keep all layers loaded when they fit
};

enum class StopReason { kMaxNewTokens, kEos, kMaxPositions };
const char* StopReasonName(StopReason r);  // "max_new_tokens", "eos", "max_positions"

struct GenerateResult {
  std::vector<int32_t> tokens;  // the new tokens (an EOS that stopped generation included)
  std::vector<double> nll;      // per new token: -log p(token | prefix) under the model (T = 1)
  double mean_nll = 0;          // mean of `nll` (0 when no token was generated)
  StopReason stop = StopReason::kMaxNewTokens;
  bool resident = false;        // all layers were kept loaded
  double load_seconds = 0;      // loading the weights
  double seconds = 0;           // wall time of the generation loop (loading excluded)
  double tokens_per_s = 0;      // new tokens / seconds
};

// Generates from `prompt_ids` (BOS included by the caller if wanted; at least one token).
// on_token (optional) is called with each new token as soon as it is chosen.
Result<GenerateResult> Generate(const model::WeightSource& model,
                                std::span<const int32_t> prompt_ids,
                                const GenerateOptions& options,
                                const std::function<void(int32_t)>& on_token = nullptr);

// The next-token choice on one logits row, as Generate does it. `rng_state` is the
// splitmix64 state (advanced by one draw when temperature > 0).
int32_t ChooseToken(std::span<const float> logits, double temperature, double top_p,
                    uint64_t& rng_state);

}  // namespace pq::engine
