// config.json parsing: Hub (transformers 4.x) and transformers v5 spellings, text_config of
// multimodal checkpoints, RoPE (theta, partial rotary, llama3 scaling), MoE layer selection,
// hybrid layer_types, and bad configs rejected with the key named.
#include "pq/model/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "pq/model/arch.h"

namespace pq::model {
namespace {

using nlohmann::json;

json Llama() {
  return {{"hidden_size", 64},        {"intermediate_size", 128}, {"num_hidden_layers", 3},
          {"num_attention_heads", 8}, {"num_key_value_heads", 2}, {"vocab_size", 100},
          {"rms_norm_eps", 1e-5},     {"rope_theta", 500000.0},   {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

void ExpectError(const Result<ModelConfig>& r, StatusCode code, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "expected an error naming " << needle;
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

TEST(ModelConfig, HubLlama) {
  auto c = ParseModelConfig(Llama(), "llama");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, "llama");
  EXPECT_EQ(c->hidden, 64);
  EXPECT_EQ(c->intermediate, 128);
  EXPECT_EQ(c->num_layers, 3);
  EXPECT_EQ(c->heads, 8);
  EXPECT_EQ(c->kv_heads, 2);
  EXPECT_EQ(c->head_dim, 8);  // hidden / heads when head_dim is absent
  EXPECT_EQ(c->rot_dim, 8);
  EXPECT_EQ(c->vocab, 100);
  EXPECT_EQ(c->rms_eps, 1e-5);
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->bos_id, 1);
  EXPECT_EQ(c->eos_id, 2);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_EQ(c->num_experts, 0);
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_EQ(c->norm_offset, 0.0f);
  EXPECT_TRUE(c->linear_attention.empty());
  EXPECT_FALSE(c->IsLinearAttention(0));
  EXPECT_EQ(c->q_dim(), 64);
  EXPECT_EQ(c->kv_dim(), 16);
  EXPECT_EQ(c->q_proj_rows(), 64);
  ASSERT_EQ(c->inv_freq.size(), 4u);
  for (size_t i = 0; i < 4; ++i)
    EXPECT_DOUBLE_EQ(c->inv_freq[i], 1.0 / std::pow(500000.0, 2.0 * static_cast<double>(i) / 8.0))
        << i;
}

TEST(ModelConfig, DefaultsAndPerArchitectureFlags) {
  json j = Llama();
  for (const char* k : {"num_key_value_heads", "rms_norm_eps", "rope_theta", "bos_token_id"})
    j.erase(k);
  j["head_dim"] = 16;
  j["attention_bias"] = true;
  j["tie_word_embeddings"] = true;
  auto c = ParseModelConfig(j, "llama");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->kv_heads, 8);   // no num_key_value_heads: multi-head attention
  EXPECT_EQ(c->head_dim, 16);  // explicit head_dim wins over hidden / heads
  EXPECT_EQ(c->q_dim(), 128);
  EXPECT_EQ(c->rms_eps, 1e-6);
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->bos_id, -1);
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_TRUE(c->tie_word_embeddings);
  j.erase("attention_bias");
  auto q2 = ParseModelConfig(j, "qwen2");
  ASSERT_TRUE(q2.ok());
  EXPECT_TRUE(q2->qkv_bias);  // Qwen2 always has q/k/v biases
  EXPECT_FALSE(q2->qk_norm);
  auto q3 = ParseModelConfig(j, "qwen3");
  ASSERT_TRUE(q3.ok());
  EXPECT_TRUE(q3->qk_norm);
  EXPECT_FALSE(q3->qkv_bias);
}

TEST(ModelConfig, Llama3RopeScaling) {
  json j = Llama();
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  j["hidden_size"] = 512;  // head_dim 64: 32 frequencies spanning all three bands
  auto scaled = ParseModelConfig(j, "llama");
  ASSERT_TRUE(scaled.ok()) << scaled.status().ToString();
  j.erase("rope_scaling");
  auto plain = ParseModelConfig(j, "llama");
  ASSERT_TRUE(plain.ok());
  ASSERT_EQ(scaled->inv_freq.size(), 32u);
  int kept = 0, divided = 0, smoothed = 0;
  for (size_t i = 0; i < 32; ++i) {
    const double f = plain->inv_freq[i], g = scaled->inv_freq[i];
    const double wavelen = 2 * std::numbers::pi / f;
    if (wavelen < 8192.0 / 4.0) {
      EXPECT_EQ(g, f) << i;  // high frequencies unchanged
      ++kept;
    } else if (wavelen > 8192.0) {
      EXPECT_DOUBLE_EQ(g, f / 8.0) << i;  // low frequencies divided by the factor
      ++divided;
    } else {
      EXPECT_LT(g, f) << i;  // in between: interpolated
      EXPECT_GT(g, f / 8.0) << i;
      ++smoothed;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(smoothed, 0);

  j["rope_scaling"] = {{"type", "default"}};
  auto def = ParseModelConfig(j, "llama");
  ASSERT_TRUE(def.ok());
  EXPECT_EQ(def->inv_freq, plain->inv_freq);
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kUnimplemented, "yarn");
}

// transformers v5 / Qwen3.5: the text model's keys under text_config, RoPE under
// rope_parameters, experts as num_local_experts.
TEST(ModelConfig, V5MultimodalConfig) {
  const json text = {
      {"hidden_size", 32},
      {"num_hidden_layers", 4},
      {"num_attention_heads", 4},
      {"num_key_value_heads", 2},
      {"head_dim", 16},
      {"vocab_size", 50},
      {"num_local_experts", 8},
      {"num_experts_per_tok", 2},
      {"moe_intermediate_size", 8},
      {"shared_expert_intermediate_size", 8},
      {"rope_parameters",
       {{"rope_type", "default"}, {"rope_theta", 10000000.0}, {"partial_rotary_factor", 0.25}}},
      {"linear_num_key_heads", 2},
      {"linear_num_value_heads", 4},
      {"linear_key_head_dim", 8},
      {"linear_value_head_dim", 8},
      {"linear_conv_kernel_dim", 4},
      {"mtp_num_hidden_layers", 1}};
  const json whole = {{"architectures", {"Qwen3_5MoeForConditionalGeneration"}},
                      {"text_config", text},
                      {"vision_config", {{"depth", 2}}},
                      {"hidden_size", 999}};  // the outer keys are not the text model's
  EXPECT_EQ(&TextConfig(whole), &whole["text_config"]);
  EXPECT_EQ(&TextConfig(text), &text);
  auto c = ParseModelConfig(whole, "qwen3_5_moe");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->hidden, 32);
  EXPECT_EQ(c->num_experts, 8);
  EXPECT_EQ(c->top_k, 2);
  EXPECT_TRUE(c->norm_topk_prob);  // Qwen3.5 always renormalises
  EXPECT_EQ(c->shared_expert_intermediate, 8);
  EXPECT_EQ(c->rope_theta, 10000000.0);
  EXPECT_EQ(c->rot_dim, 4);  // 16 * 0.25
  EXPECT_EQ(c->inv_freq.size(), 2u);
  EXPECT_EQ(c->norm_offset, 1.0f);
  EXPECT_TRUE(c->attn_output_gate);
  EXPECT_EQ(c->q_proj_rows(), 2 * 4 * 16);
  EXPECT_FALSE(c->lin_fused_naming);
  EXPECT_EQ(c->mtp_layers, 1);
  EXPECT_EQ(c->lin_key_dim(), 16);
  EXPECT_EQ(c->lin_value_dim(), 32);
  EXPECT_EQ(c->lin_conv_dim(), 64);
  // No layer_types: full attention every 4th layer.
  EXPECT_EQ(c->linear_attention, (std::vector<bool>{true, true, true, false}));
  for (int l = 0; l < 4; ++l) EXPECT_TRUE(c->IsMoeLayer(l)) << l;
  // Hub spelling of the same model: num_experts, top-level rope_theta / partial_rotary_factor.
  json hub = text;
  hub.erase("num_local_experts");
  hub.erase("rope_parameters");
  hub["num_experts"] = 8;
  hub["rope_theta"] = 10000000.0;
  hub["partial_rotary_factor"] = 0.25;
  auto h = ParseModelConfig(hub, "qwen3_5_moe");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->num_experts, c->num_experts);
  EXPECT_EQ(h->rot_dim, c->rot_dim);
  EXPECT_EQ(h->inv_freq, c->inv_freq);
}

json Hybrid() {
  return {{"hidden_size", 16},          {"num_hidden_layers", 3},
          {"num_attention_heads", 2},   {"head_dim", 8},
          {"vocab_size", 10},           {"intermediate_size", 32},
          {"linear_num_key_heads", 1},  {"linear_num_value_heads", 2},
          {"linear_key_head_dim", 4},   {"linear_value_head_dim", 4},
          {"linear_conv_kernel_dim", 4}};
}

TEST(ModelConfig, LayerTypes) {
  json j = Hybrid();
  j["layer_types"] = {"full_attention", "linear_attention", "full_attention"};
  auto c = ParseModelConfig(j, "qwen3_5");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->linear_attention, (std::vector<bool>{false, true, false}));
  EXPECT_TRUE(c->IsLinearAttention(1));
  EXPECT_FALSE(c->IsLinearAttention(3));  // MTP layers (index L) are attention layers
  EXPECT_FALSE(c->IsLinearAttention(-1));

