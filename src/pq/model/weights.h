// Per-layer weights in float32, read on demand from any checkpoint we read (dense
// F32/F16/BF16, or compressed-tensors, dequantized on load). At most one layer is resident
// at a time in the streaming engine: LoadLayer() converts only that layer's tensors.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/io/safetensors.h"
#include "pq/model/arch.h"
#include "pq/model/config.h"
#include "pq/model/quant_config.h"

namespace pq::model {

struct LinearWeights {
  std::string module;    // checkpoint module name (observers are keyed by it)
  int64_t rows = 0;      // out_features N
  int64_t cols = 0;      // in_features K
  std::vector<float> w;  // [N, K]
  std::vector<float> b;  // [N] or empty
  // The run-time quantization of this Linear's input (what vLLM does for its stored
  // format): kBF16 and the weight-only formats leave activations alone.
  formats::FormatId act_format = formats::FormatId::kBF16;
  std::optional<float> input_global_scale;  // NVFP4 (W4A4) only
};

struct ExpertWeights {
  LinearWeights gate, up, down;
};

// Gated DeltaNet mixer (architectures.md §2.6.2). Qwen3.5/3.6 names: in_qkv [2Hk*Dk + Hv*Dv, D],
// in_z [Hv*Dv, D], in_b, in_a [Hv, D]. Qwen3-Next (fused_naming): in_qkv holds in_proj_qkvz
// and in_b holds in_proj_ba (rows interleaved per key head), in_z / in_a are empty.
struct LinearAttentionWeights {
  LinearWeights in_qkv, in_z, in_b, in_a, out;
  std::vector<float> conv;     // [C, Kc], C = 2 Hk*Dk + Hv*Dv
  std::vector<float> a_log;    // [Hv]
  std::vector<float> dt_bias;  // [Hv]
  std::vector<float> norm;     // [Dv] gated RMSNorm weight (plain w)
};

struct LayerWeights {
  int64_t layer = 0;                         // L + j for MTP layer j
  std::vector<float> input_norm, post_norm;  // [D]
  std::vector<float> q_norm, k_norm;         // [Dh] (Qwen3 family) or empty
  LinearWeights q, k, v, o;                  // attention layers (q: [2 H Dh, D] when gated)
  LinearAttentionWeights lin;                // Gated DeltaNet layers
  LinearWeights gate, up, down;              // dense MLP
  LinearWeights router;                      // MoE: [E, D]
  std::vector<ExpertWeights> experts;        // MoE
  LinearWeights shared_gate, shared_up, shared_down;  // shared expert (empty module: none)
  LinearWeights shared_expert_gate;                   // [1, D], BF16 (not quantized)
};

// Calls fn(LinearWeights&) for every quantizable Linear the layer holds (not the routers).
template <typename Layer, typename Fn>
void ForEachLinear(Layer& w, Fn&& fn) {
  auto each = [&](auto... l) { ((l->module.empty() ? void() : fn(*l)), ...); };
  each(&w.q, &w.k, &w.v, &w.o);
  each(&w.lin.in_qkv, &w.lin.in_z, &w.lin.in_b, &w.lin.in_a, &w.lin.out);
  each(&w.gate, &w.up, &w.down);
  for (auto& e : w.experts) each(&e.gate, &e.up, &e.down);
  each(&w.shared_gate, &w.shared_up, &w.shared_down);
}

// The MTP head's own tensors (its decoder layer is a LayerWeights, layer index L).
struct MtpWeights {
  std::vector<float> norm_embedding, norm_hidden, norm;  // [D], (1+w)
  LinearWeights fc;                                      // [D, 2D]: input [embedding ; hidden]
};

struct HeadWeights {
  std::vector<float> final_norm;  // [D]
  LinearWeights lm_head;          // [V, D] (the embedding when tied)
};

class WeightSource {
 public:
  // Opens a checkpoint and checks, from the tensors' metadata only, that every tensor the
  // config implies exists with the shape it implies (embedding, norms, every Linear, router,
  // MTP head, lm_head) — before any command allocates or computes from the config's sizes.
  static Result<std::unique_ptr<WeightSource>> Open(const std::string& path);

  const ModelConfig& config() const { return config_; }
  const ModelLayout& layout() const { return layout_; }
  const std::string& path() const { return path_; }

  // Body layer 0..L-1, or MTP layer L + j.
  Result<LayerWeights> LoadLayer(int64_t layer) const;
  Result<MtpWeights> LoadMtp() const;
  Result<HeadWeights> LoadHead() const;
  // Embedding rows for `ids` -> out[T, D]; ids are range-checked.
  Status Embed(std::span<const int32_t> ids, std::span<float> out) const;
  // Any Linear by module name (dequantized if stored compressed; act_format and
  // input_global_scale set from its stored format).
  Result<LinearWeights> LoadLinear(const std::string& module) const;

  // Called on every Linear LoadLinear returns (after loading): lets an experiment replace
  // one Linear's weights or activation format without writing a checkpoint.
  using LinearHook = std::function<Status(LinearWeights&)>;
  void set_linear_hook(LinearHook hook) { linear_hook_ = std::move(hook); }

 private:
  Result<std::vector<float>> LoadVector(const std::string& name, int64_t size, bool required) const;
  // `rows` x `cols` as the config implies, with an error naming the module otherwise.
  Result<LinearWeights> LoadLinearShaped(const std::string& module, int64_t rows,
                                         int64_t cols) const;
  Status LoadAttention(const std::string& p, LayerWeights& lw) const;
  Status LoadLinearAttention(const std::string& p, LayerWeights& lw) const;
  Status LoadFfn(const std::string& p, LayerWeights& lw) const;
  // Runs every loader with shapes_only_ set: the same shape checks, no tensor data read.
  Status CheckShapes() const;

  std::string path_;
  std::unique_ptr<io::CheckpointReader> ckpt_;
  ModelConfig config_;
  ModelLayout layout_;
  std::map<std::string, LinearFormat> formats_;
  std::map<std::string, const LinearInfo*> linear_by_module_;
  LinearHook linear_hook_;
  mutable bool shapes_only_ = false;  // loaders check shapes and return empty data
};

}  // namespace pq::model
