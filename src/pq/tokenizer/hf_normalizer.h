// The normalizer of a Hugging Face tokenizer.json (internal to the tokenizer layer).
// Supported: Sequence, Prepend, Replace (String or Regex), NFC, NFD, Strip; anything else is
// rejected when parsed.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/tokenizer/hf_common.h"
#include "pq/tokenizer/regex.h"

namespace pq::tokenizer::hf {

class Normalizer {
 public:
  // Parses a normalizer object (or null: no normalization).
  static Result<Normalizer> Parse(const nlohmann::json& j, const std::string& what);
  // Normalizes `s` (valid UTF-8) in place.
  Status Apply(std::string* s) const;
  bool empty() const { return steps_.empty(); }

 private:
  struct Step {
    enum Kind { kPrepend, kReplace, kNfc, kNfd, kStrip } kind;
    std::string text;                  // Prepend: the prefix; Replace: the replacement
    std::optional<Regex> regex;        // Replace
    bool left = false, right = false;  // Strip
  };
  static Status ParseInto(const nlohmann::json& j, const std::string& what, int depth,
                          std::vector<Step>* steps);
  std::vector<Step> steps_;
};

}  // namespace pq::tokenizer::hf
