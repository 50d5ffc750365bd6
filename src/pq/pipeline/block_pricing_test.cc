// The probe's "block" estimator (quant/cost.h, engine/block_cost.h) end to end, on the golden
// MoE fixtures: Qwen3-MoE (2 MoE layers, 4 experts, top-2) and Qwen3.5-MoE (DeltaNet and gated
// attention, shared expert, MTP head), RTN pricing with activation-quantizing formats among the
// candidates. For every decision unit of every body layer and every format, the sum of its
// members' "block" costs in probe.json equals a direct computation — the layer re-run on the
// probe's own calibration samples with all of the unit's Linears replaced by their candidates
// (rebuilt by ProbedCandidates, as check-costs does), ½ Σ dy² Δy² / T with dy from a plain
// backward — "routing_changes" equals the tokens whose top-k set changed, and each member's
// part is proportional to its own "output" cost (quant::SplitUnitCost). The MTP head and
// lm_head keep block = hessian; a dense fixture has block = hessian everywhere and its
// probe.json writes no "block" cost.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "pq/engine/runner.h"
#include "pq/model/decoder.h"
#include "pq/pipeline/probe.h"
#include "pq/pipeline/probed_candidates.h"
#include "pq/pipeline/work_dir.h"

namespace pq::pipeline {
namespace {

namespace fs = std::filesystem;
using formats::FormatId;
using quant::CostEstimator;

std::string Golden(const std::string& name) {
  return std::string(PQ_SOURCE_DIR) + "/tests/golden/" + name + "/model";
}

class BlockPricingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    tmp_ = fs::temp_directory_path() / ("pq_block_pricing_" + std::to_string(rd()));
    fs::create_directories(tmp_);
    // Random token documents (vocab 97 in every golden fixture).
    std::mt19937 rng(5);
    std::ofstream f(tmp_ / "tokens.txt");
    for (int d = 0; d < 12; ++d) {
      for (int i = 0; i < 40; ++i) f << (i ? " " : "") << 3 + rng() % 94;
      f << "\n";
    }
  }
  void TearDown() override { fs::remove_all(tmp_); }

