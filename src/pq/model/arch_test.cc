// Layout resolution from tensor names: dense and MoE layers, per-expert vs packed experts,
// text-only vs multimodal prefixes, hybrid layer kinds, the MTP head and the vision tower,
// and the errors for missing, unknown and mixed tensors. Checkpoints are tiny safetensors
// files (every tensor zeros; only names, ranks and dtypes matter to the layout).
#include "pq/model/arch.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace pq::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Tensor {
  std::vector<int64_t> shape;
  DType dtype = DType::kF32;
};
using Tensors = std::map<std::string, Tensor>;

// Writes `tensors` as a checkpoint under a fresh temp dir and opens it.
class ArchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() /
           ("pq_arch_test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  const io::CheckpointReader& Write(const Tensors& tensors) {
    const std::string out = (dir_ / std::to_string(count_++)).string();
    auto w = io::CheckpointWriter::Create(out);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    for (const auto& [name, t] : tensors) {
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      const std::vector<uint8_t> zeros(static_cast<size_t>(n) * DTypeSize(t.dtype));
      Status s = (*w)->AddTensor(name, t.dtype, t.shape, zeros);
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    Status s = (*w)->Commit();
    EXPECT_TRUE(s.ok()) << s.ToString();
    auto r = io::CheckpointReader::Open(out);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    readers_.push_back(std::move(*r));
    return *readers_.back();
  }

  Result<ModelLayout> Resolve(const json& config, const Tensors& tensors) {
    return ResolveLayout(config, Write(tensors));
  }

  fs::path dir_;
  int count_ = 0;
  std::vector<std::unique_ptr<io::CheckpointReader>> readers_;
};

// ---- Tensor sets, named the way Hugging Face checkpoints name them.

void AddLinear(Tensors* t, const std::string& module, int64_t rows = 4, int64_t cols = 4) {
  (*t)[module + ".weight"] = {{rows, cols}};
}
void AddNorm(Tensors* t, const std::string& name) { (*t)[name] = {{4}}; }

void AddAttention(Tensors* t, const std::string& p, bool qk_norm) {
  AddNorm(t, p + "input_layernorm.weight");
  AddNorm(t, p + "post_attention_layernorm.weight");
  for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"})
    AddLinear(t, p + "self_attn." + proj);
  if (qk_norm) {
    AddNorm(t, p + "self_attn.q_norm.weight");
    AddNorm(t, p + "self_attn.k_norm.weight");
  }
}
void AddDenseMlp(Tensors* t, const std::string& p) {
  for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) AddLinear(t, p + "mlp." + proj);
}
void AddGlobals(Tensors* t, const std::string& text_model, bool lm_head) {
  (*t)[text_model + "embed_tokens.weight"] = {{8, 4}};
  AddNorm(t, text_model + "norm.weight");
  if (lm_head) AddLinear(t, "lm_head", 8, 4);
}

json LlamaConfig(int layers, bool tied) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", 4},
          {"intermediate_size", 4},
          {"num_hidden_layers", layers},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 1},
          {"vocab_size", 8},
          {"tie_word_embeddings", tied}};
}

Tensors LlamaTensors(int layers, bool lm_head) {
  Tensors t;
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    AddAttention(&t, p, false);
    AddDenseMlp(&t, p);
  }
  AddGlobals(&t, "model.", lm_head);
  return t;
}

const LinearInfo* FindLinear(const ModelLayout& l, const std::string& module) {
  for (const auto& li : l.linears)
    if (li.module == module) return &li;
  return nullptr;
}

