// Uniform export, inspect and dequantize on the real stories260K weights, plus the
// failure paths: refused formats, bad input, rule violations that inspect must catch.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "pq/formats/format.h"
#include "pq/io/safetensors.h"
#include "pq/pipeline/dequantize.h"
#include "pq/pipeline/export_uniform.h"
#include "pq/pipeline/inspect.h"

namespace pq::pipeline {
namespace {

namespace fs = std::filesystem;
using formats::FormatId;

std::string ModelDir() {
  const std::string bundled = std::string(PQ_SOURCE_DIR) + "/models/stories260K";
  if (fs::exists(bundled + "/model.safetensors")) return bundled;
  return std::string(PQ_SOURCE_DIR) + "/../shared/assets/stories260K-hf-derived";
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    tmp_ = fs::temp_directory_path() / ("pq_pipeline_test_" + std::to_string(rd()));
    fs::create_directories(tmp_);
    if (!fs::exists(ModelDir() + "/config.json")) GTEST_SKIP() << "stories260K not found";
  }
  void TearDown() override { fs::remove_all(tmp_); }
  std::string Out(const std::string& name) { return (tmp_ / name).string(); }
  fs::path tmp_;
};

TEST_F(PipelineTest, UniformExportEveryFormatPassesInspect) {
  for (const auto& f : formats::AllFormats()) {
    if (f.needs_calibration) continue;
    UniformExportOptions o;
    o.format = f.id;
    const std::string out = Out(std::string(f.name));
    auto s = ExportUniform(ModelDir(), out, o);
    ASSERT_TRUE(s.ok()) << f.name << ": " << s.status().ToString();
    auto rep = Inspect(out);
    ASSERT_TRUE(rep.ok()) << rep.status().ToString();
    EXPECT_TRUE(rep->ok()) << f.name << ": " << rep->violations.front();
    // Exact byte accounting: each Linear's bytes = the format table's count.
    size_t quantized = 0;
    for (const auto& l : s->linears) {
      if (l.bytes == 0) continue;
      auto it = std::find_if(rep->linears.begin(), rep->linears.end(),
                             [&](const InspectedLinear& r) { return r.module == l.module; });
      ASSERT_NE(it, rep->linears.end());
      EXPECT_EQ(it->bytes, l.bytes) << l.module;
      EXPECT_EQ(it->format, l.format) << l.module;
      quantized += l.format != FormatId::kBF16;
    }
    // stories260K: down_proj (in 172) fits no grouped format; INT4 g128 fits nothing (K 64).
    const size_t expect = f.id == FormatId::kBF16                          ? 0
                          : f.id == FormatId::kINT4                        ? 0
                          : f.scale_layout == formats::ScaleLayout::kGroup ? 30
                                                                           : 35;
    EXPECT_EQ(quantized, expect) << f.name;
    EXPECT_TRUE(fs::exists(out + "/tokenizer.bin") || !fs::exists(ModelDir() + "/tokenizer.bin"));
  }
}

TEST_F(PipelineTest, RefusesNvfp4W4A4AndLeavesNothing) {
  UniformExportOptions o;
  o.format = FormatId::kNVFP4;
  auto s = ExportUniform(ModelDir(), Out("nv"), o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("NVFP4A16"), std::string::npos);
  EXPECT_FALSE(fs::exists(Out("nv")));
  o.format = FormatId::kNVFP4A16;
  o.lm_head = FormatId::kNVFP4;
  EXPECT_FALSE(ExportUniform(ModelDir(), Out("nv"), o).ok());
}

TEST_F(PipelineTest, MissingModelIsAClearError) {
  UniformExportOptions o;
  auto s = ExportUniform(Out("does-not-exist"), Out("x"), o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("does-not-exist"), std::string::npos);
  EXPECT_FALSE(fs::exists(Out("x")));
}

// Rewrites `src` into `dst` applying `edit` to the tensor list (name -> keep?) and bytes.
void CopyEdited(const std::string& src, const std::string& dst,
                const std::function<bool(const io::TensorInfo&, std::vector<uint8_t>&)>& edit) {
  auto r = io::CheckpointReader::Open(src);
  ASSERT_TRUE(r.ok());
  auto w = io::CheckpointWriter::Create(dst);
  ASSERT_TRUE(w.ok());
  for (const auto& n : (*r)->names()) {
    const io::TensorInfo* t = (*r)->Find(n);
    std::vector<uint8_t> bytes(t->bytes.begin(), t->bytes.end());
    if (!edit(*t, bytes)) continue;
    ASSERT_TRUE((*w)->AddTensor(n, t->dtype, t->shape, bytes).ok());
  }
  ASSERT_TRUE((*w)->CopyFile(src + "/config.json", "config.json").ok());
  ASSERT_TRUE((*w)->Commit().ok());
}

TEST_F(PipelineTest, InspectCatchesViolations) {
  UniformExportOptions o;
  o.format = FormatId::kNVFP4A16;
  ASSERT_TRUE(ExportUniform(ModelDir(), Out("ok"), o).ok());
  // A missing scale tensor.
  CopyEdited(Out("ok"), Out("missing"), [](const io::TensorInfo& t, std::vector<uint8_t>&) {
    return t.name != "model.layers.2.mlp.up_proj.weight_scale";
  });
  auto rep = Inspect(Out("missing"));
  ASSERT_TRUE(rep.ok());
  ASSERT_FALSE(rep->ok());
  EXPECT_NE(rep->violations[0].find("model.layers.2.mlp.up_proj"), std::string::npos);
  // Fused siblings with different NVFP4 global scales.
  CopyEdited(Out("ok"), Out("gs"), [](const io::TensorInfo& t, std::vector<uint8_t>& b) {
    if (t.name == "model.layers.1.self_attn.k_proj.weight_global_scale") b[3] ^= 0x01;
    return true;
  });
  rep = Inspect(Out("gs"));
  ASSERT_TRUE(rep.ok());
  ASSERT_EQ(rep->violations.size(), 1u);
  EXPECT_NE(rep->violations[0].find("k_proj.weight_global_scale"), std::string::npos);
}

TEST_F(PipelineTest, InspectCatchesUntargetedLinear) {
  UniformExportOptions o;
  o.format = FormatId::kFP8;
  ASSERT_TRUE(ExportUniform(ModelDir(), Out("fp8"), o).ok());
  // Drop one module from the group targets: it is then neither targeted nor ignored.
  std::ifstream in(Out("fp8") + "/config.json");
  nlohmann::json c = nlohmann::json::parse(in);
  auto& targets = c["quantization_config"]["config_groups"]["group_0"]["targets"];
  const std::string victim = targets[0];
  targets.erase(targets.begin());
  std::ofstream(Out("fp8") + "/config.json") << c.dump();
  auto rep = Inspect(Out("fp8"));
  ASSERT_TRUE(rep.ok());
  ASSERT_FALSE(rep->ok());
  EXPECT_NE(rep->violations[0].find(victim), std::string::npos);
}

TEST_F(PipelineTest, DequantizeMatchesFormatDequantization) {
  UniformExportOptions o;
  o.format = FormatId::kMXFP4;
  ASSERT_TRUE(ExportUniform(ModelDir(), Out("mx"), o).ok());
  auto n = DequantizeCheckpoint(Out("mx"), Out("dense"), {});
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 30u);
  auto dense = io::CheckpointReader::Open(Out("dense"));
  auto q = io::CheckpointReader::Open(Out("mx"));
  ASSERT_TRUE(dense.ok() && q.ok());
  const std::string m = "model.layers.3.self_attn.o_proj";
  std::vector<formats::QTensorView> views;
  for (auto s : formats::TensorSuffixes(FormatId::kMXFP4)) {
    const io::TensorInfo* t = (*q)->Find(m + "." + std::string(s));
    ASSERT_NE(t, nullptr);
    views.push_back({s, t->dtype, t->shape, t->bytes});
  }
  auto expect = formats::Dequantize(FormatId::kMXFP4, views, 64, 64);
  auto got = io::ReadAsF32(*(*dense)->Find(m + ".weight"));
  ASSERT_TRUE(expect.ok() && got.ok());
  EXPECT_EQ(*expect, *got);
}

}  // namespace
}  // namespace pq::pipeline
