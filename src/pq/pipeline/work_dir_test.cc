// The typed work dir: struct -> file -> struct is the identity for every file; files written by
// the stages before the structs existed (testdata/stories260K_work, a real probe + allocate of
// stories260K) come back byte for byte; damaged files fail with the file and field named.
#include "pq/pipeline/work_dir.h"

#include <gtest/gtest.h>

#include <cmath>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "pq/io/io_test_util.h"

namespace pq::pipeline {
namespace {

namespace fs = std::filesystem;
using io::testing::ReadBytes;
using io::testing::TempDir;
using io::testing::WriteBytes;
using nlohmann::json;

const std::string kGolden =
    std::string(PQ_SOURCE_DIR) + "/src/pq/pipeline/testdata/stories260K_work";

ProbeLinear Linear(const std::string& module, int64_t layer, double scale) {
  ProbeLinear l;
  l.module = module;
  l.layer = layer;
  l.unit = "u" + std::to_string(layer);
  l.scale_group = module + ".g";
  l.rows = 8;
  l.cols = 16;
  l.is_lm_head = layer < 0;
  l.tied = layer < 0;
  l.samples = 3;
  l.tokens = 190;
  l.fisher_trace = 0.1 * scale;
  l.input_amax = 2.5f * static_cast<float>(scale);
  // BF16: block = hessian (not block-priced); NVFP4A16: a block-priced MoE unit's candidate.
  l.candidates = {{"BF16", 256, 0.0, {1e-9, 2e-9, 3e-9, 4e-9, 3e-9}, {}},
                  {"NVFP4A16", 80, 1.0 / 3 * scale, {0.5, 1.25, scale, 1e-300, 2.5 * scale}, 17}};
  return l;
}

ProbeFile SampleProbe() {
  ProbeFile p;
  ProbeInputs in;
  in.model_fingerprint = "abc";
  in.calib_tokens_hash = "def";
  in.samples = 4;
  in.seqlen = 64;
  in.seed = 18446744073709551615ull;
  in.formats = {"BF16", "NVFP4A16"};
  p.inputs = in.ToJson();
  p.model = {"models/x", "qwen3_5_moe", 2, 1, 64, 4, true, 12345};
  p.calibration = {4, 64, 7, 999, 252, 2.25, 3.5};
  p.estimators = {"trace", "channel", "hessian", "output", "block"};
  p.formats = {"BF16", "NVFP4A16"};
  p.linears = {Linear("model.layers.0.q", 0, 1), Linear("mtp.fc", 2, 2), Linear("lm_head", -1, 3)};
  p.linears[1].is_mtp = true;
  ProbeLinear v;
  v.module = "model.visual.blocks.0.attn.qkv";
  v.unit = v.scale_group = v.module;
  v.rows = 96;
  v.cols = 32;
  v.is_visual = true;
  p.linears.push_back(v);
  return p;
}

LayerConfig SampleConfig(AllocationTarget::Kind kind) {
  LayerConfig c;
  c.probe_inputs = SampleProbe().inputs;
  c.cost = "hessian";
  c.lm_head = "BF16";
  if (kind == AllocationTarget::Kind::kSize) c.visual = "MXFP8";
  c.target = {kind, kind == AllocationTarget::Kind::kSize ? 0 : 4.75, 123456789, 1000};
  if (kind != AllocationTarget::Kind::kSize) c.target.size_bytes = c.target.kv_reserve_bytes = 0;
  c.achieved = {4.5, 1000, 3000, 0.0125, kind != AllocationTarget::Kind::kKnee};
  if (kind == AllocationTarget::Kind::kKnee) c.knee_bits = 4.5;
  c.formats = {{"lm_head", "BF16"}, {"model.layers.0.q", "NVFP4A16"}};
  return c;
}

TEST(WorkDir, Paths) {
  const WorkDir w("/tmp/w");
  EXPECT_EQ(w.unit_dir(3), "/tmp/w/probe/layer_0003");
  EXPECT_EQ(w.grad_dir(12), "/tmp/w/probe/grad_0012");
  EXPECT_EQ(w.head_dir(), "/tmp/w/probe/head");
  EXPECT_EQ(w.calibration_dir(), "/tmp/w/probe/calibration");
  EXPECT_EQ(w.probe_json(), "/tmp/w/probe.json");
  EXPECT_EQ(w.layer_config_json(), "/tmp/w/layer_config.json");
  EXPECT_EQ(w.pareto_csv(), "/tmp/w/pareto.csv");
}

TEST(WorkDir, ProbeFileRoundTrips) {
  TempDir dir;
  const WorkDir w(dir.path().string());
  const ProbeFile p = SampleProbe();
  ASSERT_TRUE(WriteProbeFile(w, p).ok());
  auto back = ReadProbeFile(w);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, p);
  EXPECT_EQ(back->model_fingerprint(), "abc");
  // Probed Linears carry is_mtp, vision Linears is_visual (as the probe always wrote them).
  const json j = json::parse(ReadBytes(w.probe_json()));
  EXPECT_FALSE(j["linears"][0].contains("is_visual"));
  EXPECT_EQ(j["linears"][1]["is_mtp"], true);
  EXPECT_FALSE(j["linears"][3].contains("is_mtp"));
  EXPECT_TRUE(j["linears"][3]["fisher_trace"].is_number_float());
  // "block" only where it differs from "hessian"; routing changes only where counted.
  const json& bf16 = j["linears"][0]["candidates"][0];
  const json& nvfp4 = j["linears"][0]["candidates"][1];
  EXPECT_FALSE(bf16["cost"].contains("block"));
  EXPECT_FALSE(bf16.contains("routing_changes"));
  EXPECT_EQ(nvfp4["cost"]["block"], 2.5);
  EXPECT_EQ(nvfp4["routing_changes"], 17);
  EXPECT_TRUE(j["linears"][3]["samples"].is_number_integer());
  ProbeFile no_mtp = p;
  no_mtp.calibration.mtp_nll.reset();
  ASSERT_TRUE(WriteProbeFile(w, no_mtp).ok());
  EXPECT_TRUE(json::parse(ReadBytes(w.probe_json()))["calibration"]["mtp_nll"].is_null());
  EXPECT_EQ(*ReadProbeFile(w), no_mtp);
  // Estimators a probe did not record (probe --estimators): null in the file, NaN in memory,
  // not the hessian value an absent "token" stands for.
  ProbeFile partial = p;
  for (auto& c : partial.linears[0].candidates)
    for (auto e : {quant::CostEstimator::kOutput, quant::CostEstimator::kToken})
      c.cost[static_cast<size_t>(e)] = std::nan("");
  ASSERT_TRUE(WriteProbeFile(w, partial).ok());
  const json jp = json::parse(ReadBytes(w.probe_json()));
  EXPECT_TRUE(jp["linears"][0]["candidates"][1]["cost"]["token"].is_null());
  EXPECT_TRUE(jp["linears"][0]["candidates"][1]["cost"]["output"].is_null());
  auto again = ReadProbeFile(w);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, partial);
  EXPECT_TRUE(std::isnan(again->linears[0].candidates[1].Cost(quant::CostEstimator::kToken)));
  EXPECT_NE(*again, p);
}

