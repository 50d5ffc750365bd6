#include "pq/io/json_util.h"

#include <gtest/gtest.h>

#include "pq/core/utf8.h"
#include "pq/io/io_test_util.h"

namespace pq::io {
namespace {

using testing::TempDir;
using testing::WriteBytes;

std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(ParseJson, ParsesLikeNlohmann) {
  const std::string text =
      R"({"b":[1,-2,3.5,"s",true,false,null,{"x":{}}],"a":{"k":[[]]},"u":18446744073709551615})";
  auto got = ParseJson(text, "t.json");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, nlohmann::json::parse(text));
  EXPECT_TRUE((*got)["u"].is_number_unsigned());
  EXPECT_TRUE((*got)["b"][1].is_number_integer());
  ASSERT_TRUE(ParseJson("  {}  \n\t ", "t").ok());
  ASSERT_TRUE(ParseJson("3", "t").ok());
  EXPECT_EQ(*ParseJson("\"x\"", "t"), "x");
}

TEST(ParseJson, RejectsDuplicateKeysAtAnyDepth) {
  auto top = ParseJson(R"({"a":1,"b":2,"a":3})", "t.json");
  PQ_EXPECT_ERROR(top.status(), "t.json", "duplicate key \"a\"");
  EXPECT_EQ(top.status().code(), StatusCode::kDataLoss);
  PQ_EXPECT_ERROR(ParseJson(R"({"w":{"x":1,"x":1}})", "t.json").status(), "duplicate key \"x\"",
                  "\"w\"");
  PQ_EXPECT_ERROR(ParseJson(R"([{"x":1},{"y":1,"y":2}])", "t.json").status(), "duplicate key \"y\"",
                  "[1]");
  // The same key in sibling objects is fine.
  EXPECT_TRUE(ParseJson(R"({"a":{"x":1},"b":{"x":2}})", "t").ok());
}

TEST(ParseJson, LimitsNesting) {
  EXPECT_TRUE(ParseJson(Nested(kMaxJsonDepth), "t").ok());
  PQ_EXPECT_ERROR(ParseJson(Nested(kMaxJsonDepth + 1), "t.json").status(), "t.json", "nesting");
  PQ_EXPECT_ERROR(ParseJson(Nested(100000), "t.json").status(), "t.json", "nesting");
}

TEST(ParseJson, ReportsSyntaxErrorsWithoutThrowing) {
  for (const char* bad :
       {"", "{", "{\"a\":}", "{} {}", "[1,]", "{\"a\" 1}", "nul", "\"\xff\"", "{'a':1}", "[1] x"}) {
    PQ_EXPECT_ERROR(ParseJson(bad, "t.json").status(), "t.json: invalid JSON");
  }
  PQ_EXPECT_ERROR(ParseJson(std::string("{}\0", 3), "t.json").status(), "invalid JSON");
  // nlohmann alone would stop at the NUL and accept this.
  PQ_EXPECT_ERROR(ParseJson(std::string("{\"a\":1}\0{{{", 11), "t.json").status(), "NUL");
}

TEST(ReadJsonFile, ReadsAndNamesTheFile) {
  TempDir tmp;
  WriteBytes(tmp / "c.json", R"({"a": [1, 2]})");
  auto got = ReadJsonFile(tmp / "c.json");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)["a"][1], 2);
  WriteBytes(tmp / "bad.json", R"({"a": )");
  PQ_EXPECT_ERROR(ReadJsonFile(tmp / "bad.json").status(), tmp / "bad.json");
  auto missing = ReadJsonFile(tmp / "missing.json");
  PQ_EXPECT_ERROR(missing.status(), tmp / "missing.json");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST(JsonUtil, QuoteAndUtf8) {
  EXPECT_EQ(Quote("x.weight"), "\"x.weight\"");
  EXPECT_EQ(Quote("a\"b\\c\n"), R"("a\"b\\c\n")");
  EXPECT_EQ(Quote("\xc3\xa9"), "\"\xc3\xa9\"");
  EXPECT_EQ(Quote("\xff"), "\"\xef\xbf\xbd\"");  // invalid UTF-8 is replaced, not thrown
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("ascii \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  for (const char* bad : {"\xff", "\xc3", "\xc0\x80", "\xe0\x80\x80", "\xed\xa0\x80",
                          "\xf4\x90\x80\x80", "\x80", "\xe2\x82"}) {
    EXPECT_FALSE(IsValidUtf8(bad)) << Quote(bad);
  }
  EXPECT_EQ(JsonTypeName(nlohmann::json(1.5)), "non-integer number");
  EXPECT_EQ(JsonTypeName(nlohmann::json(-1)), "integer");
  EXPECT_EQ(JsonTypeName(nlohmann::json::array()), "array");
}

}  // namespace
}  // namespace pq::io
