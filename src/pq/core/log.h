// Progress and diagnostics on stderr. The library never prints to stdout.
#pragma once

#include <string>

namespace pq {

enum class LogLevel { kQuiet = 0, kInfo = 1, kDebug = 2 };
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

void LogInfo(const std::string& msg);
void LogWarning(const std::string& msg);

// A one-line progress display on stderr ("label  12/40  30%"), redrawn in place on a TTY.
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
  bool finished_ = false;
};

}  // namespace pq
