// GPTQ wall time on a 4096x4096 NVFP4A16 Linear with a random correlated Hessian (all
// threads). Prints one JSON object per line. With OUT_DIR, also writes the problem
// (OUT_DIR/problem/model.safetensors: F32 "w", "h") and our result (OUT_DIR/ours/...: F32
// "w_hat") so bench/run_gptq_bench.sh can time the PyTorch reference on the same problem and
// check that both wrote the same codes.
//
// Usage: gptq_bench [OUT_DIR] [N K]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "pq/core/minifloat.h"
#include "pq/core/thread_pool.h"
#include "pq/io/safetensors.h"
#include "pq/quant/gptq.h"

namespace {

std::vector<float> Weights(int64_t n, int64_t k) {
  std::mt19937 rng(0);
  std::normal_distribution<float> g(0.0f, 0.02f);
  std::uniform_int_distribution<int> outlier(0, 199);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& x : w) x = pq::RoundBf16(g(rng) * (outlier(rng) == 0 ? 8.0f : 1.0f));
  return w;
}

// H = D (C + F F^T) D: C_ij = 0.7^|i-j| (AR(1) inputs), F [K, 3] shared factors, D random
// per-input scales (log-normal). Positive definite; built in O(K^2).
std::vector<float> Hessian(int64_t k) {
  std::mt19937 rng(1);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<double> d(static_cast<size_t>(k)), f(static_cast<size_t>(3 * k)),
      pw(static_cast<size_t>(k));
  for (double& v : d) v = std::exp(1.2 * g(rng));
  for (double& v : f) v = g(rng);
  for (int64_t i = 0; i < k; ++i)
    pw[static_cast<size_t>(i)] = std::pow(0.7, static_cast<double>(i));
  std::vector<float> h(static_cast<size_t>(k * k));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const auto ui = static_cast<size_t>(i), uj = static_cast<size_t>(j);
      double v = pw[static_cast<size_t>(std::llabs(i - j))];
      for (size_t c = 0; c < 3; ++c)
        v += f[c * static_cast<size_t>(k) + ui] * f[c * static_cast<size_t>(k) + uj];
      h[ui * static_cast<size_t>(k) + uj] = static_cast<float>(d[ui] * v * d[uj]);
    }
  return h;
}

pq::Status Save(const std::string& dir,
                const std::vector<std::pair<std::string, std::vector<int64_t>>>& names,
                const std::vector<const std::vector<float>*>& data) {
  pq::io::WriterOptions o;
  o.overwrite = true;
  o.max_shard_bytes = uint64_t{1} << 40;
  PQ_ASSIGN_OR_RETURN(auto w, pq::io::CheckpointWriter::Create(dir, o));
  for (size_t i = 0; i < names.size(); ++i) {
    const auto* v = data[i];
    PQ_RETURN_IF_ERROR(w->AddTensor(names[i].first, pq::DType::kF32, names[i].second,
                                    {reinterpret_cast<const uint8_t*>(v->data()), v->size() * 4}));
  }
  return w->Commit();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "";
  const int64_t n = argc > 3 ? std::atoll(argv[2]) : 4096,
                k = argc > 3 ? std::atoll(argv[3]) : 4096;
  const auto w = Weights(n, k);
  const auto h = Hessian(k);
  pq::quant::GptqOptions o;
  o.num_threads = pq::DefaultThreads();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = pq::quant::GptqQuantize(pq::formats::FormatId::kNVFP4A16, w, h, n, k, o);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!r.ok() || !r->fallback.ok()) {
    std::fprintf(stderr, "gptq_bench: %s\n",
                 (r.ok() ? r->fallback : r.status()).ToString().c_str());
    return 1;
  }
  std::printf(
      "{\"impl\": \"prismaquant\", \"format\": \"NVFP4A16\", \"shape\": [%lld, %lld], "
      "\"threads\": %d, \"seconds\": %.4f}\n",
      static_cast<long long>(n), static_cast<long long>(k), o.num_threads, sec);
  std::fflush(stdout);
  if (out.empty()) return 0;
  pq::Status s = Save(out + "/problem", {{"w", {n, k}}, {"h", {k, k}}}, {&w, &h});
  if (s.ok()) s = Save(out + "/ours", {{"w_hat", {n, k}}}, {&r->w_hat});
  if (!s.ok()) {
    std::fprintf(stderr, "gptq_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
