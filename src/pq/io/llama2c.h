// llama2.c files, read and validated: legacy (v0) checkpoints and tokenizer.bin. The
// conversion to a Hugging Face directory is convert/import_llama2c.h.
//
// Checkpoint (karpathy/llama2.c `export.py --version 0`, what run.c reads): 7 x int32 LE
// header {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len}, then fp32
// tensors: token_embedding[V,D], rms_att[L,D], wq[L,D,D], wk[L,KV,D], wv[L,KV,D], wo[L,D,D],
// rms_ffn[L,D], w1[L,H,D], w2[L,D,H], w3[L,H,D], rms_final[D], freq_cis_real[S,hd/2],
// freq_cis_imag[S,hd/2], and, when the header's vocab_size is negative, an unshared
// classifier [V,D]. Matrices are row-major [out, in] like nn.Linear.
//
// Tokenizer (llama2.c tokenizer.bin): int32 max_token_length, then vocab_size x
// {f32 score, i32 len, len bytes}. Ids 0/1/2 = <unk>/<s>/</s> (stored as "<unk>",
// "\n<s>\n", "\n</s>\n"), 3..258 = byte tokens <0x00>..<0xFF>, the rest merged pieces with
// spaces stored as ' '.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "pq/core/status.h"
#include "pq/io/file_util.h"

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

// The tensors of a llama2.c checkpoint, in file order (shapes row-major [out, in]; the
// per-layer ones hold n_layers consecutive copies).
enum class Llama2cTensor : uint8_t {
  kTokenEmbedding,  // [V, D]
  kRmsAtt,          // per layer [D]
  kWq,              // per layer [D, D]
  kWk,              // per layer [KV, D]
  kWv,              // per layer [KV, D]
  kWo,              // per layer [D, D]
  kRmsFfn,          // per layer [D]
  kW1,              // per layer [H, D]
  kW2,              // per layer [D, H]
  kW3,              // per layer [H, D]
  kRmsFinal,        // [D]
  kClassifier,      // [V, D], present only when !shared_classifier
};

// An open llama2.c checkpoint whose header was validated against the file's size.
class Llama2cReader {
 public:
  // Opens `path` (a regular file) and validates its header (see ParseLlama2cHeader).
  static Result<Llama2cReader> Open(const std::string& path);

  const Llama2cConfig& config() const { return config_; }
  const std::string& path() const { return path_; }

  // Reads tensor `t` (of layer `layer` for the per-layer ones) as row-major floats. Every
  // value must be finite; errors name the file, the llama2.c tensor and the layer.
  Result<std::vector<float>> Read(Llama2cTensor t, int32_t layer = 0) const;

 private:
  Llama2cReader(std::string path, UniqueFd fd, const Llama2cConfig& config)
      : path_(std::move(path)), fd_(std::move(fd)), config_(config) {}

  std::string path_;
  UniqueFd fd_;
  Llama2cConfig config_;
};

}  // namespace pq::io
