// Safetensors checkpoints: an mmap'd reader (single file, or a directory with
// model.safetensors / model.safetensors.index.json shards) and a sharded atomic writer.
//
// Every header is validated completely before any tensor is exposed: JSON size bound,
// dtype known, byte length = dtype size x shape, offsets inside the file, tensors tiling
// the data buffer without overlap, unique names, index entries present in their shard.
// Errors name the file and the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pq/core/dtype.h"
#include "pq/core/status.h"

namespace pq::io {

inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // as the reference reader
inline constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000;

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;  // points into the mmap; valid while the reader lives
  std::string file;                // path of the shard holding it
  uint64_t offset = 0;             // data_offsets[0]: start within the file's data buffer

  // Product of `shape` (1 for a scalar); -1 if a dim is negative or the product overflows.
  int64_t numel() const;
};

class MappedFile;  // RAII mmap of one file (internal)

// A read-only view of one checkpoint: all tensors of all shards.
class CheckpointReader {
 public:
  // `path`: a .safetensors file, or a directory holding model.safetensors.index.json or
  // exactly one *.safetensors file (model.safetensors preferred).
  static Result<std::unique_ptr<CheckpointReader>> Open(const std::string& path);
  ~CheckpointReader();

  // Tensor names in sorted order.
  const std::vector<std::string>& names() const { return names_; }
  // nullptr if absent.
  const TensorInfo* Find(std::string_view name) const;
  // NotFound error naming the checkpoint if absent.
  Result<const TensorInfo*> Get(std::string_view name) const;
  // Directory holding the checkpoint (for config.json etc.).
  const std::string& dir() const { return dir_; }
  // Paths of the shard files.
  const std::vector<std::string>& files() const { return files_; }
  // __metadata__ of the first shard (string -> string).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  CheckpointReader() = default;
  Status OpenDirectory(const std::string& dir);
  Status OpenIndexed(const std::string& index_path);
  // Maps and validates one shard and adds its tensors. With `weight_map` (tensor -> shard
  // file name, from the index), every tensor of the shard must be mapped to `shard_name`.
  Status AddFile(const std::string& path, const std::string& shard_name,
                 const std::map<std::string, std::string>* weight_map);

  std::string dir_;
  std::vector<std::string> files_;
  std::vector<std::unique_ptr<MappedFile>> maps_;
  std::map<std::string, TensorInfo, std::less<>> tensors_;
  std::vector<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

// Parses and validates a whole safetensors file held in memory (`file_bytes`: the 8-byte
// header length N, N bytes of JSON header, then the data buffer). Returns the tensors sorted
// by name, their `bytes` pointing into `file_bytes`, or an error naming `file_name` (and
// the tensor). Fills `metadata` (may be null) with __metadata__. Exposed for fuzzing/tests.
Result<std::vector<TensorInfo>> ParseSafetensorsHeader(
    std::span<const uint8_t> file_bytes, const std::string& file_name,
    std::map<std::string, std::string>* metadata);

// Tells the kernel the tensor's mmap'd pages are not needed now (madvise DONTNEED): they are
// dropped from this process's resident set and re-read from the file if touched again. The
// streaming engine calls it after converting a layer so resident memory stays one layer.
void ReleaseTensorPages(const TensorInfo& t);

// Reads any float/int tensor as float32 values (row-major).
Result<std::vector<float>> ReadAsF32(const TensorInfo& t);

// DataLoss naming the file, the tensor and the first non-finite element's index when `v`
// (a floating tensor's values, or the [offset, offset + v.size()) slice of it) holds a NaN or
// an infinity; weights never legitimately do, and one would turn every result into NaN.
Status CheckFinite(std::span<const float> v, const TensorInfo& t, int64_t offset = 0);
// The same over the stored bytes of a floating tensor (integer tensors: Ok).
Status CheckFiniteTensor(const TensorInfo& t);

struct WriterOptions {
  uint64_t max_shard_bytes = kDefaultMaxShardBytes;  // data bytes per shard
  bool overwrite = false;                            // replace an existing output dir
};

// Writes a checkpoint directory atomically: everything goes to a temp dir beside the target
// (".<name>.tmp-<pid>-<random>" in the same parent), renamed onto it by Commit(). Destroying
// an uncommitted writer removes the temp dir. Tensors are streamed to a per-shard temporary
// data file as they are added (memory holds only names and shapes). A shard is closed when
// the next tensor would push its data past max_shard_bytes (a larger tensor gets a shard of
// its own). One shard -> model.safetensors; more -> model-0000i-of-0000n.safetensors (5
// digits, 1-based) plus model.safetensors.index.json (pretty-printed, sorted keys:
// {"metadata": {"total_size": data bytes}, "weight_map": {name: file}}).
//
// Shard layout (deterministic, so identical inputs give identical bytes): tensors sorted by
// element size descending, then name (byte order), packed from offset 0, so every tensor
// starts at a multiple of its element size. The header is compact JSON, keys in that same
// order, exactly:
//   {"__metadata__":{"format":"pt"},"<name>":{"dtype":"F32","shape":[2,3],
//    "data_offsets":[0,24]},...}
// (names escaped as JSON strings, UTF-8 kept as is) right-padded with spaces so its length N
// is a multiple of 8; the file is N as 8 little-endian bytes, the header, then the data.
// Every error names the output directory (and the tensor or file). After an I/O error the
// writer refuses further calls; its temp dir is removed when it is destroyed.
class CheckpointWriter {
 public:
  static Result<std::unique_ptr<CheckpointWriter>> Create(const std::string& out_dir,
                                                          WriterOptions options = {});
  ~CheckpointWriter();

  Status AddTensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                   std::span<const uint8_t> bytes);
  // A non-tensor file (config.json, tokenizer, README) written into the output.
  Status AddFile(const std::string& relative_name, std::string_view contents);
  Status CopyFile(const std::string& src_path, const std::string& relative_name);

  // Finishes shards, writes the index, renames the temp dir to `out_dir`.
  Status Commit();
  // Sum of tensor data bytes so far.
  uint64_t total_tensor_bytes() const { return total_bytes_; }

 private:
  struct Impl;
  explicit CheckpointWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  uint64_t total_bytes_ = 0;
};

}  // namespace pq::io