TEST_F(ArchTest, DenseLlamaUnitsAndScaleGroups) {
  auto l = Resolve(LlamaConfig(2, /*tied=*/false), LlamaTensors(2, /*lm_head=*/true));
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->arch->name, "llama");
  EXPECT_EQ(l->num_layers, 2);
  EXPECT_EQ(l->num_experts, 0);
  EXPECT_FALSE(l->has_mtp());
  EXPECT_EQ(l->text_model, "model.");
  ASSERT_EQ(l->linears.size(), 2u * 7 + 1);
  EXPECT_TRUE(l->linears.back().is_lm_head);
  EXPECT_FALSE(l->linears.back().tied);
  EXPECT_EQ(l->linears.back().layer, -1);

  const LinearInfo* q = FindLinear(*l, "model.layers.1.self_attn.q_proj");
  const LinearInfo* k = FindLinear(*l, "model.layers.1.self_attn.k_proj");
  const LinearInfo* o = FindLinear(*l, "model.layers.1.self_attn.o_proj");
  const LinearInfo* gate = FindLinear(*l, "model.layers.1.mlp.gate_proj");
  const LinearInfo* down = FindLinear(*l, "model.layers.1.mlp.down_proj");
  ASSERT_TRUE(q && k && o && gate && down);
  EXPECT_EQ(q->layer, 1);
  EXPECT_EQ(q->unit, "model.layers.1.qkv");
  EXPECT_EQ(k->unit, q->unit);
  EXPECT_EQ(q->scale_group, "model.layers.1.qkv");
  EXPECT_EQ(o->unit, "model.layers.1.self_attn.o_proj");
  EXPECT_EQ(o->scale_group, o->module);
  EXPECT_EQ(gate->unit, "model.layers.1.gate_up");
  EXPECT_EQ(gate->scale_group, "model.layers.1.gate_up");
  EXPECT_EQ(down->unit, down->module);
  EXPECT_EQ(q->rows, 4);
  EXPECT_EQ(q->cols, 4);
  EXPECT_FALSE(q->has_bias);
  EXPECT_TRUE(q->packed_tensor.empty());

  const std::set<std::string> others(l->other_tensors.begin(), l->other_tensors.end());
  EXPECT_TRUE(others.count("model.embed_tokens.weight"));
  EXPECT_TRUE(others.count("model.norm.weight"));
  EXPECT_TRUE(others.count("model.layers.0.input_layernorm.weight"));
  EXPECT_EQ(others.size(), 2u + 2 * 2);
  EXPECT_TRUE(l->always_ignored.empty());
}

TEST_F(ArchTest, TiedHeadIsTheEmbedding) {
  auto l = Resolve(LlamaConfig(1, /*tied=*/true), LlamaTensors(1, /*lm_head=*/false));
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  const LinearInfo& head = l->linears.back();
  EXPECT_EQ(head.module, "lm_head");
  EXPECT_TRUE(head.is_lm_head);
  EXPECT_TRUE(head.tied);
  EXPECT_EQ(head.rows, 8);
  EXPECT_EQ(head.cols, 4);
  // Untied and no lm_head: an error, not a silent tie.
  auto bad = Resolve(LlamaConfig(1, /*tied=*/false), LlamaTensors(1, /*lm_head=*/false));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kNotFound);
  EXPECT_NE(bad.status().message().find("lm_head"), std::string::npos);
}

TEST_F(ArchTest, MissingUnknownAndMisshapenTensorsAreErrors) {
  Tensors missing = LlamaTensors(2, true);
  missing.erase("model.layers.1.mlp.up_proj.weight");
  auto r = Resolve(LlamaConfig(2, false), missing);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("model.layers.1.mlp.up_proj"), std::string::npos)
      << r.status().message();

  Tensors norm_missing = LlamaTensors(1, true);
  norm_missing.erase("model.layers.0.post_attention_layernorm.weight");
  r = Resolve(LlamaConfig(1, false), norm_missing);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("post_attention_layernorm"), std::string::npos);

  Tensors unknown = LlamaTensors(1, true);
  AddNorm(&unknown, "model.layers.0.mystery.weight");
  r = Resolve(LlamaConfig(1, false), unknown);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("model.layers.0.mystery.weight"), std::string::npos);

  // A layer beyond num_hidden_layers is unknown too.
  r = Resolve(LlamaConfig(1, false), LlamaTensors(2, true));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.layers.1."), std::string::npos);

  Tensors flat = LlamaTensors(1, true);
  flat["model.layers.0.self_attn.q_proj.weight"] = {{16}};
  r = Resolve(LlamaConfig(1, false), flat);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("q_proj"), std::string::npos);

  Tensors int_norm = LlamaTensors(1, true);
  int_norm["model.norm.weight"] = {{4}, DType::kI32};
  r = Resolve(LlamaConfig(1, false), int_norm);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("non-float dtype"), std::string::npos);

  Tensors two_d_norm = LlamaTensors(1, true);
  two_d_norm["model.norm.weight"] = {{2, 2}};
  r = Resolve(LlamaConfig(1, false), two_d_norm);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected 1"), std::string::npos);
}

