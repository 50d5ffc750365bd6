// Per-layer weights in float32, read on demand from any checkpoint we read (dense
// F32/F16/BF16, or compressed-tensors, dequantized on load). At most one layer is resident
// at a time in the streaming engine: LoadLayer() converts only that layer's tensors.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
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

struct LayerWeights {
  int64_t layer = 0;
  std::vector<float> input_norm, post_norm;  // [D]
  std::vector<float> q_norm, k_norm;         // [Dh] (Qwen3) or empty
  LinearWeights q, k, v, o;
  LinearWeights gate, up, down;        // dense MLP
  LinearWeights router;                // MoE: [E, D]
  std::vector<ExpertWeights> experts;  // MoE
};

// Calls fn(LinearWeights&) for every quantizable Linear of the layer (not the router).
template <typename Layer, typename Fn>
void ForEachLinear(Layer& w, Fn&& fn) {
  for (auto* l : {&w.q, &w.k, &w.v, &w.o}) fn(*l);
  if (w.experts.empty()) {
    for (auto* l : {&w.gate, &w.up, &w.down}) fn(*l);
    return;
  }
  for (auto& e : w.experts)
    for (auto* l : {&e.gate, &e.up, &e.down}) fn(*l);
}

struct HeadWeights {
  std::vector<float> final_norm;  // [D]
  LinearWeights lm_head;          // [V, D] (the embedding when tied)
};

class WeightSource {
 public:
  static Result<std::unique_ptr<WeightSource>> Open(const std::string& path);

  const ModelConfig& config() const { return config_; }
  const ModelLayout& layout() const { return layout_; }
  const std::string& path() const { return path_; }

  Result<LayerWeights> LoadLayer(int64_t layer) const;
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

  std::string path_;
  std::unique_ptr<io::CheckpointReader> ckpt_;
  ModelConfig config_;
  ModelLayout layout_;
  std::map<std::string, LinearFormat> formats_;
  std::map<std::string, const LinearInfo*> linear_by_module_;
  LinearHook linear_hook_;
};

}  // namespace pq::model
