// The llama2.c tokenizer.bin tokenizer (internal to the tokenizer layer; use LoadTokenizer).
//
// Encoding is run.c's `encode(t, text, bos=0, eos=0)`: for non-empty text the dummy prefix
// " " first, then each UTF-8 character (a lead byte plus up to 3 continuation bytes) is
// looked up, else emitted as byte tokens (id = byte + 3); then, repeatedly, the adjacent pair
// whose concatenation is a vocab piece with the highest score (> -1e10, leftmost on ties) is
// merged. run.c rescans the whole sequence per merge (O(n^2)); Encode keeps the candidate
// pairs in a heap ordered by (score desc, position asc) over a linked list of tokens, which
// picks the same pair at every step (O(n log n)). EncodeNaive is the literal loop, for tests.
// Unlike C strings, a NUL byte in the text does not end it (it becomes the byte token 3).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pq/core/status.h"
#include "pq/tokenizer/tokenizer.h"

namespace pq::tokenizer {

class Llama2cTokenizer final : public Tokenizer {
 public:
  // Reads and validates `path` (at least 259 entries: <unk>, <s>, </s>, 256 byte tokens; the
  // piece " " must exist for the dummy prefix).
  static Result<std::unique_ptr<Llama2cTokenizer>> Load(const std::string& path);

  Result<std::vector<int32_t>> Encode(std::string_view text) const override;
  std::string Decode(std::span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  std::optional<int32_t> bos_id() const override { return 1; }
  std::optional<int32_t> eos_id() const override { return 2; }
  std::string Describe() const override;

  // run.c's literal O(n^2) merge loop (same result as Encode).
  std::vector<int32_t> EncodeNaive(std::string_view text) const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  Llama2cTokenizer() = default;

  // The initial tokens (dummy prefix, characters or bytes) before merging.
  std::vector<int32_t> InitialTokens(std::string_view text) const;
  // The id of the piece pieces[a] + pieces[b] if it exists with score > -1e10, else -1.
  int32_t MergedId(int32_t a, int32_t b, std::string* buf) const;
  int32_t Lookup(std::string_view piece) const;

  std::string path_;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ids_;
  int32_t space_id_ = -1;
};

}  // namespace pq::tokenizer
