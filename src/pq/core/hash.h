// A small, stable 64-bit hash (FNV-1a) for fingerprinting work-dir inputs (model identity,
// calibration tokens, options). Not cryptographic: it detects mismatched inputs, nothing more.
// The value is persisted in work dirs: never change the algorithm without a schema bump.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>

namespace pq {

class Hasher {
 public:
  Hasher& Bytes(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001b3ull;
    }
    return *this;
  }
  Hasher& Str(std::string_view s) {
    Int(s.size());
    return Bytes(s.data(), s.size());
  }
  Hasher& Int(uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));  // little-endian
    return Bytes(b, 8);
  }
  template <typename T>
  Hasher& Ints(std::span<const T> v) {
    Int(v.size());
    for (T x : v) Int(static_cast<uint64_t>(x));
    return *this;
  }
  uint64_t value() const { return h_; }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace pq
