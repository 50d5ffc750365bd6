// Helpers shared by the io tests: a self-deleting temp directory, raw file I/O, and a
// builder for hand-made safetensors bytes.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pq/core/status.h"

namespace pq::io::testing {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() /
            ("pq_io_test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  // Returns the path of `rel` inside the directory as a string.
  std::string operator/(const std::string& rel) const { return (path_ / rel).string(); }

 private:
  fs::path path_;
};

inline void WriteBytes(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

inline std::string ReadBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Returns the 8-byte little-endian encoding of `n`.
inline std::string U64Le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// Returns a safetensors file: header length, `header` (as is, unpadded), then `data`.
inline std::string MakeSafetensors(std::string_view header, std::string_view data) {
  return U64Le(header.size()) + std::string(header) + std::string(data);
}

inline std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline std::string Bytes(std::initializer_list<uint8_t> b) {
  return std::string(b.begin(), b.end());
}

// Returns `n` deterministic pseudo-random bytes.
inline std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

// The names of the entries of `dir` (not recursive), sorted.
inline std::vector<std::string> ListDir(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Expects `s` to be an error whose message contains every one of `parts`.
#define PQ_EXPECT_ERROR(s, ...)                                                 \
  do {                                                                          \
    const ::pq::Status pq_st_ = (s);                                            \
    EXPECT_FALSE(pq_st_.ok()) << "expected an error";                           \
    for (const std::string& pq_part_ : std::vector<std::string>{__VA_ARGS__}) { \
      EXPECT_NE(pq_st_.message().find(pq_part_), std::string::npos)             \
          << "message lacks \"" << pq_part_ << "\": " << pq_st_.message();      \
    }                                                                           \
  } while (0)

}  // namespace pq::io::testing