TEST(WorkDir, LayerConfigAndParetoRoundTrip) {
  TempDir dir;
  const WorkDir w(dir.path().string());
  for (auto kind : {AllocationTarget::Kind::kBits, AllocationTarget::Kind::kKnee,
                    AllocationTarget::Kind::kSize}) {
    const LayerConfig c = SampleConfig(kind);
    ASSERT_TRUE(WriteLayerConfig(w, c).ok());
    auto back = ReadLayerConfig(w);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, c) << static_cast<int>(kind);
  }
  ParetoTable t;
  t.formats = {"BF16", "INT4"};
  t.points = {{4.25, 4.125, 100, 1100, 0.0125, true, {1, 2}, {64, 128}},
              {8, 7.875, 200, 1200, 1.5e-07, false, {3, 0}, {192, 0}}};
  ASSERT_TRUE(WriteParetoTable(w, t).ok());
  auto back = ReadParetoTable(w);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, t);
  EXPECT_EQ(ReadBytes(w.pareto_csv()),
            "target_bits,achieved_bits,unit_bytes,total_bytes,predicted_dloss,optimal,"
            "count_BF16,count_INT4,params_BF16,params_INT4\n"
            "4.250000,4.125000,100,1100,0.0125,1,1,2,64,128\n"
            "8.000000,7.875000,200,1200,1.5e-07,0,3,0,192,0\n");
}

