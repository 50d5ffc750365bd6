// Forward + backward throughput of the streaming engine on a model: a batch of sequences
// of random token ids (seeded), loss = mean next-token cross-entropy, full reverse sweep.
// Prints JSON lines; bench/run_engine_bench.sh pairs it with PyTorch doing the same work.
// Usage: engine_bench MODEL [--tokens T] [--batch B] [--threads N] [--reps R] [--budget-mb M]
// (--budget-mb: memory for stored layer boundaries; beyond it they spill to /tmp.)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "pq/compute/ops.h"
#include "pq/engine/runner.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(
        stderr,
        "usage: %s MODEL [--tokens T] [--batch B] [--threads N] [--reps R] [--budget-mb M]\n",
        argv[0]);
    return 2;
  }
  int64_t t = 256, batch = 4;
  int threads = 1, reps = 3;
  long budget_mb = 8192;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long v = std::atol(argv[i + 1]);
    if (k == "--tokens")
      t = v;
    else if (k == "--batch")
      batch = v;
    else if (k == "--threads")
      threads = static_cast<int>(v);
    else if (k == "--reps")
      reps = static_cast<int>(v);
    else if (k == "--budget-mb")
      budget_mb = v;
  }
  pq::compute::cpu::SetNumThreads(threads);
  auto src = pq::model::WeightSource::Open(argv[1]);
  if (!src.ok()) {
    std::fprintf(stderr, "error: %s\n", src.status().ToString().c_str());
    return 1;
  }
  std::mt19937 rng(0);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>((*src)->config().vocab - 1));
  std::vector<pq::engine::Sequence> seqs(static_cast<size_t>(batch));
  for (auto& s : seqs) {
    for (int64_t i = 0; i < t; ++i) s.ids.push_back(tok(rng));
    s.targets.assign(s.ids.begin() + 1, s.ids.end());
    s.targets.push_back(-1);
  }
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const auto a = std::chrono::steady_clock::now();
    pq::engine::RunnerOptions o;
    o.progress = false;
    o.memory_budget_bytes = static_cast<uint64_t>(budget_mb) << 20;
    pq::engine::Runner run(**src, seqs, o);
    if (!run.Forward(true).ok()) return 1;
    auto h = run.Head({}, true, 1.0 / static_cast<double>(batch * (t - 1)));
    if (!h.ok() || !run.Backward(nullptr, {}).ok()) return 1;
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(times.begin(), times.end());
  const double med = times[times.size() / 2];
  std::printf("{\"model\": \"%s\", \"threads\": %d, \"tokens_per_s\": %.1f, \"median_s\": %.4f}\n",
              argv[1], threads, static_cast<double>(batch * t) / med, med);
  return 0;
}