  j.erase("layer_types");
  j["full_attention_interval"] = 2;
  c = ParseModelConfig(j, "qwen3_5");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->linear_attention, (std::vector<bool>{true, false, true}));

  j["full_attention_interval"] = 0;
  ExpectError(ParseModelConfig(j, "qwen3_5"), StatusCode::kInvalidArgument,
              "full_attention_interval");
  j.erase("full_attention_interval");
  j["layer_types"] = {"full_attention", "linear_attention"};
  ExpectError(ParseModelConfig(j, "qwen3_5"), StatusCode::kInvalidArgument, "layer_types");
  j["layer_types"] = {"full_attention", "sliding_attention", "full_attention"};
  ExpectError(ParseModelConfig(j, "qwen3_5"), StatusCode::kInvalidArgument,
              "layer_types[1] = \"sliding_attention\"");
  j["layer_types"] = "full_attention";
  ExpectError(ParseModelConfig(j, "qwen3_5"), StatusCode::kInvalidArgument, "layer_types");
}

TEST(ModelConfig, QwenNextNaming) {
  json j = Hybrid();
  j["num_experts"] = 4;
  j["num_experts_per_tok"] = 1;
  j["moe_intermediate_size"] = 4;
  j["shared_expert_intermediate_size"] = 4;
  j["norm_topk_prob"] = true;
  j["num_nextn_predict_layers"] = 1;
  auto c = ParseModelConfig(j, "qwen3_next");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->lin_fused_naming);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_EQ(c->mtp_layers, 1);
}

