#include "pq/model/config.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace pq::model {
namespace {

using nlohmann::json;

constexpr int64_t kMaxConfigInt = int64_t{1} << 24;

Status GetInt(const json& c, const char* key, int64_t* out, bool required) {
  if (!c.contains(key) || c[key].is_null()) {
    if (required) return InvalidArgument(std::string("config.json: missing \"") + key + "\"");
    return Status::Ok();
  }
  if (!c[key].is_number_integer() || c[key].get<int64_t>() < 0)
    return InvalidArgument(std::string("config.json: \"") + key +
                           "\" must be a non-negative integer");
  // No real model has a dimension or count near 2^24 (vocabularies are ~2^18); a larger value
  // is refused before anything is sized from it.
  if (c[key].get<int64_t>() > kMaxConfigInt)
    return InvalidArgument(std::string("config.json: \"") + key +
                           "\" = " + std::to_string(c[key].get<int64_t>()) + " is larger than " +
                           std::to_string(kMaxConfigInt));
  *out = c[key].get<int64_t>();
  return Status::Ok();
}

Status GetDouble(const json& c, const char* key, double* out) {
  if (!c.contains(key) || c[key].is_null()) return Status::Ok();
  if (!c[key].is_number())
    return InvalidArgument(std::string("config.json: \"") + key + "\" must be a number");
  *out = c[key].get<double>();
  return Status::Ok();
}

// `key` of c as a bool (absent or null: `fallback`); a value of another type is an error naming it.
Status GetBool(const json& c, const char* key, bool fallback, bool* out) {
  *out = fallback;
  if (!c.contains(key) || c[key].is_null()) return Status::Ok();
  if (!c[key].is_boolean())
    return InvalidArgument(std::string("config.json: \"") + key + "\" must be true or false");
  *out = c[key].get<bool>();
  return Status::Ok();
}

Status GetString(const json& c, const char* key, std::string* out) {
  if (!c.contains(key) || c[key].is_null()) return Status::Ok();
  if (!c[key].is_string())
    return InvalidArgument(std::string("config.json: \"") + key + "\" must be a string");
  *out = c[key].get<std::string>();
  return Status::Ok();
}

// Llama-3 frequency scaling (architectures.md §1.2).
Status ApplyRopeScaling(const json& c, std::vector<double>* inv_freq) {
  json rs = c.contains("rope_scaling") ? c["rope_scaling"] : json();
  if (rs.is_null() && c.contains("rope_parameters")) rs = c["rope_parameters"];
  if (!rs.is_object()) return Status::Ok();
  std::string type = "default";
  PQ_RETURN_IF_ERROR(GetString(rs, "type", &type));
  PQ_RETURN_IF_ERROR(GetString(rs, "rope_type", &type));
  if (type == "default") return Status::Ok();
  if (type != "llama3")
    return Unimplemented("config.json: rope scaling \"" + type +
                         "\" is not supported (default, llama3)");
  double factor = 8.0, low = 1.0, high = 4.0, old_len = 8192.0;
  PQ_RETURN_IF_ERROR(GetDouble(rs, "factor", &factor));
  PQ_RETURN_IF_ERROR(GetDouble(rs, "low_freq_factor", &low));
  PQ_RETURN_IF_ERROR(GetDouble(rs, "high_freq_factor", &high));
  PQ_RETURN_IF_ERROR(GetDouble(rs, "original_max_position_embeddings", &old_len));
  if (!(factor > 0) || !(low > 0) || !(high > low) || !(old_len > 0))
    return InvalidArgument(
        "config.json: rope scaling needs factor > 0 and "
        "0 < low_freq_factor < high_freq_factor, original length > 0");
  const double low_wavelen = old_len / low, high_wavelen = old_len / high;
  for (double& f : *inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      f /= factor;
    } else {
      const double smooth = (old_len / wavelen - low) / (high - low);
      f = (1.0 - smooth) * f / factor + smooth * f;
    }
  }
  return Status::Ok();
}

bool IsHybrid(const std::string& arch) {
  return arch == "qwen3_next" || arch == "qwen3_5" || arch == "qwen3_5_moe";
}