  std::string Probe(const std::string& model, std::vector<FormatId> formats,
                    int64_t block_layers = 2) {
    ProbeOptions o;
    o.model = model;
    o.work = (tmp_ / (fs::path(model).parent_path().filename().string() + "_" +
                      std::to_string(block_layers)))
                 .string();
    o.block_layers = block_layers;
    o.calib.input.tokens_file = (tmp_ / "tokens.txt").string();
    o.calib.input.split = DocSplit::kLines;
    o.calib.samples = 4;
    o.calib.seqlen = 32;
    o.formats = std::move(formats);
    o.passes = quant::Passes::kRtn;
    o.exec.threads = 1;
    o.exec.progress = false;
    auto s = RunProbe(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return o.work;
  }

  fs::path tmp_;
};

struct Direct {
  double cost = 0;
  int64_t routing_changes = 0;
};

// The direct block price of `members` in `f`: layers l .. end-1 run on the stored input of l
// with them replaced, against the layers as loaded; dy_end = dL/d(boundary end).
Direct DirectBlockCost(const model::WeightSource& src, const engine::Runner& runner,
                       const std::vector<engine::Sequence>& samples, int64_t l, int64_t end,
                       std::span<const float> dy_end,
                       const std::vector<const ProbeLinear*>& members, FormatId f,
                       ProbedCandidates& cands, int64_t scored) {
  const model::ModelConfig& c = src.config();
  std::map<std::string, ProbedCandidate> by_module;
  for (const ProbeLinear* m : members) {
    auto cand = cands.Make(*m, f);
    EXPECT_TRUE(cand.ok()) << cand.status().ToString();
    by_module.emplace(m->module, std::move(*cand));
  }
  std::vector<float> x(static_cast<size_t>(runner.total_tokens() * c.hidden));
  EXPECT_TRUE(runner.Boundary(l, x).ok());
  std::vector<int64_t> lens;
  for (const auto& s : samples) lens.push_back(static_cast<int64_t>(s.ids.size()));
  const model::RopeCache rope = model::RopeCache::Make(c, lens.front());
  std::vector<float> y0 = x, y1 = x;
  Direct d;
  int replaced = 0;
  for (int64_t j = l; j < end; ++j) {
    auto lw = src.LoadLayer(j);
    EXPECT_TRUE(lw.ok());
    model::LayerWeights q = *lw;
    if (j == l)
      model::ForEachLinear(q, [&](model::LinearWeights& lin) {
        auto it = by_module.find(lin.module);
        if (it == by_module.end()) return;
        it->second.ApplyTo(lin);
        ++replaced;
      });
    std::vector<float> n0(x.size()), n1(x.size());
    model::LayerActs a0, a1;
    model::DecoderLayerForward(c, *lw, rope, y0, n0, lens, &a0);
    model::DecoderLayerForward(c, q, rope, y1, n1, lens, &a1);
    y0.swap(n0);
    y1.swap(n1);
    const auto k = static_cast<size_t>(c.top_k);
    for (size_t t = 0; c.IsMoeLayer(j) && t < a0.topk_idx.size(); t += k) {
      std::vector<int32_t> s0(a0.topk_idx.begin() + t, a0.topk_idx.begin() + t + k);
      std::vector<int32_t> s1(a1.topk_idx.begin() + t, a1.topk_idx.begin() + t + k);
      std::sort(s0.begin(), s0.end());
      std::sort(s1.begin(), s1.end());
      d.routing_changes += s0 != s1;
    }
  }
  EXPECT_EQ(replaced, static_cast<int>(members.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double g = dy_end[i], e = static_cast<double>(y1[i]) - y0[i];
    d.cost += g * g * e * e;
  }
  d.cost *= 0.5 / static_cast<double>(scored);
  return d;
}

// Checks every block-priced unit of the probe in `work` against DirectBlockCost.
void CheckAgainstDirect(const std::string& model, const std::string& work, int64_t window,
                        int min_units) {
  auto probe = ReadProbeFile(WorkDir(work));
  ASSERT_TRUE(probe.ok()) << probe.status().ToString();
  auto samples = ReadCalibrationSamples(WorkDir(work));
  ASSERT_TRUE(samples.ok());
  auto src = model::WeightSource::Open(model);
  ASSERT_TRUE(src.ok());
  engine::RunnerOptions ro;
  ro.batch_tokens = 1;  // as the probe
  ro.progress = false;
  engine::Runner runner(**src, *samples, ro);
  ASSERT_TRUE(runner.Forward(true).ok());
  ASSERT_TRUE(runner.Head(nullptr, true, 1.0).ok());
  std::map<int64_t, std::vector<float>> grad;  // dL/d(boundary b)
  grad[(*src)->config().num_layers] = runner.head_grad();
  ASSERT_TRUE(runner
                  .Backward(nullptr,
                            [&](int64_t b, std::span<const float> g) {
                              grad[b].assign(g.begin(), g.end());
                              return Status::Ok();
                            })
                  .ok());
  auto cands = ProbedCandidates::Open(**src, *probe, work);
  ASSERT_TRUE(cands.ok());
  std::map<std::string, std::vector<const ProbeLinear*>> units;
  for (const ProbeLinear& l : probe->linears) {
    if (l.is_lm_head || l.is_mtp || l.is_visual) {
      for (const ProbeCandidate& c : l.candidates) {
        EXPECT_EQ(c.Cost(CostEstimator::kBlock), c.Cost(CostEstimator::kHessian)) << l.module;
        EXPECT_FALSE(c.routing_changes) << l.module;
      }
      continue;
    }
    units[l.unit].push_back(&l);
  }
  int checked = 0, flipped = 0;
  for (const auto& [unit, members] : units) {
    for (const ProbeCandidate& first : members.front()->candidates) {
      double sum_block = 0, sum_output = 0;
      bool all = true;
      for (const ProbeLinear* m : members) all &= m->Find(first.format) != nullptr;
      if (!all) {  // not a candidate of the unit: allocate never offers it, nothing re-run
        EXPECT_FALSE(first.routing_changes) << unit << " " << first.format;
        continue;
      }
      for (const ProbeLinear* m : members) {
        const ProbeCandidate* c = m->Find(first.format);
        sum_block += c->Cost(CostEstimator::kBlock);
        sum_output += c->Cost(CostEstimator::kOutput);
        ASSERT_TRUE(c->routing_changes) << m->module << " " << first.format;
        EXPECT_EQ(*c->routing_changes, *first.routing_changes) << m->module;
      }
      const int64_t l = members.front()->layer;
      const int64_t end = std::min<int64_t>(l + window, probe->model.num_layers);
      const Direct d =
          DirectBlockCost(**src, runner, *samples, l, end, grad.at(end), members,
                          *formats::ParseFormat(first.format), **cands, probe->calibration.tokens);
      SCOPED_TRACE(unit + " " + first.format);
      EXPECT_NEAR(sum_block, d.cost, 1e-5 * d.cost + 1e-18);
      EXPECT_EQ(*first.routing_changes, d.routing_changes);
      flipped += d.routing_changes > 0;
      // The split: each member's part of the unit's cost follows its own output cost.
      if (sum_output > 0)
        for (const ProbeLinear* m : members) {
          const ProbeCandidate* c = m->Find(first.format);
          EXPECT_NEAR(c->Cost(CostEstimator::kBlock) / sum_block,
                      c->Cost(CostEstimator::kOutput) / sum_output, 1e-9)
              << m->module;
        }
      ++checked;
    }
  }
  EXPECT_GE(checked, min_units);
  EXPECT_GE(flipped, 1) << "some attention/DeltaNet candidate should move the router";
}

TEST_F(BlockPricingTest, Qwen3MoeUnitsEqualTheDirectBlockRerun) {
  const std::string model = Golden("qwen3_moe");
  // K = 20/40/60: BF16, INT8 (weight-only) and FP8 (per-token activation quantization).
  const std::vector<FormatId> fs = {FormatId::kBF16, FormatId::kINT8, FormatId::kFP8};
  // The default window (the unit's layer and the next) and the unit's layer alone.
  for (int64_t window : {2, 1}) {
    SCOPED_TRACE("window " + std::to_string(window));
    CheckAgainstDirect(model, Probe(model, fs, window), window, 2 * 3 * 3);  // qkv/o/experts
  }
}

TEST_F(BlockPricingTest, Qwen35MoeUnitsEqualTheDirectBlockRerun) {
  const std::string model = Golden("qwen3_5_moe");
  // Hidden 32: NVFP4 (calibrated input global scale) and MXFP8 fit the projections from it.
  const std::string work =
      Probe(model, {FormatId::kBF16, FormatId::kNVFP4, FormatId::kMXFP8, FormatId::kINT8});
  CheckAgainstDirect(model, work, /*window=*/2, /*min_units=*/20);
}

// Two-layer windows need dL/d(boundary l+2) when pricing layer l; a run stopped in the middle
// of its reverse sweep must leave it in W/probe so that the resumed run prices exactly as an
// uninterrupted one. The stop: layer 1's results cannot be written (a file is in the way).
TEST_F(BlockPricingTest, AResumedRunPricesLikeAnUninterruptedOne) {
  const std::string model = Golden("qwen3_5_moe");
  const std::vector<FormatId> fs = {FormatId::kBF16, FormatId::kNVFP4, FormatId::kINT8};
  const std::string whole = Probe(model, fs);
  const std::string work = (tmp_ / "stopped").string();
  const WorkDir w(work);
  ProbeOptions o;
  o.model = model;
  o.work = work;
  o.calib.input.tokens_file = (tmp_ / "tokens.txt").string();
  o.calib.input.split = DocSplit::kLines;
  o.calib.samples = 4;
  o.calib.seqlen = 32;
  o.formats = fs;
  o.passes = quant::Passes::kRtn;
  o.exec.threads = 1;
  o.exec.progress = false;
  fs::create_directories(w.probe_dir());
  std::ofstream(w.unit_dir(1)) << "in the way\n";
  ASSERT_FALSE(RunProbe(o).ok());
  ASSERT_TRUE(fs::exists(w.unit_dir(2)));
  EXPECT_TRUE(fs::exists(w.grad_dir(3))) << "layer 1's window ends at boundary 3";
  fs::remove(w.unit_dir(1));
  // Without that gradient the resumed run would price layer 1 differently (control).
  const std::string control = (tmp_ / "control").string();
  fs::copy(work, control, fs::copy_options::recursive);
  fs::remove_all(WorkDir(control).grad_dir(3));
  auto resumed = RunProbe(o);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(resumed->resumed_layers, 2);
  auto read = [](const std::string& path) {
    std::ifstream f(path);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  EXPECT_EQ(read(WorkDir(work).probe_json()), read(WorkDir(whole).probe_json()));
  o.work = control;
  ASSERT_TRUE(RunProbe(o).ok());
  EXPECT_NE(read(WorkDir(control).probe_json()), read(WorkDir(whole).probe_json()));
}

TEST_F(BlockPricingTest, DenseLayersKeepTheHessianPrice) {
  const std::string work = Probe(Golden("qwen3"), {FormatId::kBF16, FormatId::kINT8});
  auto probe = ReadProbeFile(WorkDir(work));
  ASSERT_TRUE(probe.ok());
  int n = 0;
  for (const ProbeLinear& l : probe->linears)
    for (const ProbeCandidate& c : l.candidates) {
      EXPECT_EQ(c.Cost(CostEstimator::kBlock), c.Cost(CostEstimator::kHessian)) << l.module;
      EXPECT_FALSE(c.routing_changes);
      ++n;
    }
  EXPECT_GT(n, 10);
  std::ifstream f(WorkDir(work).probe_json());
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find("\"block\": "), std::string::npos);  // only the estimators list names it
  EXPECT_NE(text.find("\"block\""), std::string::npos);
}

}  // namespace
}  // namespace pq::pipeline
