// The uniform export runs under its options' ExecContext: the compute layer sees the
// context's thread count for the call (logged at debug level) and the previous count after.
// (Before the context existed, `export --uniform` never applied --threads to the compute layer.)
#include <gtest/gtest.h>

#include "pq/compute/ops.h"
#include "pq/core/exec_context.h"
#include "pq/io/io_test_util.h"
#include "pq/pipeline/export_uniform.h"

namespace pq::pipeline {
namespace {

TEST(ExecContextExport, UniformExportAppliesTheContextsThreads) {
  io::testing::TempDir dir;
  compute::cpu::SetNumThreads(1);
  UniformExportOptions o;
  o.format = formats::FormatId::kMXFP8;
  o.exec.threads = 3;
  o.exec.progress = false;
  o.exec.log_level = LogLevel::kDebug;
  testing::internal::CaptureStderr();
  auto s = ExportUniform(std::string(PQ_SOURCE_DIR) + "/models/stories260K",
                         (dir.path() / "out").string(), o);
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_NE(err.find("exec context: 3 threads"), std::string::npos) << err;
  EXPECT_EQ(compute::cpu::NumThreads(), 1);  // restored after the call
  EXPECT_EQ(GetLogLevel(), LogLevel::kInfo);
  compute::cpu::SetNumThreads(0);
}

}  // namespace
}  // namespace pq::pipeline
