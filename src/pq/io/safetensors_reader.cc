// Safetensors reading: header validation (ParseSafetensorsHeader), the mmap'd
// CheckpointReader over one file or a sharded directory, and ReadAsF32.
//
// Validation follows the reference reader (huggingface/safetensors tensor.rs) and is
// stricter where it cannot cost a valid file: duplicate JSON keys and unknown entry fields
// are errors. Nothing is exposed until a whole file (and, for a directory, the whole index
// and every shard) has been checked, so callers never see a tensor whose bytes lie outside
// its file. A file truncated or rewritten by another process *while mapped* can still raise
// SIGBUS; that is outside what a reader can prevent.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <tuple>

#include "pq/io/file_util.h"
#include "pq/io/json_util.h"
#include "pq/io/mapped_fault.h"
#include "pq/io/safetensors.h"

namespace pq::io {

namespace fs = std::filesystem;
using json = nlohmann::json;

inline constexpr std::string_view kIndexName = "model.safetensors.index.json";
inline constexpr std::string_view kSingleName = "model.safetensors";

// A read-only private mapping of a whole file (empty files are not mapped).
class MappedFile {
 public:
  static Result<std::unique_ptr<MappedFile>> Open(const std::string& path) {
    PQ_ASSIGN_OR_RETURN(UniqueFd fd, OpenRegularFile(path));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoError(path, "stat", errno);
    auto m = std::unique_ptr<MappedFile>(new MappedFile());
    m->size_ = static_cast<size_t>(st.st_size);
    if (m->size_ == 0) return m;
    void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) return ErrnoError(path, "mmap", errno);
    m->data_ = static_cast<const uint8_t*>(p);
    RegisterMapping(m->data_, m->size_, path);
    return m;
  }
  ~MappedFile() {
    if (data_ == nullptr) return;
    UnregisterMapping(data_);
    ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string RangeString(uint64_t begin, uint64_t end) {
  std::string s = "[";
  s += std::to_string(begin);
  s += ", ";
  s += std::to_string(end);
  s += "]";
  return s;
}

std::string SupportedDTypes() {
  std::string s;
  for (DType t :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kF8E5M2, DType::kF8E8M0,
        DType::kU8, DType::kI8, DType::kI32, DType::kI64, DType::kF64, DType::kBool}) {
    if (!s.empty()) s += ", ";
    s += DTypeName(t);
  }
  return s;
}

// Reads a JSON integer >= 0 (up to 2^64-1); false for negatives, floats and non-numbers.
bool AsUnsigned(const json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

// One validated header entry before the tiling check.
struct Entry {
  TensorInfo info;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Validates the fields of one tensor entry (not yet its position among the others).
Status ParseEntry(const std::string& file, const std::string& name, const json& v,
                  uint64_t buffer_len, Entry* e) {
  const std::string where = file + ": tensor " + Quote(name) + ": ";
  if (!v.is_object()) {
    return DataLoss(where + "entry is " + JsonTypeName(v) +
                    ", expected an object with dtype, shape and data_offsets");
  }
  for (const auto& [key, unused] : v.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return DataLoss(where + "unexpected field " + Quote(key) +
                      " (allowed: dtype, shape, data_offsets)");
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!v.contains(key)) return DataLoss(where + "missing field \"" + key + "\"");
  }

  const json& dtype = v["dtype"];
  if (!dtype.is_string()) return DataLoss(where + "dtype is " + JsonTypeName(dtype));
  std::optional<DType> dt = ParseDType(dtype.get_ref<const std::string&>());
  if (!dt) {
    return Unimplemented(where + "unsupported dtype " + Quote(dtype.get_ref<const std::string&>()) +
                         " (supported: " + SupportedDTypes() + ")");
  }

  const json& shape = v["shape"];
  if (!shape.is_array()) return DataLoss(where + "shape is " + JsonTypeName(shape));
  int64_t numel = 1;
  bool numel_overflow = false;
  e->info.shape.clear();
  for (const json& d : shape) {
    if (!d.is_number_integer()) {
      return DataLoss(where + "shape " + Dump(shape) + " has " + JsonTypeName(d) + " element " +
                      Dump(d) + ", expected non-negative integers");
    }
    if (d.is_number_unsigned() && d.get<uint64_t>() > uint64_t{INT64_MAX}) {
      return DataLoss(where + "shape dimension " + Dump(d) + " is too large");
    }
    const int64_t dim = d.get<int64_t>();
    if (dim < 0) {
      return DataLoss(where + "shape " + Dump(shape) + " has a negative dimension");
    }
    e->info.shape.push_back(dim);
    numel_overflow |= __builtin_mul_overflow(numel, dim, &numel);
  }

  const json& offs = v["data_offsets"];
  if (!offs.is_array() || offs.size() != 2 || !AsUnsigned(offs[0], &e->begin) ||
      !AsUnsigned(offs[1], &e->end)) {
    return DataLoss(where + "data_offsets " + Dump(offs) +
                    " is not a pair of non-negative integers [begin, end]");
  }
  if (e->begin > e->end) {
    return DataLoss(where + "data_offsets " + RangeString(e->begin, e->end) + " has begin > end");
  }
  const std::string type_shape = std::string(DTypeName(*dt)) + " " + ShapeString(e->info.shape);
  uint64_t nbytes = 0;
  if (numel_overflow ||
      __builtin_mul_overflow(static_cast<uint64_t>(numel), uint64_t{DTypeSize(*dt)}, &nbytes)) {
    return DataLoss(where + type_shape + " has too many elements (size overflows 64 bits)");
  }
  if (e->end - e->begin != nbytes) {
    return DataLoss(where + "data_offsets " + RangeString(e->begin, e->end) + " give " +
                    std::to_string(e->end - e->begin) + " bytes but " + type_shape + " needs " +
                    std::to_string(nbytes));
  }
  if (e->end > buffer_len) {
    return DataLoss(where + "data_offsets " + RangeString(e->begin, e->end) +
                    " extend past the end of the data buffer (" + std::to_string(buffer_len) +
                    " bytes; file truncated?)");
  }
  e->info.name = name;
  e->info.dtype = *dt;
  e->info.file = file;
  e->info.offset = e->begin;
  return Status::Ok();
}

Status ParseMetadata(const std::string& file, const json& v,
                     std::map<std::string, std::string>* metadata) {
  if (!v.is_object()) {
    return DataLoss(file + ": __metadata__ is " + JsonTypeName(v) +
                    ", expected an object of strings");
  }
  std::map<std::string, std::string> md;
  for (const auto& [key, value] : v.items()) {
    if (!value.is_string()) {
      return DataLoss(file + ": __metadata__ value of " + Quote(key) + " is " +
                      JsonTypeName(value) + ", expected a string");
    }
    md[key] = value.get<std::string>();
  }
  if (metadata != nullptr) *metadata = std::move(md);
  return Status::Ok();
}

// Requires the entries, sorted by offset, to tile [0, buffer_len) exactly.
Status CheckTiling(const std::string& file, std::vector<Entry*> sorted, uint64_t buffer_len) {
  std::sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) {
    return std::tie(a->begin, a->end, a->info.name) < std::tie(b->begin, b->end, b->info.name);
  });
  uint64_t expected = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : sorted) {
    if (e->begin < expected) {
      return DataLoss(file + ": tensor " + Quote(e->info.name) + " data_offsets " +
                      RangeString(e->begin, e->end) + " overlap tensor " + Quote(prev->info.name) +
                      " " + RangeString(prev->begin, prev->end));
    }
    if (e->begin > expected) {
      return DataLoss(file + ": hole of " + std::to_string(e->begin - expected) + " unused bytes " +
                      RangeString(expected, e->begin) + " before tensor " + Quote(e->info.name) +
                      (prev ? " (after tensor " + Quote(prev->info.name) + ")" : "") +
                      "; tensors must tile the data buffer");
    }
    expected = e->end;
    prev = e;
  }
  if (expected != buffer_len) {
    return DataLoss(file + ": data buffer has " + std::to_string(buffer_len) +
                    " bytes but the tensors cover only " + std::to_string(expected) + " (" +
                    std::to_string(buffer_len - expected) + " trailing bytes)");
  }
  return Status::Ok();
}

