// Perplexity / NLL / KL of a model over tokenized documents (the `eval` command's engine).
//
// Windowing: each document is scored on its own. A document of at most `ctx` tokens is one
// window scoring every token after the first. A longer one is split into windows of `ctx`
// tokens advancing by `stride`: the first window scores all its tokens, each later window
// only its last `stride` tokens, so every token after the first is scored exactly once and,
// past the first window, sees at least ctx - stride tokens of context.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pq/core/exec_context.h"
#include "pq/core/status.h"
#include "pq/engine/runner.h"

namespace pq::engine {

struct EvalOptions {
  int64_t ctx = 0;               // 0: the model's max_position_embeddings, at most 4096
  int64_t stride = 0;            // 1 <= stride < ctx; 0: ctx / 2
  std::string reference;         // model path for KL(reference || model), "" = none
  bool weights_only = false;     // skip run-time activation quantization (path overload)
  int64_t chunk_tokens = 16384;  // windows are run in chunks of about this many tokens
  // Across MPI ranks the chunks are split over the ranks (collective); true: this process
  // runs every chunk and makes no collective call (for callers that split other work).
  bool this_rank_only = false;
  // Also the MTP head (checkpoints with mtp.*): its NLL of token t+2 and how often its greedy
  // draft equals the model's own greedy token there (a one-token speculative draft that greedy
  // verification accepts).
  bool mtp = false;
  RunnerOptions runner;
  ExecContext exec;  // threads, progress, log level: installed for the call
};

struct EvalResult {
  int64_t docs = 0;
  int64_t windows = 0;
  int64_t tokens = 0;  // scored tokens
  int64_t ctx = 0, stride = 0;
  double mean_nll = 0;
  double ppl = 0;
  std::optional<double> mean_kl;
  // With EvalOptions::mtp: over the positions whose token t+2 is scored.
  int64_t mtp_tokens = 0;
  std::optional<double> mtp_nll;     // mean NLL of the MTP head's prediction of token t+2
  std::optional<double> mtp_accept;  // fraction where argmax MTP(t) == argmax main(t+1)
  nlohmann::json ToJson() const;
};

// Splits documents into windows (sequences with per-position targets), as documented above.
Result<std::vector<Sequence>> MakeWindows(const std::vector<std::vector<int32_t>>& docs,
                                          int64_t ctx, int64_t stride);

// The windows Evaluate scores on `model` with `options`' ctx and stride (defaults resolved
// against the model's max_position_embeddings as documented on EvalOptions).
struct EvalWindows {
  std::vector<Sequence> windows;
  int64_t ctx = 0, stride = 0;
};
Result<EvalWindows> MakeEvalWindows(const model::WeightSource& model,
                                    const std::vector<std::vector<int32_t>>& docs,
                                    const EvalOptions& options);

// Opens model_path (and options.reference). Each Linear's input is quantized as its stored
// format's runtime does (NVFP4, MXFP8, MXFP4, FP8) unless options.weights_only.
Result<EvalResult> Evaluate(const std::string& model_path,
                            const std::vector<std::vector<int32_t>>& docs,
                            const EvalOptions& options);
// The same on open sources (e.g. with a linear hook set); `ref` may be null.
Result<EvalResult> Evaluate(const model::WeightSource& model, const model::WeightSource* ref,
                            const std::vector<std::vector<int32_t>>& docs,
                            const EvalOptions& options);

}  // namespace pq::engine
