// check-costs quantizes exactly what the probe priced: ProbedCandidates rebuilds every
// candidate of an export-aware probe (search+GPTQ on Hessians recomputed from the probe's own
// calibration samples) with the probe's recorded mean (W − Ŵ)² bit for bit; --per-unit
// perturbs whole decision units and predicts each by the sum over its members; --only keeps
// the named ones.
#include "pq/pipeline/cost_check.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "pq/pipeline/probe.h"
#include "pq/pipeline/probed_candidates.h"

namespace pq::pipeline {
namespace {

namespace fs = std::filesystem;
using formats::FormatId;

const std::string kModel = std::string(PQ_SOURCE_DIR) + "/tests/golden/qwen3_moe/model";

class CostCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    tmp_ = fs::temp_directory_path() / ("pq_cost_check_" + std::to_string(rd()));
    fs::create_directories(tmp_);
    std::mt19937 rng(3);
    for (const char* name : {"calib.txt", "heldout.txt"}) {
      std::ofstream f(tmp_ / name);
      for (int d = 0; d < 12; ++d) {
        for (int i = 0; i < 40; ++i) f << (i ? " " : "") << 3 + rng() % 94;
        f << "\n";
      }
    }
  }
  void TearDown() override { fs::remove_all(tmp_); }

  std::string Probe(quant::Passes passes) {
    ProbeOptions o;
    o.model = kModel;
    o.work = (tmp_ / quant::PassesName(passes)).string();
    o.calib.input.tokens_file = (tmp_ / "calib.txt").string();
    o.calib.input.split = DocSplit::kLines;
    o.calib.samples = 6;
    o.calib.seqlen = 32;
    o.formats = {FormatId::kBF16, FormatId::kINT8, FormatId::kFP8};
    o.passes = passes;
    o.exec.threads = 1;
    o.exec.progress = false;
    auto s = RunProbe(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return o.work;
  }

  fs::path tmp_;
};

TEST_F(CostCheckTest, RebuildsTheExportAwareCandidatesBitForBit) {
  const std::string work = Probe(quant::Passes::kSearchGptq);
  auto probe = ReadProbeFile(WorkDir(work));
  ASSERT_TRUE(probe.ok());
  auto src = model::WeightSource::Open(kModel);
  ASSERT_TRUE(src.ok());
  ExecContext one;
  one.threads = 1;
  one.progress = false;
  ScopedExecContext scope(one);
  auto cands = ProbedCandidates::Open(**src, *probe, work);
  ASSERT_TRUE(cands.ok()) << cands.status().ToString();
  EXPECT_EQ((*cands)->passes(), quant::Passes::kSearchGptq);
  int checked = 0;
  for (const ProbeLinear& l : probe->linears) {
    auto w = (*src)->LoadLinear(l.module);
    ASSERT_TRUE(w.ok());
    for (const ProbeCandidate& c : l.candidates) {
      auto cand = (*cands)->Make(l, *formats::ParseFormat(c.format));
      ASSERT_TRUE(cand.ok()) << cand.status().ToString();
      double s = 0;
      for (size_t i = 0; i < w->w.size(); ++i) {
        const double d = static_cast<double>(w->w[i]) - cand->w_hat[i];
        s += d * d;
      }
      EXPECT_EQ(s / static_cast<double>(w->w.size()), c.weight_mse) << l.module << " " << c.format;
      EXPECT_EQ(cand->input_global_scale.has_value(), c.format == "NVFP4");
      ++checked;
    }
  }
  EXPECT_GT(checked, 60);
}

TEST_F(CostCheckTest, PerUnitPerturbsWholeUnitsAndSumsTheirPredictions) {
  const std::string work = Probe(quant::Passes::kRtn);
  auto probe = ReadProbeFile(WorkDir(work));
  ASSERT_TRUE(probe.ok());
  CostCheckOptions o;
  o.model = kModel;
  o.work = work;
  o.text.tokens_file = (tmp_ / "heldout.txt").string();
  o.text.split = DocSplit::kLines;
  o.eval.ctx = 32;
  o.formats = {FormatId::kINT8};
  o.per_unit = true;
  o.exec.threads = 1;
  o.exec.progress = false;
  auto r = CheckCosts(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::map<std::string, std::vector<const ProbeLinear*>> units;
  for (const ProbeLinear& l : probe->linears)
    if (!l.is_lm_head) units[l.unit].push_back(&l);
  ASSERT_EQ(r->rows.size(), units.size());  // 2 layers: qkv, o_proj, experts
  for (const CostCheckRow& row : r->rows) {
    ASSERT_TRUE(units.count(row.module)) << row.module;
    for (int e = 0; e < quant::kNumEstimators; ++e) {
      double sum = 0;
      for (const ProbeLinear* m : units.at(row.module))
        sum += m->Find("INT8")->Cost(static_cast<quant::CostEstimator>(e));
      EXPECT_DOUBLE_EQ(row.predicted[static_cast<size_t>(e)], sum) << row.module;
    }
    EXPECT_GT(row.measured_kl, 0) << row.module;
    EXPECT_TRUE(row.routing_changes.has_value()) << row.module;
  }
  // One Linear at a time instead: one row per Linear.
  o.per_unit = false;
  auto single = CheckCosts(o);
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(single->rows.size(), probe->linears.size() - 1);
  // --only: just the named units (or Linears), with the same numbers as in the full run.
  o.per_unit = true;
  o.only = {r->rows[1].module, "no.such.unit"};
  auto only = CheckCosts(o);
  ASSERT_TRUE(only.ok());
  ASSERT_EQ(only->rows.size(), 1u);
  EXPECT_EQ(only->rows[0].module, r->rows[1].module);
  EXPECT_DOUBLE_EQ(only->rows[0].measured_kl, r->rows[1].measured_kl);
  o.only = {"no.such.unit"};
  EXPECT_FALSE(CheckCosts(o).ok());
}

// check-costs' CSV is what allocate --measured-costs reads: the measured KLs come back by
// (module, format); a bad header, number, negative KL or repeated row is refused naming the line.
TEST(MeasuredCosts, ReadsCheckCostsCsvAndRefusesBadRows) {
  CostCheckResult r;
  r.rows.push_back({"model.layers.0.qkv", "INT8", 0.001, 0.00123456789, {}, {}});
  r.rows.push_back({"model.layers.0.qkv", "NVFP4A16", -0.002, 0.0042, {}, std::int64_t{3}});
  r.rows.push_back({"model.layers.1.mlp.down_proj", "INT4", 0, -1e-12, {}, {}});
  const fs::path dir = fs::temp_directory_path() / ("pq_measured_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "m.csv").string();
  auto write = [&](const std::string& text) { std::ofstream(path) << text; };
  const std::string csv = CostCheckCsv(r);
  write(csv);
  auto m = ReadMeasuredCosts(path);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->size(), 2u);
  EXPECT_DOUBLE_EQ(m->at("model.layers.0.qkv").at("INT8"), 0.00123456789);
  EXPECT_DOUBLE_EQ(m->at("model.layers.0.qkv").at("NVFP4A16"), 0.0042);
  EXPECT_EQ(m->at("model.layers.1.mlp.down_proj").at("INT4"), 0.0);  // rounding below 0
  const std::string head = csv.substr(0, csv.find('\n') + 1);
  for (const std::string& bad :
       {std::string("module,format,kl\n"), head + "a,INT8,0,x\n", head + "a,INT8,0,-0.5\n",
        head + "a,INT8,0,nan\n", head + "a,INT8,0,1\na,INT8,0,2\n", head + "a\n", head}) {
    write(bad);
    auto b = ReadMeasuredCosts(path);
    EXPECT_EQ(b.status().code(), StatusCode::kDataLoss) << bad;
  }
  EXPECT_EQ(ReadMeasuredCosts((dir / "none.csv").string()).status().code(), StatusCode::kNotFound);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pq::pipeline
