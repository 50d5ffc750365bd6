// Tokenizer tests that need no Python: llama2.c tokenizer.bin (known ids from
// scripts/llama2c_tokenizer_check.py's reference encoder, heap == naive run.c loop, decode),
// the import-llama2c tokenizer.json == tokenizer.bin on corpus lines, LoadTokenizer and
// ReadTokenIds errors. Tests that need the shared assets skip when ../shared is absent.
#include "pq/tokenizer/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "pq/io/io_test_util.h"
#include "pq/tokenizer/llama2c_tokenizer.h"

namespace pq::tokenizer {
namespace {

namespace fs = std::filesystem;

const std::string kAssets = PQ_SOURCE_DIR "/../shared/assets";
const std::string kTok512 = kAssets + "/llama2c-stories260K/tok512.bin";
const std::string kTok32k = kAssets + "/llama2c-tokenizer-llama2-32k/tokenizer.bin";
const std::string kStoriesDir = PQ_SOURCE_DIR "/models/stories260K";
const std::string kTinyStories = kAssets + "/corpus-tinystories-valid-slice/tinystories_val.txt";
const std::string kWikitext = kAssets + "/corpus-wikitext2-test/wiki.test.raw";

// File helpers shared with the io tests.
using io::testing::ReadBytes;
using io::testing::WriteBytes;

std::vector<std::string> Lines(const std::string& path, size_t max_lines) {
  std::vector<std::string> out;
  std::ifstream f(path, std::ios::binary);
  std::string line;
  while (out.size() < max_lines && std::getline(f, line)) out.push_back(line);
  return out;
}

// Expects `s` to be an error whose message contains every one of `parts`.
void ExpectError(const Status& s, std::initializer_list<std::string> parts) {
  EXPECT_FALSE(s.ok()) << "expected an error";
  for (const std::string& p : parts) {
    EXPECT_NE(s.message().find(p), std::string::npos)
        << "message lacks \"" << p << "\": " << s.message();
  }
}

class TokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("pq_tokenizer_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

#define PQ_REQUIRE_ASSET(path) \
  if (!fs::exists(path)) GTEST_SKIP() << "missing " << (path)

std::vector<int32_t> EncodeOk(const Tokenizer& t, std::string_view text) {
  auto r = t.Encode(text);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<int32_t>{};
}

TEST_F(TokenizerTest, Llama2cKnownIds) {
  PQ_REQUIRE_ASSET(kTok512);
  auto t = LoadTokenizer(kTok512);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const Tokenizer& tok = **t;
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  // Expected ids: RunCEncoder of scripts/llama2c_tokenizer_check.py on tok512.bin.
  EXPECT_EQ(EncodeOk(tok, "Once upon a time, there was a little girl named Lily."),
            (std::vector<int32_t>{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395,
                                  317, 426}));
  EXPECT_EQ(EncodeOk(tok, "Hello, world!"),
            (std::vector<int32_t>{346, 306, 414, 432, 263, 304, 341, 443}));
  EXPECT_EQ(EncodeOk(tok, " two  spaces"),
            (std::vector<int32_t>{410, 259, 424, 414, 410, 262, 427, 412, 331, 419}));
  EXPECT_EQ(EncodeOk(tok, "caf\xc3\xa9 \xf0\x9f\x98\x80"),
            (std::vector<int32_t>{280, 412, 431, 485, 410, 243, 162, 155, 131}));
  EXPECT_EQ(EncodeOk(tok, ""), std::vector<int32_t>{});
  EXPECT_EQ(EncodeOk(tok, "a"), std::vector<int32_t>{261});
  EXPECT_EQ(EncodeOk(tok, "\n"), (std::vector<int32_t>{410, 13}));
  // Invalid UTF-8 falls back to byte tokens, like run.c.
  EXPECT_EQ(EncodeOk(tok, "\xff\xfe"), (std::vector<int32_t>{410, 0xff + 3, 0xfe + 3}));
  EXPECT_NE(tok.Describe().find("llama2.c"), std::string::npos);
}

TEST_F(TokenizerTest, Llama2cDecodeRoundTrip) {
  PQ_REQUIRE_ASSET(kTok512);
  auto t = LoadTokenizer(kTok512);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  for (const std::string s :
       {"Once upon a time", " leading space", "two  spaces\nand a newline", "caf\xc3\xa9",
        "\xf0\x9f\x98\x80 emoji", "tab\there", "x", "\xff raw byte"}) {
    EXPECT_EQ((*t)->Decode(EncodeOk(**t, s)), s);
  }
  // Specials decode to their names, out-of-range ids are skipped, a BOS keeps the space.
  EXPECT_EQ((*t)->Decode(std::vector<int32_t>{1, 403, 2}), "<s> Once</s>");
  EXPECT_EQ((*t)->Decode(std::vector<int32_t>{-1, 403, 512, 100000}), "Once");
}

// The priority-queue encoder picks the same merge as run.c's O(n^2) loop at every step.
TEST_F(TokenizerTest, Llama2cHeapEqualsNaive) {
  for (const std::string& path : {kTok512, kTok32k}) {
    PQ_REQUIRE_ASSET(path);
    PQ_REQUIRE_ASSET(kTinyStories);
    auto t = Llama2cTokenizer::Load(path);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    std::vector<std::string> inputs = Lines(kTinyStories, 300);
    for (const std::string& l : Lines(kWikitext, 200)) inputs.push_back(l);
    std::mt19937 gen(7);
    const std::string alphabet = "aeio nstlrAB.,'\n\t\xc3\xa9\xe2\x80\x9c\xf0\x9f\x98\x80";
    for (int i = 0; i < 300; ++i) {
      std::string s;
      const size_t len = gen() % 60;
      for (size_t k = 0; k < len; ++k) s += alphabet[gen() % alphabet.size()];
      inputs.push_back(s);  // includes broken UTF-8 sequences
    }
    for (const std::string& s : inputs) {
      auto fast = (*t)->Encode(s);
      ASSERT_TRUE(fast.ok());
      ASSERT_EQ(*fast, (*t)->EncodeNaive(s)) << path << ": " << s;
    }
  }
}

// models/stories260K/tokenizer.json (written by import-llama2c) encodes like tokenizer.bin.
TEST_F(TokenizerTest, ImportedTokenizerJsonMatchesBin) {
  PQ_REQUIRE_ASSET(kStoriesDir + "/tokenizer.json");
  PQ_REQUIRE_ASSET(kTinyStories);
  auto json_tok = LoadTokenizer(kStoriesDir);  // prefers tokenizer.json
  auto bin_tok = LoadTokenizer(kStoriesDir + "/tokenizer.bin");
  ASSERT_TRUE(json_tok.ok()) << json_tok.status().ToString();
  ASSERT_TRUE(bin_tok.ok()) << bin_tok.status().ToString();
  EXPECT_NE((*json_tok)->Describe().find("tokenizer.json"), std::string::npos);
  EXPECT_EQ((*json_tok)->vocab_size(), 512);
  EXPECT_EQ((*json_tok)->bos_id(), 1);
  EXPECT_EQ((*json_tok)->eos_id(), 2);
  std::vector<std::string> inputs = Lines(kTinyStories, 300);
  for (const std::string& l : Lines(kWikitext, 100)) inputs.push_back(l);
  int compared = 0;
  for (const std::string& s : inputs) {
    // HF splits on literal "<unk>"/"<s>"/"</s>" text; run.c does not (none in these lines).
    if (s.find("<unk>") != std::string::npos || s.find("<s>") != std::string::npos ||
        s.find("</s>") != std::string::npos) {
      continue;
    }
    const auto a = EncodeOk(**json_tok, s), b = EncodeOk(**bin_tok, s);
    ASSERT_EQ(a, b) << s;
    EXPECT_EQ((*json_tok)->Decode(a), (*bin_tok)->Decode(b)) << s;
    ++compared;
  }
  EXPECT_GE(compared, 350);
}

TEST_F(TokenizerTest, LoadErrors) {
  ExpectError(LoadTokenizer(Path("nope")).status(), {Path("nope"), "no such"});
  ExpectError(LoadTokenizer(dir_.string()).status(), {dir_.string(), "tokenizer.json"});

  WriteBytes(Path("corrupt.json"), "{\"model\": {");
  ExpectError(LoadTokenizer(Path("corrupt.json")).status(), {Path("corrupt.json")});

  WriteBytes(Path("array.json"), "[1, 2]");
  ExpectError(LoadTokenizer(Path("array.json")).status(), {Path("array.json"), "object"});

  for (const char* type : {"Unigram", "WordPiece", "WordLevel"}) {
    WriteBytes(Path("t.json"), std::string("{\"model\": {\"type\": \"") + type +
                                   "\", \"vocab\": {}}, \"added_tokens\": []}");
    auto r = LoadTokenizer(Path("t.json"));
    ExpectError(r.status(), {Path("t.json"), type, "not supported"});
    EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
  }

  const std::string model = R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
                                          "merges": ["a b"]})";
  WriteBytes(Path("lower.json"), "{\"normalizer\": {\"type\": \"Lowercase\"}, " + model + "}");
  ExpectError(LoadTokenizer(Path("lower.json")).status(),
              {Path("lower.json"), "normalizer", "Lowercase", "not supported"});
  WriteBytes(Path("bert.json"),
             "{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}, " + model + "}");
  ExpectError(LoadTokenizer(Path("bert.json")).status(), {"pre_tokenizer", "BertPreTokenizer"});
  WriteBytes(Path("regex.json"),
             "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": "
             "{\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\", "
             "\"invert\": false}, " +
                 model + "}");
  ExpectError(LoadTokenizer(Path("regex.json")).status(),
              {Path("regex.json"), "pre_tokenizer.pattern", "(unclosed"});
  WriteBytes(Path("merge.json"), R"({"model": {"type": "BPE", "vocab": {"a": 0},
                                             "merges": ["a zz"]}})");
  ExpectError(LoadTokenizer(Path("merge.json")).status(),
              {Path("merge.json"), "model.merges[0]", "zz"});
  WriteBytes(Path("dropout.json"), R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [],
                                               "dropout": 0.1}})");
  ExpectError(LoadTokenizer(Path("dropout.json")).status(), {"dropout"});

  WriteBytes(Path("short.bin"), std::string("\x10\x00\x00\x00\x00\x00", 6));
  ExpectError(LoadTokenizer(Path("short.bin")).status(), {Path("short.bin"), "truncated"});
  std::string tiny("\x10\x00\x00\x00", 4);  // max_token_length 16, then 3 entries only
  for (const char* p : {"<unk>", "<s>", "</s>"}) {
    const float score = 0;
    const auto len = static_cast<int32_t>(std::strlen(p));
    tiny.append(reinterpret_cast<const char*>(&score), 4);
    tiny.append(reinterpret_cast<const char*>(&len), 4);
    tiny += p;
  }
  WriteBytes(Path("tiny.bin"), tiny);
  ExpectError(LoadTokenizer(Path("tiny.bin")).status(), {Path("tiny.bin"), "259"});
}