TEST(ModelConfig, MoeLayerSelection) {
  json j = Llama();
  j.erase("intermediate_size");  // not required for MoE architectures
  j["num_experts"] = 4;
  j["num_experts_per_tok"] = 2;
  j["moe_intermediate_size"] = 16;
  j["num_hidden_layers"] = 6;
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = json::array({3});
  auto c = ParseModelConfig(j, "qwen3_moe");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->norm_topk_prob);
  EXPECT_TRUE(c->qk_norm);
  std::vector<bool> moe;
  for (int l = 0; l < 6; ++l) moe.push_back(c->IsMoeLayer(l));
  // Every second layer (1, 3, 5), except the mlp-only layer 3.
  EXPECT_EQ(moe, (std::vector<bool>{false, true, false, false, false, true}));

  j["num_experts_per_tok"] = 5;
  ExpectError(ParseModelConfig(j, "qwen3_moe"), StatusCode::kInvalidArgument,
              "num_experts_per_tok");
  j["num_experts_per_tok"] = 2;
  j.erase("moe_intermediate_size");
  ExpectError(ParseModelConfig(j, "qwen3_moe"), StatusCode::kInvalidArgument,
              "moe_intermediate_size");
}

TEST(ModelConfig, BadConfigsNameTheKey) {
  json j = Llama();
  j.erase("hidden_size");
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument,
              "missing \"hidden_size\"");
  j = Llama();
  j["num_hidden_layers"] = -2;
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument,
              "\"num_hidden_layers\" must be a non-negative integer");
  j = Llama();
  j["vocab_size"] = "100";
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument, "vocab_size");
  j = Llama();
  j["num_key_value_heads"] = 3;
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument, "num_key_value_heads");
  j = Llama();
  j["num_attention_heads"] = 0;
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument, "num_attention_heads");
  j = Llama();
  j["head_dim"] = 7;
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument, "head_dim");
  j = Llama();
  j["rope_theta"] = "big";
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument, "rope_theta");
  j = Llama();
  j["partial_rotary_factor"] = 1.5;
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument, "partial_rotary_factor");
  j = Llama();
  j.erase("intermediate_size");
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument, "intermediate_size");

  json h = Hybrid();
  h["linear_num_key_heads"] = 2;
  h["linear_num_value_heads"] = 3;  // not a multiple of the key heads
  ExpectError(ParseModelConfig(h, "qwen3_5"), StatusCode::kInvalidArgument,
              "linear_num_value_heads");
  h = Hybrid();
  h.erase("linear_conv_kernel_dim");
  ExpectError(ParseModelConfig(h, "qwen3_5"), StatusCode::kInvalidArgument,
              "linear_conv_kernel_dim");
  h = Hybrid();
  h["mtp_num_hidden_layers"] = 2;
  ExpectError(ParseModelConfig(h, "qwen3_5"), StatusCode::kUnimplemented, "MTP layers");
}

