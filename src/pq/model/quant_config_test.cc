// compressed-tensors quantization_config resolution as vLLM does it (issue 12 item 0):
// `ignore` first, then the first target matching the layer name (exact or "re:"), then a
// module class name ("Linear"; "FusedMoE" for routed experts), a target listed by several
// groups belonging to the last of them; unmatched Linears are violations (lm_head excepted).
#include "pq/model/quant_config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "pq/formats/compressed_tensors.h"

namespace pq::model {
namespace {

using formats::FormatId;
using nlohmann::json;

ModelLayout Layout() {
  ModelLayout l;
  for (const char* m : {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj",
                        "model.layers.0.mlp.experts.3.up_proj", "lm_head"}) {
    LinearInfo li;
    li.module = m;
    li.rows = 64;
    li.cols = 64;
    li.is_lm_head = std::string(m) == "lm_head";
    l.linears.push_back(li);
  }
  return l;
}

const json kNvfp4A16 = {{"format", "nvfp4-pack-quantized"},
                        {"weights",
                         {{"num_bits", 4},
                          {"type", "float"},
                          {"strategy", "tensor_group"},
                          {"group_size", 16},
                          {"symmetric", true},
                          {"dynamic", false}}},
                        {"input_activations", nullptr}};
const json kFp8 = {{"format", "float-quantized"},
                   {"weights",
                    {{"num_bits", 8},
                     {"type", "float"},
                     {"strategy", "channel"},
                     {"symmetric", true},
                     {"dynamic", false}}},
                   {"input_activations",
                    {{"num_bits", 8},
                     {"type", "float"},
                     {"strategy", "token"},
                     {"dynamic", true},
                     {"symmetric", true}}}};

json Config(json groups, json ignore) {
  return {{"quantization_config",
           {{"quant_method", "compressed-tensors"},
            {"config_groups", std::move(groups)},
            {"ignore", std::move(ignore)}}}};
}

json Group(json scheme, json targets) {
  scheme["targets"] = std::move(targets);
  return scheme;
}

TEST(QuantConfig, LlmCompressorDefaultLinearTargetWithIgnoredHead) {
  // What llm-compressor writes most: targets ["Linear"], ignore ["lm_head"].
  std::vector<std::string> v;
  const auto f = ResolveLinearFormats(
      Config({{"group_0", Group(kNvfp4A16, {"Linear"})}}, {"lm_head"}), Layout(), &v);
  EXPECT_TRUE(v.empty()) << v.front();
  EXPECT_EQ(f.at("lm_head").group, "ignore");
  EXPECT_EQ(f.at("lm_head").format, FormatId::kBF16);
  for (const char* m : {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj",
                        "model.layers.0.mlp.experts.3.up_proj"}) {
    EXPECT_EQ(f.at(m).group, "group_0") << m;
    EXPECT_EQ(f.at(m).format, FormatId::kNVFP4A16) << m;
  }
}

TEST(QuantConfig, AGroupWithoutItsOwnFormatTakesTheTopLevelOne) {
  // AutoRound 0.16 writes "format": null in its group and the format at the top level;
  // compressed-tensors and vLLM fall back to the top-level format (absent key: the same).
  for (const json& own : {json(nullptr), json("absent")}) {
    json scheme = kNvfp4A16;
    if (own.is_null())
      scheme["format"] = nullptr;
    else
      scheme.erase("format");
    json config = Config({{"group_0", Group(scheme, {"Linear"})}}, {"lm_head"});
    config["quantization_config"]["format"] = "nvfp4-pack-quantized";
    std::vector<std::string> v;
    const auto f = ResolveLinearFormats(config, Layout(), &v);
    EXPECT_TRUE(v.empty()) << v.front();
    EXPECT_EQ(f.at("model.layers.0.mlp.down_proj").format, FormatId::kNVFP4A16) << own;
    // Without a top-level format, null reads as an absent key does (the scheme decides).
    config["quantization_config"].erase("format");
    v.clear();
    const auto g = ResolveLinearFormats(config, Layout(), &v);
    EXPECT_TRUE(v.empty()) << v.front();
    EXPECT_EQ(g.at("model.layers.0.mlp.down_proj").format, FormatId::kNVFP4A16) << own;
  }
}

TEST(QuantConfig, NameAndRegexBeatClassTargets) {
  std::vector<std::string> v;
  const auto f = ResolveLinearFormats(
      Config({{"dense", Group(kNvfp4A16, {"Linear"})},
              {"down", Group(kFp8, {"re:.*down_proj$", "model.layers.0.self_attn.q_proj"})}},
             json::array()),
      Layout(), &v);
  EXPECT_TRUE(v.empty());
  EXPECT_EQ(f.at("model.layers.0.mlp.down_proj").format, FormatId::kFP8);
  EXPECT_EQ(f.at("model.layers.0.self_attn.q_proj").format, FormatId::kFP8);
  EXPECT_EQ(f.at("model.layers.0.mlp.experts.3.up_proj").format, FormatId::kNVFP4A16);
  EXPECT_EQ(f.at("lm_head").format, FormatId::kNVFP4A16);  // a Linear, not ignored
}

TEST(QuantConfig, IgnoreFirstAndLastGroupOwnsASharedTarget) {
  std::vector<std::string> v;
  const auto f = ResolveLinearFormats(
      Config({{"a", Group(kNvfp4A16, {"Linear"})}, {"b", Group(kFp8, {"Linear"})}},
             {"re:.*self_attn.*", "lm_head"}),
      Layout(), &v);
  EXPECT_TRUE(v.empty());
  EXPECT_EQ(f.at("model.layers.0.self_attn.q_proj").group, "ignore");  // ignore wins
  EXPECT_EQ(f.at("model.layers.0.mlp.down_proj").group, "b");
  EXPECT_EQ(f.at("model.layers.0.mlp.down_proj").format, FormatId::kFP8);
}

TEST(QuantConfig, FusedMoeClassTargetsTheExperts) {
  std::vector<std::string> v;
  const auto f = ResolveLinearFormats(
      Config({{"dense", Group(kFp8, {"re:.*self_attn.*", "re:.*mlp.down_proj"})},
              {"moe", Group(kNvfp4A16, {"FusedMoE"})}},
             {"lm_head"}),
      Layout(), &v);
  EXPECT_TRUE(v.empty());
  EXPECT_EQ(f.at("model.layers.0.mlp.experts.3.up_proj").group, "moe");
}

TEST(QuantConfig, UntargetedLinearIsAViolationButNotTheHead) {
  std::vector<std::string> v;
  ResolveLinearFormats(Config({{"g", Group(kFp8, {"re:.*self_attn.*"})}}, json::array()), Layout(),
                       &v);
  ASSERT_EQ(v.size(), 2u);  // down_proj and the expert; lm_head stays BF16 silently
  EXPECT_NE(v[0].find("Unable to find matching target"), std::string::npos);
}

TEST(QuantConfig, MalformedPiecesDoNotThrow) {
  std::vector<std::string> v;
  json c = {{"quantization_config",
             {{"quant_method", 5}, {"config_groups", "x"}, {"ignore", "lm_head"}}}};
  auto f = ResolveLinearFormats(c, Layout(), &v);  // not compressed-tensors: refused
  EXPECT_EQ(f.at("lm_head").group, "");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].find("quant_method is \"5\""), std::string::npos) << v[0];
  v.clear();
  c["quantization_config"]["quant_method"] = "compressed-tensors";
  f = ResolveLinearFormats(c, Layout(), &v);  // no groups: every Linear untargeted
  EXPECT_EQ(v.size(), 3u);
  v.clear();
  ResolveLinearFormats({{"quantization_config", nullptr}}, Layout(), &v);  // null: dense
  EXPECT_TRUE(v.empty());
}

