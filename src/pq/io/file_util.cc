#include "pq/io/file_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "pq/core/io_clock.h"

namespace pq::io {
namespace {

constexpr size_t kCopyChunkBytes = size_t{8} << 20;  // pread/write fallback buffer

// Copies with copy_file_range(2). Returns false (having copied nothing) if the kernel or
// filesystem does not support it, so the caller can fall back to pread + write.
Result<bool> TryCopyFileRange(int in, uint64_t in_offset, int out, uint64_t len,
                              const std::string& in_path) {
  auto off = static_cast<off_t>(in_offset);
  uint64_t done = 0;
  while (done < len) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(len - done, uint64_t{1} << 30));
    ssize_t n = ::copy_file_range(in, &off, out, nullptr, want, 0);
    if (n < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (done == 0 && (err == ENOSYS || err == EXDEV || err == EINVAL || err == EOPNOTSUPP ||
                        err == EPERM || err == EBADF)) {
        return false;
      }
      return ErrnoError(in_path, "copy_file_range", err);
    }
    if (n == 0) {
      return DataLoss(in_path + ": unexpected end of file while copying (wanted " +
                      std::to_string(len - done) + " more bytes)");
    }
    done += static_cast<uint64_t>(n);
  }
  return true;
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    Reset();
    fd_ = o.release();
  }
  return *this;
}

void UniqueFd::Reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status UniqueFd::Close(const std::string& path) {
  if (fd_ < 0) return Status::Ok();
  int fd = release();
  if (::close(fd) != 0) return ErrnoError(path, "close", errno);
  return Status::Ok();
}

Status ErrnoError(const std::string& path, std::string_view what, int err) {
  std::string msg = path + ": " + std::string(what) + ": " + std::strerror(err);
  if (err == ENOENT) return NotFound(std::move(msg));
  return IoError(std::move(msg));
}

Result<UniqueFd> OpenFile(const std::string& path, int flags, unsigned mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, static_cast<mode_t>(mode));
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoError(path, "cannot open", errno);
  return UniqueFd(fd);
}

Result<UniqueFd> OpenRegularFile(const std::string& path) {
  PQ_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY | O_NONBLOCK));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(path, "stat", errno);
  if (!S_ISREG(st.st_mode)) return InvalidArgument(path + ": not a regular file");
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
    return ErrnoError(path, "fcntl", errno);
  return fd;
}

Status WriteAll(int fd, std::span<const uint8_t> data, const std::string& path) {
  const IoTimer io_timer;
  size_t done = 0;
  while (done < data.size()) {
    size_t want = std::min<size_t>(data.size() - done, size_t{1} << 30);
    ssize_t n = ::write(fd, data.data() + done, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(path, "write", errno);
    }
    if (n == 0) return IoError(path + ": write returned 0 bytes");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  return WriteAll(fd, std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()), path);
}

Status CopyRange(int in, uint64_t in_offset, int out, uint64_t len, const std::string& in_path,
                 const std::string& out_path) {
  if (len == 0) return Status::Ok();
  PQ_ASSIGN_OR_RETURN(bool copied, TryCopyFileRange(in, in_offset, out, len, in_path));
  if (copied) return Status::Ok();
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(len, kCopyChunkBytes)));
  uint64_t done = 0;
  while (done < len) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(len - done, buf.size()));
    ssize_t n = ::pread(in, buf.data(), want, static_cast<off_t>(in_offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(in_path, "read", errno);
    }
    if (n == 0) {
      return DataLoss(in_path + ": unexpected end of file while copying (wanted " +
                      std::to_string(len - done) + " more bytes)");
    }
    PQ_RETURN_IF_ERROR(WriteAll(out, std::span(buf.data(), static_cast<size_t>(n)), out_path));
    done += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status Fsync(int fd, const std::string& path) {
  while (::fsync(fd) != 0) {
    if (errno == EINTR) continue;
    // Some filesystems (and directories on some of them) do not support fsync.
    if (errno == EINVAL || errno == EROFS) return Status::Ok();
    return ErrnoError(path, "fsync", errno);
  }
  return Status::Ok();
}

Status FsyncPath(const std::string& path) {
  PQ_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  PQ_RETURN_IF_ERROR(Fsync(fd.get(), path));
  return fd.Close(path);
}

Result<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes) {
  PQ_ASSIGN_OR_RETURN(UniqueFd fd, OpenRegularFile(path));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(path, "stat", errno);
  auto size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes) {
    return InvalidArgument(path + ": file is " + std::to_string(size) +
                           " bytes, more than the limit of " + std::to_string(max_bytes));
  }
  std::string out(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(path, "read", errno);
    }
    if (n == 0) break;  // the file shrank while we read it
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

