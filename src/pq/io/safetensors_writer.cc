// CheckpointWriter: streams tensors into safetensors shards inside a temporary directory
// beside the output, then renames that directory into place on Commit().
//
// Per shard, tensor bytes are appended to a temporary data file as they arrive (memory use
// is bounded by the metadata, not the model). Closing a shard writes the final file: the
// header (deterministic, see safetensors.h) and then the data, copied from the data file in
// layout order (element size descending, then name), after which the data file is deleted.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <tuple>

#include "pq/core/log.h"
#include "pq/core/utf8.h"
#include "pq/io/file_util.h"
#include "pq/io/json_util.h"
#include "pq/io/safetensors.h"

namespace pq::io {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::string_view kTmpPrefix = ".pq-shard-";  // temporary files inside the temp dir

std::string FiveDigits(size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%05zu", i);
  return buf;
}

std::string ShardFinalName(size_t i, size_t n) {
  return "model-" + FiveDigits(i) + "-of-" + FiveDigits(n) + ".safetensors";
}

// Returns a problem with a relative output file name, or "" if it is acceptable:
// "a/b.json" is fine; absolute paths, "", ".", ".." and empty components are not, nor are
// the names the writer itself produces.
std::string BadRelativeName(const std::string& rel) {
  if (rel.empty()) return "is empty";
  if (rel.find('\0') != std::string::npos) return "contains a NUL byte";
  if (rel[0] == '/') return "is absolute (must be relative to the output directory)";
  size_t start = 0;
  std::string first;
  while (true) {
    const size_t slash = rel.find('/', start);
    const std::string part = rel.substr(start, slash == std::string::npos ? slash : slash - start);
    if (part.empty() || part == "." || part == "..") {
      return "has an empty, \".\" or \"..\" path component";
    }
    if (first.empty()) first = part;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  const bool shard_like = first.starts_with("model-") && first.ends_with(".safetensors");
  if (first == "model.safetensors" || first == "model.safetensors.index.json" || shard_like ||
      first.starts_with(kTmpPrefix)) {
    return "is reserved for the checkpoint's own tensor files";
  }
  return "";
}

// A tensor whose bytes sit in the current shard's temporary data file.
struct PendingTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t data_file_offset;
  uint64_t size;
};

// A closed shard: its final bytes written under a temporary name.
struct ClosedShard {
  std::string tmp_name;
  std::vector<std::string> names;
};

// Returns the header JSON of a shard whose tensors are in `layout` order, padded with
// spaces to a multiple of 8 bytes.
std::string BuildHeader(const std::vector<const PendingTensor*>& layout) {
  std::string h = R"({"__metadata__":{"format":"pt"})";
  uint64_t offset = 0;
  for (const PendingTensor* t : layout) {
    h += ',';
    h += Quote(t->name);
    h += R"(:{"dtype":")";
    h += DTypeName(t->dtype);
    h += R"(","shape":[)";
    for (size_t i = 0; i < t->shape.size(); ++i) {
      if (i > 0) h += ",";
      h += std::to_string(t->shape[i]);
    }
    h += R"(],"data_offsets":[)" + std::to_string(offset) + "," + std::to_string(offset + t->size) +
         "]}";
    offset += t->size;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

}  // namespace

struct CheckpointWriter::Impl {
  fs::path out;          // absolute, normalized output directory
  std::string out_name;  // as the caller spelled it, for messages
  fs::path tmp;          // temporary directory beside `out`
  WriterOptions options;
  bool committed = false;
  Status failure;  // first I/O failure; the writer refuses further work after one

  std::set<std::string, std::less<>> tensor_names;  // all shards
  std::set<std::string, std::less<>> file_names;    // AddFile/CopyFile
  std::vector<ClosedShard> shards;

  // The open shard.
  UniqueFd data_fd;
  std::string data_path;
  std::vector<PendingTensor> pending;
  uint64_t pending_bytes = 0;

  ~Impl() {
    if (committed || tmp.empty()) return;
    data_fd.Reset();
    std::error_code ec;
    fs::remove_all(tmp, ec);
  }

  Status CheckUsable(std::string_view op) const {
    if (committed) return InvalidArgument(out_name + ": " + std::string(op) + " after Commit");
    if (!failure.ok()) {
      return Status(failure.code(), out_name + ": " + std::string(op) +
                                        " after an earlier failure: " + failure.message());
    }
    return Status::Ok();
  }
  // Records `s` as the writer's failure if it is an error; returns it.
  Status Sticky(Status s) {
    if (!s.ok() && failure.ok()) failure = s;
    return s;
  }
  std::string TmpPath(const std::string& rel) const { return (tmp / rel).string(); }