TEST(QuantConfig, OtherQuantMethodsAreRefusedNotReadAsDense) {
  // A GPTQ/AWQ/ModelOpt checkpoint's weights are not dense: reading them as BF16 would be
  // silently wrong, so the method itself is the error.
  for (const char* m : {"gptq", "awq", "modelopt", "bitsandbytes", "fp8"}) {
    std::vector<std::string> v;
    ResolveLinearFormats({{"quantization_config", {{"quant_method", m}, {"bits", 4}}}}, Layout(),
                         &v);
    ASSERT_EQ(v.size(), 1u) << m;
    EXPECT_NE(v[0].find(std::string("quant_method is \"") + m + "\""), std::string::npos) << v[0];
  }
}

TEST(QuantConfig, UnreadableSchemeIsOneViolationPerGroupSayingWhy) {
  json w8a8 = kFp8;  // INT8 W8A8: int weights and dynamic per-token int inputs
  w8a8["format"] = "int-quantized";
  w8a8["weights"]["type"] = "int";
  w8a8["input_activations"]["type"] = "int";
  std::vector<std::string> v;
  const auto f =
      ResolveLinearFormats(Config({{"w8a8", Group(w8a8, {"Linear"})}}, {"lm_head"}), Layout(), &v);
  ASSERT_EQ(v.size(), 1u);  // not one per Linear
  EXPECT_NE(v[0].find("config group \"w8a8\""), std::string::npos) << v[0];
  EXPECT_NE(v[0].find("it holds 3 Linear(s), e.g. model.layers.0.self_attn.q_proj"),
            std::string::npos)
      << v[0];
  EXPECT_NE(v[0].find("closest is INT8, but input_activations: want none"), std::string::npos)
      << v[0];
  EXPECT_EQ(f.at("model.layers.0.mlp.down_proj").group, "w8a8");
  EXPECT_EQ(f.at("model.layers.0.mlp.down_proj").format, FormatId::kBF16);
}

