// The "re:" targets of compressed-tensors configs (config_groups targets, ignore), matched as
// vLLM matches them: Python re.match, i.e. anchored at the start of the module name only.
// Patterns come from untrusted config.json files, so they are compiled by PCRE2 (not
// std::regex, whose recursive backtracking a crafted pattern drives into hours or a stack
// overflow) and run under a match limit: a pattern that exceeds it is an error, never a hang.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "pq/core/status.h"

namespace pq::model {

class TargetPattern {
 public:
  // Compiles `pattern` (the text after "re:"); InvalidArgument names it on a syntax error.
  static Result<TargetPattern> Compile(std::string_view pattern);
  TargetPattern(TargetPattern&&) noexcept;
  TargetPattern& operator=(TargetPattern&&) noexcept;
  ~TargetPattern();

  // Whether the pattern matches a prefix of `name` (re.match). InvalidArgument when PCRE2 gives
  // up (match or depth limit: a pathological pattern).
  Result<bool> MatchesPrefix(std::string_view name) const;

 private:
  struct Impl;
  explicit TargetPattern(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pq::model