  Status AppendToShard(const std::string& name, DType dtype, std::vector<int64_t> shape,
                       std::span<const uint8_t> bytes) {
    const uint64_t size = bytes.size();
    const uint64_t max = options.max_shard_bytes;
    // Start a new shard if this tensor would push a non-empty one past the limit (an empty
    // tensor never does; a tensor larger than the limit gets a shard of its own).
    if (!pending.empty() && size > 0 && (pending_bytes > max || size > max - pending_bytes)) {
      PQ_RETURN_IF_ERROR(CloseShard());
    }
    if (!data_fd.valid()) {
      data_path = TmpPath(std::string(kTmpPrefix) + FiveDigits(shards.size() + 1) + ".data");
      PQ_ASSIGN_OR_RETURN(data_fd, OpenFile(data_path, O_RDWR | O_CREAT | O_EXCL));
    }
    PQ_RETURN_IF_ERROR(WriteAll(data_fd.get(), bytes, data_path));
    pending.push_back({name, dtype, std::move(shape), pending_bytes, size});
    pending_bytes += size;
    return Status::Ok();
  }

  // Writes the open shard's final file and deletes its data file.
  Status CloseShard() {
    std::vector<const PendingTensor*> layout;
    for (const PendingTensor& t : pending) layout.push_back(&t);
    std::sort(layout.begin(), layout.end(), [](const PendingTensor* a, const PendingTensor* b) {
      const size_t sa = DTypeSize(a->dtype), sb = DTypeSize(b->dtype);
      return std::tie(sb, a->name) < std::tie(sa, b->name);  // size descending, then name
    });
    const std::string header = BuildHeader(layout);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));

    ClosedShard shard;
    shard.tmp_name = std::string(kTmpPrefix) + FiveDigits(shards.size() + 1) + ".safetensors";
    const std::string path = TmpPath(shard.tmp_name);
    PQ_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY | O_CREAT | O_EXCL));
    PQ_RETURN_IF_ERROR(WriteAll(fd.get(), std::span<const uint8_t>(len, 8), path));
    PQ_RETURN_IF_ERROR(WriteAll(fd.get(), header, path));
    for (const PendingTensor* t : layout) {
      PQ_RETURN_IF_ERROR(
          CopyRange(data_fd.get(), t->data_file_offset, fd.get(), t->size, data_path, path));
      shard.names.push_back(t->name);
    }
    PQ_RETURN_IF_ERROR(Fsync(fd.get(), path));
    PQ_RETURN_IF_ERROR(fd.Close(path));
    if (data_fd.valid()) {
      data_fd.Reset();
      if (::unlink(data_path.c_str()) != 0) return ErrnoError(data_path, "unlink", errno);
    }
    shards.push_back(std::move(shard));
    pending.clear();
    pending_bytes = 0;
    return Status::Ok();
  }

  // Gives the shards their final names and writes the index when there are several.
  Status FinishShards(uint64_t total_bytes) {
    if (!pending.empty() || shards.empty()) PQ_RETURN_IF_ERROR(CloseShard());
    const size_t n = shards.size();
    json weight_map = json::object();
    for (size_t i = 0; i < n; ++i) {
      const std::string final_name =
          n == 1 ? std::string("model.safetensors") : ShardFinalName(i + 1, n);
      const std::string from = TmpPath(shards[i].tmp_name), to = TmpPath(final_name);
      if (std::rename(from.c_str(), to.c_str()) != 0) {
        return ErrnoError(to, "cannot rename " + from + " to it", errno);
      }
      for (const std::string& name : shards[i].names) weight_map[name] = final_name;
    }
    if (n > 1) {
      json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
      PQ_RETURN_IF_ERROR(
          WriteFile(TmpPath("model.safetensors.index.json"),
                    index.dump(2, ' ', false, json::error_handler_t::replace) + "\n"));
    }
    return FsyncPath(tmp.string());
  }

  // Moves the finished temp dir to `out`, replacing an existing one when allowed.
  Status Publish() {
    std::error_code ec;
    const bool exists = fs::exists(out, ec);
    if (exists && !fs::is_empty(out, ec)) {
      if (!options.overwrite) {
        return InvalidArgument(out_name + ": output directory appeared and is not empty; " +
                               "pass --overwrite to replace it or choose another directory");
      }
      // Swap atomically where the kernel allows it; the old checkpoint then sits at `tmp`.
      if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_EXCHANGE) == 0) {
        committed = true;
        fs::remove_all(tmp, ec);
        return FsyncPath(out.parent_path().string());
      }
      const fs::path old = out.parent_path() / ("." + out.filename().string() + ".old-" +
                                                std::to_string(::getpid()) + "-" + RandomHex(8));
      if (std::rename(out.c_str(), old.c_str()) != 0) {
        return ErrnoError(out_name, "cannot move the existing directory aside", errno);
      }
      if (std::rename(tmp.c_str(), out.c_str()) != 0) {
        const int err = errno;
        std::rename(old.c_str(), out.c_str());  // best effort: put the old one back
        return ErrnoError(out_name, "cannot rename " + tmp.string() + " to it", err);
      }
      committed = true;
      fs::remove_all(old, ec);
      return FsyncPath(out.parent_path().string());
    }
    // Absent, or an empty directory (rename(2) replaces an empty directory).
    if (std::rename(tmp.c_str(), out.c_str()) != 0) {
      return ErrnoError(out_name, "cannot rename " + tmp.string() + " to it", errno);
    }
    committed = true;
    return FsyncPath(out.parent_path().string());
  }

  // Validates `rel` and creates its parent directories in the temp dir; returns its path.
  Result<std::string> PrepareFile(const std::string& rel, std::string_view op) {
    PQ_RETURN_IF_ERROR(CheckUsable(op));
    if (std::string bad = BadRelativeName(rel); !bad.empty()) {
      return InvalidArgument(out_name + ": " + std::string(op) + ": file name " + Quote(rel) + " " +
                             bad);
    }
    if (file_names.contains(rel)) {
      return InvalidArgument(out_name + ": " + std::string(op) + ": file " + Quote(rel) +
                             " was already added");
    }
    const fs::path dst = tmp / rel;
    std::error_code ec;
    fs::create_directories(dst.parent_path(), ec);
    if (ec) return Sticky(IoError(dst.parent_path().string() + ": cannot create: " + ec.message()));
    return dst.string();
  }
};

