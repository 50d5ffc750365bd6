#include "pq/pipeline/calibration.h"

#include <algorithm>
#include <numeric>

#include "pq/core/hash.h"

namespace pq::pipeline {
namespace {

// splitmix64 (Steele, Lea, Flood 2014): tiny and fully specified.
uint64_t Next(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [0, n) without modulo bias (rejection).
uint64_t Below(uint64_t& state, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  for (;;) {
    const uint64_t r = Next(state);
    if (r < limit) return r % n;
  }
}

}  // namespace

int64_t Calibration::scored_tokens() const {
  int64_t n = 0;
  for (const auto& s : samples)
    for (int32_t t : s.targets) n += t >= 0;
  return n;
}

std::vector<int64_t> ChooseChunks(int64_t chunks, int64_t samples, uint64_t seed) {
  std::vector<int64_t> idx(static_cast<size_t>(chunks));
  std::iota(idx.begin(), idx.end(), 0);
  uint64_t state = seed;
  // The first `samples` steps of a Fisher–Yates shuffle.
  for (int64_t i = 0; i < samples && i < chunks; ++i) {
    const auto j = i + static_cast<int64_t>(Below(state, static_cast<uint64_t>(chunks - i)));
    std::swap(idx[static_cast<size_t>(i)], idx[static_cast<size_t>(j)]);
  }
  idx.resize(static_cast<size_t>(std::min(samples, chunks)));
  return idx;
}

Result<Calibration> LoadCalibration(const std::string& model_dir, const CalibrationOptions& o) {
  if (o.samples <= 0 || o.seqlen <= 1)
    return InvalidArgument("calibration needs --samples >= 1 and --seqlen >= 2");
  PQ_ASSIGN_OR_RETURN(auto docs, LoadEvalDocuments(model_dir, o.input));
  std::vector<int32_t> stream;
  for (const auto& d : docs) stream.insert(stream.end(), d.begin(), d.end());
  Calibration c;
  c.stream_tokens = static_cast<int64_t>(stream.size());
  const int64_t chunk = o.seqlen + 1, chunks = c.stream_tokens / chunk;
  // auto: as many as the samples where the input has them, else none (fewer would give a worse
  // H than the samples' own).
  const int64_t left = chunks - o.samples;
  const int64_t hessian = o.hessian_samples != CalibrationOptions::kAutoHessianSamples
                              ? o.hessian_samples
                          : left >= o.samples ? o.samples
                                              : 0;
  if (hessian < 0) return InvalidArgument("--hessian-samples must be >= 0 (or auto)");
  if (chunks < o.samples + hessian) {
    const std::string file = o.input.text_file.empty() ? o.input.tokens_file : o.input.text_file;
    return InvalidArgument(file + ": " + std::to_string(c.stream_tokens) +
                           " calibration tokens make only " + std::to_string(chunks) +
                           " samples of " + std::to_string(chunk) + " tokens; need " +
                           std::to_string(o.samples + hessian) +
                           (hessian > 0 ? " (" + std::to_string(o.samples) + " + " +
                                              std::to_string(hessian) + " Hessian samples)"
                                        : std::string()) +
                           " (give more text, or lower --samples, --hessian-samples or --seqlen)");
  }
  const auto sample = [&](int64_t k) {
    const auto begin = stream.begin() + k * chunk;
    engine::Sequence s;
    s.ids.assign(begin, begin + o.seqlen);
    s.targets.assign(begin + 1, begin + chunk);
    return s;
  };
  const std::vector<int64_t> chosen = ChooseChunks(chunks, o.samples + hessian, o.seed);
  Hasher h;
  for (size_t i = 0; i < chosen.size(); ++i) {
    engine::Sequence s = sample(chosen[i]);
    if (static_cast<int64_t>(i) >= o.samples) {
      c.hessian_samples.push_back(std::move(s));
      continue;
    }
    h.Ints(std::span<const int32_t>(s.ids)).Int(static_cast<uint64_t>(s.targets.back()));
    c.samples.push_back(std::move(s));
  }
  c.tokens_hash = h.hex();
  return c;
}

}  // namespace pq::pipeline
