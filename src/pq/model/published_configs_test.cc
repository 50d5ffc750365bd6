// The quantization_config blocks of published checkpoints (tests/data/published_configs, see
// its SOURCE.md) resolved against the module names of the architecture each was made for, as
// vLLM resolves them (issue 12 item 0): the schemes we read land on the right Linears, the
// ones vLLM serves but we cannot represent fail once per config group, naming the group and
// the argument that differs, and another quant_method is refused outright.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "pq/io/safetensors.h"
#include "pq/model/arch.h"
#include "pq/model/quant_config.h"

namespace pq::model {
namespace {

using formats::FormatId;
using nlohmann::json;

const std::string kDir = std::string(PQ_SOURCE_DIR) + "/tests/data/published_configs/";

json Published(const std::string& file) {
  std::ifstream in(kDir + file);
  EXPECT_TRUE(in) << kDir + file;
  return json::parse(in);
}

// The layout of one of our trained fixtures: the real module names of that architecture.
ModelLayout FixtureLayout(const std::string& arch) {
  const std::string dir = std::string(PQ_SOURCE_DIR) + "/models/trained/" + arch;
  auto ckpt = io::CheckpointReader::Open(dir);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status().message();
  auto cfg = ReadConfig(dir);
  EXPECT_TRUE(cfg.ok());
  auto layout = ResolveLayout(*cfg, **ckpt);
  EXPECT_TRUE(layout.ok()) << layout.status().message();
  return *layout;
}

// Phi-3 (not an architecture we quantize): its Linear names, to check parsing and resolution.
ModelLayout Phi3Layout() {
  ModelLayout l;
  auto add = [&](const std::string& module, int layer) {
    LinearInfo li;
    li.module = module;
    li.layer = layer;
    li.is_lm_head = module == "lm_head";
    l.linears.push_back(li);
  };
  for (int i = 0; i < 2; ++i)
    for (const char* m :
         {"self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"})
      add("model.layers." + std::to_string(i) + "." + m, i);
  add("lm_head", -1);
  return l;
}

struct Resolved {
  std::map<std::string, LinearFormat> formats;
  std::vector<std::string> violations;
};

Resolved Resolve(const std::string& file, const ModelLayout& layout) {
  Resolved r;
  r.formats = ResolveLinearFormats(Published(file), layout, &r.violations);
  return r;
}

bool Has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Every Linear but lm_head in `want` (group, format); lm_head as given.
void ExpectBody(const Resolved& r, const ModelLayout& layout, const std::string& group,
                FormatId format) {
  for (const auto& li : layout.linears) {
    if (li.is_lm_head) continue;
    EXPECT_EQ(r.formats.at(li.module).group, group) << li.module;
    EXPECT_EQ(r.formats.at(li.module).format, format) << li.module;
  }
}

TEST(PublishedConfigs, EveryFileHasASourceNote) {
  std::ifstream in(kDir + "SOURCE.md");
  ASSERT_TRUE(in);
  std::stringstream ss;
  ss << in.rdbuf();
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(kDir)) {
    if (e.path().extension() != ".json") continue;
    ++files;
    EXPECT_TRUE(Has(ss.str(), "`" + e.path().filename().string() + "`"))
        << e.path().filename() << " has no row in SOURCE.md";
    EXPECT_TRUE(Published(e.path().filename().string()).contains("quantization_config"));
  }
  EXPECT_GE(files, 9);
}

TEST(PublishedConfigs, Nvfp4W4a4LinearTargetOnLlama) {
  const ModelLayout layout = FixtureLayout("llama");
  const Resolved r = Resolve("llama32_1b_nvfp4_w4a4.json", layout);
  EXPECT_TRUE(r.violations.empty()) << r.violations.front();
  ExpectBody(r, layout, "group_0", FormatId::kNVFP4);
}

TEST(PublishedConfigs, W4a16Group128WithIgnoredHeadOnLlama) {
  // Llama-3.2-3B's block on our (untied-head) qwen3 fixture too: the names are the same.
  for (const char* arch : {"llama", "qwen3"}) {
    const ModelLayout layout = FixtureLayout(arch);
    const Resolved r = Resolve("llama32_3b_w4a16_g128.json", layout);
    EXPECT_TRUE(r.violations.empty()) << arch << ": " << r.violations.front();
    ExpectBody(r, layout, "group_0", FormatId::kINT4);
    EXPECT_EQ(r.formats.at("lm_head").group, "ignore") << arch;
    EXPECT_EQ(r.formats.at("lm_head").format, FormatId::kBF16) << arch;
  }
}

TEST(PublishedConfigs, MoeWithRegexIgnoresOnQwen3Moe) {
  // ignore: lm_head and re:.*self_attn.* -> attention stays BF16; the experts (FusedMoE to
  // vLLM, reached through the "Linear" target) are INT4.
  const ModelLayout layout = FixtureLayout("qwen3_moe");
  const Resolved r = Resolve("qwen3_moe_30b_a3b_w4a16_re_ignore.json", layout);
  EXPECT_TRUE(r.violations.empty()) << r.violations.front();
  int experts = 0, attention = 0;
  for (const auto& li : layout.linears) {
    const LinearFormat& f = r.formats.at(li.module);
    if (li.is_lm_head || Has(li.module, ".self_attn.")) {
      EXPECT_EQ(f.group, "ignore") << li.module;
      EXPECT_EQ(f.format, FormatId::kBF16) << li.module;
      attention += !li.is_lm_head;
    } else {
      EXPECT_TRUE(Has(li.module, ".mlp.experts.")) << li.module;
      EXPECT_EQ(f.format, FormatId::kINT4) << li.module;
      ++experts;
    }
  }
  EXPECT_EQ(attention, 3 * 4);
  EXPECT_EQ(experts, 3 * 4 * 3);  // 3 layers x 4 experts x gate/up/down
}

// A scheme vLLM serves that we cannot represent: exactly one violation, naming the group,
// the closest of our formats and each listed difference.
void ExpectUnreadable(const std::string& file, const ModelLayout& layout,
                      const std::string& closest, const std::vector<std::string>& diffs) {
  const Resolved r = Resolve(file, layout);
  ASSERT_EQ(r.violations.size(), 1u) << file;
  const std::string& v = r.violations[0];
  EXPECT_TRUE(Has(v, "config group \"group_0\" is not a scheme prismaquant reads")) << v;
  EXPECT_TRUE(Has(v, "closest is " + closest + ", but")) << v;
  for (const auto& d : diffs) EXPECT_TRUE(Has(v, d)) << file << ": no \"" << d << "\" in " << v;
}

TEST(PublishedConfigs, AsymmetricW4a16IsNamedNotMisread) {
  ExpectUnreadable("llama32_1b_w4a16_g128_asym.json", FixtureLayout("llama"), "INT4",
                   {"weights.symmetric: want true, got false", "e.g. model.layers.0."});
}

TEST(PublishedConfigs, Int8W8a8IsNamedNotMisread) {
  ExpectUnreadable("qwen3_0p6b_int8_w8a8.json", FixtureLayout("qwen3"), "INT8",
                   {"input_activations: want none, got", "\"strategy\":\"token\"",
                    "format: want \"pack-quantized\", got \"int-quantized\""});
}

TEST(PublishedConfigs, Fp8StaticPerTensorOnPhi3) {
  ExpectUnreadable("phi3_mini_fp8_static_tensor.json", Phi3Layout(), "FP8",
                   {"weights.strategy: want \"channel\", got \"tensor\"",
                    "input_activations.strategy: want \"token\", got \"tensor\"",
                    "input_activations.dynamic: want true, got false",
                    "e.g. model.layers.0.self_attn.qkv_proj"});
}

TEST(PublishedConfigs, Fp8WithStaticInputsOrPerTensorWeights) {
  const ModelLayout layout = FixtureLayout("llama");
  ExpectUnreadable("llama3_8b_fp8_channel_static_input.json", layout, "FP8",
                   {"input_activations.strategy: want \"token\", got \"tensor\"",
                    "input_activations.dynamic: want true, got false"});
  ExpectUnreadable("llama3_8b_fp8_tensor_weight_dynamic_token.json", layout, "FP8",
                   {"weights.strategy: want \"channel\", got \"tensor\""});
}

TEST(PublishedConfigs, OtherQuantMethodIsRefused) {
  const Resolved r = Resolve("tinyllama_awq.json", FixtureLayout("llama"));
  ASSERT_EQ(r.violations.size(), 1u);
  EXPECT_TRUE(Has(r.violations[0], "quant_method is \"awq\"")) << r.violations[0];
}

}  // namespace
}  // namespace pq::model