// Hardening: values of the wrong JSON type are errors naming the key, never an uncaught
// nlohmann::type_error (which aborted every command before).
TEST(ModelConfig, WrongJsonTypesNameTheKey) {
  const std::vector<std::pair<std::string, json>> cases = {{"attention_bias", 0.0},
                                                           {"tie_word_embeddings", "yes"},
                                                           {"norm_topk_prob", 1},
                                                           {"attn_output_gate", "true"}};
  for (const auto& [key, value] : cases) {
    json j = key == "attn_output_gate" ? Hybrid() : Llama();
    j[key] = value;
    const std::string arch = key == "attn_output_gate" ? "qwen3_5"
                             : key == "norm_topk_prob" ? "qwen3_moe"
                                                       : "llama";
    if (arch == "qwen3_moe") {
      j["num_experts"] = 4;
      j["num_experts_per_tok"] = 2;
      j["moe_intermediate_size"] = 32;
    }
    ExpectError(ParseModelConfig(j, arch), StatusCode::kInvalidArgument, "\"" + key + "\"");
  }
  json j = Llama();
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", "8"}};
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument, "factor");
  j["rope_scaling"] = {{"rope_type", 3}};
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument, "rope_type");
  j["rope_scaling"] = {
      {"rope_type", "llama3"}, {"low_freq_factor", 4.0}, {"high_freq_factor", 1.0}};
  ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument, "low_freq_factor");
  // Absurd sizes and values that would make every result NaN.
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, json>>{{"head_dim", int64_t{1} << 31},
                                                 {"hidden_size", int64_t{1} << 62},
                                                 {"rope_theta", 0.0},
                                                 {"rope_theta", -5.0},
                                                 {"rms_norm_eps", -1e-6}}) {
    j = Llama();
    j[key] = value;
    ExpectError(ParseModelConfig(j, "llama"), StatusCode::kInvalidArgument, key);
  }
  // Architecture detection: a non-object config or a non-string model_type.
  EXPECT_EQ(DetectArchitecture(json::array()).status().code(), StatusCode::kInvalidArgument);
  auto d = DetectArchitecture(json{{"model_type", 5}});
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("model_type"), std::string::npos);
}

}  // namespace
}  // namespace pq::model