// Malformed documents of the right overall shape give errors, never crashes or exceptions.
TEST_F(TokenizerTest, MalformedTokenizerJson) {
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"])";
  const std::vector<std::string> docs = {
      R"({"model": 5})",
      R"({"model": {"type": 5}})",
      R"({"model": {"type": "BPE", "vocab": [], "merges": []}})",
      R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})",
      R"({"model": {"type": "BPE", "vocab": {"a": 1e10}, "merges": []}})",
      R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})",
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [5]}})",
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a a a"]}})",
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}})",
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": {}}})",
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": 3}})",
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "byte_fallback": "y"}})",
      R"({"added_tokens": {}, "model": {"type": "BPE", )" + vocab + "}}",
      R"({"added_tokens": [5], "model": {"type": "BPE", )" + vocab + "}}",
      R"({"added_tokens": [{"id": 9}], "model": {"type": "BPE", )" + vocab + "}}",
      R"({"added_tokens": [{"content": "x", "lstrip": 1}], "model": {"type": "BPE", )" + vocab +
          "}}",
      R"({"normalizer": {"type": "Sequence"}, "model": {"type": "BPE", )" + vocab + "}}",
      R"({"normalizer": {"type": "Replace", "pattern": {"Foo": "x"}, "content": "y"},
          "model": {"type": "BPE", )" +
          vocab + "}}",
      R"({"normalizer": [1], "model": {"type": "BPE", )" + vocab + "}}",
      R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Bad"},
          "model": {"type": "BPE", )" +
          vocab + "}}",
      R"({"pre_tokenizer": {"type": "Metaspace", "replacement": "ab"},
          "model": {"type": "BPE", )" +
          vocab + "}}",
      R"({"pre_tokenizer": {"type": "Metaspace", "replacement": "_", "prepend_scheme": "x"},
          "model": {"type": "BPE", )" +
          vocab + "}}",
      R"({"decoder": {"type": "Strip", "content": " ", "start": -1, "stop": 0},
          "model": {"type": "BPE", )" +
          vocab + "}}",
      R"({"post_processor": {"type": 7}, "model": {"type": "BPE", )" + vocab + "}}",
      R"({"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": 1}]},
          "model": {"type": "BPE", )" +
          vocab + "}}",
  };
  for (size_t i = 0; i < docs.size(); ++i) {
    const std::string path = Path("bad" + std::to_string(i) + ".json");
    WriteBytes(path, docs[i]);
    auto t = LoadTokenizer(path);
    if (!t.ok()) {
      EXPECT_NE(t.status().message().find(path), std::string::npos) << t.status().message();
    } else {
      EXPECT_TRUE((*t)->Encode("ab ab").ok()) << docs[i];
    }
  }
}

