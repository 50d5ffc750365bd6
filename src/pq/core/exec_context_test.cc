// ScopedExecContext: installs the thread count, progress and log level for its lifetime,
// restores the previous ones, and lets the outermost scope win when nested.
#include "pq/core/exec_context.h"

#include <gtest/gtest.h>

#include "pq/core/thread_pool.h"

namespace pq {
namespace {

ExecContext Context(int threads, bool progress, std::optional<LogLevel> level = std::nullopt) {
  ExecContext c;
  c.threads = threads;
  c.progress = progress;
  c.log_level = level;
  return c;
}

TEST(ExecContext, InstallsAndRestores) {
  SetProcessThreads(5);
  SetLogLevel(LogLevel::kInfo);
  {
    ScopedExecContext scope(Context(3, false, LogLevel::kQuiet));
    EXPECT_EQ(ExecThreads(), 3);
    EXPECT_FALSE(ExecProgress());
    EXPECT_EQ(GetLogLevel(), LogLevel::kQuiet);
  }
  EXPECT_EQ(ExecThreads(), 5);
  EXPECT_TRUE(ExecProgress());
  EXPECT_EQ(GetLogLevel(), LogLevel::kInfo);
  SetProcessThreads(0);
  EXPECT_EQ(ExecThreads(), DefaultThreads());
}

TEST(ExecContext, ZeroThreadsMeansTheProcessDefaultAndUnsetLevelIsKept) {
  SetProcessThreads(2);
  SetLogLevel(LogLevel::kQuiet);
  {
    ScopedExecContext scope(Context(0, true));
    EXPECT_EQ(ExecThreads(), 2);
    EXPECT_EQ(GetLogLevel(), LogLevel::kQuiet);
  }
  EXPECT_EQ(ExecThreads(), 2);
  SetProcessThreads(0);
  SetLogLevel(LogLevel::kInfo);
}

TEST(ExecContext, OutermostScopeWins) {
  {
    ScopedExecContext outer(Context(2, true));
    {
      ScopedExecContext inner(Context(7, false, LogLevel::kQuiet));
      EXPECT_EQ(ExecThreads(), 2);
      EXPECT_TRUE(ExecProgress());
      EXPECT_EQ(GetLogLevel(), LogLevel::kInfo);
    }
    EXPECT_EQ(ExecThreads(), 2);  // the inner scope restored nothing it did not install
  }
  {
    ScopedExecContext next(Context(7, true));  // after the outer one ended, a new one installs
    EXPECT_EQ(ExecThreads(), 7);
  }
}

TEST(ExecContext, LogsItsThreadCountAtDebugLevel) {
  testing::internal::CaptureStderr();
  { ScopedExecContext scope(Context(4, true, LogLevel::kDebug)); }
  { ScopedExecContext scope(Context(6, true, LogLevel::kInfo)); }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("exec context: 4 threads"), std::string::npos) << err;
  EXPECT_EQ(err.find("6 threads"), std::string::npos) << err;
}

}  // namespace
}  // namespace pq
