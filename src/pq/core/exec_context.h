// How a library call executes: threads for the compute layer, progress lines, log level.
//
// Library entry points (RunProbe, ExportUniform, ExportCalibrated, Quantize, CheckCosts,
// engine::Evaluate, engine::GenerateText) take an ExecContext in their options and install it
// for their duration with a ScopedExecContext. Installing is process-wide state, deliberately:
// the compute layer's fast ops read the thread count at every call (compute::cpu::NumThreads()
// reads ExecThreads()), and threading a context through every op and every layer of the
// model would change hundreds of signatures for one integer. The scope restores what was
// installed before when it ends, so a call never leaks its settings into the next one.
//
// Nesting: the outermost scope wins. An entry point called by another (Quantize runs the
// probe, the export and Evaluate) runs under its caller's context; its own `exec` field is
// ignored. Contexts are not meant to be installed from several threads at once.
#pragma once

#include <optional>

#include "pq/core/log.h"

namespace pq {

struct ExecContext {
  int threads = 0;       // compute threads; 0: the process default (all cores unless set)
  bool progress = true;  // draw Progress lines on stderr
  std::optional<LogLevel> log_level;  // unset: keep the process's level
};

// Installs `context` (thread count, progress, log level) until destroyed, unless a scope is
// already installed (see "Nesting" above). At LogLevel::kDebug it logs the thread count.
class ScopedExecContext {
 public:
  explicit ScopedExecContext(const ExecContext& context);
  ~ScopedExecContext();
  ScopedExecContext(const ScopedExecContext&) = delete;
  ScopedExecContext& operator=(const ScopedExecContext&) = delete;

 private:
  bool installed_ = false;
  bool saved_progress_ = true;
  LogLevel saved_level_ = LogLevel::kInfo;
};

// Threads the compute layer uses now (>= 1): the installed context's when it names a count,
// else the process default (SetProcessThreads), else all cores.
int ExecThreads();
// Whether Progress lines are drawn now.
bool ExecProgress();
// The process default thread count (0: all cores), used outside any scope and by a context
// with threads == 0; for tests and benchmarks that call the compute layer directly
// (compute::cpu::SetNumThreads).
void SetProcessThreads(int threads);

}  // namespace pq
