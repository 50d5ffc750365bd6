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

  // RoPE inverse frequencies [rot_dim / 2], with llama3 scaling applied when configured.
  std::vector<double> inv_freq;

  bool IsMoeLayer(int64_t layer) const;
  int64_t q_dim() const { return heads * head_dim; }
  int64_t kv_dim() const { return kv_heads * head_dim; }
};

// Parses and validates config.json for a supported architecture (`arch` from
// DetectArchitecture). Errors name the key and what is wrong.
Result<ModelConfig> ParseModelConfig(const nlohmann::json& config, const std::string& arch);

}  // namespace pq::model