// Returns a problem with an index's shard file name, or "" if it is a plain file name.
std::string BadShardName(const std::string& s) {
  if (s.empty()) return "is empty";
  if (s.find('/') != std::string::npos || s.find('\\') != std::string::npos) {
    return "contains a path separator (shards must lie beside the index)";
  }
  if (s.find("..") != std::string::npos) return "contains \"..\"";
  if (s.find('\0') != std::string::npos) return "contains a NUL byte";
  return "";
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return -1;
  }
  return n;
}

Result<std::vector<TensorInfo>> ParseSafetensorsHeader(
    std::span<const uint8_t> file_bytes, const std::string& file_name,
    std::map<std::string, std::string>* metadata) {
  const uint64_t size = file_bytes.size();
  if (size < 8) {
    return DataLoss(file_name + ": file is " + std::to_string(size) +
                    " bytes, too short for a safetensors file (8-byte header length first)");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file_bytes[static_cast<size_t>(i)];
  if (n > kMaxHeaderBytes) {
    return DataLoss(file_name + ": header length " + std::to_string(n) + " exceeds the limit of " +
                    std::to_string(kMaxHeaderBytes) + " bytes (corrupt or not a safetensors file)");
  }
  if (n > size - 8) {
    return DataLoss(file_name + ": header length " + std::to_string(n) + " needs " +
                    std::to_string(8 + n) + " bytes but the file has only " + std::to_string(size) +
                    " (truncated?)");
  }
  std::string_view text(reinterpret_cast<const char*>(file_bytes.data()) + 8,
                        static_cast<size_t>(n));
  if (text.empty() || text[0] != '{') {
    return DataLoss(file_name + ": header does not start with '{' (not a safetensors file?)");
  }
  PQ_ASSIGN_OR_RETURN(json header, ParseJson(text, file_name + ": header"));
  if (!header.is_object()) {
    return DataLoss(file_name + ": header is " + JsonTypeName(header) + ", expected an object");
  }

  const uint64_t buffer_len = size - 8 - n;
  const uint8_t* data = file_bytes.data() + 8 + n;
  std::vector<Entry> entries;
  entries.reserve(header.size());
  std::map<std::string, std::string> md;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      PQ_RETURN_IF_ERROR(ParseMetadata(file_name, value, &md));
      continue;
    }
    Entry e;
    PQ_RETURN_IF_ERROR(ParseEntry(file_name, key, value, buffer_len, &e));
    entries.push_back(std::move(e));
  }
  std::vector<Entry*> ptrs;
  for (Entry& e : entries) ptrs.push_back(&e);
  PQ_RETURN_IF_ERROR(CheckTiling(file_name, std::move(ptrs), buffer_len));

  // Names are unique (duplicate keys fail in ParseJson) and header keys come sorted.
  std::vector<TensorInfo> out;
  out.reserve(entries.size());
  for (Entry& e : entries) {
    e.info.bytes = std::span<const uint8_t>(data + e.begin, static_cast<size_t>(e.end - e.begin));
    out.push_back(std::move(e.info));
  }
  if (metadata != nullptr) *metadata = std::move(md);
  return out;
}