CheckpointWriter::CheckpointWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CheckpointWriter::~CheckpointWriter() = default;

Result<std::unique_ptr<CheckpointWriter>> CheckpointWriter::Create(const std::string& out_dir,
                                                                   WriterOptions options) {
  if (out_dir.empty()) return InvalidArgument("output directory path is empty");
  if (options.max_shard_bytes == 0) {
    return InvalidArgument(out_dir + ": max_shard_bytes must be positive");
  }
  auto impl = std::make_unique<Impl>();
  impl->out_name = out_dir;
  impl->options = options;
  std::error_code ec;
  fs::path out = fs::absolute(out_dir, ec).lexically_normal();
  if (ec) return InvalidArgument(out_dir + ": bad path: " + ec.message());
  if (!out.has_filename()) out = out.parent_path();  // "a/b/" -> "a/b"
  if (!out.has_filename() || out.filename() == "..") {
    return InvalidArgument(out_dir + ": cannot be used as an output directory");
  }
  impl->out = out;

  const fs::file_status st = fs::status(out, ec);
  if (fs::exists(st)) {
    if (!fs::is_directory(st)) {
      return InvalidArgument(out_dir + ": exists and is not a directory");
    }
    if (!options.overwrite && !fs::is_empty(out, ec)) {
      return InvalidArgument(out_dir + ": output directory exists and is not empty; pass " +
                             "--overwrite to replace it or choose another directory");
    }
  }
  fs::create_directories(out.parent_path(), ec);
  if (ec) {
    return IoError(out.parent_path().string() + ": cannot create directory: " + ec.message());
  }
  // Temp dirs of killed runs that wrote here before: remove them (they hold shard data).
  uint64_t stale = 0;
  for (const char* kind : {".tmp-", ".old-"})
    stale +=
        RemoveStaleTemporaries(out.parent_path().string(), "." + out.filename().string() + kind);
  if (stale > 0)
    LogInfo("removed " + std::to_string(stale) + " bytes of temporary files left beside " +
            out.string() + " by killed runs");
  const std::string prefix =
      "." + out.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-";
  for (int attempt = 0; attempt < 16 && impl->tmp.empty(); ++attempt) {
    const fs::path tmp = out.parent_path() / (prefix + RandomHex(8));
    if (::mkdir(tmp.c_str(), 0755) == 0) {
      impl->tmp = tmp;
    } else if (errno != EEXIST) {
      return ErrnoError(tmp.string(), "cannot create temporary directory", errno);
    }
  }
  if (impl->tmp.empty()) return IoError(out_dir + ": cannot create a temporary directory");
  return std::unique_ptr<CheckpointWriter>(new CheckpointWriter(std::move(impl)));
}