TEST_F(TokenizerTest, LoadPicksTokenizerBinInDirectory) {
  PQ_REQUIRE_ASSET(kTok512);
  WriteBytes(Path("tokenizer.bin"), ReadBytes(kTok512));
  auto t = LoadTokenizer(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->vocab_size(), 512);
  // A corrupt tokenizer.json beside it wins (preferred) and is reported.
  WriteBytes(Path("tokenizer.json"), "not json");
  ExpectError(LoadTokenizer(dir_.string()).status(), {Path("tokenizer.json")});
}

TEST_F(TokenizerTest, HfRejectsInvalidUtf8) {
  PQ_REQUIRE_ASSET(kStoriesDir + "/tokenizer.json");
  auto t = LoadTokenizer(kStoriesDir);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto r = (*t)->Encode("ok \xff bad");
  ExpectError(r.status(), {"UTF-8"});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(TokenizerTest, ReadTokenIds) {
  WriteBytes(Path("ids.txt"),
             "# prompt\n1 403 407\t261\n\n  378 # trailing comment\r\n2147483647\n");
  auto ids = ReadTokenIds(Path("ids.txt"));
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(*ids, (std::vector<int32_t>{1, 403, 407, 261, 378, 2147483647}));

  WriteBytes(Path("bad.txt"), "1 2\n3\n4 12a 5\n");
  ExpectError(ReadTokenIds(Path("bad.txt")).status(), {Path("bad.txt") + ":3:", "12a"});
  WriteBytes(Path("neg.txt"), "-1\n");
  ExpectError(ReadTokenIds(Path("neg.txt")).status(), {":1:", "-1"});
  WriteBytes(Path("big.txt"), "5\n2147483648\n");
  ExpectError(ReadTokenIds(Path("big.txt")).status(), {":2:", "out of range"});
  WriteBytes(Path("huge.txt"), "99999999999999999999999999\n");
  ExpectError(ReadTokenIds(Path("huge.txt")).status(), {":1:", "out of range"});
  WriteBytes(Path("empty.txt"), "# nothing\n\n");
  ExpectError(ReadTokenIds(Path("empty.txt")).status(), {Path("empty.txt"), "no token ids"});
  ExpectError(ReadTokenIds(Path("missing.txt")).status(), {Path("missing.txt")});
}

}  // namespace
}  // namespace pq::tokenizer
