// Corrupt and hostile inputs: every one must give a clean error that names the file (and the
// tensor where there is one), never a crash or an out-of-bounds read (run under ASan).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "pq/io/io_test_util.h"
#include "pq/io/safetensors.h"

namespace pq::io {
namespace {

namespace fs = std::filesystem;
using testing::AsBytes;
using testing::MakeSafetensors;
using testing::ReadBytes;
using testing::TempDir;
using testing::U64Le;
using testing::WriteBytes;

// Writes `contents` to <tmp>/bad.safetensors and returns the status of opening it.
Status OpenBytes(const TempDir& tmp, const std::string& contents) {
  WriteBytes(tmp / "bad.safetensors", contents);
  return CheckpointReader::Open(tmp / "bad.safetensors").status();
}

// Opens a file made of `header` (unpadded) and `data`.
Status OpenHeader(const TempDir& tmp, const std::string& header, const std::string& data = "") {
  return OpenBytes(tmp, MakeSafetensors(header, data));
}

std::string Entry(const std::string& dtype, const std::string& shape, uint64_t b, uint64_t e) {
  return R"({"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":[)" +
         std::to_string(b) + "," + std::to_string(e) + "]}";
}

// A valid file with several dtypes, a scalar, an empty tensor and metadata.
std::string ValidFile() {
  const std::string h = R"({"__metadata__":{"format":"pt"},"a":)" + Entry("F32", "[2]", 0, 8) +
                        R"(,"b":)" + Entry("BF16", "[]", 8, 10) + R"(,"c":)" +
                        Entry("U8", "[0,3]", 10, 10) + R"(,"d":)" + Entry("U8", "[3]", 10, 13) +
                        "}";
  return MakeSafetensors(h + "   ", "0123456789abc");
}

TEST(SafetensorsBadInput, ValidFileOpens) {
  TempDir tmp;
  EXPECT_TRUE(OpenBytes(tmp, ValidFile()).ok());
}

TEST(SafetensorsBadInput, EveryTruncationFailsCleanly) {
  TempDir tmp;
  const std::string full = ValidFile();
  for (size_t len = 0; len < full.size(); ++len) {
    SCOPED_TRACE("length " + std::to_string(len));
    PQ_EXPECT_ERROR(OpenBytes(tmp, full.substr(0, len)), "bad.safetensors");
    // The in-memory parser on an exact-size heap copy: ASan flags any read past the end.
    std::vector<uint8_t> copy(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_FALSE(ParseSafetensorsHeader(copy, "mem", nullptr).ok());
  }
}

TEST(SafetensorsBadInput, MutatedBytesNeverCrash) {
  const std::string full = ValidFile();
  const uint8_t replacements[] = {0x00, 0x20, '"', '{', '}', '[', ']', ',', '9', '-', 0xff, 0x80};
  int accepted = 0;
  for (size_t i = 0; i < full.size(); ++i) {
    for (uint8_t r : replacements) {
      std::vector<uint8_t> copy(full.begin(), full.end());
      copy[i] = r;
      auto got = ParseSafetensorsHeader(copy, "mem", nullptr);
      if (!got.ok()) {
        EXPECT_EQ(got.status().message().rfind("mem: ", 0), 0u) << got.status().message();
        continue;
      }
      ++accepted;
      for (const TensorInfo& t : *got) {  // whatever was accepted lies inside the buffer
        EXPECT_GE(t.bytes.data(), copy.data());
        EXPECT_LE(t.bytes.data() + t.bytes.size(), copy.data() + copy.size());
      }
    }
  }
  EXPECT_GT(accepted, 0);  // e.g. mutations of data bytes
}

TEST(SafetensorsBadInput, TooShortForTheLengthPrefix) {
  TempDir tmp;
  PQ_EXPECT_ERROR(OpenBytes(tmp, ""), "bad.safetensors", "0 bytes", "too short");
  PQ_EXPECT_ERROR(OpenBytes(tmp, "abc"), "bad.safetensors", "3 bytes", "too short");
}

TEST(SafetensorsBadInput, HeaderLengthLargerThanFile) {
  TempDir tmp;
  PQ_EXPECT_ERROR(OpenBytes(tmp, U64Le(1000) + "{}"), "bad.safetensors", "header length 1000",
                  "only 10");
  PQ_EXPECT_ERROR(OpenBytes(tmp, U64Le(~uint64_t{0}) + "{}"), "bad.safetensors", "header length");
  PQ_EXPECT_ERROR(OpenBytes(tmp, U64Le(kMaxHeaderBytes) + "{}"), "bad.safetensors",
                  "header length 100000000");
}

TEST(SafetensorsBadInput, HeaderLengthOverTheLimit) {
  TempDir tmp;
  PQ_EXPECT_ERROR(OpenBytes(tmp, U64Le(kMaxHeaderBytes + 1) + "{}"), "bad.safetensors", "100000001",
                  "limit of 100000000");
}

TEST(SafetensorsBadInput, HeaderNotJsonOrNotAnObject) {
  TempDir tmp;
  PQ_EXPECT_ERROR(OpenHeader(tmp, "{not json}"), "bad.safetensors", "invalid JSON");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"a":1} x)"), "bad.safetensors", "invalid JSON");
  PQ_EXPECT_ERROR(OpenHeader(tmp, "[1, 2]"), "bad.safetensors", "'{'");
  PQ_EXPECT_ERROR(OpenHeader(tmp, ""), "bad.safetensors", "'{'");
  PQ_EXPECT_ERROR(OpenHeader(tmp, "  {}"), "bad.safetensors", "'{'");
  PQ_EXPECT_ERROR(OpenHeader(tmp, std::string("{}\0", 3)), "bad.safetensors", "invalid JSON");
  PQ_EXPECT_ERROR(OpenHeader(tmp, "{\"a\xff\":1}"), "bad.safetensors", "invalid JSON");
  PQ_EXPECT_ERROR(OpenHeader(tmp, "{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}"),
                  "bad.safetensors", "nesting");
  // Padding with spaces (and an empty header object) is fine.
  EXPECT_TRUE(OpenHeader(tmp, "{}        ").ok());
}

TEST(SafetensorsBadInput, UnsupportedDType) {
  TempDir tmp;
  for (const char* dt : {"F4", "U16", "F8_E4M3FNUZ", "C64", "f32", ""}) {
    const auto st = OpenHeader(tmp, R"({"x.weight":)" + Entry(dt, "[2]", 0, 2) + "}", "ab");
    std::string quoted = "\"";
    quoted += dt;
    quoted += '"';
    PQ_EXPECT_ERROR(st, "bad.safetensors", "\"x.weight\"", "unsupported dtype", quoted);
    EXPECT_EQ(st.code(), StatusCode::kUnimplemented);
  }
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"x":{"dtype":7,"shape":[],"data_offsets":[0,1]}})", "a"),
                  "bad.safetensors", "\"x\"", "dtype");
}