TEST(WorkDir, UnitCalibrationAndGradRoundTrip) {
  TempDir dir;
  const WorkDir w(dir.path().string());
  ProbeUnit u;
  u.layer = 2;
  u.mtp_nll_sum = 12.5;
  u.mtp_scored = 40;
  u.linears = {Linear("mtp.fc", 2, 1)};
  u.g2_out = {std::vector<float>(8, 0.25f)};
  u.x2_in = {std::vector<float>(16, -1.5f)};
  ASSERT_TRUE(WriteProbeUnit(w.unit_dir(2), u).ok());
  auto back = ReadProbeUnit(w.unit_dir(2), /*with_vectors=*/true);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, u);
  auto meta = ReadProbeUnit(w.unit_dir(2));
  ASSERT_TRUE(meta.ok());
  EXPECT_TRUE(meta->g2_out.empty());
  EXPECT_EQ(meta->linears, u.linears);

  ProbeUnit head;  // a head without probed Linears still is a checkpoint
  head.nll_sum = 3.0;
  head.scored = 7;
  ASSERT_TRUE(WriteProbeUnit(w.head_dir(), head).ok());
  EXPECT_EQ(*ReadProbeUnit(w.head_dir(), true), head);

  const std::vector<engine::Sequence> samples = {{{1, 2, 3}, {2, 3, -1}}, {{4, 5, 6}, {5, 6, 7}}};
  ASSERT_TRUE(WriteCalibrationSamples(w, samples).ok());
  auto s = ReadCalibrationSamples(w);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[1].ids, samples[1].ids);
  EXPECT_EQ((*s)[0].targets, samples[0].targets);

  const std::vector<float> g = {1, 2, 3};
  ASSERT_TRUE(WriteBoundaryGrad(w, 4, g).ok());
  ASSERT_TRUE(WriteBoundaryGrad(w, 4, g).ok());  // replaced, as a resumed run does
  EXPECT_EQ(*ReadBoundaryGrad(w, 4, 3), g);
  auto wrong = ReadBoundaryGrad(w, 4, 5);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kDataLoss);
  RemoveBoundaryGrad(w, 4);
  EXPECT_FALSE(fs::exists(w.grad_dir(4)));
}

TEST(WorkDir, ProgressAndInputs) {
  TempDir dir;
  const WorkDir w(dir.path().string());
  const json inputs = {{"seed", 1}, {"samples", 4}};
  ASSERT_TRUE(CheckProbeInputs(w, inputs).ok());
  EXPECT_TRUE(CheckProbeInputs(w, inputs).ok());
  auto other = CheckProbeInputs(w, {{"seed", 2}, {"samples", 4}});
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(other.message().find("differs in: seed)"), std::string::npos) << other.message();

  ProbeProgress p = ScanProbeProgress(w, 4);
  EXPECT_FALSE(p.head);
  EXPECT_EQ(p.next_layer, 3);
  for (int64_t l : {2, 3, 4}) fs::create_directories(w.unit_dir(l));
  fs::create_directories(w.head_dir());
  fs::create_directories(w.probe_dir() + "/.layer_0001.tmp-1");
  p = ScanProbeProgress(w, 4);
  EXPECT_TRUE(p.head);
  EXPECT_TRUE(p.mtp);
  EXPECT_EQ(p.next_layer, 1);
  EXPECT_EQ(p.finished_layers, 2);
  RemoveProbeEntries(w, ".");
  EXPECT_FALSE(fs::exists(w.probe_dir() + "/.layer_0001.tmp-1"));
  EXPECT_TRUE(fs::exists(w.unit_dir(2)));
}

