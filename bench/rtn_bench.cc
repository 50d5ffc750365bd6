// RTN quantize+pack throughput per format on a 4096x4096 bf16 matrix (median of repeats),
// single-threaded and on all threads, from float32 input (QuantizeRtn) and from the raw bf16
// bits (QuantizeRtnBf16, what torch reads). Prints one JSON object per line; paired with
// compressed-tensors doing the same work by bench/run_rtn_bench.sh.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "pq/core/minifloat.h"
#include "pq/core/thread_pool.h"
#include "pq/formats/format.h"

namespace {

double MedianSeconds(int reps, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = 4096, k = 4096;
  const int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  std::mt19937 rng(0);
  std::normal_distribution<float> g(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& x : w) x = pq::RoundBf16(g(rng));
  std::vector<uint16_t> wb(w.size());
  for (size_t i = 0; i < w.size(); ++i) wb[i] = pq::F32ToBf16(w[i]);
  using pq::formats::FormatId;
  for (FormatId id : {FormatId::kNVFP4A16, FormatId::kMXFP8, FormatId::kMXFP4, FormatId::kFP8,
                      FormatId::kINT4, FormatId::kINT8}) {
    for (int threads : {1, pq::DefaultThreads()}) {
      pq::formats::QuantizeOptions o;
      o.num_threads = threads;
      for (const char* input : {"f32", "bf16"}) {
        const bool bf16 = input[0] == 'b';
        const double s = MedianSeconds(reps, [&] {
          auto q = bf16 ? pq::formats::QuantizeRtnBf16(id, wb, n, k, o)
                        : pq::formats::QuantizeRtn(id, w, n, k, o);
          if (!q.ok()) std::abort();
        });
        std::printf(
            "{\"format\": \"%s\", \"threads\": %d, \"input\": \"%s\", "
            "\"median_s\": %.6f}\n",
            std::string(pq::formats::Spec(id).name).c_str(), threads, input, s);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