TEST(SafetensorsBadInput, BadShapes) {
  TempDir tmp;
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"x":)" + Entry("U8", "[-1,2]", 0, 0) + "}"),
                  "bad.safetensors", "\"x\"", "negative");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"x":)" + Entry("U8", "[1.5]", 0, 1) + "}", "a"),
                  "bad.safetensors", "\"x\"", "shape");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"x":)" + Entry("U8", "3", 0, 3) + "}", "abc"),
                  "bad.safetensors", "\"x\"", "shape");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"x":)" + Entry("U8", R"(["3"])", 0, 3) + "}", "abc"),
                  "bad.safetensors", "\"x\"", "shape");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"x":)" + Entry("U8", "[18446744073709551615]", 0, 0) + "}"),
                  "bad.safetensors", "\"x\"", "too large");
  // numel * element size overflows 64 bits.
  PQ_EXPECT_ERROR(
      OpenHeader(tmp, R"({"x":)" + Entry("F32", "[4294967296,4294967296,4]", 0, 0) + "}"),
      "bad.safetensors", "\"x\"", "overflow");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"x":)" + Entry("F32", "[4611686018427387904]", 0, 0) + "}"),
                  "bad.safetensors", "\"x\"", "overflow");
}

TEST(SafetensorsBadInput, ByteLengthMustMatchDTypeAndShape) {
  TempDir tmp;
  const auto st =
      OpenHeader(tmp, R"({"x.weight":)" + Entry("BF16", "[2,3]", 0, 10) + "}", "0123456789");
  EXPECT_EQ(st.message(), (tmp / "bad.safetensors") +
                              ": tensor \"x.weight\": data_offsets [0, 10] give 10 bytes but "
                              "BF16 [2, 3] needs 12");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"s":)" + Entry("F32", "[]", 0, 0) + "}"), "\"s\"", "needs 4");
}

