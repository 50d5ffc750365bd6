// The allocate stage on synthetic probes: decision units share a format, the budget is never
// exceeded, whole-checkpoint sizes count every byte, and bad targets fail clearly.
#include "pq/pipeline/allocate.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "pq/io/io_test_util.h"
#include "pq/pipeline/probe.h"
#include "pq/pipeline/work_dir.h"

namespace pq::pipeline {
namespace {

using io::testing::ReadBytes;
using io::testing::TempDir;
using io::testing::WriteBytes;
using nlohmann::json;

json Linear(const std::string& module, const std::string& unit, int layer, int64_t rows,
            int64_t cols, double sens, const std::vector<std::string>& fmts) {
  json cands = json::array();
  for (const std::string& f : fmts) {
    const auto id = *formats::ParseFormat(f);
    const double bits = formats::Spec(id).element_bits;
    const double c = sens * std::pow(2.0, -bits);  // fewer bits, more loss
    cands.push_back({{"format", f},
                     {"bytes", formats::BytesOnDisk(id, rows, cols)},
                     {"weight_mse", c},
                     {"cost", {{"trace", c}, {"channel", c}, {"hessian", c}, {"output", 2 * c}}}});
  }
  return {{"module", module},     {"layer", layer},    {"unit", unit},
          {"rows", rows},         {"cols", cols},      {"is_lm_head", layer < 0},
          {"tied", layer < 0},    {"samples", 1},      {"tokens", 1},
          {"fisher_trace", sens}, {"input_amax", 1.0}, {"candidates", cands}};
}

// A 3-layer model: q/k/v fused (v cannot be INT4), o alone, 4 experts of one unit per layer.
// mtp_sens > 0: also an MTP head's fc (its own unit, is_mtp) of that sensitivity.
void WriteProbe(const std::string& work, uint64_t other_bytes = 1000, double mtp_sens = 0) {
  const std::vector<std::string> all = {"BF16", "NVFP4A16", "MXFP8", "INT4", "INT8"};
  const std::vector<std::string> no_int4 = {"BF16", "NVFP4A16", "MXFP8", "INT8"};
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0.1, 10);
  json linears = json::array();
  for (int l = 0; l < 3; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* m : {"q_proj", "k_proj", "v_proj"})
      linears.push_back(Linear(p + "self_attn." + m, p + "qkv", l, 128, 256, u(rng),
                               std::string(m) == "v_proj" ? no_int4 : all));
    linears.push_back(Linear(p + "self_attn.o_proj", p + "o_proj", l, 256, 128, u(rng), all));
    for (int e = 0; e < 4; ++e)
      for (const char* m : {"gate_proj", "up_proj"})
        linears.push_back(Linear(p + "mlp.experts." + std::to_string(e) + "." + m, p + "experts", l,
                                 64, 256, u(rng), all));
  }
  if (mtp_sens > 0) {
    linears.push_back(Linear("mtp.fc", "mtp.fc", 3, 256, 512, mtp_sens, all));
    linears.back()["is_mtp"] = true;
  }
  linears.push_back(Linear("lm_head", "lm_head", -1, 512, 256, 50, all));
  const json probe = {{"schema", kProbeSchema},
                      {"inputs", {{"seed", 0}}},
                      {"model",
                       {{"path", "m"},
                        {"architecture", "qwen3_moe"},
                        {"num_layers", 3},
                        {"hidden", 256},
                        {"num_experts", 4},
                        {"tie_word_embeddings", true},
                        {"other_tensor_bytes", other_bytes}}},
                      {"calibration", {{"samples", 1}, {"seqlen", 1}, {"tokens", 1}, {"nll", 1.0}}},
                      {"estimators", {"trace", "channel", "hessian", "output"}},
                      {"formats", all},
                      {"linears", linears}};
  WriteBytes(work + "/probe.json", probe.dump());
}

json ReadJson(const std::string& path) { return json::parse(ReadBytes(path)); }