Result<std::vector<float>> ReadAsF32(const TensorInfo& t) {
  const int64_t n = t.numel();
  uint64_t nbytes = 0;
  if (n < 0 ||
      __builtin_mul_overflow(static_cast<uint64_t>(n), uint64_t{DTypeSize(t.dtype)}, &nbytes) ||
      nbytes != t.bytes.size()) {
    return InvalidArgument(t.file + ": tensor " + Quote(t.name) + ": " +
                           std::string(DTypeName(t.dtype)) + " " + ShapeString(t.shape) +
                           " does not match its " + std::to_string(t.bytes.size()) + " bytes");
  }
  std::vector<float> out(static_cast<size_t>(n));
  if (n > 0) ConvertToF32(t.dtype, t.bytes.data(), out.size(), out.data());
  if (IsFloatingPoint(t.dtype)) PQ_RETURN_IF_ERROR(CheckFinite(out, t));
  return out;
}

Status CheckFinite(std::span<const float> v, const TensorInfo& t, int64_t offset) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isfinite(v[i])) continue;
    // The element's index in the tensor's shape, last dimension fastest.
    auto flat = static_cast<int64_t>(i) + offset;
    std::vector<int64_t> index(t.shape.size());
    for (size_t d = t.shape.size(); d-- > 0;) {
      const int64_t extent = std::max<int64_t>(t.shape[d], 1);
      index[d] = flat % extent;
      flat /= extent;
    }
    return DataLoss(t.file + ": tensor " + Quote(t.name) + " holds " +
                    (std::isnan(v[i]) ? "NaN" : "an infinity") + " at " + ShapeString(index) +
                    "; the checkpoint is damaged (re-download or re-convert it)");
  }
  return Status::Ok();
}

