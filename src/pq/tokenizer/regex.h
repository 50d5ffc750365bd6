// A compiled PCRE2 regular expression over UTF-8 text (internal to the tokenizer layer), used
// for the pre-tokenizer split patterns of Hugging Face tokenizer.json files (GPT-2, Llama 3,
// Qwen: \p{L}, \p{N}, (?i:...), (?!\S)) and for Replace patterns.
//
// Patterns compile with PCRE2_UTF | PCRE2_UCP, so \s, \w, \d and case folding are Unicode
// aware like Oniguruma's (which HF tokenizers uses), and are JIT-compiled when PCRE2 has a JIT.
// FindAll reproduces the iteration of the Rust `onig` crate's find_iter: non-overlapping
// matches, left to right; an empty match right where the previous match ended is skipped
// by advancing one character.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pq/core/status.h"

namespace pq::tokenizer {

class Regex {
 public:
  // Compiles `pattern`; errors say where and why the pattern is invalid.
  static Result<Regex> Compile(std::string_view pattern);
  // A regex that matches `literal` exactly (what HF does for a {"String": ...} pattern).
  static Result<Regex> Literal(std::string_view literal);

  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  // Appends the [begin, end) byte ranges of all matches in `text` (valid UTF-8; the caller
  // has validated it) to `matches`. Fails only if PCRE2 reports an error (e.g. a match limit).
  Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;

  // True if the pattern matches anywhere in `text` (valid UTF-8).
  Result<bool> Search(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

  struct Code;  // the compiled pattern (opaque)

 private:
  Regex(std::string pattern, std::unique_ptr<Code> code);

  std::string pattern_;
  std::unique_ptr<Code> code_;
};

}  // namespace pq::tokenizer