TEST_F(ArchTest, CompressedNonLinearIsNamedWithTheFix) {
  // llm-compressor's model_free_ptq quantizes every 2-D weight a "Linear" target matches, the
  // embedding included unless ignored: NVFP4 (weight_packed) or FP8 (an 8-bit weight beside a
  // weight_scale). Neither vLLM nor we load that; the error names the tensor and the fix.
  Tensors nvfp4 = LlamaTensors(1, true);
  nvfp4.erase("model.embed_tokens.weight");
  nvfp4["model.embed_tokens.weight_packed"] = {{8, 2}, DType::kU8};
  nvfp4["model.embed_tokens.weight_scale"] = {{8, 1}, DType::kF8E4M3};
  Tensors fp8 = LlamaTensors(1, true);
  fp8["model.embed_tokens.weight"] = {{8, 4}, DType::kF8E4M3};
  fp8["model.embed_tokens.weight_scale"] = {{8, 1}, DType::kBF16};
  for (const Tensors& t : {nvfp4, fp8}) {
    auto r = Resolve(LlamaConfig(1, false), t);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("tensor \"model.embed_tokens.weight\" is stored "
                                        "compressed"),
              std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find("add \"model.embed_tokens\" to ignore"), std::string::npos);
  }
}

TEST_F(ArchTest, Qwen2BiasesAreRequiredAndAttached) {
  json c = LlamaConfig(1, false);
  c["architectures"] = {"Qwen2ForCausalLM"};
  c["model_type"] = "qwen2";
  Tensors t = LlamaTensors(1, true);
  auto r = Resolve(c, t);
  ASSERT_FALSE(r.ok());  // q/k/v biases are required for Qwen2
  EXPECT_NE(r.status().message().find("q_proj.bias"), std::string::npos) << r.status().message();
  for (const char* proj : {"q_proj", "k_proj", "v_proj"})
    AddNorm(&t, std::string("model.layers.0.self_attn.") + proj + ".bias");
  r = Resolve(c, t);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(FindLinear(*r, "model.layers.0.self_attn.q_proj")->has_bias);
  EXPECT_FALSE(FindLinear(*r, "model.layers.0.self_attn.o_proj")->has_bias);
}

// ---- MoE: per-expert 2-D tensors vs transformers v5 packed 3-D experts.

constexpr int kExperts = 3;

json MoeConfig(bool v5) {
  json c = {{"architectures", {"Qwen3MoeForCausalLM"}},
            {"model_type", "qwen3_moe"},
            {"hidden_size", 4},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 2},
            {"num_key_value_heads", 1},
            {"vocab_size", 8},
            {"num_experts_per_tok", 2},
            {"moe_intermediate_size", 2},
            {"mlp_only_layers", json::array({0})}};
  c[v5 ? "num_local_experts" : "num_experts"] = kExperts;
  return c;
}