Status WriteFile(const std::string& path, std::string_view contents) {
  PQ_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY | O_CREAT | O_TRUNC));
  PQ_RETURN_IF_ERROR(WriteAll(fd.get(), contents, path));
  PQ_RETURN_IF_ERROR(Fsync(fd.get(), path));
  return fd.Close(path);
}

namespace {

// The pid in "<pid>-<random>", or 0 if `rest` does not start so.
pid_t LeadingPid(std::string_view rest) {
  const size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string_view::npos || dash > 9) return 0;
  pid_t pid = 0;
  for (char c : rest.substr(0, dash)) {
    if (c < '0' || c > '9') return 0;
    pid = pid * 10 + (c - '0');
  }
  return pid;
}

uint64_t TreeBytes(const std::filesystem::path& p) {
  std::error_code ec;
  if (!std::filesystem::is_directory(p, ec)) return std::filesystem::file_size(p, ec);
  uint64_t bytes = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(p, ec))
    if (e.is_regular_file(ec)) bytes += e.file_size(ec);
  return bytes;
}

}  // namespace

uint64_t RemoveStaleTemporaries(const std::string& dir, const std::string& prefix) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(dir.empty() ? "." : dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const pid_t pid = LeadingPid(std::string_view(name).substr(prefix.size()));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(e.path());
  }
  uint64_t bytes = 0;
  for (const auto& p : stale) {
    bytes += TreeBytes(p);
    fs::remove_all(p, ec);
  }
  return bytes;
}

Status WriteFileAtomic(const std::string& path, std::string_view contents) {
  {
    const std::filesystem::path p(path);
    RemoveStaleTemporaries(p.parent_path().string(), p.filename().string() + ".tmp-");
  }
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + RandomHex(8);
  Status s = [&]() -> Status {
    PQ_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(tmp, O_WRONLY | O_CREAT | O_EXCL));
    PQ_RETURN_IF_ERROR(WriteAll(fd.get(), contents, tmp));
    PQ_RETURN_IF_ERROR(Fsync(fd.get(), tmp));
    PQ_RETURN_IF_ERROR(fd.Close(tmp));
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
      return ErrnoError(path, "cannot rename " + tmp + " to it", errno);
    }
    return Status::Ok();
  }();
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

std::string RandomHex(int n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device rd;
  std::mt19937_64 gen((uint64_t{rd()} << 32) ^ rd());
  std::string out;
  for (int i = 0; i < n; ++i) out.push_back(kHex[gen() & 15]);
  return out;
}

namespace {

// Absolute, symlinks of the existing prefix resolved, `.`/`..` and trailing slashes removed.
std::filesystem::path Resolved(const std::string& p) {
  std::error_code ec;
  std::filesystem::path r = std::filesystem::weakly_canonical(std::filesystem::absolute(p), ec);
  if (ec) r = std::filesystem::absolute(p).lexically_normal();
  if (!r.has_filename() && r.has_parent_path() && r != r.root_path()) r = r.parent_path();
  return r;
}

// Whether `inner` equals `outer` or lies below it (whole path components).
bool IsWithin(const std::filesystem::path& inner, const std::filesystem::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // a trailing separator
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

}  // namespace

Status CheckOutputOutsideInputs(const std::string& out, const std::vector<std::string>& inputs) {
  const std::filesystem::path o = Resolved(out);
  for (const std::string& in : inputs) {
    if (in.empty()) continue;
    const std::filesystem::path i = Resolved(in);
    const char* how = IsWithin(o, i)   ? (o == i ? "is" : "is inside")
                      : IsWithin(i, o) ? "contains"
                                       : nullptr;
    if (!how) continue;
    const bool renamed = o.string() != out || i.string() != in;
    return InvalidArgument("output " + out + " " + how + " the input " + in +
                           (renamed ? " (resolved: " + o.string() + ", " + i.string() + ")" : "") +
                           "; writing it would destroy the input: choose another output directory");
  }
  return Status::Ok();
}

Status CheckOutputLocation(const std::string& out, bool overwrite) {
  if (out.empty()) return InvalidArgument("the output directory is empty");
  std::error_code ec;
  if (!overwrite && std::filesystem::exists(out, ec))
    return InvalidArgument(out + " exists; pass --overwrite to replace it");
  const std::filesystem::path parent = Resolved(out).parent_path();
  if (!std::filesystem::is_directory(parent, ec))
    return InvalidArgument(out + ": the parent directory " + parent.string() +
                           " does not exist; create it first");
  if (::access(parent.c_str(), W_OK) != 0)
    return ErrnoError(parent.string(), "cannot write the output into", errno);
  return Status::Ok();
}

}  // namespace pq::io