TEST(SafetensorsBadInput, BadDataOffsets) {
  TempDir tmp;
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"x":)" + Entry("F32", "[2]", 4, 12) + "}", "01234567"),
                  "bad.safetensors", "\"x\"", "[4, 12]", "past the end", "8 bytes");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"x":)" + Entry("U8", "[0]", 9, 9) + "}", "01234567"),
                  "bad.safetensors", "\"x\"", "past the end");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"x":)" + Entry("U8", "[2]", 8, 6) + "}", "01234567"),
                  "bad.safetensors", "\"x\"", "begin > end");
  for (const char* offs : {"[0]", "[0,1,2]", "[-1,0]", "[0,1.0]", "\"0,1\"", "[0,\"1\"]"}) {
    const std::string h =
        R"({"x":{"dtype":"U8","shape":[1],"data_offsets":)" + std::string(offs) + "}}";
    PQ_EXPECT_ERROR(OpenHeader(tmp, h, "a"), "bad.safetensors", "\"x\"", "data_offsets");
  }
  // begin + size overflowing 64 bits must not wrap around into the buffer.
  PQ_EXPECT_ERROR(
      OpenHeader(
          tmp, R"({"x":)" + Entry("U8", "[2]", 18446744073709551613u, 18446744073709551615u) + "}",
          "ab"),
      "bad.safetensors", "\"x\"", "past the end");
}

TEST(SafetensorsBadInput, OverlapHolesAndTrailingBytes) {
  TempDir tmp;
  const std::string data12 = "0123456789ab";
  PQ_EXPECT_ERROR(OpenHeader(tmp,
                             R"({"a":)" + Entry("F32", "[2]", 0, 8) + R"(,"b":)" +
                                 Entry("F32", "[2]", 4, 12) + "}",
                             data12),
                  "bad.safetensors", "\"a\"", "\"b\"", "overlap");
  PQ_EXPECT_ERROR(OpenHeader(tmp,
                             R"({"a":)" + Entry("F32", "[2]", 0, 8) + R"(,"b":)" +
                                 Entry("F32", "[2]", 0, 8) + "}",
                             "01234567"),
                  "bad.safetensors", "overlap");
  PQ_EXPECT_ERROR(OpenHeader(tmp,
                             R"({"a":)" + Entry("F32", "[1]", 0, 4) + R"(,"b":)" +
                                 Entry("F32", "[1]", 8, 12) + "}",
                             data12),
                  "bad.safetensors", "\"b\"", "hole", "[4, 8]");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"a":)" + Entry("F32", "[1]", 4, 8) + "}", "01234567"),
                  "bad.safetensors", "\"a\"", "hole");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"a":)" + Entry("F32", "[1]", 0, 4) + "}", "01234567"),
                  "bad.safetensors", "4 trailing bytes");
  PQ_EXPECT_ERROR(OpenHeader(tmp, "{}", "x"), "bad.safetensors", "trailing");
  // An empty tensor inside another one is an overlap too.
  PQ_EXPECT_ERROR(
      OpenHeader(
          tmp, R"({"a":)" + Entry("F32", "[2]", 0, 8) + R"(,"e":)" + Entry("U8", "[0]", 4, 4) + "}",
          "01234567"),
      "bad.safetensors", "\"e\"", "overlap");
}