TEST(Allocate, UnitsShareFormatsAndBudgetHolds) {
  TempDir dir;
  WriteProbe(dir.path().string());
  for (double bits : {4.3, 4.6, 5.0, 6.0, 8.1, 12.0}) {
    AllocateOptions o;
    o.work = dir.path().string();
    o.target_bits = bits;
    auto r = Allocate(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_LE(r->chosen.achieved_bits, bits + 1e-12);
    EXPECT_EQ(r->chosen.total_bytes, r->chosen.unit_bytes + 1000);  // tied BF16 head: no bytes
    const json cfg = ReadJson(dir / "layer_config.json");
    EXPECT_EQ(cfg["schema"], kLayerConfigSchema);
    EXPECT_EQ(cfg["formats"]["lm_head"], "BF16");
    for (int l = 0; l < 3; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const json& f = cfg["formats"];
      EXPECT_EQ(f[p + "self_attn.q_proj"], f[p + "self_attn.v_proj"]);
      EXPECT_EQ(f[p + "self_attn.k_proj"], f[p + "self_attn.v_proj"]);
      EXPECT_NE(f[p + "self_attn.v_proj"], "INT4") << "v_proj cannot hold INT4";
      for (int e = 0; e < 4; ++e)
        for (const char* m : {"gate_proj", "up_proj"})
          EXPECT_EQ(f[p + "mlp.experts." + std::to_string(e) + "." + m],
                    f[p + "mlp.experts.0.gate_proj"]);
    }
    // Monotone sweep: 11 points, more bits never predict more loss.
    ASSERT_EQ(r->pareto.size(), 11u);
    for (size_t i = 1; i < r->pareto.size(); ++i) {
      EXPECT_GE(r->pareto[i].unit_bytes, r->pareto[i - 1].unit_bytes);
      EXPECT_LE(r->pareto[i].predicted_dloss, r->pareto[i - 1].predicted_dloss);
    }
  }
  const std::string csv = ReadBytes(dir / "pareto.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 12);
  EXPECT_EQ(csv.rfind("target_bits,achieved_bits,unit_bytes,total_bytes,predicted_dloss,optimal,"
                      "count_BF16,",
                      0),
            0u);
}

// The MTP head's costs (MTP-loss nats) count --mtp-weight times against the body's: at 0 the
// sensitive mtp.fc takes the cheapest format, at 1 it keeps more bits; the weight is recorded.
TEST(Allocate, MtpWeightScalesTheMtpHeadsCosts) {
  TempDir dir;
  WriteProbe(dir.path().string(), 1000, /*mtp_sens=*/1e4);
  std::map<double, std::string> fc;
  for (double w : {0.0, 1.0}) {
    AllocateOptions o;
    o.work = dir.path().string();
    o.target_bits = 6.0;
    o.mtp_weight = w;
    auto r = Allocate(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const json cfg = ReadJson(dir / "layer_config.json");
    fc[w] = cfg["formats"]["mtp.fc"];
    EXPECT_EQ(cfg["mtp_weight"], w);
  }
  EXPECT_EQ(fc[0.0], "INT4");  // the fewest bytes
  EXPECT_TRUE(fc[1.0] == "INT8" || fc[1.0] == "MXFP8" || fc[1.0] == "BF16") << fc[1.0];
  AllocateOptions bad;
  bad.work = dir.path().string();
  bad.target_bits = 6.0;
  bad.mtp_weight = -1;
  auto r = Allocate(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--mtp-weight"), std::string::npos);
  // Without an MTP head nothing is recorded.
  TempDir plain;
  WriteProbe(plain.path().string());
  AllocateOptions o;
  o.work = plain.path().string();
  o.target_bits = 6.0;
  ASSERT_TRUE(Allocate(o).ok());
  EXPECT_FALSE(ReadJson(plain / "layer_config.json").contains("mtp_weight"));
}

TEST(Allocate, TargetSizeCountsEverything) {
  TempDir dir;
  WriteProbe(dir.path().string(), 5000);
  AllocateOptions o;
  o.work = dir.path().string();
  o.target_size = 700000;
  o.kv_reserve = 20000;
  o.lm_head = formats::FormatId::kNVFP4A16;  // untied: its bytes count
  auto r = Allocate(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const uint64_t head = formats::BytesOnDisk(formats::FormatId::kNVFP4A16, 512, 256);
  EXPECT_EQ(r->fixed_bytes, 5000 + head);
  EXPECT_EQ(r->chosen.total_bytes, r->chosen.unit_bytes + 5000 + head);
  EXPECT_LE(r->chosen.total_bytes, 680000u);
  EXPECT_GT(r->chosen.total_bytes, 600000u);  // uses the budget
  EXPECT_EQ(ReadJson(dir / "layer_config.json")["formats"]["lm_head"], "NVFP4A16");
}

TEST(Allocate, KneeAndErrors) {
  TempDir dir;
  WriteProbe(dir.path().string());
  AllocateOptions o;
  o.work = dir.path().string();
  o.target_knee = true;
  auto r = Allocate(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->knee.has_value());
  EXPECT_EQ(r->chosen.unit_bytes, r->pareto[*r->knee].unit_bytes);

  o.target_knee = false;
  o.target_bits = 3.0;  // below every allocation
  auto bad = Allocate(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bits/param"), std::string::npos) << bad.status().message();
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);

  o.formats = {formats::FormatId::kINT4};  // v_proj cannot hold INT4: its unit has no format
  EXPECT_FALSE(Allocate(o).ok());
  o.formats = {formats::FormatId::kNVFP4};  // not probed
  EXPECT_FALSE(Allocate(o).ok());
  o.formats = {};
  o.target_size = 100;  // two targets
  EXPECT_FALSE(Allocate(o).ok());
  o.target_bits.reset();  // smaller than the fixed bytes
  EXPECT_FALSE(Allocate(o).ok());

  AllocateOptions missing;
  missing.work = (dir / "nowhere");
  missing.target_bits = 5;
  EXPECT_EQ(Allocate(missing).status().code(), StatusCode::kNotFound);
}

// allocate --measured-costs: units priced by a check-costs CSV. Layer 1's o_proj is measured
// far more sensitive than its estimate in every format but BF16, so the allocation keeps it BF16
// while the estimator's own allocation does not; the chosen point's predicted loss is the sum of
// the measured prices; a (unit, format) the CSV lacks is refused naming both.
TEST(Allocate, MeasuredCostsPriceTheUnits) {
  TempDir dir;
  WriteProbe(dir.path().string());
  auto probe = ReadProbeFile(WorkDir(dir.path().string()));
  ASSERT_TRUE(probe.ok());
  std::map<std::string, std::map<std::string, double>> unit_cost;  // the estimator's, summed
  for (const ProbeLinear& l : probe->linears)
    if (!l.is_lm_head)
      for (const ProbeCandidate& c : l.candidates)
        unit_cost[l.unit][c.format] += c.Cost(quant::CostEstimator::kHessian);
  const std::string hot = "model.layers.1.o_proj";
  std::string csv = "module,format,measured_dnll,measured_kl,pred_hessian\n";
  for (auto& [unit, by_format] : unit_cost)
    for (auto& [f, cost] : by_format) {
      if (unit == hot && f != "BF16") cost = 1e3;
      csv += unit + "," + f + ",0," + std::to_string(cost) + ",0\n";
    }
  const std::string path = dir / "measured.csv";
  WriteBytes(path, csv);

  AllocateOptions o;
  o.work = dir.path().string();
  o.target_bits = 5.0;
  auto plain = Allocate(o);
  ASSERT_TRUE(plain.ok());
  EXPECT_NE(ReadJson(dir / "layer_config.json")["formats"][hot.substr(0, 15) + "self_attn.o_proj"],
            "BF16");
  o.measured_costs = path;
  auto r = Allocate(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const json cfg = ReadJson(dir / "layer_config.json");
  EXPECT_EQ(cfg["formats"]["model.layers.1.self_attn.o_proj"], "BF16");
  EXPECT_EQ(cfg["measured_costs"], path);
  double sum = 0;
  for (const auto& [unit, by_format] : unit_cost) {
    std::string module = unit;  // any member names the unit's format
    if (unit.ends_with("qkv")) module = unit.substr(0, unit.size() - 3) + "self_attn.q_proj";
    if (unit.ends_with("o_proj")) module = unit.substr(0, unit.size() - 6) + "self_attn.o_proj";
    if (unit.ends_with("experts"))
      module = unit.substr(0, unit.size() - 7) + "mlp.experts.0.gate_proj";
    sum += by_format.at(cfg["formats"][module].get<std::string>());
  }
  const double head = probe->linears.back().Find("BF16")->Cost(quant::CostEstimator::kHessian);
  EXPECT_NEAR(r->chosen.predicted_dloss, sum + head, 1e-6 * sum);

  // A unit the CSV does not measure in an allowed format.
  const size_t cut = csv.find("model.layers.2.qkv,INT8");
  WriteBytes(path, csv.substr(0, cut) + csv.substr(csv.find('\n', cut) + 1));
  auto missing = Allocate(o);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("model.layers.2.qkv in INT8"), std::string::npos)
      << missing.status().message();
  o.formats = {formats::FormatId::kBF16, formats::FormatId::kNVFP4A16};  // INT8 not allowed
  EXPECT_TRUE(Allocate(o).ok());
}

}  // namespace
}  // namespace pq::pipeline
