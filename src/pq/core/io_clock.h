// Wall time this process spends on I/O: reading checkpoint tensors (page-in, conversion to
// float) and writing files. Scopes mark it on the calling thread; a scope inside another
// counts once. Reported per MPI rank beside compute and reduction (pipeline LogRankTimes).
#pragma once

#include <chrono>

namespace pq {

// Seconds inside IoTimer scopes so far (every thread).
double IoSeconds();

class IoTimer {
 public:
  IoTimer();
  ~IoTimer();
  IoTimer(const IoTimer&) = delete;
  IoTimer& operator=(const IoTimer&) = delete;

 private:
  bool outer_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace pq
