#include "pq/core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace pq {
namespace {

// One ParallelFor call: chunks handed out by an atomic counter.
struct Job {
  const std::function<void(size_t, size_t)>* fn;
  size_t n, chunk, chunks;
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::atomic<int> helpers{0};  // workers currently inside this job
};

// Runs chunks of `job` until none is left; returns how many it ran.
size_t RunChunks(Job& job) {
  size_t ran = 0;
  for (size_t c; (c = job.next.fetch_add(1)) < job.chunks; ++ran) {
    const size_t b = c * job.chunk, e = std::min(job.n, b + job.chunk);
    (*job.fn)(b, e);
  }
  return ran;
}

thread_local bool t_in_pool_task = false;  // nested ParallelFor runs inline

// A process-wide pool of worker threads, started on first use and kept (workers sleep on a
// condition variable between jobs). Threads beyond the job's own count simply find no chunk.
class Pool {
 public:
  static Pool& Get() {
    static Pool* pool = new Pool();  // never destroyed: workers may outlive static teardown
    return *pool;
  }

  void Run(Job& job, int threads) {
    EnsureWorkers(threads - 1);
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      wanted_ = threads - 1;
      ++generation_;
    }
    cv_.notify_all();
    t_in_pool_task = true;
    size_t ran = RunChunks(job);
    t_in_pool_task = false;
    job.done.fetch_add(ran);
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return job.done.load() == job.chunks && job.helpers.load() == 0; });
    job_ = nullptr;
  }

 private:
  void EnsureWorkers(int count) {
    std::lock_guard<std::mutex> lock(mu_);
    while (static_cast<int>(workers_.size()) < count)
      workers_.emplace_back([this, id = static_cast<int>(workers_.size())] { Work(id); });
  }

  void Work(int id) {
    uint64_t seen = 0;
    t_in_pool_task = true;
    for (;;) {
      Job* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (job_ == nullptr || id >= wanted_) continue;
        job = job_;
        job->helpers.fetch_add(1);
      }
      const size_t ran = RunChunks(*job);
      job->done.fetch_add(ran);
      {
        std::lock_guard<std::mutex> lock(mu_);
        job->helpers.fetch_sub(1);
      }
      done_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  Job* job_ = nullptr;
  int wanted_ = 0;
  uint64_t generation_ = 0;
};

std::mutex g_run_mu;  // one job at a time on the shared pool

}  // namespace

int DefaultThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void ParallelFor(size_t n, int num_threads, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  const size_t t = std::min(n, static_cast<size_t>(std::max(1, num_threads)));
  if (t == 1 || t_in_pool_task) {
    fn(0, n);
    return;
  }
  std::unique_lock<std::mutex> run_lock(g_run_mu, std::try_to_lock);
  if (!run_lock.owns_lock()) {  // another thread is using the pool: do it inline
    fn(0, n);
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  job.chunks = t;
  job.chunk = (n + t - 1) / t;
  job.chunks = (n + job.chunk - 1) / job.chunk;
  Pool::Get().Run(job, static_cast<int>(t));
}

}  // namespace pq
