// Strict, non-throwing JSON parsing for files we read (safetensors headers, index files,
// HF configs) and helpers for quoting values in error messages.
//
// nlohmann::json's default parser throws and silently keeps the last of duplicate keys;
// ParseJson instead reports duplicates (at any depth) and caps the nesting depth, so a
// hostile file cannot make two readers see different tensors or exhaust the stack.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "pq/core/status.h"

namespace pq::io {

// Objects/arrays nested deeper than this are rejected (our files need depth 3).
inline constexpr int kMaxJsonDepth = 64;

// Returns the parsed document or a DataLoss error "<source>: <what is wrong>".
// Trailing whitespace is allowed; anything else after the value is an error.
Result<nlohmann::json> ParseJson(std::string_view text, const std::string& source);

// Reads and parses a JSON file (see ParseJson); errors name `path`.
Result<nlohmann::json> ReadJsonFile(const std::string& path);

// Returns `s` as a JSON string literal with quotes, e.g. "x.weight" -> "\"x.weight\"",
// for error messages (escapes control characters; invalid UTF-8 becomes U+FFFD).
std::string Quote(std::string_view s);

// Returns `j` as compact JSON text for error messages (never throws).
std::string Dump(const nlohmann::json& j);

// Returns a short human name of a JSON value's type ("string", "array", "number", ...).
std::string JsonTypeName(const nlohmann::json& j);

}  // namespace pq::io