// Files the stages wrote before work_dir.h existed: reading and writing them back is exact.
TEST(WorkDir, GoldenFilesComeBackByteForByte) {
  const WorkDir golden(kGolden);
  ASSERT_TRUE(fs::exists(golden.probe_json())) << kGolden;
  TempDir dir;
  const WorkDir w(dir.path().string());
  auto probe = ReadProbeFile(golden);
  ASSERT_TRUE(probe.ok()) << probe.status().ToString();
  EXPECT_GT(probe->linears.size(), 30u);
  // Probed with 4 estimators, before "block": it reads as the hessian value everywhere.
  EXPECT_EQ(probe->estimators.size(), 4u);
  for (const ProbeLinear& l : probe->linears)
    for (const ProbeCandidate& c : l.candidates) {
      EXPECT_EQ(c.Cost(quant::CostEstimator::kBlock), c.Cost(quant::CostEstimator::kHessian));
      EXPECT_FALSE(c.routing_changes.has_value());
    }
  ASSERT_TRUE(WriteProbeFile(w, *probe).ok());
  EXPECT_EQ(ReadBytes(w.probe_json()), ReadBytes(golden.probe_json()));

  auto config = ReadLayerConfig(golden);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->target.kind, AllocationTarget::Kind::kKnee);
  ASSERT_TRUE(WriteLayerConfig(w, *config).ok());
  EXPECT_EQ(ReadBytes(w.layer_config_json()), ReadBytes(golden.layer_config_json()));

  auto pareto = ReadParetoTable(golden);
  ASSERT_TRUE(pareto.ok()) << pareto.status().ToString();
  ASSERT_TRUE(WriteParetoTable(w, *pareto).ok());
  EXPECT_EQ(ReadBytes(w.pareto_csv()), ReadBytes(golden.pareto_csv()));

  for (const std::string& unit : {golden.head_dir(), golden.unit_dir(0)}) {
    auto u = ReadProbeUnit(unit, /*with_vectors=*/true);
    ASSERT_TRUE(u.ok()) << u.status().ToString();
    const std::string out = dir / fs::path(unit).filename().string();
    ASSERT_TRUE(WriteProbeUnit(out, *u).ok());
    EXPECT_EQ(ReadBytes(out + "/results.json"), ReadBytes(unit + "/results.json")) << unit;
    EXPECT_EQ(ReadBytes(out + "/model.safetensors"), ReadBytes(unit + "/model.safetensors"))
        << unit;
  }

  auto samples = ReadCalibrationSamples(golden);
  ASSERT_TRUE(samples.ok()) << samples.status().ToString();
  EXPECT_EQ(samples->size(), 4u);
  ASSERT_TRUE(WriteCalibrationSamples(w, *samples).ok());
  EXPECT_EQ(ReadBytes(w.calibration_dir() + "/model.safetensors"),
            ReadBytes(golden.calibration_dir() + "/model.safetensors"));
  // The probe's inputs are those W/probe/inputs.json records.
  fs::create_directories(w.probe_dir());
  fs::copy_file(golden.inputs_json(), w.inputs_json(), fs::copy_options::overwrite_existing);
  EXPECT_TRUE(CheckProbeInputs(w, probe->inputs).ok());
}

// Writes `text` as W/probe.json (or another file) and expects `code` naming the file and field.
void ExpectDamage(const WorkDir& w, const std::string& file, const std::string& text,
                  StatusCode code, const std::string& field) {
  WriteBytes(w.root() + "/" + file, text);
  Status s = Status::Ok();
  if (file == "probe.json") s = ReadProbeFile(w).status();
  if (file == "layer_config.json") s = ReadLayerConfig(w).status();
  if (file == "pareto.csv") s = ReadParetoTable(w).status();
  if (file == "probe/head/results.json") s = ReadProbeUnit(w.head_dir()).status();
  ASSERT_FALSE(s.ok()) << file << ": " << text;
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_NE(s.message().find(file), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(field), std::string::npos) << s.ToString();
}

