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

// A tiny Qwen3-MoE checkpoint (1 layer, 2 experts) written with our own writer.
void WriteTinyMoe(const std::string& dir) {
  auto w = io::CheckpointWriter::Create(dir);
  ASSERT_TRUE(w.ok());
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.0f, 0.1f);
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = g(rng);
    ASSERT_TRUE((*w)->AddTensor(name, DType::kF32, shape,
                                {reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4})
                    .ok());
  };
  add("model.embed_tokens.weight", {64, 32});
  add("model.norm.weight", {32});
  const std::string l = "model.layers.0.";
  for (const char* n : {"input_layernorm", "post_attention_layernorm"})
    add(l + n + ".weight", {32});
  for (const char* n : {"q_norm", "k_norm"}) add(l + "self_attn." + n + ".weight", {8});
  for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"})
    add(l + "self_attn." + n + ".weight", {32, 32});
  add(l + "mlp.gate.weight", {2, 32});
  for (int e = 0; e < 2; ++e)
    for (const char* n : {"gate_proj", "up_proj", "down_proj"})
      add(l + "mlp.experts." + std::to_string(e) + "." + n + ".weight", {32, 32});
  const nlohmann::json config = {{"architectures", {"Qwen3MoeForCausalLM"}},
                                 {"model_type", "qwen3_moe"},
                                 {"num_hidden_layers", 1},
                                 {"hidden_size", 32},
                                 {"num_attention_heads", 4},
                                 {"num_key_value_heads", 4},
                                 {"head_dim", 8},
                                 {"vocab_size", 64},
                                 {"num_experts", 2},
                                 {"num_experts_per_tok", 1},
                                 {"moe_intermediate_size", 32},
                                 {"tie_word_embeddings", true}};
  ASSERT_TRUE((*w)->AddFile("config.json", config.dump()).ok());
  ASSERT_TRUE((*w)->Commit().ok());
}

TEST_F(PipelineTest, MoeExpertsShareOneScheme) {
  WriteTinyMoe(Out("moe"));
  UniformExportOptions o;
  o.format = FormatId::kMXFP8;
  auto s = ExportUniform(Out("moe"), Out("moe-mx"), o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto rep = Inspect(Out("moe-mx"));
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok());
  EXPECT_EQ(rep->architecture, "qwen3_moe");
  size_t experts = 0;
  for (const auto& l : rep->linears)
    experts += l.module.find(".experts.") != std::string::npos && l.format == FormatId::kMXFP8;
  EXPECT_EQ(experts, 6u);
  // The router stays BF16 and is not a Linear we quantize.
  auto ckpt = io::CheckpointReader::Open(Out("moe-mx"));
  ASSERT_TRUE(ckpt.ok());
  EXPECT_EQ((*ckpt)->Find("model.layers.0.mlp.gate.weight")->dtype, DType::kBF16);
  // Move one expert's down_proj to `ignore`: the layer's experts no longer share a scheme.
  std::ifstream in(Out("moe-mx") + "/config.json");
  nlohmann::json c = nlohmann::json::parse(in);
  auto& q = c["quantization_config"];
  // Routers stay BF16 and are listed in `ignore` (compressed-tensors-format.md §4.4).
  EXPECT_NE(std::find(q["ignore"].begin(), q["ignore"].end(), "model.layers.0.mlp.gate"),
            q["ignore"].end());
  const std::string victim = "model.layers.0.mlp.experts.1.down_proj";
  auto& targets = q["config_groups"]["group_0"]["targets"];
  targets.erase(std::find(targets.begin(), targets.end(), victim));
  q["ignore"].push_back(victim);
  std::ofstream(Out("moe-mx") + "/config.json") << c.dump();
  rep = Inspect(Out("moe-mx"));
  ASSERT_TRUE(rep.ok());
  ASSERT_FALSE(rep->ok());
  bool named = false;
  for (const auto& v : rep->violations) named |= v.find(victim) != std::string::npos;
  EXPECT_TRUE(named);
}

}  // namespace
}  // namespace pq::pipeline
