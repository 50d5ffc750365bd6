// Text in, text out: the `generate` command's logic on top of Generate (generate.h).
//
// The tokenizer is MODEL's own (its directory, or the directory of a .safetensors file)
// unless `tokenizer` names one. The prompt is BOS + Encode(prompt) (BOS: the tokenizer's,
// else config.json's bos_token_id; an error when neither is known) or, with add_bos = false,
// Encode(prompt) alone; every prompt id must be inside the model's vocabulary. Generation
// stops at config.json's eos_token_id and at the tokenizer's EOS (both, when they differ).
//
// Streaming: on_text receives the shown text in pieces as it grows: decode(prompt + new
// tokens so far), BOS and EOS left out, from where the last piece ended. A piece never ends
// inside a UTF-8 character (the rest is held back until the next token completes it); the
// last piece, after generation, flushes whatever is left. Concatenated, the pieces are the
// decoded prompt followed by `text` (when the decoder keeps the prompt a prefix).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "pq/core/exec_context.h"
#include "pq/core/status.h"
#include "pq/engine/generate.h"

namespace pq::engine {

struct GenerateTextOptions {
  std::string model;      // model directory or .safetensors file
  std::string tokenizer;  // tokenizer directory or file; "": MODEL's
  std::string prompt;
  bool add_bos = true;
  bool weights_only = false;  // do not quantize Linear inputs at run time (see eval)
  GenerateOptions generate;   // max_new_tokens, sampling, resident_bytes (eos_ids: see above)
  ExecContext exec;           // installed for the call
};

struct GenerateTextResult {
  std::string prompt;
  std::vector<int32_t> prompt_tokens;  // as fed to the model (BOS included when added)
  std::string text;                    // the continuation (EOS left out)
  GenerateResult generated;
  double temperature = 0, top_p = 1;
  uint64_t seed = 0;

  // {prompt, prompt_tokens, text, tokens, new_tokens, stop, mean_nll, tokens_per_s, seconds,
  //  temperature, top_p, seed, resident}
  nlohmann::json ToJson() const;
};

Result<GenerateTextResult> GenerateText(
    const GenerateTextOptions& options,
    const std::function<void(std::string_view)>& on_text = nullptr);

}  // namespace pq::engine
