// The Hugging Face files of a converted llama2.c model: tokenizer.json,
// tokenizer_config.json, special_tokens_map.json and config.json, plus the q/k row
// permutation between the two RoPE layouts.
//
// run.c encodes by prepending " ", looking up each UTF-8 character (else one byte token per
// byte), then repeatedly merging the adjacent pair whose concatenation is the
// highest-scoring vocab piece (leftmost on ties). The HF tokenizer.json written here is the
// equivalent SentencePiece-style BPE: ' ' spelled U+2581, normalizer Prepend(U+2581) +
// Replace(' ', U+2581), byte_fallback, and merges ranked by the score of the merged piece.
// scripts/llama2c_tokenizer_check.py verifies the equivalence on corpora.
//
// llama2.c rotates adjacent pairs (0,1),(2,3).. of each head; HF rotates halves
// (i, i+hd/2). So q_proj/k_proj rows are permuted per head:
// w.reshape(heads, hd/2, 2, D).transpose(0,2,1,3).reshape(heads*hd, D).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "pq/core/dtype.h"
#include "pq/core/status.h"
#include "pq/io/llama2c.h"

namespace pq::convert {

// The Hugging Face tokenizer.json equivalent to `vocab` (see the file comment). Requires the
// SentencePiece layout (ids 0..258 as in io/llama2c.h), UTF-8 pieces and no duplicate pieces.
Result<std::string> MakeHfTokenizerJson(const io::Llama2cVocab& vocab,
                                        const std::string& file_name);
// tokenizer_config.json / special_tokens_map.json for that tokenizer.
std::string MakeHfTokenizerConfigJson(int64_t model_max_length);
std::string MakeHfSpecialTokensMapJson();
// config.json of the LlamaForCausalLM (torch_dtype from `dtype`: F32 or BF16).
std::string MakeHfLlamaConfigJson(const io::Llama2cConfig& config, DType dtype);

// Permutes the rows of a [heads * head_dim, cols] q/k matrix from llama2.c's interleaved
// RoPE pairs to HF's rotate-half order. `head_dim` must be even; sizes must match.
void PermuteRopeRows(std::span<const float> src, int64_t heads, int64_t head_dim, int64_t cols,
                     std::span<float> dst);

}  // namespace pq::convert
