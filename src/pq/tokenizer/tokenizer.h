// Tokenizers: text -> token ids, exactly as the model's own tokenizer does it.
//
// Two kinds of files are read:
//  * llama2.c tokenizer.bin (karpathy/llama2.c): encoded exactly like run.c's `encode` (a
//    dummy-prefix " " for non-empty text, UTF-8 characters looked up else one byte token per
//    byte (id = byte + 3), then repeatedly the adjacent pair whose concatenation is the
//    best-scoring vocab piece is merged, leftmost on ties), without BOS/EOS.
//  * Hugging Face tokenizer.json with a BPE model: byte-level BPE (GPT-2, Llama 3, Qwen 2/2.5/3)
//    and SentencePiece-style BPE with byte fallback (Llama 2, Phi-3, our import-llama2c
//    output). Encode reproduces `tokenizers.Tokenizer.encode(text, add_special_tokens=False)`:
//    added tokens are split off first (leftmost-longest, with their single_word / lstrip /
//    rstrip / normalized flags), then the normalizer (Sequence, Prepend, Replace, NFC, NFD,
//    Strip), the pre-tokenizer (Sequence, ByteLevel, Split, Metaspace) and the BPE model
//    (merge ranks, ignore_merges, byte_fallback, unk/fuse_unk, subword prefix/suffix) run.
//    The post-processor (BOS/EOS templates) is NOT applied; see bos_id().
//    Unsupported components (Unigram/WordPiece/WordLevel models, BPE dropout, Lowercase or NFKC
//    normalizers, BERT-style pre-tokenizers, ...) are rejected at load with a message that
//    names the file and the component.
//
// Encode never adds BOS/EOS: callers prepend bos_id() themselves. All functions return
// errors as Status; nothing throws or exits. Tokenizers are immutable after loading, so
// Encode/Decode may be called from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pq/core/status.h"

namespace pq::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer();

  // Token ids of `text`, without BOS/EOS. HF tokenizers require valid UTF-8 (InvalidArgument
  // otherwise); llama2.c accepts any bytes (invalid UTF-8 falls back to byte tokens).
  virtual Result<std::vector<int32_t>> Encode(std::string_view text) const = 0;

  // The text of `ids`, as the tokenizer's decoder produces it (HF: decode with
  // skip_special_tokens=False; llama2.c: the same as the equivalent tokenizer.json that
  // import-llama2c writes: pieces concatenated, <0xXX> tokens as bytes, the dummy-prefix
  // space removed). Ids outside the vocabulary are skipped. Bytes are returned as they are:
  // where HF would print U+FFFD for an invalid UTF-8 sequence, this returns the raw bytes.
  virtual std::string Decode(std::span<const int32_t> ids) const = 0;

  // One more than the largest id (model vocabulary and added tokens).
  virtual int32_t vocab_size() const = 0;

  // The id a model expects before the text, if any: llama2.c: 1; HF: the special token that
  // the post-processor template puts before the sequence (TemplateProcessing), else the
  // tokenizer_config.json bos_token when add_bos_token is true; nullopt when the model adds
  // none (e.g. Qwen, Phi-3.5).
  virtual std::optional<int32_t> bos_id() const;
  // The end-of-sequence id: llama2.c: 2; HF: tokenizer_config.json's eos_token, if present.
  virtual std::optional<int32_t> eos_id() const;

  // A short description, e.g. "llama2.c tokenizer.bin (512 tokens)" or
  // "tokenizer.json BPE byte-level (151665 tokens)".
  virtual std::string Describe() const = 0;
};

// Loads a tokenizer. `model_dir_or_file` is a model directory (tokenizer.json is used if
// present, else tokenizer.bin) or a tokenizer file: *.json is read as a Hugging Face
// tokenizer.json, anything else as a llama2.c tokenizer.bin. For tokenizer.json, a
// tokenizer_config.json beside it supplies bos/eos names. Errors name the file.
Result<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir_or_file);

// Reads pre-tokenized input: decimal token ids in [0, 2^31 - 1] separated by any whitespace
// (spaces, tabs, newlines; one sequence per file). '#' starts a comment that runs to the end
// of the line. Errors give the line number and the offending text; a file without ids is an
// error.
Result<std::vector<int32_t>> ReadTokenIds(const std::string& path);

}  // namespace pq::tokenizer
