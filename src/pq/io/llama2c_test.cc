#include "pq/io/llama2c.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "pq/io/io_test_util.h"
#include "pq/io/llama2c_test_util.h"

namespace pq::io {
namespace {

namespace fs = std::filesystem;

const std::string& kAssets = io::testing::kLlama2cAssets;
const std::string& kBin = io::testing::kStories260KBin;
const std::string& kTok = io::testing::kTok512Bin;

using io::testing::Code;
using io::testing::MakeBin;
using io::testing::MakeTokenizer;
using io::testing::ReadBytes;
using io::testing::TinyConfig;
using io::testing::WriteBytes;

using io::testing::Llama2cTest;

TEST_F(Llama2cTest, ParsesStories260KHeader) {
  if (!HaveAssets()) GTEST_SKIP() << "no shared assets at " << kAssets;
  const std::string data = ReadBytes(kBin);
  auto c = ParseLlama2cHeader(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), 28), data.size(),
      kBin);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->dim, 64);
  EXPECT_EQ(c->hidden_dim, 172);
  EXPECT_EQ(c->n_layers, 5);
  EXPECT_EQ(c->n_heads, 8);
  EXPECT_EQ(c->n_kv_heads, 4);
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->seq_len, 512);
  EXPECT_TRUE(c->shared_classifier);
  EXPECT_EQ(c->NumFloats(), 264128u);
  EXPECT_EQ(c->FileBytes(), 1056540u);
}

// Random small headers, with the exact file size or off by a little: accepted exactly when
// the dims are valid and the size matches; never a crash.
TEST(ParseLlama2cHeader, RandomHeadersAgreeWithTheRules) {
  uint64_t state = 12345;
  auto next = [&state](int lo, int hi) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + static_cast<int>((state >> 33) % static_cast<uint64_t>(hi - lo + 1));
  };
  int accepted = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    int32_t h[7] = {next(-2, 24), next(-2, 40),    next(-1, 4), next(-1, 6),
                    next(-1, 6),  next(-300, 300), next(-1, 9)};
    uint8_t bytes[28];
    std::memcpy(bytes, h, 28);
    const int64_t dim = h[0], heads = h[3], kv = h[4], vocab = std::abs(h[5]);
    const bool valid = dim > 0 && h[1] > 0 && h[2] > 0 && heads > 0 && kv > 0 && vocab > 0 &&
                       h[6] > 0 && heads % kv == 0 && dim % heads == 0 && (dim / heads) % 2 == 0;
    uint64_t exact = 0;
    if (valid) {
      const int64_t L = h[2], H = h[1], hd = dim / heads, kvd = hd * kv;
      const int64_t floats = vocab * dim +
                             L * (2 * dim + 2 * dim * dim + 2 * kvd * dim + 3 * H * dim) + dim +
                             h[6] * hd + (h[5] < 0 ? vocab * dim : 0);
      exact = 28 + 4 * static_cast<uint64_t>(floats);
    }
    const int delta = next(-1, 1) * 4 * next(0, 1);
    const uint64_t size = exact ? exact + static_cast<uint64_t>(delta) : uint64_t{28} + 4;
    auto r = ParseLlama2cHeader(bytes, size, "rand.bin");
    ASSERT_EQ(r.ok(), valid && size == exact)
        << iter << ": " << (r.ok() ? "accepted" : r.status().message());
    if (r.ok()) {
      ++accepted;
      EXPECT_EQ(r->FileBytes(), size);
    } else {
      EXPECT_EQ(r.status().message().rfind("rand.bin: ", 0), 0u) << r.status().message();
    }
  }
  EXPECT_GT(accepted, 100);
}