TEST(WorkDir, DamagedProbeFileNamesTheField) {
  TempDir dir;
  const WorkDir w(dir.path().string());
  auto missing = ReadProbeFile(w);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("prismaquant probe"), std::string::npos);

  ASSERT_TRUE(WriteProbeFile(w, SampleProbe()).ok());
  const json good = json::parse(ReadBytes(w.probe_json()));
  const auto damaged = [&](auto edit) {
    json j = good;
    edit(j);
    return j.dump();
  };
  ExpectDamage(w, "probe.json", "{\"schema\": 3", StatusCode::kDataLoss, "probe.json");
  ExpectDamage(w, "probe.json", "[1, 2]", StatusCode::kInvalidArgument, "schema");
  ExpectDamage(w, "probe.json", damaged([](json& j) { j["schema"] = "prismaquant.probe/2"; }),
               StatusCode::kInvalidArgument, "prismaquant.probe/2");
  ExpectDamage(w, "probe.json", damaged([](json& j) { j["model"].erase("hidden"); }),
               StatusCode::kDataLoss, "model.hidden: missing");
  ExpectDamage(w, "probe.json",
               damaged([](json& j) { j["linears"][1]["candidates"][0]["bytes"] = "many"; }),
               StatusCode::kDataLoss, "linears[1].candidates[0].bytes: expected an unsigned");
  ExpectDamage(w, "probe.json",
               damaged([](json& j) { j["linears"][0]["candidates"][1]["cost"].erase("output"); }),
               StatusCode::kDataLoss, "linears[0].candidates[1].cost.output: missing");
  ExpectDamage(w, "probe.json", damaged([](json& j) { j["linears"][2]["rows"] = 1.5; }),
               StatusCode::kDataLoss,
               "linears[2].rows: expected an integer, got non-integer number");
  ExpectDamage(w, "probe.json", damaged([](json& j) { j["linears"] = json::object(); }),
               StatusCode::kDataLoss, "linears: expected an array");
  ExpectDamage(w, "probe.json", damaged([](json& j) { j["formats"][1] = 4; }),
               StatusCode::kDataLoss, "formats[1]: expected a string");
  ExpectDamage(w, "probe.json", damaged([](json& j) { j["calibration"]["nll"] = nullptr; }),
               StatusCode::kDataLoss, "calibration.nll: expected a number, got null");
}

TEST(WorkDir, DamagedAllocationFilesNameTheField) {
  TempDir dir;
  const WorkDir w(dir.path().string());
  auto missing = ReadLayerConfig(w);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("prismaquant allocate"), std::string::npos);
  ASSERT_TRUE(WriteLayerConfig(w, SampleConfig(AllocationTarget::Kind::kBits)).ok());
  const json good = json::parse(ReadBytes(w.layer_config_json()));
  const auto damaged = [&](auto edit) {
    json j = good;
    edit(j);
    return j.dump();
  };
  ExpectDamage(w, "layer_config.json", damaged([](json& j) { j["schema"] = "x"; }),
               StatusCode::kInvalidArgument, "prismaquant.layer_config/1");
  ExpectDamage(w, "layer_config.json", damaged([](json& j) { j["formats"]["lm_head"] = 16; }),
               StatusCode::kDataLoss, "formats.lm_head: expected a string");
  ExpectDamage(w, "layer_config.json", damaged([](json& j) { j["achieved"].erase("optimal"); }),
               StatusCode::kDataLoss, "achieved.optimal: missing");
  ExpectDamage(w, "layer_config.json", damaged([](json& j) { j["target"] = json::object(); }),
               StatusCode::kDataLoss, "target.bits: missing");
  ExpectDamage(w, "layer_config.json", damaged([](json& j) { j.erase("probe_inputs"); }),
               StatusCode::kDataLoss, "probe_inputs: missing");

  ExpectDamage(w, "pareto.csv", "target_bits,achieved_bits\n1,2\n", StatusCode::kDataLoss,
               "unit_bytes");
  ExpectDamage(w, "pareto.csv",
               "target_bits,achieved_bits,unit_bytes,total_bytes,predicted_dloss,optimal\n"
               "4,4,1,2,x,1\n",
               StatusCode::kDataLoss, "line 2");

  ProbeUnit head;
  head.nll_sum = 1;
  head.scored = 2;
  ASSERT_TRUE(WriteProbeUnit(w.head_dir(), head).ok());
  ExpectDamage(w, "probe/head/results.json", "{\"schema\": \"prismaquant.probe/0\"}",
               StatusCode::kDataLoss, "delete");
  ExpectDamage(w, "probe/head/results.json",
               "{\"schema\": \"prismaquant.probe/1\", \"linears\": [], \"scored\": \"2\"}",
               StatusCode::kDataLoss, "scored: expected an integer");
}

}  // namespace
}  // namespace pq::pipeline
