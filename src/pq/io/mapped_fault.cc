#include "pq/io/mapped_fault.h"

#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace pq::io {
namespace {

// One registered mapping. `begin` is published last (release) and read first (acquire), so a
// handler that sees a non-zero begin sees the size and path written before it.
struct Slot {
  std::atomic<uintptr_t> begin{0};
  std::atomic<size_t> size{0};
  char path[480] = {};
};
constexpr size_t kSlots = 1024;
std::array<Slot, kSlots> g_slots;

void WriteStr(const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, s, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      return;
    }
    s += w;
    n -= static_cast<size_t>(w);
  }
}

// Async-signal-safe: atomics, write(2), _exit(2), sigaction(2), raise(3).
void OnSigbus(int sig, siginfo_t* info, void*) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (const Slot& s : g_slots) {
    const uintptr_t b = s.begin.load(std::memory_order_acquire);
    if (b == 0 || addr < b || addr - b >= s.size.load(std::memory_order_relaxed)) continue;
    WriteStr("error: ");
    WriteStr(s.path[0] ? s.path : "a mapped file");
    WriteStr(
        " changed while it was being read (truncated or replaced?); nothing was written "
        "to the output. Restore the file and run the command again.\n");
    ::_exit(2);
  }
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(sig, &dfl, nullptr);
  ::raise(sig);
}

}  // namespace

void RegisterMapping(const void* begin, size_t size, const std::string& path) {
  const auto b = reinterpret_cast<uintptr_t>(begin);
  if (b == 0) return;
  for (Slot& s : g_slots) {
    uintptr_t expected = 0;
    // Claim a free slot with a placeholder, fill it, then publish the real begin.
    if (!s.begin.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
    s.size.store(size, std::memory_order_relaxed);
    const size_t n = std::min(path.size(), sizeof s.path - 1);
    std::memcpy(s.path, path.data(), n);
    s.path[n] = '\0';
    s.begin.store(b, std::memory_order_release);
    return;
  }
}

void UnregisterMapping(const void* begin) {
  const auto b = reinterpret_cast<uintptr_t>(begin);
  for (Slot& s : g_slots) {
    uintptr_t expected = b;
    if (b != 0 && s.begin.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) return;
  }
}

Status InstallMappedFileFaultHandler() {
  struct sigaction sa = {};
  sa.sa_sigaction = OnSigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGBUS, &sa, nullptr) != 0)
    return Internal(std::string("cannot install the SIGBUS handler: ") + std::strerror(errno));
  return Status::Ok();
}

}  // namespace pq::io