// Layer 0 dense (mlp_only_layers), layer 1 MoE with experts [I=2, D=4].
Tensors MoeTensors(bool packed) {
  Tensors t;
  for (int l = 0; l < 2; ++l) AddAttention(&t, "model.layers." + std::to_string(l) + ".", true);
  AddDenseMlp(&t, "model.layers.0.");
  t["model.layers.1.mlp.gate.weight"] = {{kExperts, 4}};
  if (packed) {
    t["model.layers.1.mlp.experts.gate_up_proj"] = {{kExperts, 4, 4}};  // [E, 2I, D]
    t["model.layers.1.mlp.experts.down_proj"] = {{kExperts, 4, 2}};     // [E, D, I]
  } else {
    for (int e = 0; e < kExperts; ++e) {
      const std::string p = "model.layers.1.mlp.experts." + std::to_string(e) + ".";
      AddLinear(&t, p + "gate_proj", 2, 4);
      AddLinear(&t, p + "up_proj", 2, 4);
      AddLinear(&t, p + "down_proj", 4, 2);
    }
  }
  AddGlobals(&t, "model.", true);
  return t;
}

TEST_F(ArchTest, PerExpertAndPackedExpertsResolveToTheSameLinears) {
  auto flat = Resolve(MoeConfig(false), MoeTensors(false));
  ASSERT_TRUE(flat.ok()) << flat.status().ToString();
  auto packed = Resolve(MoeConfig(true), MoeTensors(true));
  ASSERT_TRUE(packed.ok()) << packed.status().ToString();
  for (const ModelLayout* l : {&*flat, &*packed}) {
    EXPECT_EQ(l->num_experts, kExperts);
    EXPECT_EQ(l->always_ignored, std::vector<std::string>{"model.layers.1.mlp.gate"});
    // Dense layer 0: its own MLP; MoE layer 1: no dense MLP.
    EXPECT_NE(FindLinear(*l, "model.layers.0.mlp.gate_proj"), nullptr);
    EXPECT_EQ(FindLinear(*l, "model.layers.1.mlp.gate_proj"), nullptr);
  }
  std::map<std::string, const LinearInfo*> by_module;
  for (const auto& li : flat->linears) by_module[li.module] = &li;
  ASSERT_EQ(flat->linears.size(), packed->linears.size());
  for (const auto& p : packed->linears) {
    SCOPED_TRACE(p.module);
    ASSERT_TRUE(by_module.count(p.module));
    const LinearInfo& f = *by_module[p.module];
    EXPECT_EQ(p.layer, f.layer);
    EXPECT_EQ(p.rows, f.rows);
    EXPECT_EQ(p.cols, f.cols);
    EXPECT_EQ(p.unit, f.unit);
    EXPECT_EQ(p.scale_group, f.scale_group);
    EXPECT_TRUE(f.packed_tensor.empty());
  }
  const LinearInfo* up = FindLinear(*packed, "model.layers.1.mlp.experts.2.up_proj");
  const LinearInfo* down = FindLinear(*packed, "model.layers.1.mlp.experts.2.down_proj");
  ASSERT_TRUE(up && down);
  EXPECT_EQ(up->unit, "model.layers.1.experts");  // all experts of a layer: one decision
  EXPECT_EQ(up->scale_group, "model.layers.1.mlp.experts.2.gate_up");  // gate/up of one expert
  EXPECT_EQ(down->scale_group, down->module);
  EXPECT_EQ(up->packed_tensor, "model.layers.1.mlp.experts.gate_up_proj");
  EXPECT_EQ(up->packed_expert, 2);
  EXPECT_EQ(up->packed_row, 2);  // the up rows follow the I gate rows
  EXPECT_EQ(FindLinear(*packed, "model.layers.1.mlp.experts.2.gate_proj")->packed_row, 0);
  EXPECT_EQ(down->packed_tensor, "model.layers.1.mlp.experts.down_proj");
}

