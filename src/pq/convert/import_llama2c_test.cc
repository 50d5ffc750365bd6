#include "pq/convert/import_llama2c.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "pq/convert/llama2c_hf.h"
#include "pq/core/minifloat.h"
#include "pq/io/io_test_util.h"
#include "pq/io/llama2c_test_util.h"
#include "pq/io/safetensors.h"

namespace pq::convert {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string& kAssets = io::testing::kLlama2cAssets;
const std::string& kBin = io::testing::kStories260KBin;
const std::string& kTok = io::testing::kTok512Bin;
const std::string kDerived = kAssets + "/stories260K-hf-derived";

using io::CheckpointReader;
using io::Llama2cConfig;
using io::TensorInfo;
using io::testing::Append;
using io::testing::Code;
using io::testing::MakeBin;
using io::testing::MakeTokenizer;
using io::testing::ReadBytes;
using io::testing::TinyConfig;
using io::testing::WriteBytes;

using io::testing::Llama2cTest;

TEST(PermuteRopeRows, InterleavedPairsBecomeHalves) {
  // 2 heads of head_dim 4, one column: rows (0,1),(2,3) pairs -> (0,2),(1,3) per head.
  const std::vector<float> src = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<float> dst(8);
  PermuteRopeRows(src, 2, 4, 1, dst);
  EXPECT_EQ(dst, (std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7}));
}

TEST_F(Llama2cTest, ConvertsStories260KExactlyLikeTheReference) {
  if (!HaveAssets() || !fs::exists(kDerived + "/model.safetensors")) {
    GTEST_SKIP() << "no shared assets at " << kAssets;
  }
  const std::string out = Path("out");
  auto s = ImportLlama2c(kBin, kTok, out);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->num_tensors, 47);
  EXPECT_EQ(s->num_params, 260032);
  EXPECT_EQ(s->tensor_bytes, 260032u * 4);

  auto got = CheckpointReader::Open(out);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  auto want = CheckpointReader::Open(kDerived + "/model.safetensors");
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  ASSERT_EQ((*got)->names(), (*want)->names());
  for (const auto& name : (*want)->names()) {
    SCOPED_TRACE(name);
    const TensorInfo* g = (*got)->Find(name);
    const TensorInfo* w = (*want)->Find(name);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->dtype, DType::kF32);
    EXPECT_EQ(g->shape, w->shape);
    ASSERT_EQ(g->bytes.size(), w->bytes.size());
    EXPECT_EQ(std::memcmp(g->bytes.data(), w->bytes.data(), w->bytes.size()), 0);
  }

  const json cfg = json::parse(ReadBytes(out + "/config.json"));
  const json ref = json::parse(ReadBytes(kDerived + "/config.json"));
  EXPECT_EQ(cfg, ref);
  EXPECT_EQ(ReadBytes(out + "/config.json"), ReadBytes(kDerived + "/config.json"));  // byte-exact
  EXPECT_EQ(ReadBytes(out + "/tokenizer.bin"), ReadBytes(kTok));

  const json tok = json::parse(ReadBytes(out + "/tokenizer.json"));
  EXPECT_EQ(tok["model"]["type"], "BPE");
  EXPECT_EQ(tok["model"]["byte_fallback"], true);
  EXPECT_EQ(tok["model"]["vocab"].size(), 512u);
  EXPECT_EQ(tok["model"]["vocab"]["<0x0A>"], 3 + 10);
  EXPECT_EQ(tok["model"]["vocab"]["\xe2\x96\x81t"], 259);  // " t", the best-scoring merge
  EXPECT_GT(tok["model"]["merges"].size(), 100u);
  EXPECT_EQ(tok["model"]["merges"][0], json::array({"\xe2\x96\x81", "t"}));
  const json tc = json::parse(ReadBytes(out + "/tokenizer_config.json"));
  EXPECT_EQ(tc["bos_token"], "<s>");
  EXPECT_EQ(tc["model_max_length"], 512);
  EXPECT_TRUE(fs::exists(out + "/special_tokens_map.json"));
}

