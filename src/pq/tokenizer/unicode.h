// Unicode helpers for the tokenizers (internal to the tokenizer layer): UTF-8 decoding and
// encoding, the White_Space property, canonical combining classes and NFC normalization.
//
// NFC follows UAX #15 (canonical decomposition, canonical ordering, canonical composition with
// algorithmic Hangul) over tables generated from Python's unicodedata (Unicode 14.0, the
// version of PCRE2 10.42 that the pre-tokenizer regexes use); see unicode_tables.h.
// All functions expect valid UTF-8 (callers validate input once, at the API boundary).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace pq::tokenizer::unicode {

// Number of bytes of the UTF-8 sequence that starts with `lead` (1 for continuation or invalid
// lead bytes, so loops always advance).
inline size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// Decodes the code point at s[*pos] and advances *pos past it (s must be valid UTF-8).
char32_t DecodeUtf8(std::string_view s, size_t* pos);

// Appends the UTF-8 encoding of `cp` to `out`.
void AppendUtf8(char32_t cp, std::string* out);

// True for the Unicode White_Space property (what Rust's char::is_whitespace and regex `\s`
// test; HF tokenizers uses them for added tokens' lstrip/rstrip).
bool IsWhiteSpace(char32_t c);

// The canonical combining class of `c` (0 for starters).
int CombiningClass(char32_t c);

// True if every byte of `s` is ASCII (such text is its own NFC).
bool IsAscii(std::string_view s);

// Returns the NFC form of `s` (valid UTF-8).
std::string Nfc(std::string_view s);
// Returns the NFD form of `s` (valid UTF-8).
std::string Nfd(std::string_view s);

// The Unicode version of the normalization tables, e.g. "14.0.0".
const char* UnicodeVersion();

}  // namespace pq::tokenizer::unicode
