// The per-architecture tensor tables (architectures.md): one row per tensor pattern, written
// with designated initializers so every field is named. Layout resolution over these tables
// is arch.cc; reading config.json and dense Linears is arch_io.cc.
#include <string>
#include <vector>

#include "pq/model/arch.h"

namespace pq::model {
namespace {

using R = TensorRole;
using K = LayerKind;

// Attention block of a Llama-family layer (with its two norms).
std::vector<TensorSpec> AttentionLayer(bool qkv_bias, bool qk_norm) {
  std::vector<TensorSpec> t = {
      {.pattern = "input_layernorm.weight", .role = R::kNorm},
      {.pattern = "post_attention_layernorm.weight", .role = R::kNorm},
      {.pattern = "self_attn.q_proj.weight",
       .role = R::kLinear,
       .sibling = "qkv",
       .scale_sharing = "qkv"},
      {.pattern = "self_attn.k_proj.weight",
       .role = R::kLinear,
       .sibling = "qkv",
       .scale_sharing = "qkv"},
      {.pattern = "self_attn.v_proj.weight",
       .role = R::kLinear,
       .sibling = "qkv",
       .scale_sharing = "qkv"},
      {.pattern = "self_attn.o_proj.weight", .role = R::kLinear},
      {.pattern = "self_attn.o_proj.bias", .role = R::kBias, .required = false},
      {.pattern = "self_attn.q_proj.bias", .role = R::kBias, .required = qkv_bias},
      {.pattern = "self_attn.k_proj.bias", .role = R::kBias, .required = qkv_bias},
      {.pattern = "self_attn.v_proj.bias", .role = R::kBias, .required = qkv_bias},
      // Old Llama checkpoints carry the rotary table as a buffer; passed through.
      {.pattern = "self_attn.rotary_emb.inv_freq", .role = R::kBuffer, .required = false},
  };
  if (qk_norm) {
    t.push_back({.pattern = "self_attn.q_norm.weight", .role = R::kNorm});
    t.push_back({.pattern = "self_attn.k_norm.weight", .role = R::kNorm});
  }
  return t;
}

// SwiGLU MLP of a dense layer (biases only with Llama's mlp_bias).
std::vector<TensorSpec> DenseMlp() {
  return {
      {.pattern = "mlp.gate_proj.weight",
       .role = R::kLinear,
       .sibling = "gate_up",
       .scale_sharing = "gate_up",
       .kind = K::kDenseMlp},
      {.pattern = "mlp.up_proj.weight",
       .role = R::kLinear,
       .sibling = "gate_up",
       .scale_sharing = "gate_up",
       .kind = K::kDenseMlp},
      {.pattern = "mlp.down_proj.weight", .role = R::kLinear, .kind = K::kDenseMlp},
      {.pattern = "mlp.gate_proj.bias", .role = R::kBias, .required = false, .kind = K::kDenseMlp},
      {.pattern = "mlp.up_proj.bias", .role = R::kBias, .required = false, .kind = K::kDenseMlp},
      {.pattern = "mlp.down_proj.bias", .role = R::kBias, .required = false, .kind = K::kDenseMlp},
  };
}

// Per-expert 2-D tensors of an MoE layer (packed 3-D ones are detected by name).
std::vector<TensorSpec> Experts() {
  return {
      {.pattern = "mlp.experts.{E}.gate_proj.weight",
       .role = R::kLinear,
       .sibling = "experts",
       .scale_sharing = "gate_up",
       .kind = K::kMoe},
      {.pattern = "mlp.experts.{E}.up_proj.weight",
       .role = R::kLinear,
       .sibling = "experts",
       .scale_sharing = "gate_up",
       .kind = K::kMoe},
      {.pattern = "mlp.experts.{E}.down_proj.weight",
       .role = R::kLinear,
       .sibling = "experts",
       .kind = K::kMoe},
  };
}

// The MoE router of a Qwen3-MoE layer.
std::vector<TensorSpec> Router() {
  return {{.pattern = "mlp.gate.weight", .role = R::kRouter, .kind = K::kMoe}};
}

// Qwen3-Next / 3.5 / 3.6 layer (architectures.md §2.5-§2.6): gated attention or Gated
// DeltaNet per layer_types, (1+w) norms, MoE with a shared expert or a dense MLP.
std::vector<TensorSpec> HybridLayer(bool fused_linear_names) {
  std::vector<TensorSpec> t = {
      {.pattern = "input_layernorm.weight", .role = R::kNorm},
      {.pattern = "post_attention_layernorm.weight", .role = R::kNorm},
      {.pattern = "self_attn.q_proj.weight",
       .role = R::kLinear,
       .sibling = "qkv",
       .scale_sharing = "qkv",
       .kind = K::kAttention},
      {.pattern = "self_attn.k_proj.weight",
       .role = R::kLinear,
       .sibling = "qkv",
       .scale_sharing = "qkv",
       .kind = K::kAttention},
      {.pattern = "self_attn.v_proj.weight",
       .role = R::kLinear,
       .sibling = "qkv",
       .scale_sharing = "qkv",
       .kind = K::kAttention},
      {.pattern = "self_attn.o_proj.weight", .role = R::kLinear, .kind = K::kAttention},
      {.pattern = "self_attn.q_norm.weight", .role = R::kNorm, .kind = K::kAttention},
      {.pattern = "self_attn.k_norm.weight", .role = R::kNorm, .kind = K::kAttention},
      {.pattern = "linear_attn.conv1d.weight", .role = R::kTensor, .kind = K::kLinearAttention},
      {.pattern = "linear_attn.A_log", .role = R::kParam, .kind = K::kLinearAttention},
      {.pattern = "linear_attn.dt_bias", .role = R::kParam, .kind = K::kLinearAttention},
      {.pattern = "linear_attn.norm.weight", .role = R::kNorm, .kind = K::kLinearAttention},
      {.pattern = "linear_attn.out_proj.weight", .role = R::kLinear, .kind = K::kLinearAttention},
      // vLLM fuses in_proj_qkv + in_proj_z and in_proj_b + in_proj_a: one decision each.
      {.pattern = "linear_attn.in_proj_qkv.weight",
       .role = R::kLinear,
       .sibling = "qkvz",
       .scale_sharing = "qkvz",
       .kind = K::kLinearAttention},
      {.pattern = "linear_attn.in_proj_z.weight",
       .role = R::kLinear,
       .sibling = "qkvz",
       .scale_sharing = "qkvz",
       .kind = K::kLinearAttention},
      {.pattern = "linear_attn.in_proj_b.weight",
       .role = R::kLinear,
       .sibling = "ba",
       .scale_sharing = "ba",
       .kind = K::kLinearAttention},
      {.pattern = "linear_attn.in_proj_a.weight",
       .role = R::kLinear,
       .sibling = "ba",
       .scale_sharing = "ba",
       .kind = K::kLinearAttention},
      {.pattern = "mlp.gate.weight", .role = R::kRouter, .kind = K::kMoe},
      {.pattern = "mlp.shared_expert_gate.weight", .role = R::kRouter, .kind = K::kMoe},
      {.pattern = "mlp.shared_expert.gate_proj.weight",
       .role = R::kLinear,
       .sibling = "shared_gate_up",
       .scale_sharing = "shared_gate_up",
       .kind = K::kMoe},
      {.pattern = "mlp.shared_expert.up_proj.weight",
       .role = R::kLinear,
       .sibling = "shared_gate_up",
       .scale_sharing = "shared_gate_up",
       .kind = K::kMoe},
      {.pattern = "mlp.shared_expert.down_proj.weight", .role = R::kLinear, .kind = K::kMoe},
  };
  if (fused_linear_names) {  // Qwen3-Next: in_proj_qkvz / in_proj_ba, rows interleaved
    std::erase_if(t,
                  [](const TensorSpec& s) { return s.pattern.find("in_proj_") != s.pattern.npos; });
    t.push_back({.pattern = "linear_attn.in_proj_qkvz.weight",
                 .role = R::kLinear,
                 .kind = K::kLinearAttention});
    t.push_back({.pattern = "linear_attn.in_proj_ba.weight",
                 .role = R::kLinear,
                 .kind = K::kLinearAttention});
  }
  const auto mlp = DenseMlp();
  t.insert(t.end(), mlp.begin(), mlp.begin() + 3);  // the three weights, no biases
  return t;
}

std::vector<TensorSpec> Concat(std::vector<TensorSpec> a, const std::vector<TensorSpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<TensorSpec> Globals() {
  return {
      {.pattern = "{M}embed_tokens.weight", .role = R::kEmbed},
      {.pattern = "{M}norm.weight", .role = R::kFinalNorm},
      {.pattern = "lm_head.weight", .role = R::kLmHead, .required = false},
  };
}

std::vector<TensorSpec> Mtp() {
  return {
      {.pattern = "mtp.fc.weight", .role = R::kLinear},
      {.pattern = "mtp.pre_fc_norm_embedding.weight", .role = R::kNorm},
      {.pattern = "mtp.pre_fc_norm_hidden.weight", .role = R::kNorm},
      {.pattern = "mtp.norm.weight", .role = R::kNorm},
  };
}

// Qwen3.5/3.6 vision tower (architectures.md §5.1): LayerNorms, biased Linears.
std::vector<TensorSpec> VisionBlock() {
  return {
      {.pattern = "model.visual.blocks.{L}.norm1.weight", .role = R::kNorm},
      {.pattern = "model.visual.blocks.{L}.norm1.bias", .role = R::kNorm},
      {.pattern = "model.visual.blocks.{L}.norm2.weight", .role = R::kNorm},
      {.pattern = "model.visual.blocks.{L}.norm2.bias", .role = R::kNorm},
      {.pattern = "model.visual.blocks.{L}.attn.qkv.weight", .role = R::kVisualLinear},
      {.pattern = "model.visual.blocks.{L}.attn.qkv.bias", .role = R::kBias},
      {.pattern = "model.visual.blocks.{L}.attn.proj.weight", .role = R::kVisualLinear},
      {.pattern = "model.visual.blocks.{L}.attn.proj.bias", .role = R::kBias},
      {.pattern = "model.visual.blocks.{L}.mlp.linear_fc1.weight", .role = R::kVisualLinear},
      {.pattern = "model.visual.blocks.{L}.mlp.linear_fc1.bias", .role = R::kBias},
      {.pattern = "model.visual.blocks.{L}.mlp.linear_fc2.weight", .role = R::kVisualLinear},
      {.pattern = "model.visual.blocks.{L}.mlp.linear_fc2.bias", .role = R::kBias},
  };
}

std::vector<TensorSpec> VisionGlobals() {
  return {
      {.pattern = "model.visual.patch_embed.proj.weight", .role = R::kTensor},
      {.pattern = "model.visual.patch_embed.proj.bias", .role = R::kParam, .required = false},
      {.pattern = "model.visual.pos_embed.weight", .role = R::kTensor, .required = false},
      {.pattern = "model.visual.merger.norm.weight", .role = R::kNorm},
      {.pattern = "model.visual.merger.norm.bias", .role = R::kNorm},
      {.pattern = "model.visual.merger.linear_fc1.weight", .role = R::kVisualLinear},
      {.pattern = "model.visual.merger.linear_fc1.bias", .role = R::kBias},
      {.pattern = "model.visual.merger.linear_fc2.weight", .role = R::kVisualLinear},
      {.pattern = "model.visual.merger.linear_fc2.bias", .role = R::kBias},
  };
}

const std::vector<ArchDescriptor>& Table() {
  static const std::vector<ArchDescriptor> table = {
      {.name = "llama",
       .hf_architectures = {"LlamaForCausalLM"},
       .text_model = "model.",
       .global_tensors = Globals(),
       .layer_tensors = Concat(AttentionLayer(false, false), DenseMlp())},
      {.name = "qwen2",
       .hf_architectures = {"Qwen2ForCausalLM"},
       .text_model = "model.",
       .global_tensors = Globals(),
       .layer_tensors = Concat(AttentionLayer(true, false), DenseMlp())},
      {.name = "qwen3",
       .hf_architectures = {"Qwen3ForCausalLM"},
       .text_model = "model.",
       .global_tensors = Globals(),
       .layer_tensors = Concat(AttentionLayer(false, true), DenseMlp())},
      {.name = "qwen3_moe",
       .hf_architectures = {"Qwen3MoeForCausalLM"},
       .text_model = "model.",
       .global_tensors = Globals(),
       .layer_tensors = Concat(Concat(AttentionLayer(false, true), DenseMlp()), Router()),
       .expert_tensors = Experts()},
      {.name = "qwen3_next",
       .hf_architectures = {"Qwen3NextForCausalLM"},
       .text_model = "model.",
       .global_tensors = Globals(),
       .layer_tensors = HybridLayer(true),
       .expert_tensors = Experts(),
       .mtp_tensors = Mtp()},
      {.name = "qwen3_5_moe",
       .hf_architectures = {"Qwen3_5MoeForConditionalGeneration", "Qwen3_5MoeForCausalLM"},
       .text_model = "model.language_model.",
       .global_tensors = Globals(),
       .layer_tensors = HybridLayer(false),
       .expert_tensors = Experts(),
       .mtp_tensors = Mtp(),
       .vision_block_tensors = VisionBlock(),
       .vision_tensors = VisionGlobals()},
      {.name = "qwen3_5",
       .hf_architectures = {"Qwen3_5ForConditionalGeneration", "Qwen3_5ForCausalLM"},
       .text_model = "model.language_model.",
       .global_tensors = Globals(),
       .layer_tensors = HybridLayer(false),
       .mtp_tensors = Mtp(),
       .vision_block_tensors = VisionBlock(),
       .vision_tensors = VisionGlobals()},
  };
  return table;
}

}  // namespace

std::span<const ArchDescriptor> AllArchitectures() { return Table(); }

std::string ArchitectureNameList() {
  std::string s;
  for (const auto& a : Table()) s += (s.empty() ? "" : ", ") + std::string(a.name);
  return s;
}

Result<const ArchDescriptor*> DetectArchitecture(const nlohmann::json& config) {
  if (!config.is_object()) return InvalidArgument("config.json: not a JSON object");
  if (config.contains("architectures") && config["architectures"].is_array())
    for (const auto& a : config["architectures"])
      for (const auto& d : Table())
        for (auto hf : d.hf_architectures)
          if (a.is_string() && a.get<std::string>() == hf) return &d;
  const nlohmann::json* mt = config.contains("model_type") ? &config["model_type"] : nullptr;
  if (mt && !mt->is_string())
    return InvalidArgument("config.json: \"model_type\" must be a string");
  const std::string type = mt ? mt->get<std::string>() : "";
  for (const auto& d : Table())
    if (d.name == type) return &d;
  return InvalidArgument("unsupported architecture (model_type \"" + type +
                         "\"); supported: " + ArchitectureNameList());
}

}  // namespace pq::model
