// Files that change or are not what they claim (issue: hardening): a FIFO where a checkpoint or
// config should be is refused at once instead of blocking forever; temp dirs left by killed
// writers are removed by the next run (live ones kept); a checkpoint truncated while mapped
// ends the process with a message naming the file (exit 2), not a bare SIGBUS.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pq/io/file_util.h"
#include "pq/io/io_test_util.h"
#include "pq/io/mapped_fault.h"
#include "pq/io/safetensors.h"

namespace pq::io {
namespace {

namespace fs = std::filesystem;
using testing::AsBytes;
using testing::TempDir;
using testing::WriteBytes;

// Fails the test (SIGALRM ends the process) instead of hanging if a call blocks.
struct Deadline {
  explicit Deadline(unsigned seconds) { ::alarm(seconds); }
  ~Deadline() { ::alarm(0); }
};

TEST(HostileFiles, FifoIsRefusedWithoutBlocking) {
  TempDir tmp;
  ASSERT_EQ(::mkfifo((tmp / "model.safetensors").c_str(), 0644), 0);
  ASSERT_EQ(::mkfifo((tmp / "config.json").c_str(), 0644), 0);
  Deadline d(20);
  PQ_EXPECT_ERROR(CheckpointReader::Open(tmp.path().string()).status(), "not a regular file");
  PQ_EXPECT_ERROR(CheckpointReader::Open(tmp / "model.safetensors").status(), "not a regular file");
  PQ_EXPECT_ERROR(ReadFileToString(tmp / "config.json").status(), "not a regular file");
  PQ_EXPECT_ERROR(OpenRegularFile(tmp.path().string()).status(), "not a regular file");
}

// The pid of a process that has exited (and been reaped).
pid_t DeadPid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int st = 0;
  ::waitpid(pid, &st, 0);
  return pid;
}

TEST(HostileFiles, StaleTempDirsOfKilledWritersAreRemoved) {
  TempDir tmp;
  const std::string dead = "." + std::string("out") + ".tmp-" + std::to_string(DeadPid()) + "-ab";
  const std::string dead_old = ".out.old-" + std::to_string(DeadPid()) + "-cd";
  const std::string live = ".out.tmp-" + std::to_string(::getpid()) + "-ef";
  const std::string other = ".other.tmp-" + std::to_string(DeadPid()) + "-01";
  for (const auto& d : {dead, dead_old, live, other}) {
    fs::create_directories(tmp.path() / d);
    WriteBytes((tmp.path() / d / "model-00001.safetensors").string(), std::string(1000, 'x'));
  }
  auto w = CheckpointWriter::Create(tmp / "out");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE((*w)->AddTensor("a", DType::kU8, {3}, AsBytes("abc")).ok());
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_FALSE(fs::exists(tmp.path() / dead));
  EXPECT_FALSE(fs::exists(tmp.path() / dead_old));
  EXPECT_TRUE(fs::exists(tmp.path() / live));   // its process (this one) is alive
  EXPECT_TRUE(fs::exists(tmp.path() / other));  // another output's: not ours to judge
  EXPECT_TRUE(fs::exists(tmp.path() / "out" / "model.safetensors"));
  // WriteFileAtomic's temp files too.
  const std::string stale_file = "x.json.tmp-" + std::to_string(DeadPid()) + "-99";
  WriteBytes(tmp / stale_file, "{");
  ASSERT_TRUE(WriteFileAtomic(tmp / "x.json", "{}").ok());
  EXPECT_FALSE(fs::exists(tmp.path() / stale_file));
  EXPECT_EQ(RemoveStaleTemporaries(tmp.path().string(), ".out.tmp-"), 0u);
}

// Maps a two-page tensor, truncates the file under the mapping, then touches the lost page.
void ReadTruncatedTensor(const std::string& dir) {
  if (!InstallMappedFileFaultHandler().ok()) ::_exit(3);
  auto r = CheckpointReader::Open(dir);
  if (!r.ok()) ::_exit(4);
  const TensorInfo* t = (*r)->Find("big");
  if (!t) ::_exit(5);
  if (::truncate((fs::path(dir) / "model.safetensors").c_str(), 4096) != 0) ::_exit(6);
  volatile uint8_t sum = 0;
  for (size_t i = 0; i < t->bytes.size(); i += 512) sum = sum + t->bytes[i];
  ::_exit(sum == 255 ? 7 : 0);  // not reached: the access faults
}

TEST(HostileFilesDeathTest, TruncatedWhileMappedNamesTheFile) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir tmp;
  {
    auto w = CheckpointWriter::Create(tmp / "m");
    ASSERT_TRUE(w.ok());
    const std::string big(1 << 16, '\1');
    ASSERT_TRUE((*w)->AddTensor("big", DType::kU8, {1 << 16}, AsBytes(big)).ok());
    ASSERT_TRUE((*w)->Commit().ok());
  }
  EXPECT_EXIT(ReadTruncatedTensor(tmp / "m"), ::testing::ExitedWithCode(2),
              "error: .*m/model.safetensors changed while it was being read");
}

TEST(HostileFilesDeathTest, UnregisteredFaultKeepsTheDefaultCrash) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        if (!InstallMappedFileFaultHandler().ok()) ::_exit(3);
        ::raise(SIGBUS);
      },
      ::testing::KilledBySignal(SIGBUS), "");
}

}  // namespace
}  // namespace pq::io