TEST_F(Llama2cTest, Bf16RoundsEveryValue) {
  if (!HaveAssets() || !fs::exists(kDerived + "/model.safetensors")) {
    GTEST_SKIP() << "no shared assets at " << kAssets;
  }
  const std::string out = Path("bf16");
  ImportOptions opts;
  opts.dtype = DType::kBF16;
  auto s = ImportLlama2c(kBin, kTok, out, opts);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->tensor_bytes, 260032u * 2);
  auto got = CheckpointReader::Open(out);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  auto want = CheckpointReader::Open(kDerived + "/model.safetensors");
  ASSERT_TRUE(want.ok());
  for (const auto& name : (*want)->names()) {
    SCOPED_TRACE(name);
    const TensorInfo* g = (*got)->Find(name);
    ASSERT_NE(g, nullptr);
    ASSERT_EQ(g->dtype, DType::kBF16);
    auto gv = ReadAsF32(*g);
    auto wv = ReadAsF32(*(*want)->Find(name));
    ASSERT_TRUE(gv.ok() && wv.ok());
    ASSERT_EQ(gv->size(), wv->size());
    for (size_t i = 0; i < wv->size(); ++i) ASSERT_EQ((*gv)[i], RoundBf16((*wv)[i])) << i;
  }
  EXPECT_EQ(json::parse(ReadBytes(out + "/config.json"))["torch_dtype"], "bfloat16");
}

TEST_F(Llama2cTest, UnsharedClassifierAndGqaPermutation) {
  const Llama2cConfig c = TinyConfig(/*shared=*/false);
  WriteBytes(Path("m.bin"), MakeBin(c));
  WriteBytes(Path("t.bin"), MakeTokenizer({"a", "aa"}));
  auto s = ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out"));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->num_tensors, 1 + 2 * 9 + 1 + 1);
  auto r = CheckpointReader::Open(Path("out"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto values = [&](const std::string& name) {
    auto t = (*r)->Get(name);
    EXPECT_TRUE(t.ok()) << name;
    return *ReadAsF32(**t);
  };
  const int64_t hd = c.head_dim(), D = c.dim;
  // q: 2 heads, k: 1 head; HF row h*hd + j*hd/2 + i comes from llama2.c row h*hd + 2i + j.
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const std::string pre = "model.layers." + std::to_string(layer) + ".";
    for (auto [proj, region, heads] :
         {std::tuple{"q_proj", 2, c.n_heads}, std::tuple{"k_proj", 3, c.n_kv_heads}}) {
      const auto v = values(pre + "self_attn." + proj + ".weight");
      ASSERT_EQ(v.size(), static_cast<size_t>(heads * hd * D));
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t j = 0; j < 2; ++j)
          for (int64_t i = 0; i < hd / 2; ++i)
            for (int64_t k = 0; k < D; ++k) {
              const int64_t row = h * hd + j * (hd / 2) + i;
              ASSERT_EQ(v[static_cast<size_t>(row * D + k)],
                        Code(region, layer, h * hd + 2 * i + j, k))
                  << proj << " layer " << layer << " row " << row;
            }
    }
    EXPECT_EQ(values(pre + "self_attn.v_proj.weight")[5], Code(4, layer, 0, 5));
    EXPECT_EQ(values(pre + "self_attn.o_proj.weight")[D + 1], Code(5, layer, 1, 1));
    EXPECT_EQ(values(pre + "input_layernorm.weight")[3], Code(1, layer, 0, 3));
    EXPECT_EQ(values(pre + "post_attention_layernorm.weight")[3], Code(6, layer, 0, 3));
    EXPECT_EQ(values(pre + "mlp.gate_proj.weight")[D * 11 + 7], Code(7, layer, 11, 7));
    EXPECT_EQ(values(pre + "mlp.down_proj.weight")[12 * 7 + 11], Code(8, layer, 7, 11));
    EXPECT_EQ(values(pre + "mlp.up_proj.weight")[D * 11 + 7], Code(9, layer, 11, 7));
  }
  EXPECT_EQ(values("model.norm.weight")[7], Code(10, 0, 0, 7));
  EXPECT_EQ(values("model.embed_tokens.weight")[D * 260 + 7], Code(0, 0, 260, 7));
  EXPECT_EQ(values("lm_head.weight")[D * 260 + 7], Code(12, 0, 260, 7));
  const json cfg = json::parse(ReadBytes(Path("out") + "/config.json"));
  EXPECT_EQ(cfg["tie_word_embeddings"], false);
  EXPECT_EQ(cfg["num_key_value_heads"], 1);
  EXPECT_EQ(cfg["head_dim"], 4);
  EXPECT_EQ(cfg["vocab_size"], 261);
  const json tok = json::parse(ReadBytes(Path("out") + "/tokenizer.json"));
  EXPECT_EQ(tok["model"]["merges"], json::parse(R"([["a", "a"]])"));
}

