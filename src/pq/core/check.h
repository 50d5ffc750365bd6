// PQ_CHECK: invariants that, if false, are bugs in PrismaQuant (not bad input).
// Bad input is reported with Status; a failed check aborts with file:line and a message.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace pq::internal {
[[noreturn]] inline void CheckFailed(const char* file, int line, const char* cond,
                                     const char* msg) {
  std::fprintf(stderr, "%s:%d: check failed: %s (%s)\n", file, line, cond, msg);
  std::abort();
}
}  // namespace pq::internal

#define PQ_CHECK(cond, msg)                                                   \
  do {                                                                        \
    if (!(cond)) ::pq::internal::CheckFailed(__FILE__, __LINE__, #cond, msg); \
  } while (0)