TEST(SafetensorsBadInput, DuplicateNamesAndFields) {
  TempDir tmp;
  PQ_EXPECT_ERROR(
      OpenHeader(
          tmp, R"({"a":)" + Entry("U8", "[1]", 0, 1) + R"(,"a":)" + Entry("U8", "[1]", 1, 2) + "}",
          "xy"),
      "bad.safetensors", "duplicate key \"a\"");
  PQ_EXPECT_ERROR(
      OpenHeader(tmp, R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", "x"),
      "bad.safetensors", "duplicate key \"dtype\"", "\"a\"");
}

TEST(SafetensorsBadInput, MissingOrUnknownFields) {
  TempDir tmp;
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"a":{"dtype":"U8","shape":[1]}})", "x"), "bad.safetensors",
                  "\"a\"", "missing field \"data_offsets\"");
  PQ_EXPECT_ERROR(
      OpenHeader(tmp, R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":0}})", "x"),
      "bad.safetensors", "\"a\"", "unexpected field \"x\"");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"a":[1]})"), "bad.safetensors", "\"a\"", "object");
}

TEST(SafetensorsBadInput, MetadataMustBeStrings) {
  TempDir tmp;
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"__metadata__":{"format":1}})"), "bad.safetensors",
                  "__metadata__", "\"format\"", "string");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"__metadata__":{"a":{"b":"c"}}})"), "bad.safetensors",
                  "__metadata__");
  PQ_EXPECT_ERROR(OpenHeader(tmp, R"({"__metadata__":"pt"})"), "bad.safetensors", "__metadata__");
  std::map<std::string, std::string> md;
  const std::string ok = MakeSafetensors(R"({"__metadata__":{"format":"pt","k":"v"}})", "");
  ASSERT_TRUE(ParseSafetensorsHeader(AsBytes(ok), "mem", &md).ok());
  EXPECT_EQ(md, (std::map<std::string, std::string>{{"format", "pt"}, {"k", "v"}}));
}

// ---------------------------------------------------------------------------------------
// Sharded directories with a broken index.

class BadIndexTest : public ::testing::Test {
 protected:
  // Writes a valid two-shard checkpoint: "a" and "b" in shard 1, "c" in shard 2.
  void SetUp() override {
    dir_ = tmp_ / "ckpt";
    fs::create_directories(dir_);
    WriteBytes(dir_ + "/s1.safetensors",
               MakeSafetensors(R"({"a":)" + Entry("U8", "[1]", 0, 1) + R"(,"b":)" +
                                   Entry("U8", "[1]", 1, 2) + "}",
                               "ab"));
    WriteBytes(dir_ + "/s2.safetensors",
               MakeSafetensors(R"({"c":)" + Entry("U8", "[1]", 0, 1) + "}", "c"));
    index_ = {{"metadata", {{"total_size", 3}}},
              {"weight_map",
               {{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"c", "s2.safetensors"}}}};
  }
  Status OpenWith(const nlohmann::json& index) { return OpenWithText(index.dump()); }
  Status OpenWithText(const std::string& text) {
    WriteBytes(dir_ + "/model.safetensors.index.json", text);
    return CheckpointReader::Open(dir_).status();
  }

  TempDir tmp_;
  std::string dir_;
  nlohmann::json index_;
};