TEST_F(Llama2cTest, ReaderReadsEveryTensorWhereTheLayoutPutsIt) {
  const Llama2cConfig c = TinyConfig(/*shared=*/false);
  WriteBytes(Path("m.bin"), MakeBin(c));
  auto r = Llama2cReader::Open(Path("m.bin"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->config().vocab_size, c.vocab_size);
  EXPECT_FALSE(r->config().shared_classifier);
  using T = Llama2cTensor;
  struct Want {
    T t;
    int region;  // MakeBin's region id
    int64_t rows, cols;
    bool per_layer;
  };
  const int64_t D = c.dim, H = c.hidden_dim, V = c.vocab_size, KV = c.kv_dim();
  const Want wants[] = {
      {T::kTokenEmbedding, 0, V, D, false},
      {T::kRmsAtt, 1, 1, D, true},
      {T::kWq, 2, D, D, true},
      {T::kWk, 3, KV, D, true},
      {T::kWv, 4, KV, D, true},
      {T::kWo, 5, D, D, true},
      {T::kRmsFfn, 6, 1, D, true},
      {T::kW1, 7, H, D, true},
      {T::kW2, 8, D, H, true},
      {T::kW3, 9, H, D, true},
      {T::kRmsFinal, 10, 1, D, false},
      {T::kClassifier, 12, V, D, false},
  };
  for (const Want& w : wants) {
    for (int layer = 0; layer < (w.per_layer ? c.n_layers : 1); ++layer) {
      SCOPED_TRACE(::testing::Message() << "region " << w.region << " layer " << layer);
      auto v = r->Read(w.t, layer);
      ASSERT_TRUE(v.ok()) << v.status().ToString();
      ASSERT_EQ(v->size(), static_cast<size_t>(w.rows * w.cols));
      for (int64_t row = 0; row < w.rows; ++row)
        for (int64_t col = 0; col < w.cols; ++col)
          ASSERT_EQ((*v)[static_cast<size_t>(row * w.cols + col)], Code(w.region, layer, row, col));
    }
  }
  // Layers out of range, a layer index on a global tensor: errors, not reads.
  EXPECT_FALSE(r->Read(T::kWq, c.n_layers).ok());
  EXPECT_FALSE(r->Read(T::kWq, -1).ok());
  EXPECT_FALSE(r->Read(T::kRmsFinal, 1).ok());
}

TEST_F(Llama2cTest, ReaderHasNoClassifierWhenShared) {
  WriteBytes(Path("m.bin"), MakeBin(TinyConfig(/*shared=*/true)));
  auto r = Llama2cReader::Open(Path("m.bin"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->Read(Llama2cTensor::kClassifier).ok());
  EXPECT_TRUE(r->Read(Llama2cTensor::kRmsFinal).ok());
}

TEST_F(Llama2cTest, ReaderNamesTheTensorWithANonFiniteValue) {
  const Llama2cConfig c = TinyConfig(true);
  std::string data = MakeBin(c);
  // Element 5 of wk of layer 1: after the header, embedding, rms_att, wq and layer 0's wk.
  const int64_t D = c.dim, V = c.vocab_size, L = c.n_layers, KV = c.kv_dim();
  const int64_t at = V * D + L * D + L * D * D + KV * D + 5;
  const float inf = std::numeric_limits<float>::infinity();
  std::memcpy(data.data() + 28 + 4 * at, &inf, 4);
  WriteBytes(Path("m.bin"), data);
  auto r = Llama2cReader::Open(Path("m.bin"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->Read(Llama2cTensor::kWk, 0).ok());
  auto bad = r->Read(Llama2cTensor::kWk, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("wk of layer 1 has a non-finite value"), std::string::npos)
      << bad.status().message();
  EXPECT_NE(bad.status().message().find("at element 5"), std::string::npos);
  EXPECT_NE(bad.status().message().find(Path("m.bin")), std::string::npos);
}

TEST_F(Llama2cTest, ReaderRejectsWhatIsNotACheckpoint) {
  EXPECT_EQ(Llama2cReader::Open(Path("missing.bin")).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(Llama2cReader::Open(dir_.string()).ok());  // a directory
  const std::string good = MakeBin(TinyConfig(true));
  WriteBytes(Path("m.bin"), good.substr(0, good.size() - 4));
  auto r = Llama2cReader::Open(Path("m.bin"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
}

TEST(ParseLlama2cTokenizer, ReadsPiecesAndScores) {
  const std::string bytes = MakeTokenizer({"ab", "abc"});
  auto v = ParseLlama2cTokenizer(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
      "t.bin");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->max_token_length, 8);
  ASSERT_EQ(v->pieces.size(), 261u);
  EXPECT_EQ(v->pieces[1], "\n<s>\n");
  EXPECT_EQ(v->pieces[3 + 0x41], "<0x41>");
  EXPECT_EQ(v->pieces[260], "abc");
  EXPECT_EQ(v->scores[259], 0.0f);
  EXPECT_EQ(v->scores[260], -1.0f);
  // Truncated inside the last piece: an error naming the file and the entry.
  auto bad = ParseLlama2cTokenizer(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size() - 1),
      "t.bin");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("t.bin: "), std::string::npos);
  EXPECT_NE(bad.status().message().find("entry 260"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace pq::io
