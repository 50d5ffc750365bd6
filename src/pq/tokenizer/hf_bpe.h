// The BPE model of a Hugging Face tokenizer.json (internal to the tokenizer layer), as the Rust
// `tokenizers` crate (v0.23) applies it to one pre-token ("word"):
//  * ignore_merges: a word that is itself in the vocabulary is one token;
//  * else each character is looked up (with continuing_subword_prefix on all but the first and
//    end_of_word_suffix on the last); a missing character becomes its <0xHH> byte tokens when
//    byte_fallback is set and they all exist, else unk_token (consecutive unknowns fused when
//    fuse_unk), or is dropped when there is no unk_token;
//  * then merges are applied by rank: a heap ordered by (rank, position) over a linked list of
//    symbols, exactly like tokenizers' Word::merge_all.
// Merges may be "a b" strings or ["a", "b"] pairs; a later duplicate merge replaces an earlier
// one (HashMap collect semantics). Dropout other than null/0 is rejected.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pq/core/status.h"

namespace pq::tokenizer::hf {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // Parses tokenizer.json's "model" object (type BPE); `what` names it in errors.
  static Result<BpeModel> Parse(const nlohmann::json& model, const std::string& what);

  // Appends the ids of `word` to `out`. Fails only if an unknown character needs unk_token
  // and unk_token is not in the vocabulary.
  Status Tokenize(std::string_view word, std::vector<int32_t>* out) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token of `id`, or nullptr if the vocabulary has no such id.
  const std::string* IdToToken(int32_t id) const;
  // One more than the largest id in the vocabulary.
  int32_t size() const { return static_cast<int32_t>(id_to_token_.size()); }
  bool byte_fallback() const { return byte_fallback_; }
  size_t num_merges() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const Merge* FindMerge(int32_t a, int32_t b) const {
    auto it = merges_.find(Key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }

  StringIdMap vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<char> has_id_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::optional<std::string> unk_token_;
  std::string prefix_;  // continuing_subword_prefix
  std::string suffix_;  // end_of_word_suffix
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int32_t byte_ids_[256] = {};  // <0xHH> ids, -1 if absent
};

}  // namespace pq::tokenizer::hf
