#include "pq/core/log.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
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

std::string FormatDuration(double seconds) {
  char buf[32];
  if (!(seconds >= 0)) seconds = 0;
  if (seconds < 10) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
  } else if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.0fs", std::floor(seconds));
  } else if (seconds < 3600) {
    const auto s = static_cast<long long>(seconds);
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  } else {
    const auto m = static_cast<long long>(seconds / 60);
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", m / 60, m % 60);
  }
  return buf;
}

std::string FormatProgressLine(const std::string& label, size_t done, size_t total,
                               double elapsed_s, bool final) {
  const double pct = total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0;
  char head[64];
  std::snprintf(head, sizeof head, "  %zu/%zu  %3.0f%%  elapsed ", done, total, pct);
  std::string line = label + head + FormatDuration(elapsed_s);
  if (!final && done > 0 && done < total) {
    const double left = elapsed_s / static_cast<double>(done) * static_cast<double>(total - done);
    line += "  eta " + FormatDuration(left);
  }
  return line;
}

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
  const std::string line =
      FormatProgressLine(label_, done_, total_, NowSeconds() - start_s_, final);
  if (tty) {  // "\x1b[K" clears what a longer earlier line left
    std::fprintf(stderr, "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
  } else {
    const size_t step = total_ > 100 ? done_ * 20 / total_ : done_;  // 5 % steps beyond 100
    if (!final && (done_ == 0 || done_ >= total_ || step == last_logged_step_)) return;
    last_logged_step_ = step;
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace pq