Status CheckpointWriter::AddTensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                                   std::span<const uint8_t> bytes) {
  Impl& w = *impl_;
  PQ_RETURN_IF_ERROR(w.CheckUsable("AddTensor"));
  const std::string where = w.out_name + ": tensor " + Quote(name) + ": ";
  if (name.empty() || name == "__metadata__" || !IsValidUtf8(name)) {
    return InvalidArgument(where + "invalid name (must be non-empty UTF-8, not __metadata__)");
  }
  if (dtype == DType::kF8E8M0) {
    return InvalidArgument(where +
                           "F8_E8M0 is read-only; store E8M0 scales as U8 (vLLM loads "
                           "MX scales as uint8)");
  }
  int64_t numel = 1;
  bool overflow = false;
  for (int64_t d : shape) {
    if (d < 0) return InvalidArgument(where + "negative dimension in shape");
    overflow |= __builtin_mul_overflow(numel, d, &numel);
  }
  uint64_t nbytes = 0;
  if (overflow ||
      __builtin_mul_overflow(static_cast<uint64_t>(numel), uint64_t{DTypeSize(dtype)}, &nbytes)) {
    return InvalidArgument(where + "shape has too many elements");
  }
  if (nbytes != bytes.size()) {
    return InvalidArgument(where + std::string(DTypeName(dtype)) + " shape needs " +
                           std::to_string(nbytes) + " bytes but " + std::to_string(bytes.size()) +
                           " were given");
  }
  if (w.tensor_names.contains(name)) return InvalidArgument(where + "added twice");
  PQ_RETURN_IF_ERROR(w.Sticky(w.AppendToShard(name, dtype, std::move(shape), bytes)));
  w.tensor_names.insert(name);
  total_bytes_ += nbytes;
  return Status::Ok();
}

Status CheckpointWriter::AddFile(const std::string& relative_name, std::string_view contents) {
  PQ_ASSIGN_OR_RETURN(std::string dst, impl_->PrepareFile(relative_name, "AddFile"));
  Status written = [&]() -> Status {
    PQ_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(dst, O_WRONLY | O_CREAT | O_EXCL));
    PQ_RETURN_IF_ERROR(WriteAll(fd.get(), contents, dst));
    PQ_RETURN_IF_ERROR(Fsync(fd.get(), dst));
    return fd.Close(dst);
  }();
  PQ_RETURN_IF_ERROR(impl_->Sticky(std::move(written)));
  impl_->file_names.insert(relative_name);
  return Status::Ok();
}

Status CheckpointWriter::CopyFile(const std::string& src_path, const std::string& relative_name) {
  PQ_ASSIGN_OR_RETURN(std::string dst, impl_->PrepareFile(relative_name, "CopyFile"));
  PQ_ASSIGN_OR_RETURN(UniqueFd in, OpenFile(src_path, O_RDONLY));
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return ErrnoError(src_path, "stat", errno);
  if (!S_ISREG(st.st_mode)) return InvalidArgument(src_path + ": not a regular file");
  Status copied = [&]() -> Status {
    PQ_ASSIGN_OR_RETURN(UniqueFd out, OpenFile(dst, O_WRONLY | O_CREAT | O_EXCL));
    PQ_RETURN_IF_ERROR(
        CopyRange(in.get(), 0, out.get(), static_cast<uint64_t>(st.st_size), src_path, dst));
    PQ_RETURN_IF_ERROR(Fsync(out.get(), dst));
    return out.Close(dst);
  }();
  PQ_RETURN_IF_ERROR(impl_->Sticky(std::move(copied)));
  impl_->file_names.insert(relative_name);
  return Status::Ok();
}

Status CheckpointWriter::Commit() {
  Impl& w = *impl_;
  PQ_RETURN_IF_ERROR(w.CheckUsable("Commit"));
  PQ_RETURN_IF_ERROR(w.Sticky(w.FinishShards(total_bytes_)));
  return w.Sticky(w.Publish());
}

}  // namespace pq::io
