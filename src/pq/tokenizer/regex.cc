#include "pq/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "pq/io/json_util.h"
#include "pq/tokenizer/unicode.h"

namespace pq::tokenizer {

struct Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

namespace {

std::string Pcre2Message(int err) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(err, buf, sizeof(buf));
  if (n < 0) return "PCRE2 error " + std::to_string(err);
  return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

struct MatchData {
  explicit MatchData(const pcre2_code* code)
      : md(pcre2_match_data_create_from_pattern(code, nullptr)) {}
  ~MatchData() { pcre2_match_data_free(md); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
  pcre2_match_data* md;
};

// Searches from `start`; returns PCRE2's rc (>0 match, PCRE2_ERROR_NOMATCH, or an error). The
// JIT's fixed stack can overflow on long inputs; the interpreter (heap frames) then retries.
int SearchFrom(const pcre2_code* code, std::string_view text, size_t start, pcre2_match_data* md) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
    rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md,
                     nullptr);
  }
  return rc;
}

}  // namespace

Regex::Regex(std::string pattern, std::unique_ptr<Code> code)
    : pattern_(std::move(pattern)), code_(std::move(code)) {}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

namespace {

Result<std::unique_ptr<Regex::Code>> CompileCode(std::string_view pattern, uint32_t options) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &err, &offset, nullptr);
  if (code == nullptr) {
    return InvalidArgument("invalid regular expression " + io::Quote(pattern) + " at offset " +
                           std::to_string(offset) + ": " + Pcre2Message(err));
  }
  auto c = std::make_unique<Regex::Code>();
  c->code = code;
  // JIT is an optimization only: without it (no JIT support, or no executable memory)
  // pcre2_match interprets the same pattern.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return c;
}

}  // namespace

Result<Regex> Regex::Compile(std::string_view pattern) {
  PQ_ASSIGN_OR_RETURN(auto code, CompileCode(pattern, PCRE2_UTF | PCRE2_UCP));
  return Regex(std::string(pattern), std::move(code));
}

Result<Regex> Regex::Literal(std::string_view literal) {
  PQ_ASSIGN_OR_RETURN(auto code, CompileCode(literal, PCRE2_UTF | PCRE2_LITERAL));
  return Regex(std::string(literal), std::move(code));
}

Status Regex::FindAll(std::string_view text,
                      std::vector<std::pair<size_t, size_t>>* matches) const {
  MatchData data(code_->code);
  if (data.md == nullptr) return Internal("out of memory for regex match data");
  size_t last_end = 0;
  bool have_last = false;
  size_t last_match_end = 0;
  while (last_end <= text.size()) {
    const int rc = SearchFrom(code_->code, text, last_end, data.md);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      return InvalidArgument("regular expression " + io::Quote(pattern_) +
                             " failed on the input: " + Pcre2Message(rc));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    const size_t s = ov[0], e = ov[1];
    if (s == e && have_last && last_match_end == e) {
      // An empty match right after the previous match: step over one character.
      last_end += last_end < text.size()
                      ? unicode::Utf8Length(static_cast<unsigned char>(text[last_end]))
                      : 1;
      continue;
    }
    last_end = e;
    have_last = true;
    last_match_end = e;
    matches->emplace_back(s, e);
  }
  return Status::Ok();
}

Result<bool> Regex::Search(std::string_view text) const {
  MatchData data(code_->code);
  if (data.md == nullptr) return Internal("out of memory for regex match data");
  const int rc = SearchFrom(code_->code, text, 0, data.md);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    return InvalidArgument("regular expression " + io::Quote(pattern_) +
                           " failed on the input: " + Pcre2Message(rc));
  }
  return true;
}

}  // namespace pq::tokenizer