Status CheckFiniteTensor(const TensorInfo& t) {
  if (!IsFloatingPoint(t.dtype)) return Status::Ok();
  const size_t elem = DTypeSize(t.dtype), n = t.bytes.size() / elem;
  constexpr size_t kChunk = 1 << 16;
  std::vector<float> buf(std::min(n, kChunk));
  for (size_t i = 0; i < n; i += kChunk) {
    const size_t m = std::min(kChunk, n - i);
    ConvertToF32(t.dtype, t.bytes.data() + i * elem, m, buf.data());
    PQ_RETURN_IF_ERROR(
        CheckFinite(std::span<const float>(buf.data(), m), t, static_cast<int64_t>(i)));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------
// CheckpointReader

CheckpointReader::~CheckpointReader() = default;

Result<std::unique_ptr<CheckpointReader>> CheckpointReader::Open(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) {
    return NotFound(path + ": no such file or directory" + (ec ? " (" + ec.message() + ")" : ""));
  }
  auto reader = std::unique_ptr<CheckpointReader>(new CheckpointReader());
  if (fs::is_directory(st)) {
    reader->dir_ = path;
    PQ_RETURN_IF_ERROR(reader->OpenDirectory(path));
  } else {
    const fs::path p(path);
    reader->dir_ = p.has_parent_path() ? p.parent_path().string() : ".";
    PQ_RETURN_IF_ERROR(reader->AddFile(path, p.filename().string(), nullptr));
  }
  reader->names_.reserve(reader->tensors_.size());
  for (const auto& [name, unused] : reader->tensors_) reader->names_.push_back(name);
  return reader;
}

Status CheckpointReader::OpenDirectory(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  if (fs::exists(d / kIndexName, ec)) return OpenIndexed((d / kIndexName).string());
  if (fs::exists(d / kSingleName, ec)) {
    return AddFile((d / kSingleName).string(), std::string(kSingleName), nullptr);
  }
  std::vector<std::string> found;
  for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".safetensors" && it->is_regular_file(ec)) {
      found.push_back(it->path().filename().string());
    }
  }
  if (ec) return IoError(dir + ": cannot list directory: " + ec.message());
  std::sort(found.begin(), found.end());
  if (found.empty()) {
    return NotFound(dir + ": no " + std::string(kIndexName) + ", " + std::string(kSingleName) +
                    " or other *.safetensors file in this directory");
  }
  if (found.size() > 1) {
    std::string list;
    for (size_t i = 0; i < found.size() && i < 4; ++i) list += (i ? ", " : "") + found[i];
    if (found.size() > 4) list += ", ...";
    return InvalidArgument(dir + ": " + std::to_string(found.size()) + " .safetensors files (" +
                           list + ") but no " + std::string(kIndexName) +
                           " saying which tensors each holds");
  }
  return AddFile((d / found[0]).string(), found[0], nullptr);
}

