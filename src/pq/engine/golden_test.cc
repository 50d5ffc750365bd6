// The engine against PyTorch `transformers` (fixtures made by scripts/make_golden.py):
// logits, loss, every layer boundary, the gradient of the loss w.r.t. every boundary and
// every Linear weight (through the observer hook the probe uses), for tiny random models of
// each architecture.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "pq/compute/ops.h"
#include "pq/engine/runner.h"
#include "pq/io/safetensors.h"

namespace pq::engine {
namespace {

namespace fs = std::filesystem;

// Named tolerances: relative Frobenius error ||ours - torch|| / ||torch||. float32 on both
// sides with different summation orders; gradients pass through more ops than logits.
constexpr double kLogitsTol = 2e-5;
constexpr double kHiddenTol = 2e-5;
constexpr double kLossAbsTol = 2e-6;
constexpr double kGradTol = 2e-5;

double RelErr(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Accumulates dW = sum over rows of dy^T x for every Linear it sees.
class GradObserver : public model::LinearObserver {
 public:
  void OnLinear(const model::LinearWeights& l, std::span<const float> x, std::span<const float> dy,
                int64_t rows) override {
    auto& g = grads[l.module];
    g.resize(static_cast<size_t>(l.rows * l.cols), 0.0f);
    compute::ref::MatMulBackward(dy, x, std::span<const float>(l.w), {}, g, {}, rows, l.cols,
                                 l.rows);
  }
  std::map<std::string, std::vector<float>> grads;
};

std::vector<std::string> Fixtures() {
  std::vector<std::string> out;
  const fs::path root = fs::path(PQ_SOURCE_DIR) / "tests" / "golden";
  if (!fs::exists(root)) return out;
  for (const auto& e : fs::directory_iterator(root))
    if (fs::exists(e.path() / "golden.safetensors")) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

void CheckFixture(const std::string& dir, const std::string& model_dir) {
  SCOPED_TRACE(model_dir);
  auto golden = io::CheckpointReader::Open(dir + "/golden.safetensors");
  ASSERT_TRUE(golden.ok()) << golden.status().ToString();
  auto src = model::WeightSource::Open(model_dir);
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  const model::ModelConfig& c = (*src)->config();
  const io::TensorInfo* ids_t = (*golden)->Find("input_ids");
  ASSERT_NE(ids_t, nullptr);
  const int64_t s_count = ids_t->shape[0], t = ids_t->shape[1];
  std::vector<Sequence> seqs(static_cast<size_t>(s_count));
  for (int64_t s = 0; s < s_count; ++s) {
    auto& q = seqs[static_cast<size_t>(s)];
    q.ids.resize(static_cast<size_t>(t));
    std::memcpy(q.ids.data(), ids_t->bytes.data() + s * t * 4, static_cast<size_t>(t) * 4);
    q.targets.assign(q.ids.begin() + 1, q.ids.end());
    q.targets.push_back(-1);
  }
  Runner r(**src, seqs, {});
  ASSERT_TRUE(r.Forward(true).ok());
  auto want = [&](const std::string& name) {
    const io::TensorInfo* ti = (*golden)->Find(name);
    EXPECT_NE(ti, nullptr) << name;
    return ti ? *io::ReadAsF32(*ti) : std::vector<float>();
  };
  std::vector<float> h(static_cast<size_t>(r.total_tokens() * c.hidden));
  for (int64_t b = 0; b <= c.num_layers; ++b) {
    ASSERT_TRUE(r.Boundary(b, h).ok());
    EXPECT_LE(RelErr(h, want("hidden." + std::to_string(b))), kHiddenTol) << "hidden." << b;
  }
  std::vector<float> logits;
  GradObserver obs;
  const double scale = 1.0 / static_cast<double>(s_count * (t - 1));
  auto head = r.Head(
      [&](size_t, int64_t, std::span<const float> l) {
        logits.insert(logits.end(), l.begin(), l.end());
        return Status::Ok();
      },
      true, scale, &obs);
  ASSERT_TRUE(head.ok());
  EXPECT_LE(RelErr(logits, want("logits")), kLogitsTol);
  EXPECT_NEAR(head->nll_sum * scale, want("loss")[0], kLossAbsTol);
  std::map<int64_t, std::vector<float>> dh;
  ASSERT_TRUE(r.Backward(&obs, [&](int64_t b, std::span<const float> g) {
                 dh[b].assign(g.begin(), g.end());
                 return Status::Ok();
               }).ok());
  for (const auto& [b, g] : dh)
    EXPECT_LE(RelErr(g, want("grad_hidden." + std::to_string(b))), kGradTol) << "grad_hidden." << b;
  if ((*golden)->Find("mtp.loss")) {  // MTP head: its own loss, detached from the body
    std::vector<float> mtp_logits;
    const double mtp_scale = 1.0 / static_cast<double>(s_count * (t - 2));
    auto mtp = r.Mtp(
        [&](size_t, int64_t, std::span<const float> l) {
          mtp_logits.insert(mtp_logits.end(), l.begin(), l.end());
          return Status::Ok();
        },
        true, mtp_scale, &obs);
    ASSERT_TRUE(mtp.ok()) << mtp.status().ToString();
    EXPECT_LE(RelErr(mtp_logits, want("mtp.logits")), kLogitsTol);
    EXPECT_NEAR(mtp->nll_sum * mtp_scale, want("mtp.loss")[0], kLossAbsTol);
  }
  size_t checked = 0;
  for (const auto& name : (*golden)->names()) {
    // lm_head's gradient from the MTP loss is not observed: its statistics are the body's.
    if (name.rfind("grad.", 0) != 0 || name == "grad.mtp.lm_head") continue;
    const std::string module = name.substr(5);
    ASSERT_TRUE(obs.grads.count(module)) << "no gradient observed for " << module;
    EXPECT_LE(RelErr(obs.grads[module], want(name)), kGradTol) << name;
    ++checked;
  }
  EXPECT_GT(checked, 5u);
}

TEST(Golden, EveryArchitectureMatchesTransformers) {
  const auto fixtures = Fixtures();
  if (fixtures.empty()) GTEST_SKIP() << "no fixtures in tests/golden (scripts/make_golden.py)";
  compute::cpu::SetNumThreads(2);
  int checked = 0;
  for (const auto& dir : fixtures)
    for (const char* sub : {"model", "model_packed", "model_per_expert"})
      if (fs::exists(dir + "/" + sub + "/config.json")) {
        CheckFixture(dir, dir + "/" + sub);
        ++checked;
      }
  EXPECT_GE(checked, 6) << "expected every architecture's fixture (and the packed MoE layout)";
  // Hub-style configs (top-level rope_theta / rope_scaling, num_experts) give the same model.
  for (const auto& dir : fixtures) {
    if (!fs::exists(dir + "/config_legacy.json")) continue;
    const fs::path tmp =
        fs::temp_directory_path() / ("pq_golden_legacy_" + fs::path(dir).filename().string());
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    fs::copy_file(dir + "/model/model.safetensors", tmp / "model.safetensors");
    fs::copy_file(dir + "/config_legacy.json", tmp / "config.json");
    CheckFixture(dir, tmp.string());
    fs::remove_all(tmp);
    ++checked;
  }
  EXPECT_GE(checked, 9);
}

}  // namespace
}  // namespace pq::engine

namespace pq::engine {
namespace {

// Boundaries spilled to a file (memory budget 0), or some of them, give exactly the in-memory
// results.
TEST(Runner, SpilledBoundariesMatchInMemory) {
  const std::string model = std::string(PQ_SOURCE_DIR) + "/models/stories260K";
  auto src = model::WeightSource::Open(model);
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  std::vector<Sequence> seqs(3);
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int i = 0; i < 20 + static_cast<int>(s) * 7; ++i)
      seqs[s].ids.push_back(static_cast<int32_t>((i * 37 + static_cast<int>(s) * 11) % 512));
    seqs[s].targets.assign(seqs[s].ids.begin() + 1, seqs[s].ids.end());
    seqs[s].targets.push_back(-1);
  }
  auto run = [&](uint64_t budget, bool* spilled) {
    RunnerOptions o;
    o.memory_budget_bytes = budget;
    o.progress = false;
    Runner r(**src, seqs, o);
    EXPECT_TRUE(r.Forward(true).ok());
    EXPECT_TRUE(r.Head({}, true, 0.01).ok());
    std::vector<float> grads;
    EXPECT_TRUE(r.Backward(nullptr, [&](int64_t, std::span<const float> g) {
                   grads.insert(grads.end(), g.begin(), g.end());
                   return Status::Ok();
                 }).ok());
    *spilled = r.spilled();
    return grads;
  };
  bool spilled_mem = true, spilled_file = false, spilled_part = false;
  const auto a = run(1ull << 30, &spilled_mem), b = run(0, &spilled_file);
  EXPECT_FALSE(spilled_mem);
  EXPECT_TRUE(spilled_file);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  // A budget of two and a half boundaries: those two in memory, the others in the file.
  int64_t tokens = 0;
  for (const auto& q : seqs) tokens += static_cast<int64_t>(q.ids.size());
  const auto slot = static_cast<uint64_t>(tokens * (*src)->config().hidden * 4);
  const auto c = run(slot * 5 / 2, &spilled_part);
  EXPECT_TRUE(spilled_part);
  EXPECT_EQ(a, c);
}

}  // namespace
}  // namespace pq::engine
