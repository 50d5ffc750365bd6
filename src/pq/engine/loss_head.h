// The loss head without a [tokens × vocabulary] matrix (issue 14): cross-entropy of
// logits = Q_a(n) · lm_headᵀ and its gradient computed over chunks of the vocabulary, so a
// sample of 1024 tokens over Qwen3.6's 248,320-token vocabulary needs one chunk's logits
// (tens of MB), not 2 GB of logits and 2 GB of their gradient.
//
// Two passes over the chunks: the first combines each chunk's log-sum-exp into the whole
// vocabulary's (and picks the target's logit), the second recomputes each chunk's logits
// for its gradient, which an observer sees as a slice of lm_head's output rows
// (LinearObserver::OnLinearRows) and which is folded into dL/dn chunk by chunk. When one chunk
// holds the whole vocabulary (every test model; SmolLM2 up to 341 tokens per sample) it is the
// unchunked computation, bit for bit.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "pq/core/status.h"
#include "pq/model/decoder.h"
#include "pq/model/weights.h"

namespace pq::engine {

// Vocabulary rows per chunk: the largest count whose logits [T, Vc] fit `budget_bytes`, at
// least 64 (or V), at most V.
int64_t VocabChunkRows(int64_t tokens, int64_t vocab, uint64_t budget_bytes);

struct LossHeadOptions {
  uint64_t chunk_bytes = 64ull << 20;  // the logits of one chunk (and their gradient)
  float scale = 1;                     // L = scale · Σ scored NLL
};

// nll[T]: each token's NLL (0 where targets < 0) for n[T, D] (final-normed hidden states)
// through `head`. With dn non-empty, also dn[T, D] += dL/dn (straight through the activation
// quantization, as LinearForward's backward), and `observer` (optional) gets lm_head's
// (n, dlogits) — OnLinearRows per chunk, or OnLinear when one chunk holds the vocabulary.
// `observer` also sees n (OnLinearInput) first.
void ChunkedCrossEntropy(const model::LinearWeights& head, std::span<const float> n,
                         std::span<const int32_t> targets, int64_t t, const LossHeadOptions& o,
                         std::span<float> nll, std::span<float> dn,
                         model::LinearObserver* observer = nullptr);

// The logits of n[T, D] in chunks of whole token rows whose logits fit `chunk_bytes` (at least
// one row): on_rows(row0, logits[R, V]) for rows row0 .. row0+R-1, in order.
using LogitRowsFn = std::function<Status(int64_t row0, std::span<const float> logits)>;
Status LogitsByTokenChunks(const model::LinearWeights& head, std::span<const float> n, int64_t t,
                           uint64_t chunk_bytes, const LogitRowsFn& on_rows);

}  // namespace pq::engine