TEST_F(ArchTest, BadPackedExpertsAreErrors) {
  Tensors mixed = MoeTensors(true);
  AddLinear(&mixed, "model.layers.1.mlp.experts.0.gate_proj", 2, 4);
  auto r = Resolve(MoeConfig(true), mixed);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("packed and per-expert tensors mixed"), std::string::npos)
      << r.status().message();

  Tensors wrong_e = MoeTensors(true);
  wrong_e["model.layers.1.mlp.experts.down_proj"] = {{kExperts + 1, 4, 2}};
  wrong_e["model.layers.1.mlp.experts.gate_up_proj"] = {{kExperts + 1, 4, 4}};
  r = Resolve(MoeConfig(true), wrong_e);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("E = num_experts"), std::string::npos);

  Tensors half = MoeTensors(true);
  half.erase("model.layers.1.mlp.experts.down_proj");
  EXPECT_FALSE(Resolve(MoeConfig(true), half).ok());

  json no_experts = MoeConfig(false);
  no_experts.erase("num_experts");
  EXPECT_FALSE(Resolve(no_experts, MoeTensors(false)).ok());
}

// ---- Qwen3.5: hybrid layers, multimodal vs text-only prefixes, MTP, vision tower.

json Qwen35Config(bool multimodal, int mtp_layers) {
  json text = {{"hidden_size", 4},
               {"intermediate_size", 4},
               {"num_hidden_layers", 2},
               {"num_attention_heads", 2},
               {"num_key_value_heads", 1},
               {"head_dim", 4},
               {"vocab_size", 8},
               {"layer_types", {"linear_attention", "full_attention"}},
               {"linear_num_key_heads", 1},
               {"linear_num_value_heads", 2},
               {"linear_key_head_dim", 2},
               {"linear_value_head_dim", 2},
               {"linear_conv_kernel_dim", 4},
               {"mtp_num_hidden_layers", mtp_layers},
               {"tie_word_embeddings", true}};
  if (!multimodal) {
    text["architectures"] = {"Qwen3_5ForCausalLM"};
    return text;
  }
  return {{"architectures", {"Qwen3_5ForConditionalGeneration"}},
          {"model_type", "qwen3_5"},
          {"text_config", text},
          {"vision_config", {{"depth", 2}}}};
}

void AddHybridLayer(Tensors* t, const std::string& p, bool linear_attention) {
  AddNorm(t, p + "input_layernorm.weight");
  AddNorm(t, p + "post_attention_layernorm.weight");
  if (linear_attention) {
    (*t)[p + "linear_attn.conv1d.weight"] = {{8, 1, 4}};
    AddNorm(t, p + "linear_attn.A_log");
    AddNorm(t, p + "linear_attn.dt_bias");
    AddNorm(t, p + "linear_attn.norm.weight");
    for (const char* m : {"out_proj", "in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a"})
      AddLinear(t, p + "linear_attn." + m);
  } else {
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "o_proj"})
      AddLinear(t, p + "self_attn." + proj);
    AddNorm(t, p + "self_attn.q_norm.weight");
    AddNorm(t, p + "self_attn.k_norm.weight");
  }
  AddDenseMlp(t, p);
}

Tensors Qwen35Tensors(const std::string& text_model, bool mtp, bool vision) {
  Tensors t;
  AddHybridLayer(&t, text_model + "layers.0.", true);
  AddHybridLayer(&t, text_model + "layers.1.", false);
  AddGlobals(&t, text_model, false);
  if (mtp) {
    AddLinear(&t, "mtp.fc", 4, 8);
    for (const char* n : {"pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm"})
      AddNorm(&t, std::string("mtp.") + n + ".weight");
    AddHybridLayer(&t, "mtp.layers.0.", false);
  }
  if (vision) {
    for (int b = 0; b < 2; ++b) {
      const std::string p = "model.visual.blocks." + std::to_string(b) + ".";
      for (const char* n : {"norm1", "norm2"}) {
        AddNorm(&t, p + n + ".weight");
        AddNorm(&t, p + n + ".bias");
      }
      for (const char* m : {"attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2"}) {
        AddLinear(&t, p + m);
        AddNorm(&t, p + m + ".bias");
      }
    }
    t["model.visual.patch_embed.proj.weight"] = {{4, 3, 2, 2, 2}};
    AddNorm(&t, "model.visual.merger.norm.weight");
    AddNorm(&t, "model.visual.merger.norm.bias");
    for (const char* m : {"linear_fc1", "linear_fc2"}) {
      AddLinear(&t, std::string("model.visual.merger.") + m);
      AddNorm(&t, std::string("model.visual.merger.") + m + ".bias");
    }
  }
  return t;
}

