// What the pieces of a Hugging Face tokenizer.json pipeline share (internal to the tokenizer
// layer): JSON access that never throws, GPT-2's byte <-> unicode table, the text piece that
// flows through the pipeline, patterns, and the helpers the components have in common.
// The components themselves: hf_normalizer.h, hf_pre_tokenizer.h, hf_decoder.h (applied the
// way the Rust `tokenizers` crate v0.23 does; nested "Sequence"s are flattened into steps).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "pq/core/status.h"
#include "pq/tokenizer/regex.h"

namespace pq::tokenizer::hf {

// Nested "Sequence" depth a component accepts.
inline constexpr int kMaxNesting = 16;

// ---- JSON access that never throws; `what` names the value in errors ("model.vocab").
Result<std::string> GetString(const nlohmann::json& obj, const char* key, const std::string& what);
Result<bool> GetBool(const nlohmann::json& obj, const char* key, bool dflt,
                     const std::string& what);
// The "type" member of a component object.
Result<std::string> GetType(const nlohmann::json& obj, const std::string& what);
// The members of a {"type": "Sequence", key: [...]} component: parse(item, "what.key[i]",
// depth + 1) for each; DataLoss if `key` is not an array or Sequences nest beyond kMaxNesting.
Status ParseSequence(
    const nlohmann::json& obj, const char* key, const std::string& what, int depth,
    const std::function<Status(const nlohmann::json&, const std::string&, int)>& parse);

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

// ---- Helpers of the components.
// Unimplemented: `what`'s `kind` ("normalizer", ...) `type` is not one of `supported`.
Status Unsupported(const std::string& what, const std::string& kind, const std::string& type,
                   const char* supported);
// Returns `text` with every match of `re` replaced by `content`.
Result<std::string> ReplaceAll(const Regex& re, std::string_view text, std::string_view content);
// The string member `key` of `j`, which must be exactly one character.
Result<std::string> GetChar(const nlohmann::json& j, const char* key, const std::string& what);

}  // namespace pq::tokenizer::hf