TEST_F(Llama2cTest, SharedTinyModelHasNoLmHead) {
  const Llama2cConfig c = TinyConfig(/*shared=*/true);
  WriteBytes(Path("m.bin"), MakeBin(c));
  WriteBytes(Path("t.bin"), MakeTokenizer({"ab", "abc"}));
  auto s = ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out"));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto r = CheckpointReader::Open(Path("out"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->Find("lm_head.weight"), nullptr);
  EXPECT_EQ((*r)->names().size(), 20u);
}

// Every failure must be a non-ok Status naming the offending file, and leave no output.
void ExpectFailsNaming(const Result<ImportSummary>& r, const std::string& file,
                       const std::string& out) {
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(file), std::string::npos) << r.status().message();
  EXPECT_FALSE(fs::exists(out)) << out;
}

TEST_F(Llama2cTest, TruncatedOrExtendedCheckpointsAreRejected) {
  const Llama2cConfig c = TinyConfig(true);
  const std::string good = MakeBin(c);
  WriteBytes(Path("t.bin"), MakeTokenizer({"ab", "abc"}));
  for (size_t len : {size_t{0}, size_t{3}, size_t{27}, size_t{28}, size_t{29}, size_t{1000},
                     good.size() / 2, good.size() - 4, good.size() - 1}) {
    SCOPED_TRACE(len);
    WriteBytes(Path("m.bin"), good.substr(0, len));
    auto r = ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out"));
    ExpectFailsNaming(r, Path("m.bin"), Path("out"));
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  }
  WriteBytes(Path("m.bin"), good + "x");
  ExpectFailsNaming(ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out")), Path("m.bin"),
                    Path("out"));
  // Positive vocab_size with an unshared classifier present: explained in the message.
  Llama2cConfig unshared = TinyConfig(false);
  std::string data = MakeBin(unshared);
  const int32_t positive = unshared.vocab_size;
  std::memcpy(data.data() + 20, &positive, 4);
  WriteBytes(Path("m.bin"), data);
  auto r = ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out"));
  ExpectFailsNaming(r, Path("m.bin"), Path("out"));
  EXPECT_NE(r.status().message().find("unshared classifier"), std::string::npos);
}

TEST_F(Llama2cTest, TruncatedStories260KIsRejected) {
  if (!HaveAssets()) GTEST_SKIP() << "no shared assets at " << kAssets;
  const std::string data = ReadBytes(kBin);
  for (size_t len : {size_t{100}, data.size() - 4 * 512 * 8, data.size() - 4}) {
    SCOPED_TRACE(len);
    WriteBytes(Path("m.bin"), data.substr(0, len));
    ExpectFailsNaming(ImportLlama2c(Path("m.bin"), kTok, Path("out")), Path("m.bin"), Path("out"));
  }
}

TEST_F(Llama2cTest, BadHeadersAreRejected) {
  WriteBytes(Path("t.bin"), MakeTokenizer({"ab", "abc"}));
  struct Case {
    const char* what;
    int field;  // int32 index in the header
    int32_t value;
    const char* expect;
  };
  const Case cases[] = {
      {"zero dim", 0, 0, "dim must be positive"},
      {"negative hidden", 1, -5, "hidden_dim must be positive"},
      {"zero layers", 2, 0, "n_layers"},
      {"zero heads", 3, 0, "n_heads must be positive"},
      {"kv not dividing", 4, 3, "multiple of n_kv_heads"},
      {"dim not multiple", 0, 9, "dim must be a multiple of n_heads"},
      {"odd head_dim", 0, 6, "must be even"},
      {"zero vocab", 5, 0, "vocab_size must be non-zero"},
      {"min vocab", 5, std::numeric_limits<int32_t>::min(), "vocab_size"},
      {"zero seq", 6, 0, "seq_len must be positive"},
      {"huge dims", 1, std::numeric_limits<int32_t>::max(), "implies"},
      {"v1 magic", 0, 0x616b3432, "version >= 1"},
  };
  const std::string good = MakeBin(TinyConfig(true));
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    std::string data = good;
    std::memcpy(data.data() + 4 * k.field, &k.value, 4);
    WriteBytes(Path("m.bin"), data);
    auto r = ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out"));
    ExpectFailsNaming(r, Path("m.bin"), Path("out"));
    EXPECT_NE(r.status().message().find(k.expect), std::string::npos) << r.status().message();
  }
  // Garbage of a plausible size.
  std::string garbage(good.size(), '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>((i * 7919) >> 3);
  WriteBytes(Path("m.bin"), garbage);
  ExpectFailsNaming(ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out")), Path("m.bin"),
                    Path("out"));
}