TEST_F(BadIndexTest, ValidIndexOpens) {
  auto r = CheckpointReader::Open(dir_);
  ASSERT_FALSE(r.ok());  // two files and no index yet
  ASSERT_TRUE(OpenWith(index_).ok());
  r = CheckpointReader::Open(dir_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ((*r)->Find("c")->file, dir_ + "/s2.safetensors");
}

TEST_F(BadIndexTest, MissingShard) {
  index_["weight_map"]["d"] = "s3.safetensors";
  PQ_EXPECT_ERROR(OpenWith(index_), "model.safetensors.index.json",
                  "missing shard \"s3.safetensors\" listed in the index", "\"d\"");
}

TEST_F(BadIndexTest, IndexEntryNotInShard) {
  index_["weight_map"]["ghost"] = "s2.safetensors";
  PQ_EXPECT_ERROR(OpenWith(index_), "model.safetensors.index.json", "\"ghost\"", "s2.safetensors",
                  "does not contain");
}

TEST_F(BadIndexTest, ShardHoldsATensorTheIndexMapsElsewhere) {
  index_["weight_map"]["b"] = "s2.safetensors";
  PQ_EXPECT_ERROR(OpenWith(index_), "s1.safetensors", "\"b\"", "maps it to \"s2.safetensors\"");
}

TEST_F(BadIndexTest, ShardHoldsATensorNotInTheIndex) {
  index_["weight_map"].erase("b");
  PQ_EXPECT_ERROR(OpenWith(index_), "s1.safetensors", "\"b\"", "not listed");
}

TEST_F(BadIndexTest, SameTensorInTwoShards) {
  WriteBytes(dir_ + "/s2.safetensors",
             MakeSafetensors(R"({"a":)" + Entry("U8", "[1]", 0, 1) + R"(,"c":)" +
                                 Entry("U8", "[1]", 1, 2) + "}",
                             "ac"));
  PQ_EXPECT_ERROR(OpenWith(index_), "s2.safetensors", "\"a\"");
}

TEST_F(BadIndexTest, PathTraversalInShardNames) {
  WriteBytes(tmp_ / "outside.safetensors",
             MakeSafetensors(R"({"z":)" + Entry("U8", "[1]", 0, 1) + "}", "z"));
  fs::create_directories(dir_ + "/sub");
  for (const char* bad : {"../outside.safetensors", "sub/x.safetensors", "..", "/etc/passwd",
                          "a\\b.safetensors", ""}) {
    auto idx = index_;
    idx["weight_map"]["z"] = bad;
    PQ_EXPECT_ERROR(OpenWith(idx), "model.safetensors.index.json", "\"z\"", "shard name");
  }
}

TEST_F(BadIndexTest, MalformedIndex) {
  PQ_EXPECT_ERROR(OpenWithText("{"), "model.safetensors.index.json", "invalid JSON");
  PQ_EXPECT_ERROR(OpenWithText("[]"), "model.safetensors.index.json", "object");
  PQ_EXPECT_ERROR(OpenWithText(R"({"metadata":{}})"), "model.safetensors.index.json", "weight_map");
  PQ_EXPECT_ERROR(OpenWithText(R"({"weight_map":{"a":1}})"), "model.safetensors.index.json",
                  "\"a\"");
  PQ_EXPECT_ERROR(OpenWithText(R"({"weight_map":{},"metadata":3})"), "model.safetensors.index.json",
                  "metadata");
  PQ_EXPECT_ERROR(OpenWithText(R"({"weight_map":{"a":"s1.safetensors","a":"s2.safetensors"}})"),
                  "model.safetensors.index.json", "duplicate key \"a\"");
}

TEST_F(BadIndexTest, CorruptShardNamesTheShard) {
  ASSERT_TRUE(OpenWith(index_).ok());
  const std::string s2 = ReadBytes(dir_ + "/s2.safetensors");
  WriteBytes(dir_ + "/s2.safetensors", s2.substr(0, s2.size() - 1));
  PQ_EXPECT_ERROR(CheckpointReader::Open(dir_).status(), "s2.safetensors", "\"c\"");
}

}  // namespace
}  // namespace pq::io
