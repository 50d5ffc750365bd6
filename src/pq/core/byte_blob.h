// A flat byte blob of plain values, for messages between the ranks of one job (dist/): not a
// file format — both ends are the same binary, so values go in host byte order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "pq/core/status.h"

namespace pq {

class BlobWriter {
 public:
  template <typename T>
  void Put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    Bytes(&v, sizeof(T));
  }
  // A length (u64) then the values.
  template <typename T>
  void PutArray(std::span<const T> v) {
    static_assert(std::is_trivially_copyable_v<T>);
    Put(static_cast<uint64_t>(v.size()));
    Bytes(v.data(), v.size_bytes());
  }
  void PutString(const std::string& s) { PutArray(std::span<const char>(s.data(), s.size())); }
  std::vector<std::byte>& blob() { return blob_; }

 private:
  void Bytes(const void* p, size_t n) {
    if (n == 0) return;
    const size_t at = blob_.size();
    blob_.resize(at + n);
    std::memcpy(blob_.data() + at, p, n);
  }
  std::vector<std::byte> blob_;
};

// Reads what a BlobWriter wrote; every read is bounds-checked (DataLoss past the end).
class BlobReader {
 public:
  explicit BlobReader(std::span<const std::byte> blob) : blob_(blob) {}
  template <typename T>
  Result<T> Get() {
    static_assert(std::is_trivially_copyable_v<T>);
    T v{};
    PQ_RETURN_IF_ERROR(Bytes(&v, sizeof(T)));
    return v;
  }
  // Into any resizable container of trivially copyable values (std::vector, std::string).
  template <typename C>
  Status GetArray(C& out) {
    PQ_ASSIGN_OR_RETURN(const uint64_t n, Get<uint64_t>());
    using T = typename C::value_type;
    if (n > (blob_.size() - at_) / sizeof(T)) return DataLoss("blob: array past the end");
    out.resize(static_cast<size_t>(n));
    return Bytes(out.data(), static_cast<size_t>(n) * sizeof(T));
  }
  bool done() const { return at_ == blob_.size(); }

 private:
  Status Bytes(void* p, size_t n) {
    if (n > blob_.size() - at_) return DataLoss("blob: read past the end");
    std::memcpy(p, blob_.data() + at_, n);
    at_ += n;
    return Status::Ok();
  }
  std::span<const std::byte> blob_;
  size_t at_ = 0;
};

}  // namespace pq
