// The pipeline pieces of a Hugging Face tokenizer.json (internal to the tokenizer layer):
// normalizers, pre-tokenizers and decoders, each parsed from its JSON object and applied the
// way the Rust `tokenizers` crate (v0.23) does. Nested "Sequence"s are flattened into steps.
//
// Supported: normalizers Sequence, Prepend, Replace (String or Regex), NFC, NFD, Strip;
// pre-tokenizers Sequence, ByteLevel, Split (String or Regex; all five behaviors; invert),
// Metaspace (prepend_scheme first/always/never, split); decoders Sequence, ByteLevel,
// Metaspace, Replace, ByteFallback, Fuse, Strip. Anything else is rejected when parsed.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pq/core/status.h"
#include "pq/tokenizer/regex.h"

namespace pq::tokenizer::hf {

// ---- JSON access that never throws; `what` names the value in errors ("model.vocab").
Result<std::string> GetString(const nlohmann::json& obj, const char* key, const std::string& what);
Result<bool> GetBool(const nlohmann::json& obj, const char* key, bool dflt,
                     const std::string& what);
// The "type" member of a component object.
Result<std::string> GetType(const nlohmann::json& obj, const std::string& what);

// ---- GPT-2's byte <-> unicode table (bytes_to_unicode).
// The UTF-8 text of the character that stands for byte b.
const std::array<std::string, 256>& ByteToUnicode();
// The byte a character stands for, or -1.
int UnicodeToByte(char32_t c);

// A piece of text on its way through the pipeline. `at_origin`: the piece starts at offset 0
// of the original input (Metaspace prepend_scheme "first" prepends only there).
struct Piece {
  std::string text;
  bool at_origin = false;
};

// A regex or literal pattern ({"String": s} or {"Regex": r}).
Result<Regex> ParsePattern(const nlohmann::json& j, const std::string& what);

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