Status GetMoe(const json& c, const std::string& arch, ModelConfig* m) {
  PQ_RETURN_IF_ERROR(GetInt(c, "num_local_experts", &m->num_experts, false));  // transformers v5
  PQ_RETURN_IF_ERROR(GetInt(c, "num_experts", &m->num_experts, m->num_experts == 0));
  PQ_RETURN_IF_ERROR(GetInt(c, "num_experts_per_tok", &m->top_k, true));
  PQ_RETURN_IF_ERROR(GetInt(c, "moe_intermediate_size", &m->moe_intermediate, true));
  PQ_RETURN_IF_ERROR(GetInt(c, "decoder_sparse_step", &m->decoder_sparse_step, false));
  // Qwen3.5/3.6 has no norm_topk_prob: it always renormalises (architectures.md §1.5).
  PQ_RETURN_IF_ERROR(GetBool(c, "norm_topk_prob", false, &m->norm_topk_prob));
  m->norm_topk_prob = m->norm_topk_prob || arch == "qwen3_5_moe";
  if (c.contains("mlp_only_layers") && c["mlp_only_layers"].is_array())
    for (const auto& v : c["mlp_only_layers"])
      if (v.is_number_integer()) m->mlp_only_layers.push_back(v.get<int64_t>());
  if (m->top_k <= 0 || m->top_k > m->num_experts)
    return InvalidArgument("config.json: num_experts_per_tok must be in [1, num_experts]");
  if (arch != "qwen3_moe")
    PQ_RETURN_IF_ERROR(
        GetInt(c, "shared_expert_intermediate_size", &m->shared_expert_intermediate, true));
  return Status::Ok();
}

// layer_types (or full_attention_interval) of a hybrid model.
Status GetLayerTypes(const json& c, ModelConfig* m) {
  m->linear_attention.assign(static_cast<size_t>(m->num_layers), false);
  if (c.contains("layer_types") && !c["layer_types"].is_null()) {
    const json& t = c["layer_types"];
    if (!t.is_array() || static_cast<int64_t>(t.size()) != m->num_layers)
      return InvalidArgument("config.json: layer_types must list num_hidden_layers entries");
    for (size_t i = 0; i < t.size(); ++i) {
      const std::string type = t[i].is_string() ? t[i].get<std::string>() : "";
      if (type != "linear_attention" && type != "full_attention")
        return InvalidArgument("config.json: layer_types[" + std::to_string(i) + "] = \"" + type +
                               "\" is not a layer type we know (linear_attention, full_attention)");
      m->linear_attention[i] = type == "linear_attention";
    }
    return Status::Ok();
  }
  int64_t interval = 4;
  PQ_RETURN_IF_ERROR(GetInt(c, "full_attention_interval", &interval, false));
  if (interval <= 0) return InvalidArgument("config.json: full_attention_interval must be > 0");
  for (int64_t i = 0; i < m->num_layers; ++i)
    m->linear_attention[static_cast<size_t>(i)] = (i + 1) % interval != 0;
  return Status::Ok();
}

// The Gated DeltaNet and gated-attention fields of Qwen3-Next / Qwen3.5 / Qwen3.6.
Status GetHybrid(const json& c, const std::string& arch, ModelConfig* m) {
  m->norm_offset = 1.0f;
  PQ_RETURN_IF_ERROR(GetBool(c, "attn_output_gate", true, &m->attn_output_gate));
  m->lin_fused_naming = arch == "qwen3_next";
  PQ_RETURN_IF_ERROR(GetLayerTypes(c, m));
  PQ_RETURN_IF_ERROR(GetInt(c, "linear_num_key_heads", &m->lin_k_heads, true));
  PQ_RETURN_IF_ERROR(GetInt(c, "linear_num_value_heads", &m->lin_v_heads, true));
  PQ_RETURN_IF_ERROR(GetInt(c, "linear_key_head_dim", &m->lin_k_dim, true));
  PQ_RETURN_IF_ERROR(GetInt(c, "linear_value_head_dim", &m->lin_v_dim, true));
  PQ_RETURN_IF_ERROR(GetInt(c, "linear_conv_kernel_dim", &m->conv_kernel, true));
  if (m->lin_k_heads == 0 || m->lin_v_heads % m->lin_k_heads != 0 || m->lin_k_dim == 0 ||
      m->lin_v_dim == 0 || m->conv_kernel == 0)
    return InvalidArgument(
        "config.json: need linear_num_value_heads divisible by linear_num_key_heads and "
        "positive linear head dims and conv kernel");
  PQ_RETURN_IF_ERROR(GetInt(c, "mtp_num_hidden_layers", &m->mtp_layers, false));
  PQ_RETURN_IF_ERROR(GetInt(c, "num_nextn_predict_layers", &m->mtp_layers, false));
  if (m->mtp_layers > 1)
    return Unimplemented("config.json: " + std::to_string(m->mtp_layers) +
                         " MTP layers; one is supported");
  return Status::Ok();
}

// partial_rotary_factor, top level or inside rope_parameters.
Status GetRotDim(const json& c, ModelConfig* m) {
  double factor = 1.0;
  PQ_RETURN_IF_ERROR(GetDouble(c, "partial_rotary_factor", &factor));
  if (c.contains("rope_parameters") && c["rope_parameters"].is_object())
    PQ_RETURN_IF_ERROR(GetDouble(c["rope_parameters"], "partial_rotary_factor", &factor));
  m->rot_dim = static_cast<int64_t>(static_cast<double>(m->head_dim) * factor);
  if (factor <= 0 || factor > 1 || m->rot_dim <= 0 || m->rot_dim % 2 != 0)
    return InvalidArgument("config.json: partial_rotary_factor must give an even rotary dim");
  return Status::Ok();
}

}  // namespace

