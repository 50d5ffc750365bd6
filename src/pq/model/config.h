// The numbers a forward pass needs, parsed once from config.json and checked.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pq/core/status.h"

namespace pq::model {

struct ModelConfig {
  std::string arch;          // ArchDescriptor::name
  int64_t hidden = 0;        // D
  int64_t intermediate = 0;  // F (dense MLP)
  int64_t num_layers = 0;    // L
  int64_t heads = 0;         // H
  int64_t kv_heads = 0;      // Hkv
  int64_t head_dim = 0;      // Dh
  int64_t vocab = 0;         // V
  int64_t max_positions = 0;
  double rms_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;
  bool qk_norm = false;
  // MoE (0 experts = dense)
  int64_t num_experts = 0;  // E
  int64_t top_k = 0;        // K
  int64_t moe_intermediate = 0;
  bool norm_topk_prob = false;
  std::vector<int64_t> mlp_only_layers;
  int64_t decoder_sparse_step = 1;
  int32_t bos_id = -1;
  int32_t eos_id = -1;

  // Hybrid Qwen3-Next / Qwen3.5 / Qwen3.6 (architectures.md §2.5-§2.6); defaults = Llama.
  float norm_offset = 0.0f;            // 1: zero-centred (1+w) RMSNorms (not the DeltaNet norm)
  int64_t rot_dim = 0;                 // rotated leading dims of a head (partial rotary); even
  bool attn_output_gate = false;       // q_proj rows per head: [query Dh | gate Dh]
  std::vector<bool> linear_attention;  // [L] true: Gated DeltaNet mixer, false: attention
  int64_t lin_k_heads = 0, lin_v_heads = 0;  // Hk, Hv
  int64_t lin_k_dim = 0, lin_v_dim = 0;      // Dk, Dv
  int64_t conv_kernel = 0;                   // Kc
  bool lin_fused_naming = false;  // Qwen3-Next in_proj_qkvz / in_proj_ba (interleaved rows)
  int64_t shared_expert_intermediate = 0;  // 0: no shared expert
  int64_t mtp_layers = 0;                  // MTP decoder layers (mtp.layers.*), 0 = none

  // RoPE inverse frequencies [rot_dim / 2], with llama3 scaling applied when configured.
  std::vector<double> inv_freq;

  bool IsMoeLayer(int64_t layer) const;
  // Layer `layer` in 0..L-1 is a Gated DeltaNet layer (MTP layers are attention layers).
  bool IsLinearAttention(int64_t layer) const {
    return layer >= 0 && layer < static_cast<int64_t>(linear_attention.size()) &&
           linear_attention[static_cast<size_t>(layer)];
  }
  int64_t q_dim() const { return heads * head_dim; }
  int64_t kv_dim() const { return kv_heads * head_dim; }
  // Rows of q_proj: with the output gate each head holds its query then its gate.
  int64_t q_proj_rows() const { return q_dim() * (attn_output_gate ? 2 : 1); }
  int64_t lin_key_dim() const { return lin_k_heads * lin_k_dim; }    // Hk * Dk
  int64_t lin_value_dim() const { return lin_v_heads * lin_v_dim; }  // Hv * Dv
  int64_t lin_conv_dim() const { return 2 * lin_key_dim() + lin_value_dim(); }
};

// The text model's keys: config["text_config"] for multimodal checkpoints
// (`*ForConditionalGeneration`), else the config itself.
const nlohmann::json& TextConfig(const nlohmann::json& config);

// Parses and validates config.json (the whole file; text_config is looked into) for a
// supported architecture (`arch` from DetectArchitecture). Errors name the key and what is
// wrong.
Result<ModelConfig> ParseModelConfig(const nlohmann::json& config, const std::string& arch);

}  // namespace pq::model
