// One declaration per architecture: its tensor list drives loading, validation, naming,
// sibling coupling and export. No name-substring heuristics elsewhere.
//
// The tables are in arch_tables.cc, their resolution against a checkpoint (ResolveLayout) in
// arch.cc, reading config.json and dense Linear weights in arch_io.cc.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "pq/core/status.h"
#include "pq/io/safetensors.h"

namespace pq::model {

enum class TensorRole : uint8_t {
  kEmbed,
  kFinalNorm,
  kLmHead,
  kNorm,          // per-layer RMSNorm weights (incl. q_norm / k_norm)
  kLinear,        // a quantizable Linear's weight
  kBias,          // a Linear's bias (kept in bf16)
  kRouter,        // 2-D gate kept BF16 and ignored (MoE router, shared_expert_gate)
  kBuffer,        // non-parameter buffer passed through unchanged
  kParam,         // other 1-D parameter passed through (DeltaNet A_log, dt_bias)
  kTensor,        // other parameter of any rank passed through (conv1d, patch embed, pos embed)
  kVisualLinear,  // a vision-tower Linear: written in the fixed --visual-format
};

// Which layers of a hybrid model hold a layer tensor.
enum class LayerKind : uint8_t {
  kAny,
  kAttention,        // softmax-attention layers (and the MTP layer)
  kLinearAttention,  // Gated DeltaNet layers
  kMoe,              // MoE FFN layers
  kDenseMlp,         // dense FFN layers
};

// A tensor of the architecture, as a pattern over the HF checkpoint name. Layer and expert
// tensors are relative to the layer's prefix ("model.layers.3.", "mtp.layers.0."), with
// "{E}" = expert index; global tensors are absolute with "{M}" = the text model's prefix
// ("model." or "model.language_model."); vision tensors use "{L}" = block index.
struct TensorSpec {
  std::string_view pattern;
  TensorRole role;
  bool required = true;  // absent from a checkpoint: an error (else skipped)
  // Linears that vLLM fuses into one layer share this key within a layer ("qkv",
  // "gate_up", "experts"); empty = a decision unit of its own.
  std::string_view sibling = {};
  // Linears that share one weight (and input) global scale: the same key within a layer, or
  // within one expert for expert tensors ("qkv", "gate_up"); empty = scales of its own.
  // Coarser than nothing, finer than `sibling` for experts (each expert's gate/up share;
  // down_proj and other experts do not).
  std::string_view scale_sharing = {};
  LayerKind kind = LayerKind::kAny;
};

struct ArchDescriptor {
  std::string_view name;                           // "llama", "qwen2", "qwen3", "qwen3_moe", ...
  std::vector<std::string_view> hf_architectures;  // config.json "architectures" values
  std::string_view text_model;                     // "model." or "model.language_model."
  std::vector<TensorSpec> global_tensors;
  std::vector<TensorSpec> layer_tensors;
  std::vector<TensorSpec> expert_tensors = {};  // per expert of an MoE layer (empty if dense)
  // MTP head (architectures.md §4): its own tensors ("mtp.*"); its decoder layer(s) are
  // layer_tensors under "mtp.layers.J." (attention kind).
  std::vector<TensorSpec> mtp_tensors = {};
  // Vision tower: per block ("{L}") and global tensors, written in a fixed format.
  std::vector<TensorSpec> vision_block_tensors = {};
  std::vector<TensorSpec> vision_tensors = {};
};

std::span<const ArchDescriptor> AllArchitectures();
std::string ArchitectureNameList();

// One quantizable Linear of a concrete checkpoint.
struct LinearInfo {
  std::string module;       // e.g. "model.layers.3.self_attn.q_proj" (weight at module + ".weight")
  int layer = -1;           // -1 for lm_head and vision; L + j for MTP layer j (and mtp.fc: L)
  int64_t rows = 0;         // out_features
  int64_t cols = 0;         // in_features
  std::string unit;         // decision unit: Linears with equal `unit` must share a format
  std::string scale_group;  // Linears with equal scale_group share NVFP4 global scales
  bool has_bias = false;
  bool is_lm_head = false;
  bool tied = false;  // lm_head that is the embedding (tie_word_embeddings)
  // Experts stored packed in a 3-D tensor [E, R, C] (transformers v5 layout): this Linear is
  // rows [packed_row, packed_row + rows) of expert `packed_expert`. Empty when stored 2-D.
  std::string packed_tensor;
  int64_t packed_expert = -1;
  int64_t packed_row = 0;
  bool is_visual = false;  // vision tower: fixed format, not allocated
  bool is_mtp = false;     // MTP head (mtp.*): probed with its own objective
  // A routed expert's Linear: sees only the tokens routed to it. Last: the layout's
  // brace-initialised entries (arch.cc) list the fields above in order.
  bool is_routed_expert = false;
};

// The resolved layout of one checkpoint.
struct ModelLayout {
  const ArchDescriptor* arch = nullptr;
  int num_layers = 0;
  int num_experts = 0;
  int mtp_layers = 0;                 // MTP decoder layers present in the checkpoint (0: none)
  std::string text_model = "model.";  // prefix of embed_tokens, layers, norm
  bool tie_word_embeddings = false;
  std::vector<LinearInfo> linears;  // body Linears in checkpoint order, then lm_head
  // Every checkpoint tensor that is not a Linear weight (embeddings, norms, biases, ...).
  std::vector<std::string> other_tensors;
  // Modules that are Linears to vLLM but stay BF16 by rule (MoE routers): always in `ignore`.
  std::vector<std::string> always_ignored;

  // "model.layers.3." for body layer 3; "mtp.layers.J." for layer L + J (MTP).
  std::string LayerPrefix(int layer) const;
  bool has_mtp() const { return mtp_layers > 0; }
};

// Picks the architecture from config.json ("architectures" then "model_type").
Result<const ArchDescriptor*> DetectArchitecture(const nlohmann::json& config);

// Resolves the layout of `ckpt` given its config: checks every required tensor exists with a
// 2-D/1-D shape as declared, and that no unknown tensor is present (unknown ones are an
// error naming them, so nothing is silently dropped or mis-quantized).
Result<ModelLayout> ResolveLayout(const nlohmann::json& config, const io::CheckpointReader& ckpt);

// A dense Linear's weight [rows, cols] as float32, wherever it is stored (2-D `.weight`,
// a slice of packed 3-D experts, or the embedding for a tied head). Compressed weights are
// not handled here (see WeightSource).
Result<std::vector<float>> ReadDenseLinear(const io::CheckpointReader& ckpt, const LinearInfo& li);

// Reads and parses DIR/config.json with clear errors.
Result<nlohmann::json> ReadConfig(const std::string& model_dir);

}  // namespace pq::model
