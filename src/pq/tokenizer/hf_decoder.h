// The decoder of a Hugging Face tokenizer.json (internal to the tokenizer layer).
// Supported: Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip; anything
// else is rejected when parsed.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/tokenizer/hf_common.h"
#include "pq/tokenizer/regex.h"

namespace pq::tokenizer::hf {

class Decoder {
 public:
  // Parses a decoder object (or null: tokens are joined with spaces).
  static Result<Decoder> Parse(const nlohmann::json& j, const std::string& what);
  // Returns the text of `tokens` (the token strings of the ids to decode).
  std::string Apply(std::vector<std::string> tokens) const;

 private:
  struct Step {
    enum Kind { kByteLevel, kMetaspace, kReplace, kByteFallback, kFuse, kStrip } kind;
    std::optional<Regex> regex;   // Replace
    std::string text;             // Replace: replacement; Metaspace/Strip: the character
    bool prepend_never = false;   // Metaspace
    int64_t start = 0, stop = 0;  // Strip
  };
  static Status ParseInto(const nlohmann::json& j, const std::string& what, int depth,
                          std::vector<Step>* steps);
  bool null_ = true;
  std::vector<Step> steps_;
};

}  // namespace pq::tokenizer::hf
