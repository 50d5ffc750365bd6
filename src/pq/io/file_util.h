// Small POSIX file helpers for the io layer: an owning file descriptor, full reads and
// writes that retry on EINTR and short counts, range copies, fsync, and whole-file reads.
// Every failure comes back as a Status whose message names the path and the OS error.
//
// Non-goals: portability beyond Linux/POSIX, buffering (callers write large blocks).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pq/core/status.h"

namespace pq::io {

// An owned file descriptor, closed on destruction (-1 = none).
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset();
  // Closes the descriptor and reports a close() failure (a deferred write error).
  Status Close(const std::string& path);

 private:
  int fd_ = -1;
};

// Returns "path: what: strerror(errno)" as an IoError (or NotFound for ENOENT).
Status ErrnoError(const std::string& path, std::string_view what, int err);

// Opens `path` with open(2) flags (O_CLOEXEC is added) and `mode` for created files.
Result<UniqueFd> OpenFile(const std::string& path, int flags, unsigned mode = 0644);

// Opens an existing regular file for reading. A FIFO, device, socket or directory is refused
// without blocking (open(2) on a FIFO would wait for a writer forever).
Result<UniqueFd> OpenRegularFile(const std::string& path);

// Writes all of `data` at the current position of `fd`.
Status WriteAll(int fd, std::span<const uint8_t> data, const std::string& path);
Status WriteAll(int fd, std::string_view data, const std::string& path);

// Copies `len` bytes from `in` at `in_offset` to the current position of `out`
// (copy_file_range where the kernel allows it, else pread + write).
Status CopyRange(int in, uint64_t in_offset, int out, uint64_t len, const std::string& in_path,
                 const std::string& out_path);

// fsync(2) on an open descriptor / on a path (files or directories).
Status Fsync(int fd, const std::string& path);
Status FsyncPath(const std::string& path);

// Reads a whole regular file. Refuses files larger than `max_bytes`.
Result<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes = 1'000'000'000);

// Writes `contents` to `path` (created or truncated) and fsyncs it.
Status WriteFile(const std::string& path, std::string_view contents);

// Writes `contents` to a temporary file beside `path`, fsyncs it and renames it over
// `path`, so readers see either the old or the new file, never a partial one.
Status WriteFileAtomic(const std::string& path, std::string_view contents);

// Temporary names carry the creating process's id: `prefix` + "<pid>-<random>". Removes (files
// or whole directories) the entries of `dir` named so whose process no longer exists on this
// machine — leftovers of killed runs — and returns how many bytes they held. Entries of live
// processes (including this one) are kept.
uint64_t RemoveStaleTemporaries(const std::string& dir, const std::string& prefix);

// Returns `n` random lowercase hex digits (for unique temporary names).
std::string RandomHex(int n);

// InvalidArgument when the output directory `out` is, contains or lies inside one of `inputs`
// (a model directory or file, a work dir), after resolving symlinks and `..` — writing it
// (with --overwrite, replacing it) would destroy the input. Empty inputs are skipped.
Status CheckOutputOutsideInputs(const std::string& out, const std::vector<std::string>& inputs);

// Whether `out` can be written as a new directory before any long work starts: it must not
// exist unless `overwrite`, and its parent must be an existing, writable directory.
Status CheckOutputLocation(const std::string& out, bool overwrite);

}  // namespace pq::io
