// GPTQ wall time on a 4096x4096 NVFP4A16 Linear with a random correlated Hessian. Prints one
// JSON object per timed run. With OUT_DIR, also writes the problem
// (OUT_DIR/problem/model.safetensors: F32 "w", "h") and our result of the last run
// (OUT_DIR/ours/...: F32 "w_hat", the stored "scales" as F32, F32 "global_scale") so
// bench/run_gptq_bench.sh can run the PyTorch reference and llm-compressor on the same problem
// and compare codes and output error.
//
// Usage: gptq_bench [OUT_DIR] [N K [THREADS [REPEATS [MODE]]]]   (THREADS 0 or absent: all
// cores; REPEATS default 1; MODE "gptq" (default: GPTQ's own group-scale rule, gptq.h), "rtn":
// RTN's scales of the original W given as GptqOptions::scales (the static scales
// llm-compressor's GPTQ uses), or "act-order": GptqOptions::act_order)
#include <algorithm>
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
#include "pq/formats/quantize_with_scales.h"
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
  const int threads = argc > 4 ? std::atoi(argv[4]) : 0;
  const int repeats = argc > 5 ? std::max(1, std::atoi(argv[5])) : 1;
  const auto w = Weights(n, k);
  const auto h = Hessian(k);
  const std::string mode = argc > 6 ? argv[6] : "gptq";
  pq::quant::GptqOptions o;
  o.num_threads = threads > 0 ? threads : pq::DefaultThreads();
  o.act_order = mode == "act-order";
  if (mode == "rtn") {
    auto rtn = pq::formats::QuantizeRtn(pq::formats::FormatId::kNVFP4A16, w, n, k);
    auto c = rtn.ok() ? pq::formats::UnpackCodes(pq::formats::FormatId::kNVFP4A16,
                                                 pq::formats::Views(*rtn), n, k)
                      : pq::Result<pq::formats::QCodes>(rtn.status());
    if (!c.ok()) {
      std::fprintf(stderr, "gptq_bench: %s\n", c.status().ToString().c_str());
      return 1;
    }
    o.scales = std::move(c->scales);
  } else if (mode != "gptq" && mode != "act-order") {
    std::fprintf(stderr, "gptq_bench: MODE must be gptq, rtn or act-order\n");
    return 2;
  }
  pq::Result<pq::quant::GptqResult> r = pq::Internal("no run");
  for (int rep = 0; rep < repeats; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    r = pq::quant::GptqQuantize(pq::formats::FormatId::kNVFP4A16, w, h, n, k, o);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!r.ok() || !r->fallback.ok()) {
      std::fprintf(stderr, "gptq_bench: %s\n",
                   (r.ok() ? r->fallback : r.status()).ToString().c_str());
      return 1;
    }
    std::printf(
        "{\"impl\": \"prismaquant\", \"format\": \"NVFP4A16\", \"shape\": [%lld, %lld], "
        "\"threads\": %d, \"rep\": %d, \"seconds\": %.4f, \"damp_used\": %g, "
        "\"mode\": \"%s\"}\n",
        static_cast<long long>(n), static_cast<long long>(k), o.num_threads, rep, sec, r->damp_used,
        mode.c_str());
    std::fflush(stdout);
  }
  if (out.empty()) return 0;
  auto q = pq::formats::UnpackCodes(pq::formats::FormatId::kNVFP4A16,
                                    pq::formats::Views(r->tensors), n, k);
  pq::Status s = q.status();
  const std::vector<float> gs = {q.ok() ? q->weight_global_scale : 0.0f};
  if (s.ok()) s = Save(out + "/problem", {{"w", {n, k}}, {"h", {k, k}}}, {&w, &h});
  if (s.ok())
    s = Save(out + "/ours",
             {{"w_hat", {n, k}},
              {"scales", {n, static_cast<int64_t>(q->scales.size()) / n}},
              {"global_scale", {1}}},
             {&r->w_hat, &q->scales, &gs});
  if (!s.ok()) {
    std::fprintf(stderr, "gptq_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
