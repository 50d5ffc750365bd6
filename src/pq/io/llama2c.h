// llama2.c import: legacy (v0) llama2.c checkpoints and tokenizer.bin -> a Hugging Face
// Llama directory (model.safetensors, config.json, tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, and the original tokenizer.bin).
//
// Checkpoint (karpathy/llama2.c `export.py --version 0`, what run.c reads): 7 x int32 LE
// header {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len}, then fp32
// tensors: token_embedding[V,D], rms_att[L,D], wq[L,D,D], wk[L,KV,D], wv[L,KV,D], wo[L,D,D],
// rms_ffn[L,D], w1[L,H,D], w2[L,D,H], w3[L,H,D], rms_final[D], freq_cis_real[S,hd/2],
// freq_cis_imag[S,hd/2], and, when the header's vocab_size is negative, an unshared
// classifier [V,D]. Matrices are row-major [out, in] like nn.Linear.
//
// Mapping: w1->gate_proj, w3->up_proj, w2->down_proj; rms_att->input_layernorm,
// rms_ffn->post_attention_layernorm. llama2.c rotates adjacent pairs (0,1),(2,3).. of each
// head; HF rotates halves (i, i+hd/2). So q_proj/k_proj rows are permuted per head:
// w.reshape(heads, hd/2, 2, D).transpose(0,2,1,3).reshape(heads*hd, D). The freq_cis tables
// are dropped (rope_theta 10000).
//
// Tokenizer (llama2.c tokenizer.bin): int32 max_token_length, then vocab_size x
// {f32 score, i32 len, len bytes}. Ids 0/1/2 = <unk>/<s>/</s> (stored as "<unk>",
// "\n<s>\n", "\n</s>\n"), 3..258 = byte tokens <0x00>..<0xFF>, the rest merged pieces with
// spaces stored as ' '. run.c encodes by prepending " ", looking up each UTF-8 character
// (else one byte token per byte), then repeatedly merging the adjacent pair whose
// concatenation is the highest-scoring vocab piece (leftmost on ties). The HF tokenizer.json
// we write is the equivalent SentencePiece-style BPE: ' ' spelled U+2581, normalizer
// Prepend(U+2581) + Replace(' ', U+2581), byte_fallback, and merges ranked by the score of
// the merged piece. scripts/llama2c_tokenizer_check.py verifies the equivalence on corpora.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pq/core/dtype.h"
#include "pq/core/status.h"

namespace pq::io {

inline constexpr uint64_t kLlama2cHeaderBytes = 28;

// The header of a legacy llama2.c checkpoint, validated.
struct Llama2cConfig {
  int32_t dim = 0;
  int32_t hidden_dim = 0;
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t vocab_size = 0;  // always positive here; see shared_classifier
  int32_t seq_len = 0;
  bool shared_classifier = true;  // header vocab_size > 0: the classifier is the embedding

  int64_t head_dim() const { return dim / n_heads; }
  int64_t kv_dim() const { return head_dim() * n_kv_heads; }
  // Floats after the header, including the freq_cis tables and an unshared classifier.
  uint64_t NumFloats() const;
  uint64_t FileBytes() const { return kLlama2cHeaderBytes + 4 * NumFloats(); }
};

// Parses and validates the 28-byte header against the whole file's size. Errors name
// `file_name` and say what is wrong (dims, divisibility, expected vs actual size).
Result<Llama2cConfig> ParseLlama2cHeader(std::span<const uint8_t> header, uint64_t file_size,
                                         const std::string& file_name);

// A llama2.c tokenizer.bin, as stored (pieces use ' ' for spaces).
struct Llama2cVocab {
  int32_t max_token_length = 0;
  std::vector<std::string> pieces;
  std::vector<float> scores;
};

// Parses a whole tokenizer.bin. Every entry must be complete, lengths within
// [0, max_token_length], pieces free of NUL bytes, scores finite.
Result<Llama2cVocab> ParseLlama2cTokenizer(std::span<const uint8_t> bytes,
                                           const std::string& file_name);
Result<Llama2cVocab> ReadLlama2cTokenizer(const std::string& path);

// The Hugging Face tokenizer.json equivalent to `vocab` (see the file comment). Requires the
// SentencePiece layout (ids 0..258 as above), UTF-8 pieces and no duplicate pieces.
Result<std::string> MakeHfTokenizerJson(const Llama2cVocab& vocab, const std::string& file_name);
// tokenizer_config.json / special_tokens_map.json for that tokenizer.
std::string MakeHfTokenizerConfigJson(int64_t model_max_length);
std::string MakeHfSpecialTokensMapJson();
// config.json of the LlamaForCausalLM (torch_dtype from `dtype`: F32 or BF16).
std::string MakeHfLlamaConfigJson(const Llama2cConfig& config, DType dtype);

// Permutes the rows of a [heads * head_dim, cols] q/k matrix from llama2.c's interleaved
// RoPE pairs to HF's rotate-half order. `head_dim` must be even; sizes must match.
void PermuteRopeRows(std::span<const float> src, int64_t heads, int64_t head_dim, int64_t cols,
                     std::span<float> dst);

struct ImportOptions {
  DType dtype = DType::kF32;  // F32 (lossless) or BF16
  bool overwrite = false;     // replace an existing output directory
};

struct ImportSummary {
  std::string out_dir;
  Llama2cConfig config;
  int64_t num_tensors = 0;
  int64_t num_params = 0;
  uint64_t tensor_bytes = 0;
  std::vector<std::string> files;  // written into out_dir, besides the safetensors shards
};

// Converts `bin_path` + `tokenizer_path` into `out_dir` (atomically: nothing is left at
// `out_dir` on failure). Both inputs are validated completely before anything is written.
Result<ImportSummary> ImportLlama2c(const std::string& bin_path, const std::string& tokenizer_path,
                                    const std::string& out_dir, const ImportOptions& options = {});

}  // namespace pq::io
