// Hand-made llama2.c files for the io and convert tests: a v0 checkpoint whose every value
// encodes where it lies (Code), and a tokenizer.bin in the SentencePiece layout.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "pq/io/llama2c.h"

namespace pq::io::testing {

template <typename T>
void Append(std::string* s, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  s->append(buf, sizeof(T));
}

// A tokenizer.bin in the SentencePiece layout with `extra` merged pieces after the bytes.
inline std::string MakeTokenizer(const std::vector<std::string>& extra) {
  std::string s;
  Append<int32_t>(&s, 8);
  auto add = [&s](float score, const std::string& piece) {
    Append<float>(&s, score);
    Append<int32_t>(&s, static_cast<int32_t>(piece.size()));
    s += piece;
  };
  add(0, "<unk>");
  add(0, "\n<s>\n");
  add(0, "\n</s>\n");
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    add(0, buf);
  }
  float score = 0;
  for (const auto& p : extra) add(score--, p);
  return s;
}

// Value stored by MakeBin at (region, layer, row, col): unique, exactly representable.
inline float Code(int region, int layer, int64_t row, int64_t col) {
  return static_cast<float>(region * 1000000 + layer * 100000 + row * 100 + col);
}

// A llama2.c v0 file with distinct values everywhere (see Code()).
inline std::string MakeBin(const Llama2cConfig& c) {
  std::string s;
  for (int32_t v : {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                    c.shared_classifier ? c.vocab_size : -c.vocab_size, c.seq_len}) {
    Append<int32_t>(&s, v);
  }
  auto region = [&](int id, int layers, int64_t rows, int64_t cols) {
    for (int l = 0; l < layers; ++l)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < cols; ++k) Append<float>(&s, Code(id, l, r, k));
  };
  const int L = c.n_layers;
  region(0, 1, c.vocab_size, c.dim);
  region(1, L, 1, c.dim);
  region(2, L, c.dim, c.dim);
  region(3, L, c.kv_dim(), c.dim);
  region(4, L, c.kv_dim(), c.dim);
  region(5, L, c.dim, c.dim);
  region(6, L, 1, c.dim);
  region(7, L, c.hidden_dim, c.dim);
  region(8, L, c.dim, c.hidden_dim);
  region(9, L, c.hidden_dim, c.dim);
  region(10, 1, 1, c.dim);
  region(11, 1, c.seq_len, c.head_dim());  // freq_cis real + imag
  if (!c.shared_classifier) region(12, 1, c.vocab_size, c.dim);
  return s;
}

inline Llama2cConfig TinyConfig(bool shared) {
  Llama2cConfig c;
  c.dim = 8;
  c.hidden_dim = 12;
  c.n_layers = 2;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.vocab_size = 261;
  c.seq_len = 6;
  c.shared_classifier = shared;
  return c;
}

// The real stories260K llama2.c checkpoint and tokenizer in ../shared/assets (tests skip
// without them).
inline const std::string kLlama2cAssets = PQ_SOURCE_DIR "/../shared/assets";
inline const std::string kStories260KBin = kLlama2cAssets + "/llama2c-stories260K/stories260K.bin";
inline const std::string kTok512Bin = kLlama2cAssets + "/llama2c-stories260K/tok512.bin";

// A fresh scratch directory per test (named after the test and the process), removed
// afterwards.
class Llama2cTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("pq_llama2c_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
            std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  static bool HaveAssets() {
    return std::filesystem::exists(kStories260KBin) && std::filesystem::exists(kTok512Bin);
  }

  std::filesystem::path dir_;
};

}  // namespace pq::io::testing