TEST_F(ArchTest, HybridLayersFollowLayerTypes) {
  auto l = Resolve(Qwen35Config(true, 0), Qwen35Tensors("model.language_model.", false, false));
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->arch->name, "qwen3_5");
  EXPECT_EQ(l->text_model, "model.language_model.");
  const std::string p = "model.language_model.layers.";
  EXPECT_NE(FindLinear(*l, p + "0.linear_attn.in_proj_qkv"), nullptr);
  EXPECT_EQ(FindLinear(*l, p + "0.self_attn.q_proj"), nullptr);
  EXPECT_NE(FindLinear(*l, p + "1.self_attn.q_proj"), nullptr);
  EXPECT_EQ(FindLinear(*l, p + "1.linear_attn.out_proj"), nullptr);
  // vLLM fuses in_proj_qkv + in_proj_z and in_proj_b + in_proj_a.
  EXPECT_EQ(FindLinear(*l, p + "0.linear_attn.in_proj_z")->unit, p + "0.qkvz");
  EXPECT_EQ(FindLinear(*l, p + "0.linear_attn.in_proj_a")->unit, p + "0.ba");
  EXPECT_EQ(FindLinear(*l, p + "0.linear_attn.out_proj")->unit, p + "0.linear_attn.out_proj");
  EXPECT_TRUE(l->linears.back().tied);

  // Attention tensors on a linear-attention layer are not in the tensor list.
  Tensors wrong = Qwen35Tensors("model.language_model.", false, false);
  AddLinear(&wrong, p + "0.self_attn.q_proj");
  auto r = Resolve(Qwen35Config(true, 0), wrong);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(p + "0.self_attn.q_proj"), std::string::npos);
}

TEST_F(ArchTest, TextOnlyExportsUseTheModelPrefix) {
  auto l = Resolve(Qwen35Config(false, 0), Qwen35Tensors("model.", false, false));
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->text_model, "model.");
  EXPECT_EQ(l->LayerPrefix(1), "model.layers.1.");
  EXPECT_NE(FindLinear(*l, "model.layers.1.self_attn.q_proj"), nullptr);
  auto mm = Resolve(Qwen35Config(true, 0), Qwen35Tensors("model.language_model.", false, false));
  ASSERT_TRUE(mm.ok());
  EXPECT_EQ(mm->LayerPrefix(1), "model.language_model.layers.1.");
}

TEST_F(ArchTest, MtpHeadIsLayerL) {
  auto l = Resolve(Qwen35Config(true, 1), Qwen35Tensors("model.language_model.", true, false));
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->mtp_layers, 1);
  EXPECT_TRUE(l->has_mtp());
  EXPECT_EQ(l->LayerPrefix(2), "mtp.layers.0.");
  const LinearInfo* fc = FindLinear(*l, "mtp.fc");
  const LinearInfo* q = FindLinear(*l, "mtp.layers.0.self_attn.q_proj");
  const LinearInfo* body = FindLinear(*l, "model.language_model.layers.1.self_attn.q_proj");
  ASSERT_TRUE(fc && q && body);
  EXPECT_TRUE(fc->is_mtp);
  EXPECT_EQ(fc->layer, 2);
  EXPECT_TRUE(q->is_mtp);
  EXPECT_EQ(q->layer, 2);
  EXPECT_EQ(q->unit, "mtp.layers.0.qkv");
  EXPECT_FALSE(body->is_mtp);
  // MTP layers are attention layers even where layer_types would say otherwise.
  EXPECT_EQ(FindLinear(*l, "mtp.layers.0.linear_attn.out_proj"), nullptr);

  // Declared but stripped from the checkpoint: no MTP head.
  auto stripped =
      Resolve(Qwen35Config(true, 1), Qwen35Tensors("model.language_model.", false, false));
  ASSERT_TRUE(stripped.ok()) << stripped.status().ToString();
  EXPECT_EQ(stripped->mtp_layers, 0);
  // Partially present: an error naming what is missing.
  Tensors partial = Qwen35Tensors("model.language_model.", true, false);
  partial.erase("mtp.norm.weight");
  auto r = Resolve(Qwen35Config(true, 1), partial);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("mtp.norm.weight"), std::string::npos);
  // Present but not declared in the config: unknown tensors.
  EXPECT_FALSE(
      Resolve(Qwen35Config(true, 0), Qwen35Tensors("model.language_model.", true, false)).ok());
}

