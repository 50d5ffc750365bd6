// A Hugging Face tokenizer.json tokenizer with a BPE model (internal to the tokenizer layer;
// use LoadTokenizer). Encode follows tokenizers' TokenizerImpl::encode_single_sequence with
// add_special_tokens=false:
//  1. added tokens with normalized=false are split off the raw text (leftmost-longest match,
//     then single_word / lstrip / rstrip as in AddedVocabulary::find_matches);
//  2. every remaining segment is normalized on its own, and added tokens with normalized=true
//     (matched by their normalized content) are split off it;
//  3. the pre-tokenizer splits each segment into words, which the BPE model encodes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pq/core/status.h"
#include "pq/tokenizer/hf_bpe.h"
#include "pq/tokenizer/hf_decoder.h"
#include "pq/tokenizer/hf_normalizer.h"
#include "pq/tokenizer/hf_pre_tokenizer.h"
#include "pq/tokenizer/tokenizer.h"

namespace pq::tokenizer {

class HfTokenizer final : public Tokenizer {
 public:
  // Reads `path` (tokenizer.json) and, if `config_path` is non-empty and exists, the
  // tokenizer_config.json for bos/eos.
  static Result<std::unique_ptr<HfTokenizer>> Load(const std::string& path,
                                                   const std::string& config_path);

  Result<std::vector<int32_t>> Encode(std::string_view text) const override;
  std::string Decode(std::span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::optional<int32_t> eos_id() const override { return eos_id_; }
  std::string Describe() const override;

  // The id of `token` (an added token or a model vocabulary entry).
  std::optional<int32_t> TokenToId(std::string_view token) const;

 private:
  struct AddedToken {
    int32_t id = 0;
    std::string content;
    bool single_word = false, lstrip = false, rstrip = false, normalized = false;
    bool special = false;
  };
  // A byte trie over the contents of one group of added tokens (for leftmost-longest search).
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
      int32_t token = -1;                                       // index into added_, or -1
    };
    std::vector<Node> nodes{Node{}};
    void Insert(std::string_view s, int32_t token);
    // The longest token that starts at text[pos] as {index, length}, or {-1, 0}.
    std::pair<int32_t, size_t> LongestAt(std::string_view text, size_t pos) const;
    bool empty() const { return nodes.size() == 1; }
  };
  // A segment of text: either an added token (token >= 0, an index into added_) or text.
  struct Segment {
    size_t begin, end;
    int32_t token;
  };

  HfTokenizer() = default;
  Status ParseAddedTokens(const nlohmann::json& doc);
  // bos_id_ from the post-processor (TemplateProcessing / Roberta / Bert, or a Sequence).
  void ReadSpecialIds(const nlohmann::json& doc);
  Result<std::vector<Segment>> FindAdded(std::string_view text, const Trie& trie) const;
  Status EncodeText(std::string text, bool at_origin, std::vector<int32_t>* out) const;

  std::string path_;
  std::string kind_;  // "byte-level", "SentencePiece-style" or "BPE"
  hf::BpeModel model_;
  hf::Normalizer normalizer_;
  hf::PreTokenizer pre_tokenizer_;
  hf::Decoder decoder_;
  std::vector<AddedToken> added_;
  std::vector<std::string> normalized_content_;  // per added token (normalized ones)
  Trie raw_trie_, normalized_trie_;
  std::optional<Regex> word_char_;    // Rust regex \w, for single_word
  std::vector<int32_t> added_by_id_;  // id -> index into added_, or -1
  int32_t vocab_size_ = 0;
  std::optional<int32_t> bos_id_, eos_id_;
};

}  // namespace pq::tokenizer