Status CheckpointReader::OpenIndexed(const std::string& index_path) {
  PQ_ASSIGN_OR_RETURN(json index, ReadJsonFile(index_path));
  if (!index.is_object()) {
    return DataLoss(index_path + ": index is " + JsonTypeName(index) + ", expected an object");
  }
  if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
    return DataLoss(index_path + ": missing \"weight_map\" object (tensor name -> shard file)");
  }
  if (index.contains("metadata") && !index["metadata"].is_object()) {
    return DataLoss(index_path + ": \"metadata\" is " + JsonTypeName(index["metadata"]) +
                    ", expected an object");
  }
  std::map<std::string, std::string> weight_map;
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) {
      return DataLoss(index_path + ": weight_map entry for tensor " + Quote(name) + " is " +
                      JsonTypeName(shard) + ", expected a shard file name");
    }
    const std::string& s = shard.get_ref<const std::string&>();
    if (std::string bad = BadShardName(s); !bad.empty()) {
      return DataLoss(index_path + ": shard name " + Quote(s) + " for tensor " + Quote(name) + " " +
                      bad);
    }
    weight_map[name] = s;
    by_shard[s].push_back(name);
  }
  const fs::path d = fs::path(index_path).parent_path();
  for (const auto& [shard, names] : by_shard) {
    const std::string path = (d / shard).string();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      return NotFound(index_path + ": missing shard " + Quote(shard) + " listed in the index (" +
                      path + " is not a file); " + std::to_string(names.size()) +
                      " tensors such as " + Quote(names[0]) + " map to it");
    }
  }
  for (const auto& [shard, names] : by_shard) {
    const std::string path = (d / shard).string();
    PQ_RETURN_IF_ERROR(AddFile(path, shard, &weight_map));
    for (const std::string& name : names) {
      if (!tensors_.contains(name)) {
        return DataLoss(index_path + ": tensor " + Quote(name) + " is listed in the index for " +
                        "shard " + Quote(shard) + " but " + path + " does not contain it");
      }
    }
  }
  return Status::Ok();
}

Status CheckpointReader::AddFile(const std::string& path, const std::string& shard_name,
                                 const std::map<std::string, std::string>* weight_map) {
  PQ_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> map, MappedFile::Open(path));
  std::map<std::string, std::string> md;
  PQ_ASSIGN_OR_RETURN(std::vector<TensorInfo> infos,
                      ParseSafetensorsHeader(map->bytes(), path, &md));
  for (const TensorInfo& t : infos) {
    if (weight_map != nullptr) {
      auto it = weight_map->find(t.name);
      if (it == weight_map->end()) {
        return DataLoss(path + ": tensor " + Quote(t.name) + " is not listed in " +
                        std::string(kIndexName));
      }
      if (it->second != shard_name) {
        return DataLoss(path + ": tensor " + Quote(t.name) + " is in this shard but " +
                        std::string(kIndexName) + " maps it to " + Quote(it->second));
      }
    }
    if (auto it = tensors_.find(t.name); it != tensors_.end()) {
      return DataLoss(path + ": tensor " + Quote(t.name) + " also appears in " + it->second.file);
    }
  }
  if (files_.empty()) metadata_ = std::move(md);
  for (TensorInfo& t : infos) {
    std::string name = t.name;
    tensors_.emplace(std::move(name), std::move(t));
  }
  files_.push_back(path);
  maps_.push_back(std::move(map));
  return Status::Ok();
}

const TensorInfo* CheckpointReader::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Result<const TensorInfo*> CheckpointReader::Get(std::string_view name) const {
  if (const TensorInfo* t = Find(name)) return t;
  const std::string where = files_.size() == 1 ? files_[0] : dir_;
  return NotFound(where + ": no tensor " + Quote(name) + " in this checkpoint");
}

void ReleaseTensorPages(const TensorInfo& t) {
  if (t.bytes.empty()) return;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(t.bytes.data()) & ~(page - 1);
  const auto end = reinterpret_cast<uintptr_t>(t.bytes.data() + t.bytes.size());
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // advisory: ignore errors
}

}  // namespace pq::io
