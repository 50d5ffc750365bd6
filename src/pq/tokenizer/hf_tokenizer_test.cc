// Unit tests of the Hugging Face tokenizer.json pipeline on small hand-built files (expected
// ids computed with tokenizers 0.23.3), the PCRE2 wrapper, and NFC. The equivalence on real
// tokenizers and corpora is tests/tokenizer/check_tokenizers.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "pq/tokenizer/hf_common.h"
#include "pq/tokenizer/regex.h"
#include "pq/tokenizer/tokenizer.h"
#include "pq/tokenizer/unicode.h"

namespace pq::tokenizer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string TempPath(const std::string& name) {
  return (fs::path(::testing::TempDir()) / ("pq_hf_tok_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

// Writes `doc` to a temp file and loads it.
std::unique_ptr<Tokenizer> LoadJson(const json& doc, const std::string& name) {
  const std::string path = TempPath(name + ".json");
  {
    std::ofstream f(path, std::ios::trunc);
    f << doc.dump();
  }
  auto t = LoadTokenizer(path);
  fs::remove(path);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(t).value() : nullptr;
}

std::vector<int32_t> Ids(const Tokenizer& t, std::string_view s) {
  auto r = t.Encode(s);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::vector<int32_t>{};
}

json AddedToken(int id, const char* content, bool single_word, bool lstrip, bool rstrip) {
  return {{"id", id},         {"content", content}, {"single_word", single_word},
          {"lstrip", lstrip}, {"rstrip", rstrip},   {"normalized", false},
          {"special", true}};
}

// A byte-level BPE: ids 0..255 are the bytes, then 9 merges spelling "hello" and "Ġworld",
// and four added tokens with different flags.
json TinyByteLevel() {
  json vocab = json::object();
  const auto& bu = hf::ByteToUnicode();
  for (int b = 0; b < 256; ++b) vocab[bu[static_cast<size_t>(b)]] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"},          {"l", "l"},           {"he", "ll"},
      {"hell", "o"},       {"\xc4\xa0", "w"},    {"o", "r"},
      {"\xc4\xa0w", "or"}, {"\xc4\xa0wor", "l"}, {"\xc4\xa0worl", "d"}};
  json m = json::array();
  for (const auto& [a, b] : merges) {
    vocab[a + b] = static_cast<int>(vocab.size());
    m.push_back(a + " " + b);
  }
  json byte_level = {{"type", "ByteLevel"},
                     {"add_prefix_space", false},
                     {"trim_offsets", true},
                     {"use_regex", true}};
  return {
      {"version", "1.0"},
      {"added_tokens",
       {AddedToken(265, "<|end|>", false, false, false),
        AddedToken(266, "<sw>", true, false, false), AddedToken(267, "<ls>", false, true, false),
        AddedToken(268, "<rs>", false, false, true)}},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level},
      {"post_processor", nullptr},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", m}}}};
}

TEST(HfTokenizerTest, ByteLevelAndAddedTokens) {
  auto t = LoadJson(TinyByteLevel(), "tiny");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), 269);
  EXPECT_EQ(t->bos_id(), std::nullopt);
  // Expected ids and decodes: tokenizers 0.23.3 on the same file.
  const std::vector<std::pair<std::string, std::vector<int32_t>>> cases = {
      {"hello world", {259, 264}},
      {"hello<|end|>world", {259, 265, 119, 261, 108, 100}},
      {"a<sw>b", {97, 60, 115, 119, 62, 98}},  // not a single word: no match
      {"a <sw> b", {97, 32, 266, 32, 98}},
      {"x  <ls>y", {120, 267, 121}},  // lstrip swallows the spaces before
      {"<rs>   z", {268, 122}},       // rstrip swallows the spaces after
      {"<|end|><|end|>", {265, 265}},
      {" hello", {32, 259}},
      {"h\xc3\xa9llo w\xc3\xb6rld", {104, 195, 169, 257, 111, 260, 195, 182, 114, 108, 100}},
      {"it's 12", {105, 116, 39, 115, 32, 49, 50}},
      {"", {}}};
  for (const auto& [text, ids] : cases) {
    EXPECT_EQ(Ids(*t, text), ids) << text;
  }
  EXPECT_EQ(t->Decode(std::vector<int32_t>{259, 265, 119, 261, 108, 100}), "hello<|end|>world");
  EXPECT_EQ(t->Decode(std::vector<int32_t>{120, 267, 121}), "x<ls>y");
  EXPECT_EQ(t->Decode(std::vector<int32_t>{104, 195, 169, 257}), "h\xc3\xa9ll");
  EXPECT_EQ(t->Decode(std::vector<int32_t>{195}), "\xc3");  // raw bytes, not U+FFFD
}