TEST_F(Llama2cTest, NonFiniteWeightIsRejected) {
  std::string data = MakeBin(TinyConfig(true));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(data.data() + data.size() - 100 * 4, &nan, 4);
  WriteBytes(Path("m.bin"), data);
  WriteBytes(Path("t.bin"), MakeTokenizer({"ab", "abc"}));
  auto r = ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out"));
  ExpectFailsNaming(r, Path("m.bin"), Path("out"));
  EXPECT_NE(r.status().message().find("non-finite"), std::string::npos) << r.status().message();
}

TEST_F(Llama2cTest, TokenizerProblemsAreRejected) {
  WriteBytes(Path("m.bin"), MakeBin(TinyConfig(true)));
  const std::string good = MakeTokenizer({"ab", "abc"});
  // Vocab size mismatch (260 and 262 tokens for a 261-token model).
  for (const auto& tok : {MakeTokenizer({"ab"}), MakeTokenizer({"ab", "abc", "x"})}) {
    WriteBytes(Path("t.bin"), tok);
    auto r = ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out"));
    ExpectFailsNaming(r, Path("t.bin"), Path("out"));
    EXPECT_NE(r.status().message().find("vocab_size 261"), std::string::npos)
        << r.status().message();
  }
  // Truncated at several lengths.
  for (size_t len : {size_t{0}, size_t{2}, size_t{4}, size_t{9}, good.size() - 1}) {
    SCOPED_TRACE(len);
    WriteBytes(Path("t.bin"), good.substr(0, len));
    ExpectFailsNaming(ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out")), Path("t.bin"),
                      Path("out"));
  }
  // A piece longer than max_token_length, a negative length.
  std::string bad = good;
  const int32_t one = 1;
  std::memcpy(bad.data(), &one, 4);
  WriteBytes(Path("t.bin"), bad);
  ExpectFailsNaming(ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out")), Path("t.bin"),
                    Path("out"));
  bad = good;
  const int32_t negative = -1;
  std::memcpy(bad.data() + 8, &negative, 4);
  WriteBytes(Path("t.bin"), bad);
  ExpectFailsNaming(ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out")), Path("t.bin"),
                    Path("out"));
  // Not the SentencePiece layout (byte tokens missing).
  std::string plain;
  Append<int32_t>(&plain, 4);
  for (int i = 0; i < 261; ++i) {
    Append<float>(&plain, 0.0f);
    std::string piece = "p";
    piece += std::to_string(i);
    Append<int32_t>(&plain, static_cast<int32_t>(piece.size()));
    plain += piece;
  }
  WriteBytes(Path("t.bin"), plain);
  auto r = ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out"));
  ExpectFailsNaming(r, Path("t.bin"), Path("out"));
  EXPECT_NE(r.status().message().find("<unk>"), std::string::npos) << r.status().message();
}

TEST_F(Llama2cTest, MissingInputsAndExistingOutput) {
  WriteBytes(Path("m.bin"), MakeBin(TinyConfig(true)));
  WriteBytes(Path("t.bin"), MakeTokenizer({"ab", "abc"}));
  auto r = ImportLlama2c(Path("nope.bin"), Path("t.bin"), Path("out"));
  ExpectFailsNaming(r, Path("nope.bin"), Path("out"));
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  r = ImportLlama2c(Path("m.bin"), Path("nope.bin"), Path("out"));
  ExpectFailsNaming(r, Path("nope.bin"), Path("out"));
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);

  ASSERT_TRUE(ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out")).ok());
  r = ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--overwrite"), std::string::npos) << r.status().message();
  ImportOptions opts;
  opts.overwrite = true;
  opts.dtype = DType::kBF16;
  r = ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out"), opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(json::parse(ReadBytes(Path("out") + "/config.json"))["torch_dtype"], "bfloat16");
  opts.dtype = DType::kF16;
  EXPECT_FALSE(ImportLlama2c(Path("m.bin"), Path("t.bin"), Path("out2"), opts).ok());
}

}  // namespace
}  // namespace pq::convert
