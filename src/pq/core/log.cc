#include "pq/core/log.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "pq/core/exec_context.h"

namespace pq {
namespace {
LogLevel g_level = LogLevel::kInfo;
double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

void SetLogLevel(LogLevel level) { g_level = level; }
LogLevel GetLogLevel() { return g_level; }

void LogInfo(const std::string& msg) {
  if (g_level >= LogLevel::kInfo) std::fprintf(stderr, "%s\n", msg.c_str());
}
void LogWarning(const std::string& msg) { std::fprintf(stderr, "warning: %s\n", msg.c_str()); }

Progress::Progress(std::string label, size_t total)
    : label_(std::move(label)), total_(total), start_s_(NowSeconds()) {}
Progress::~Progress() { Finish(); }

void Progress::Advance(size_t n) {
  done_ += n;
  const double now = NowSeconds();
  if (now - last_draw_s_ > 0.2) {
    last_draw_s_ = now;
    Draw(false);
  }
}

void Progress::Finish() {
  if (finished_) return;
  finished_ = true;
  Draw(true);
}

void Progress::Draw(bool final) {
  if (g_level < LogLevel::kInfo || !ExecProgress()) return;
  const bool tty = isatty(STDERR_FILENO);
  if (!tty && !final) return;  // in logs, only the final line
  const double pct =
      total_ ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 100.0;
  std::fprintf(stderr, "%s%s  %zu/%zu  %3.0f%%  %.1fs%s", tty ? "\r" : "", label_.c_str(), done_,
               total_, pct, NowSeconds() - start_s_, final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace pq