TEST(QuantConfig, ArithmeticArgumentsDecideTheFormat) {
  // Absent symmetric / dynamic read as compressed-tensors' defaults (true / false).
  json minimal = kNvfp4A16;
  minimal["weights"].erase("symmetric");
  minimal["weights"].erase("dynamic");
  EXPECT_EQ(formats::FormatOfGroup(minimal), FormatId::kNVFP4A16);
  // GPTQ's activation ordering: "static"/"weight" store nothing extra; "group" stores a
  // weight_g_idx permutation we do not apply, so it is not our format.
  json int4 = {{"format", "pack-quantized"},
               {"weights",
                {{"num_bits", 4},
                 {"type", "int"},
                 {"strategy", "group"},
                 {"group_size", 128},
                 {"symmetric", true},
                 {"dynamic", false},
                 {"actorder", "static"}}},
               {"input_activations", nullptr}};
  EXPECT_EQ(formats::FormatOfGroup(int4), FormatId::kINT4);
  int4["weights"]["actorder"] = "group";
  EXPECT_EQ(formats::FormatOfGroup(int4), std::nullopt);
  EXPECT_NE(formats::ExplainGroup(int4).find("weights.actorder: want null, got \"group\""),
            std::string::npos)
      << formats::ExplainGroup(int4);
  // FP8 with static (non-dynamic) per-token inputs is not our dynamic FP8.
  json fp8 = kFp8;
  fp8["input_activations"]["dynamic"] = false;
  EXPECT_EQ(formats::FormatOfGroup(fp8), std::nullopt);
  EXPECT_EQ(formats::FormatOfGroup(kFp8), FormatId::kFP8);
}

TEST(QuantConfig, HostilePatternsAreViolationsNotHangs) {
  // Found by fuzz/fuzz_quant_config (std::regex's recursive backtracking ran for minutes on
  // ".**" style patterns; kept in fuzz/regressions): PCRE2 under a match limit either answers
  // or gives up with a violation naming the pattern. And an invalid pattern is reported once.
  std::vector<std::string> v;
  const std::string slow = "re:(.*)*(.*)*(.*)*(.*)*(.*)*(.*)*(.*)*(.*)*x$";
  const auto f = ResolveLinearFormats(
      Config({{"g", Group(kFp8, {slow, "re:(", "Linear"})}}, json::array()), Layout(), &v);
  EXPECT_EQ(f.at("model.layers.0.mlp.down_proj").format, FormatId::kFP8);  // via "Linear"
  bool invalid = false;
  for (const auto& m : v) invalid |= m.find("\"re:(\" is invalid") != std::string::npos;
  EXPECT_TRUE(invalid);
  EXPECT_LE(v.size(), 2u);  // each bad pattern reported once, not once per Linear
  const std::string path =
      std::string(PQ_SOURCE_DIR) + "/fuzz/regressions/quant_config/regex_backtracking_timeout.json";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  const json hostile = json::parse(in, nullptr, false);
  ASSERT_FALSE(hostile.is_discarded());
  std::vector<std::string> v2;
  ResolveLinearFormats(hostile, Layout(), &v2);  // returns (the test would time out otherwise)
}

}  // namespace
}  // namespace pq::model
