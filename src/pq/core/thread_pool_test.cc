#include "pq/core/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace pq {
namespace {

// The chunks ParallelFor hands out, sorted.
std::vector<std::pair<size_t, size_t>> Chunks(size_t n, int threads) {
  std::mutex mu;
  std::vector<std::pair<size_t, size_t>> chunks;
  ParallelFor(n, threads, [&](size_t b, size_t e) {
    std::lock_guard<std::mutex> lock(mu);
    chunks.emplace_back(b, e);
  });
  std::sort(chunks.begin(), chunks.end());
  return chunks;
}

TEST(ThreadPool, ChunksCoverTheRangeExactlyOnce) {
  for (size_t n : {size_t{1}, size_t{2}, size_t{7}, size_t{64}, size_t{1000}, size_t{1001}}) {
    for (int threads : {-3, 0, 1, 2, 3, 8, 64}) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " threads=" << threads);
      const auto chunks = Chunks(n, threads);
      ASSERT_FALSE(chunks.empty());
      EXPECT_EQ(chunks.front().first, 0u);
      EXPECT_EQ(chunks.back().second, n);
      for (size_t i = 0; i < chunks.size(); ++i) {
        EXPECT_LT(chunks[i].first, chunks[i].second);  // no empty chunks
        if (i > 0) {
          EXPECT_EQ(chunks[i].first, chunks[i - 1].second);  // contiguous
        }
      }
      // Never more chunks than threads (at least one thread), nor than elements.
      EXPECT_LE(chunks.size(), static_cast<size_t>(std::max(1, threads)));
      EXPECT_LE(chunks.size(), n);
      if (threads <= 1) {
        EXPECT_EQ(chunks.size(), 1u);
      }
    }
  }
}

TEST(ThreadPool, EmptyRangeCallsNothing) {
  bool called = false;
  ParallelFor(0, 4, [&](size_t, size_t) { called = true; });
  EXPECT_FALSE(called);
}

TEST(ThreadPool, EveryElementIsVisitedOnce) {
  std::vector<std::atomic<int>> hits(10007);
  for (int round = 0; round < 20; ++round) {
    ParallelFor(hits.size(), 4, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
  }
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 20) << i;
}

TEST(ThreadPool, UsesSeveralThreadsAndBlocksUntilDone) {
  // Each chunk waits (up to 20 s) until two chunks have started: that can only happen when
  // a second thread runs one, since the first is blocked in its own chunk.
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
  std::set<std::thread::id> ids;
  std::atomic<int> done{0};
  ParallelFor(4, 4, [&](size_t, size_t) {
    {
      std::unique_lock<std::mutex> lock(mu);
      ++started;
      ids.insert(std::this_thread::get_id());
      cv.notify_all();
      cv.wait_for(lock, std::chrono::seconds(20), [&] { return started >= 2; });
    }
    done.fetch_add(1);
  });
  EXPECT_EQ(done.load(), 4);  // every chunk finished before ParallelFor returned
  EXPECT_GE(started, 2);
  EXPECT_GT(ids.size(), 1u);
}

TEST(ThreadPool, NestedCallsRunInline) {
  std::atomic<int> inner_chunks{0};
  std::atomic<size_t> inner_elems{0};
  ParallelFor(4, 4, [&](size_t, size_t) {
    ParallelFor(100, 4, [&](size_t b, size_t e) {
      inner_chunks.fetch_add(1);
      inner_elems.fetch_add(e - b);
    });
  });
  EXPECT_EQ(inner_chunks.load(), 4);  // one inline chunk per outer chunk
  EXPECT_EQ(inner_elems.load(), 400u);
}

TEST(ThreadPool, DefaultThreadsIsPositive) { EXPECT_GE(DefaultThreads(), 1); }

}  // namespace
}  // namespace pq