TEST(HfTokenizerTest, IgnoreMergesAndMergePairs) {
  json doc = TinyByteLevel();
  // "hel" is in the vocabulary but unreachable by merges (he + l is not a merge).
  doc["model"]["vocab"]["hel"] = 269;
  doc["model"]["merges"] = json::array();
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
           {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}}) {
    doc["model"]["merges"].push_back({a, b});  // ["a", "b"] form
  }
  auto plain = LoadJson(doc, "pairs");
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(Ids(*plain, "hel"), (std::vector<int32_t>{256, 108}));
  EXPECT_EQ(Ids(*plain, "hello"), (std::vector<int32_t>{259}));
  doc["model"]["ignore_merges"] = true;
  auto ignoring = LoadJson(doc, "ignore");
  ASSERT_NE(ignoring, nullptr);
  EXPECT_EQ(Ids(*ignoring, "hel"), (std::vector<int32_t>{269}));
}

// SentencePiece-style: Prepend/Replace normalizer, byte fallback, unk fusing.
TEST(HfTokenizerTest, SentencePieceStyle) {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  const std::string sp = "\xe2\x96\x81";  // U+2581
  for (const std::string& p : {sp, std::string("a"), std::string("b"), sp + "a", sp + "ab"}) {
    vocab[p] = static_cast<int>(vocab.size());
  }
  json doc = json::parse(R"({
    "added_tokens": [
      {"id": 0, "content": "<unk>", "special": true, "normalized": false},
      {"id": 1, "content": "<s>", "special": true, "normalized": false}],
    "normalizer": {"type": "Sequence", "normalizers": [
      {"type": "Prepend", "prepend": "\u2581"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": null,
    "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "Sequence", "decoders": [
      {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
      {"type": "ByteFallback"}, {"type": "Fuse"},
      {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
              "merges": ["\u2581 a", "\u2581a b"]}})");
  doc["model"]["vocab"] = vocab;
  auto t = LoadJson(doc, "spm");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->bos_id(), 1);
  const int s = 259, b = 261, sa = 262, sab = 263;  // 260 is "a"
  EXPECT_EQ(Ids(*t, "ab a"), (std::vector<int32_t>{sab, sa}));
  EXPECT_EQ(Ids(*t, "a\xc3\xa9"), (std::vector<int32_t>{sa, 0xC3 + 3, 0xA9 + 3}));
  EXPECT_EQ(Ids(*t, "b<s>a"), (std::vector<int32_t>{s, b, 1, sa}));  // each segment prepended
  EXPECT_EQ(t->Decode(Ids(*t, "ab a\xc3\xa9")), "ab a\xc3\xa9");
  // Without byte fallback, unknown characters become one fused <unk>.
  doc["model"]["byte_fallback"] = false;
  auto u = LoadJson(doc, "unk");
  ASSERT_NE(u, nullptr);
  EXPECT_EQ(Ids(*u, "a\xc3\xa9xyb"), (std::vector<int32_t>{sa, 0, b}));
  doc["model"]["fuse_unk"] = false;
  auto u2 = LoadJson(doc, "unk2");
  ASSERT_NE(u2, nullptr);
  EXPECT_EQ(Ids(*u2, "a\xc3\xa9xyb"), (std::vector<int32_t>{sa, 0, 0, 0, b}));
}

TEST(HfTokenizerTest, TokenizerConfigSuppliesBosEos) {
  const std::string dir = TempPath("cfgdir");
  fs::create_directories(dir);
  json doc = TinyByteLevel();
  {
    std::ofstream(dir + "/tokenizer.json") << doc.dump();
    std::ofstream(dir + "/tokenizer_config.json")
        << R"({"add_bos_token": true, "bos_token": {"content": "<|end|>"}, "eos_token": "<rs>"})";
  }
  auto t = LoadTokenizer(dir);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->bos_id(), 265);
  EXPECT_EQ((*t)->eos_id(), 268);
  std::ofstream(dir + "/tokenizer_config.json") << "{broken";
  EXPECT_FALSE(LoadTokenizer(dir).ok());
  fs::remove_all(dir);
}

TEST(HfRegexTest, Gpt2PatternAndOnigIteration) {
  auto re = Regex::Compile(
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
  ASSERT_TRUE(re.ok()) << re.status().ToString();
  const std::string text = "Hello's  world 123!!\n\n caf\xc3\xa9";
  std::vector<std::pair<size_t, size_t>> m;
  ASSERT_TRUE(re->FindAll(text, &m).ok());
  std::vector<std::string> pieces;
  for (auto [b, e] : m) pieces.push_back(text.substr(b, e - b));
  EXPECT_EQ(pieces, (std::vector<std::string>{"Hello", "'s", " ", " world", " 123", "!!", "\n\n",
                                              " caf\xc3\xa9"}));
  // Empty matches right after a match are skipped (Rust onig find_iter).
  auto star = Regex::Compile("a*");
  ASSERT_TRUE(star.ok());
  m.clear();
  ASSERT_TRUE(star->FindAll("baab", &m).ok());
  EXPECT_EQ(m, (std::vector<std::pair<size_t, size_t>>{{0, 0}, {1, 3}, {4, 4}}));
  // Case-insensitive groups and Unicode classes.
  auto ci = Regex::Compile(R"((?i:'s|'ll)|\p{N}{1,3})");
  ASSERT_TRUE(ci.ok());
  m.clear();
  ASSERT_TRUE(ci->FindAll("IT'S WE'LL 12345", &m).ok());
  EXPECT_EQ(m.size(), 4u);
  // A very long whitespace run does not exhaust the JIT stack.
  m.clear();
  ASSERT_TRUE(re->FindAll(std::string(200000, ' ') + "x", &m).ok());
  EXPECT_EQ(m.size(), 2u);
  EXPECT_FALSE(Regex::Compile("(unclosed").ok());
  auto lit = Regex::Literal("a.b(");
  ASSERT_TRUE(lit.ok());
  m.clear();
  ASSERT_TRUE(lit->FindAll("xa.b(ya.b(", &m).ok());
  EXPECT_EQ(m.size(), 2u);
}

TEST(UnicodeTest, Nfc) {
  using unicode::Nfc;
  EXPECT_EQ(Nfc("abc"), "abc");
  EXPECT_EQ(Nfc("e\xcc\x81"), "\xc3\xa9");                                 // e + U+0301 -> é
  EXPECT_EQ(Nfc("\xe2\x84\xab"), "\xc3\x85");                              // Angstrom sign -> Å
  EXPECT_EQ(Nfc("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8"), "\xea\xb0\x81");  // Hangul L V T
  // q + dot below (220) + dot above (230) reorders: below first, no composite exists.
  EXPECT_EQ(Nfc("q\xcc\x87\xcc\xa3"), "q\xcc\xa3\xcc\x87");
  // e + dot below + acute: ẹ composes, the acute stays.
  EXPECT_EQ(Nfc("e\xcc\x81\xcc\xa3"), "\xe1\xba\xb9\xcc\x81");
  EXPECT_EQ(Nfc("\xcc\x81"
                "a"),
            "\xcc\x81"
            "a");  // a leading mark stays
  EXPECT_EQ(unicode::Nfd("\xc3\xa9"), "e\xcc\x81");
  EXPECT_STREQ(unicode::UnicodeVersion(), "14.0.0");
  EXPECT_TRUE(unicode::IsWhiteSpace(0x3000));
  EXPECT_FALSE(unicode::IsWhiteSpace(0x200B));
  EXPECT_EQ(unicode::CombiningClass(0x301), 230);
  EXPECT_EQ(unicode::CombiningClass('a'), 0);
}

TEST(HfComponentsTest, ByteToUnicodeRoundTrip) {
  const auto& t = hf::ByteToUnicode();
  for (int b = 0; b < 256; ++b) {
    size_t pos = 0;
    const char32_t c = unicode::DecodeUtf8(t[static_cast<size_t>(b)], &pos);
    EXPECT_EQ(hf::UnicodeToByte(c), b);
  }
  EXPECT_EQ(t[' '], "\xc4\xa0");  // Ġ
  EXPECT_EQ(hf::UnicodeToByte(0x4E00), -1);
}

}  // namespace
}  // namespace pq::tokenizer
