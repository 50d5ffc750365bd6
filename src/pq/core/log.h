// Progress and diagnostics on stderr. The library never prints to stdout.
#pragma once

#include <string>

namespace pq {

enum class LogLevel { kQuiet = 0, kInfo = 1, kDebug = 2 };
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

void LogInfo(const std::string& msg);
void LogWarning(const std::string& msg);

// "1h02m", "12m05s", "42s", "0.3s": a duration as people read it in a progress line.
std::string FormatDuration(double seconds);
// One progress line: "label  12/40  30%  elapsed 1m05s  eta 2m31s" (the eta is elapsed / done
// * remaining; absent before the first unit is done and on the final line).
std::string FormatProgressLine(const std::string& label, size_t done, size_t total,
                               double elapsed_s, bool final);

// A progress display on stderr with elapsed time and estimated time remaining. On a TTY one
// line redrawn in place; otherwise (a log file, a batch job) one line per unit of work — at
// most one per 5 % step when there are more than 100 units — so a multi-hour run says where it
// is.
class Progress {
 public:
  Progress(std::string label, size_t total);
  ~Progress();
  void Advance(size_t n = 1);
  void Finish();

 private:
  void Draw(bool final);
  std::string label_;
  size_t total_;
  size_t done_ = 0;
  double start_s_;
  double last_draw_s_ = -1;
  size_t last_logged_step_ = 0;  // non-TTY: the last unit (or 5 % step) a line was written for
  bool finished_ = false;
};

}  // namespace pq
