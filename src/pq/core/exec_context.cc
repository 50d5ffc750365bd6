#include "pq/core/exec_context.h"

#include <atomic>
#include <string>

#include "pq/core/check.h"
#include "pq/core/thread_pool.h"

namespace pq {
namespace {

std::atomic<int> g_process_threads{0};  // 0: all cores
std::atomic<int> g_scope_threads{0};    // 0: the process default
std::atomic<bool> g_progress{true};
std::atomic<bool> g_in_scope{false};

}  // namespace

ScopedExecContext::ScopedExecContext(const ExecContext& context) {
  PQ_CHECK(context.threads >= 0, "ExecContext: threads must be >= 0 (0 = all cores)");
  if (g_in_scope.exchange(true)) return;  // nested: the outer context stays
  installed_ = true;
  g_scope_threads.store(context.threads);
  saved_progress_ = g_progress.exchange(context.progress);
  saved_level_ = GetLogLevel();
  if (context.log_level) SetLogLevel(*context.log_level);
  if (GetLogLevel() >= LogLevel::kDebug)
    LogInfo("exec context: " + std::to_string(ExecThreads()) + " threads");
}

ScopedExecContext::~ScopedExecContext() {
  if (!installed_) return;
  g_scope_threads.store(0);
  g_progress.store(saved_progress_);
  SetLogLevel(saved_level_);
  g_in_scope.store(false);
}

int ExecThreads() {
  if (const int n = g_scope_threads.load(); n > 0) return n;
  if (const int n = g_process_threads.load(); n > 0) return n;
  return DefaultThreads();
}

bool ExecProgress() { return g_progress.load(); }

void SetProcessThreads(int threads) {
  PQ_CHECK(threads >= 0, "SetProcessThreads: threads must be >= 0 (0 = all cores)");
  g_process_threads.store(threads);
}

}  // namespace pq
