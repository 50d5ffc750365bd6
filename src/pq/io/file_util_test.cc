#include "pq/io/file_util.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include "pq/io/io_test_util.h"

namespace pq::io {
namespace {

using testing::ListDir;
using testing::RandomBytes;
using testing::ReadBytes;
using testing::TempDir;
using testing::WriteBytes;

TEST(FileUtil, CopyRangeCopiesTheRequestedSlice) {
  TempDir tmp;
  const std::string src = RandomBytes(3 << 20, 1);
  WriteBytes(tmp / "src", src);
  auto in = OpenFile(tmp / "src", O_RDONLY);
  ASSERT_TRUE(in.ok());
  auto out = OpenFile(tmp / "dst", O_WRONLY | O_CREAT | O_EXCL);
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(WriteAll(out->get(), "head", tmp / "dst").ok());
  ASSERT_TRUE(CopyRange(in->get(), 12345, out->get(), 2 << 20, tmp / "src", tmp / "dst").ok());
  ASSERT_TRUE(out->Close(tmp / "dst").ok());
  EXPECT_EQ(ReadBytes(tmp / "dst"), "head" + src.substr(12345, 2 << 20));
  // Past the end of the source: a clean error.
  auto out2 = OpenFile(tmp / "dst2", O_WRONLY | O_CREAT | O_EXCL);
  ASSERT_TRUE(out2.ok());
  PQ_EXPECT_ERROR(CopyRange(in->get(), src.size() - 10, out2->get(), 20, tmp / "src", tmp / "dst2"),
                  "src");
}

TEST(FileUtil, ReadAndWriteFiles) {
  TempDir tmp;
  ASSERT_TRUE(WriteFile(tmp / "a", "hello").ok());
  auto got = ReadFileToString(tmp / "a");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "hello");
  PQ_EXPECT_ERROR(ReadFileToString(tmp / "a", 4).status(), "limit");
  PQ_EXPECT_ERROR(ReadFileToString(tmp.path().string()).status(), "not a regular file");
  auto missing = ReadFileToString(tmp / "nope");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(WriteFileAtomic(tmp / "a", "replaced").ok());
  EXPECT_EQ(ReadBytes(tmp / "a"), "replaced");
  EXPECT_EQ(ListDir(tmp.path()), std::vector<std::string>{"a"});
  PQ_EXPECT_ERROR(WriteFileAtomic(tmp / "no/such/dir/f", "x"), "no/such/dir");
}

TEST(FileUtil, RandomHex) {
  const std::string a = RandomHex(16), b = RandomHex(16);
  EXPECT_EQ(a.size(), 16u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

}  // namespace
}  // namespace pq::io

namespace pq::io {
namespace {

TEST(FileUtil, OutputMustNotOverlapAnInput) {
  namespace fs = std::filesystem;
  const fs::path d = fs::temp_directory_path() / ("pq_overlap_" + RandomHex(8));
  fs::create_directories(d / "model");
  fs::create_directory_symlink(d / "model", d / "link");
  const std::string m = (d / "model").string();
  EXPECT_FALSE(CheckOutputOutsideInputs(m, {m}).ok());                          // is
  EXPECT_FALSE(CheckOutputOutsideInputs(m + "/", {m}).ok());                    // trailing /
  EXPECT_FALSE(CheckOutputOutsideInputs((d / "link").string(), {m}).ok());      // symlink
  EXPECT_FALSE(CheckOutputOutsideInputs(m + "/../model/x", {m}).ok());          // inside, via ..
  EXPECT_FALSE(CheckOutputOutsideInputs(d.string(), {"", m}).ok());             // contains
  EXPECT_TRUE(CheckOutputOutsideInputs((d / "model-out").string(), {m}).ok());  // a sibling
  EXPECT_TRUE(CheckOutputOutsideInputs((d / "out").string(), {m, ""}).ok());
  const Status s = CheckOutputOutsideInputs((d / "link").string(), {m});
  EXPECT_NE(s.message().find("is the input"), std::string::npos) << s.message();
  EXPECT_FALSE(CheckOutputLocation((d / "none" / "out").string(), false).ok());  // no parent
  EXPECT_FALSE(CheckOutputLocation(m, false).ok());                              // exists
  EXPECT_TRUE(CheckOutputLocation(m, true).ok());
  EXPECT_TRUE(CheckOutputLocation((d / "new").string(), false).ok());
  fs::remove_all(d);
}

}  // namespace
}  // namespace pq::io