const json& TextConfig(const json& config) {
  if (config.contains("text_config") && config["text_config"].is_object())
    return config["text_config"];
  return config;
}

bool ModelConfig::IsMoeLayer(int64_t layer) const {
  if (num_experts == 0) return false;
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end())
    return false;
  return decoder_sparse_step > 0 && (layer + 1) % decoder_sparse_step == 0;
}

Result<ModelConfig> ParseModelConfig(const json& whole, const std::string& arch) {
  const json& c = TextConfig(whole);
  ModelConfig m;
  m.arch = arch;
  PQ_RETURN_IF_ERROR(GetInt(c, "hidden_size", &m.hidden, true));
  PQ_RETURN_IF_ERROR(GetInt(c, "num_hidden_layers", &m.num_layers, true));
  PQ_RETURN_IF_ERROR(GetInt(c, "num_attention_heads", &m.heads, true));
  m.kv_heads = m.heads;
  PQ_RETURN_IF_ERROR(GetInt(c, "num_key_value_heads", &m.kv_heads, false));
  PQ_RETURN_IF_ERROR(GetInt(c, "vocab_size", &m.vocab, true));
  PQ_RETURN_IF_ERROR(GetInt(c, "intermediate_size", &m.intermediate,
                            arch != "qwen3_moe" && arch != "qwen3_5_moe" && arch != "qwen3_next"));
  PQ_RETURN_IF_ERROR(GetInt(c, "max_position_embeddings", &m.max_positions, false));
  if (m.heads == 0 || m.hidden == 0 || m.kv_heads == 0 || m.heads % m.kv_heads != 0)
    return InvalidArgument(
        "config.json: need num_attention_heads divisible by num_key_value_heads (> 0)");
  m.head_dim = m.hidden / m.heads;
  PQ_RETURN_IF_ERROR(GetInt(c, "head_dim", &m.head_dim, false));
  if (m.head_dim <= 0 || m.head_dim % 2 != 0)
    return InvalidArgument("config.json: head_dim must be even and positive");
  PQ_RETURN_IF_ERROR(GetDouble(c, "rms_norm_eps", &m.rms_eps));
  PQ_RETURN_IF_ERROR(GetDouble(c, "rope_theta", &m.rope_theta));
  if (c.contains("rope_parameters") && c["rope_parameters"].is_object())
    PQ_RETURN_IF_ERROR(GetDouble(c["rope_parameters"], "rope_theta", &m.rope_theta));
  // These would turn every result into NaN (and a NaN NLL must never look like success).
  if (!std::isfinite(m.rms_eps) || m.rms_eps < 0)
    return InvalidArgument("config.json: \"rms_norm_eps\" must be a finite number >= 0");
  if (!std::isfinite(m.rope_theta) || m.rope_theta <= 1)
    return InvalidArgument("config.json: \"rope_theta\" must be a finite number > 1");
  PQ_RETURN_IF_ERROR(GetBool(c, "tie_word_embeddings", false, &m.tie_word_embeddings));
  PQ_RETURN_IF_ERROR(GetBool(c, "attention_bias", false, &m.qkv_bias));
  m.qkv_bias = m.qkv_bias || arch == "qwen2";
  m.qk_norm = arch == "qwen3" || arch == "qwen3_moe" || IsHybrid(arch);
  if (arch == "qwen3_moe" || arch == "qwen3_5_moe" || arch == "qwen3_next")
    PQ_RETURN_IF_ERROR(GetMoe(c, arch, &m));
  if (IsHybrid(arch)) PQ_RETURN_IF_ERROR(GetHybrid(c, arch, &m));
  PQ_RETURN_IF_ERROR(GetRotDim(c, &m));
  if (c.contains("bos_token_id") && c["bos_token_id"].is_number_integer())
    m.bos_id = c["bos_token_id"].get<int32_t>();
  if (c.contains("eos_token_id") && c["eos_token_id"].is_number_integer())
    m.eos_id = c["eos_token_id"].get<int32_t>();
  const int64_t rot = m.rot_dim;
  for (int64_t i = 0; i < rot / 2; ++i)
    m.inv_freq.push_back(
        1.0 / std::pow(m.rope_theta, static_cast<double>(2 * i) / static_cast<double>(rot)));
  PQ_RETURN_IF_ERROR(ApplyRopeScaling(c, &m.inv_freq));
  return m;
}

}  // namespace pq::model
