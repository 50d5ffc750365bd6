// The pre-tokenizer of a Hugging Face tokenizer.json (internal to the tokenizer layer).
// Supported: Sequence, ByteLevel, Split (String or Regex; all five behaviors; invert),
// Metaspace (prepend_scheme first/always/never, split); anything else is rejected when parsed.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/tokenizer/hf_common.h"
#include "pq/tokenizer/regex.h"

namespace pq::tokenizer::hf {

class PreTokenizer {
 public:
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

  // Parses a pre_tokenizer object (or null: the whole text is one piece).
  static Result<PreTokenizer> Parse(const nlohmann::json& j, const std::string& what);
  // Splits/transforms `pieces` in place (empty pieces are dropped).
  Status Apply(std::vector<Piece>* pieces) const;
  bool has_byte_level() const;

 private:
  struct Step {
    enum Kind { kByteLevel, kSplit, kMetaspace } kind;
    bool add_prefix_space = false;  // ByteLevel
    bool use_regex = true;          // ByteLevel
    std::optional<Regex> regex;     // Split
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    std::string replacement;  // Metaspace (one character)
    enum Prepend { kAlways, kFirst, kNever } prepend = kAlways;
    bool split = true;
  };
  static Status ParseInto(const nlohmann::json& j, const std::string& what, int depth,
                          std::vector<Step>* steps);
  std::vector<Step> steps_;
};

// Splits `s` by the matches of `re` with the given behavior (HF NormalizedString::split);
// `invert` swaps matches and gaps. Appends the non-empty pieces to `out`.
Status SplitByRegex(const Regex& re, PreTokenizer::Behavior behavior, bool invert, const Piece& s,
                    std::vector<Piece>* out);

}  // namespace pq::tokenizer::hf
