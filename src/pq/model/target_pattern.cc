#include "pq/model/target_pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace pq::model {
namespace {

// Enough for any real target pattern against a module name; a backtracking blow-up stops here.
constexpr uint32_t kMatchLimit = 1'000'000;
constexpr uint32_t kDepthLimit = 10'000;

std::string Message(int err) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(err, buf, sizeof buf);
  return n < 0 ? "PCRE2 error " + std::to_string(err)
               : std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

}  // namespace

struct TargetPattern::Impl {
  std::string pattern;
  pcre2_code* code = nullptr;
  pcre2_match_context* context = nullptr;
  ~Impl() {
    pcre2_match_context_free(context);
    pcre2_code_free(code);
  }
};

TargetPattern::TargetPattern(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TargetPattern::TargetPattern(TargetPattern&&) noexcept = default;
TargetPattern& TargetPattern::operator=(TargetPattern&&) noexcept = default;
TargetPattern::~TargetPattern() = default;

Result<TargetPattern> TargetPattern::Compile(std::string_view pattern) {
  auto impl = std::make_unique<Impl>();
  impl->pattern = std::string(pattern);
  int err = 0;
  PCRE2_SIZE offset = 0;
  impl->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0, &err,
                             &offset, nullptr);
  if (impl->code == nullptr)
    return InvalidArgument("target pattern \"re:" + impl->pattern + "\" is invalid at offset " +
                           std::to_string(offset) + ": " + Message(err));
  impl->context = pcre2_match_context_create(nullptr);
  if (impl->context == nullptr) return Internal("out of memory for a regex match context");
  pcre2_set_match_limit(impl->context, kMatchLimit);
  pcre2_set_depth_limit(impl->context, kDepthLimit);
  return TargetPattern(std::move(impl));
}

Result<bool> TargetPattern::MatchesPrefix(std::string_view name) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  if (md == nullptr) return Internal("out of memory for regex match data");
  const int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(name.data()), name.size(), 0,
                             PCRE2_ANCHORED, md, impl_->context);
  pcre2_match_data_free(md);
  if (rc >= 0) return true;
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  return InvalidArgument("target pattern \"re:" + impl_->pattern + "\" failed on \"" +
                         std::string(name) + "\": " + Message(rc));
}

}  // namespace pq::model