TEST_F(ArchTest, VisionTowerLinearsAreVisual) {
  auto l = Resolve(Qwen35Config(true, 0), Qwen35Tensors("model.language_model.", false, true));
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  int visual = 0;
  for (const auto& li : l->linears) {
    if (!li.is_visual) continue;
    ++visual;
    EXPECT_EQ(li.layer, -1) << li.module;
    EXPECT_TRUE(li.has_bias) << li.module;
    EXPECT_EQ(li.module.rfind("model.visual.", 0), 0u) << li.module;
  }
  EXPECT_EQ(visual, 2 * 4 + 2);
  // A block beyond vision_config.depth is unknown.
  Tensors extra = Qwen35Tensors("model.language_model.", false, true);
  AddLinear(&extra, "model.visual.blocks.2.attn.qkv");
  EXPECT_FALSE(Resolve(Qwen35Config(true, 0), extra).ok());
}

TEST(DetectArchitecture, ByArchitecturesThenModelType) {
  auto a = DetectArchitecture({{"architectures", {"Foo", "Qwen3MoeForCausalLM"}}});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->name, "qwen3_moe");
  a = DetectArchitecture({{"architectures", {"Qwen3_5MoeForConditionalGeneration"}}});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->name, "qwen3_5_moe");
  EXPECT_EQ((*a)->text_model, "model.language_model.");
  a = DetectArchitecture({{"model_type", "qwen2"}});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->name, "qwen2");
  auto bad = DetectArchitecture({{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("gpt2"), std::string::npos);
  EXPECT_NE(bad.status().message().find(ArchitectureNameList()), std::string::npos);
}

TEST(ArchTables, EveryRowIsConsistent) {
  std::set<std::string_view> names;
  for (const ArchDescriptor& a : AllArchitectures()) {
    SCOPED_TRACE(std::string(a.name));
    EXPECT_TRUE(names.insert(a.name).second);
    EXPECT_FALSE(a.hf_architectures.empty());
    std::set<std::string_view> patterns;
    for (const auto* list : {&a.global_tensors, &a.layer_tensors, &a.expert_tensors, &a.mtp_tensors,
                             &a.vision_block_tensors, &a.vision_tensors}) {
      for (const TensorSpec& s : *list) {
        EXPECT_TRUE(patterns.insert(s.pattern).second) << s.pattern;
        const bool linear = s.role == TensorRole::kLinear || s.role == TensorRole::kLmHead ||
                            s.role == TensorRole::kVisualLinear;
        // Only Linears are coupled or share scales.
        if (!linear) {
          EXPECT_TRUE(s.sibling.empty() && s.scale_sharing.empty()) << s.pattern;
        }
        // Scale sharing is never coarser than the decision unit.
        if (!s.scale_sharing.empty()) {
          EXPECT_FALSE(s.sibling.empty()) << s.pattern;
        }
      }
    }
    for (const TensorSpec& s : a.expert_tensors)
      EXPECT_NE(s.pattern.find("{E}"), std::string_view::npos) << s.pattern;
    for (const TensorSpec& s : a.vision_block_tensors)
      EXPECT_NE(s.pattern.find("{L}"), std::string_view::npos) << s.pattern;
  }
  EXPECT_EQ(names.size(), 7u);
}

}  // namespace
}  // namespace pq::model
