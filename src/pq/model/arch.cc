#include "pq/model/arch.h"

#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

namespace pq::model {
namespace {

using R = TensorRole;

// Attention block of a Llama-family layer (with its two norms).
std::vector<TensorSpec> AttentionLayer(bool qkv_bias, bool qk_norm) {
  std::vector<TensorSpec> t = {
      {"model.layers.{L}.input_layernorm.weight", R::kNorm, true, ""},
      {"model.layers.{L}.post_attention_layernorm.weight", R::kNorm, true, ""},
      {"model.layers.{L}.self_attn.q_proj.weight", R::kLinear, true, "qkv", "qkv"},
      {"model.layers.{L}.self_attn.k_proj.weight", R::kLinear, true, "qkv", "qkv"},
      {"model.layers.{L}.self_attn.v_proj.weight", R::kLinear, true, "qkv", "qkv"},
      {"model.layers.{L}.self_attn.o_proj.weight", R::kLinear, true, ""},
      {"model.layers.{L}.self_attn.o_proj.bias", R::kBias, false, ""},
      {"model.layers.{L}.self_attn.q_proj.bias", R::kBias, qkv_bias, ""},
      {"model.layers.{L}.self_attn.k_proj.bias", R::kBias, qkv_bias, ""},
      {"model.layers.{L}.self_attn.v_proj.bias", R::kBias, qkv_bias, ""},
      // Old Llama checkpoints carry the rotary table as a buffer; passed through.
      {"model.layers.{L}.self_attn.rotary_emb.inv_freq", R::kBuffer, false, ""},
  };
  if (qk_norm) {
    t.push_back({"model.layers.{L}.self_attn.q_norm.weight", R::kNorm, true, ""});
    t.push_back({"model.layers.{L}.self_attn.k_norm.weight", R::kNorm, true, ""});
  }
  return t;
}

// SwiGLU MLP of a dense layer (biases only with Llama's mlp_bias).
std::vector<TensorSpec> DenseMlp() {
  return {{"model.layers.{L}.mlp.gate_proj.weight", R::kLinear, true, "gate_up", "gate_up"},
          {"model.layers.{L}.mlp.up_proj.weight", R::kLinear, true, "gate_up", "gate_up"},
          {"model.layers.{L}.mlp.down_proj.weight", R::kLinear, true, ""},
          {"model.layers.{L}.mlp.gate_proj.bias", R::kBias, false, ""},
          {"model.layers.{L}.mlp.up_proj.bias", R::kBias, false, ""},
          {"model.layers.{L}.mlp.down_proj.bias", R::kBias, false, ""}};
}

std::vector<TensorSpec> Concat(std::vector<TensorSpec> a, const std::vector<TensorSpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<TensorSpec> Globals() {
  return {{"model.embed_tokens.weight", R::kEmbed, true, ""},
          {"model.norm.weight", R::kFinalNorm, true, ""},
          {"lm_head.weight", R::kLmHead, false, ""}};
}

const std::vector<ArchDescriptor>& Table() {
  static const std::vector<ArchDescriptor> table = {
      {"llama",
       {"LlamaForCausalLM"},
       Globals(),
       Concat(AttentionLayer(false, false), DenseMlp()),
       {}},
      {"qwen2",
       {"Qwen2ForCausalLM"},
       Globals(),
       Concat(AttentionLayer(true, false), DenseMlp()),
       {}},
      {"qwen3",
       {"Qwen3ForCausalLM"},
       Globals(),
       Concat(AttentionLayer(false, true), DenseMlp()),
       {}},
      {"qwen3_moe",
       {"Qwen3MoeForCausalLM"},
       Globals(),
       Concat(AttentionLayer(false, true),
              {{"model.layers.{L}.mlp.gate.weight", R::kRouter, true, ""}}),
       {{"model.layers.{L}.mlp.experts.{E}.gate_proj.weight", R::kLinear, true, "experts",
         "gate_up"},
        {"model.layers.{L}.mlp.experts.{E}.up_proj.weight", R::kLinear, true, "experts",
         "gate_up"},
        {"model.layers.{L}.mlp.experts.{E}.down_proj.weight", R::kLinear, true, "experts"}}},
  };
  return table;
}

std::string Expand(std::string_view pattern, int layer, int expert) {
  std::string s(pattern);
  for (auto [key, value] : {std::pair{"{L}", layer}, {"{E}", expert}}) {
    const size_t at = s.find(key);
    if (at != std::string::npos) s.replace(at, 3, std::to_string(value));
  }
  return s;
}

// Every tensor a Linear module may hold, dense or compressed-tensors (format reference §2).
constexpr std::string_view kLinearSuffixes[] = {"weight",
                                                "weight_packed",
                                                "weight_scale",
                                                "weight_global_scale",
                                                "input_global_scale",
                                                "weight_shape",
                                                "weight_zero_point",
                                                "weight_g_idx",
                                                "input_scale",
                                                "bias"};

std::string ModuleOf(const std::string& weight_name) {
  return weight_name.substr(0, weight_name.rfind('.'));
}

// Finds the Linear whose dense weight is `weight_name` ("M.weight"), in a dense checkpoint
// (M.weight) or a compressed-tensors one (M.weight_packed / M.weight + scales). Marks every
// tensor of the module as seen. nullopt if absent and optional.
Result<std::optional<LinearInfo>> ResolveLinear(const io::CheckpointReader& ckpt,
                                                const std::string& weight_name, bool required,
                                                std::set<std::string>* seen) {
  const std::string module = ModuleOf(weight_name);
  LinearInfo li;
  li.module = module;
  bool found = false;
  for (std::string_view suffix : kLinearSuffixes) {
    const std::string n = module + "." + std::string(suffix);
    if (ckpt.Find(n)) {
      seen->insert(n);
      found |= suffix == "weight" || suffix == "weight_packed";
    }
  }
  if (!found) {
    if (required) return NotFound("checkpoint has no weight for Linear \"" + module + "\"");
    return std::optional<LinearInfo>();
  }
  li.has_bias = ckpt.Find(module + ".bias") != nullptr;
  const io::TensorInfo* shape = ckpt.Find(module + ".weight_shape");
  const io::TensorInfo* w = ckpt.Find(module + ".weight");
  const io::TensorInfo* packed = ckpt.Find(module + ".weight_packed");
  if (shape && shape->dtype == DType::kI64 && shape->numel() == 2) {
    int64_t v[2];
    std::memcpy(v, shape->bytes.data(), sizeof v);
    li.rows = v[0];
    li.cols = v[1];
  } else if (w && w->shape.size() == 2) {
    li.rows = w->shape[0];
    li.cols = w->shape[1];
  } else if (packed && packed->shape.size() == 2 && packed->dtype == DType::kU8) {
    li.rows = packed->shape[0];  // two FP4 codes per byte
    li.cols = packed->shape[1] * 2;
  } else {
    return InvalidArgument("Linear \"" + module + "\": cannot tell its shape (weight must be 2-D)");
  }
  if (w && !IsFloatingPoint(w->dtype))
    return InvalidArgument("tensor \"" + module + ".weight\" has non-float dtype " +
                           std::string(DTypeName(w->dtype)));
  return std::optional<LinearInfo>(std::move(li));
}

// transformers v5 stores an MoE layer's experts packed: mlp.experts.gate_up_proj [E, 2I, D]
// (gate rows first, then up) and mlp.experts.down_proj [E, D, I]. Adds one LinearInfo per
// expert projection when present; false when the layer stores experts 2-D.
Result<bool> AddPackedExperts(const io::CheckpointReader& ckpt, int layer, int experts,
                              ModelLayout* layout, std::set<std::string>* seen) {
  const std::string p = "model.layers." + std::to_string(layer) + ".mlp.experts.";
  const io::TensorInfo* gu = ckpt.Find(p + "gate_up_proj");
  const io::TensorInfo* dn = ckpt.Find(p + "down_proj");
  if (!gu && !dn) return false;
  if (!gu || !dn || gu->shape.size() != 3 || dn->shape.size() != 3 || gu->shape[0] != experts ||
      dn->shape[0] != experts || gu->shape[1] % 2 != 0 || dn->shape[2] * 2 != gu->shape[1] ||
      dn->shape[1] != gu->shape[2])
    return InvalidArgument(p +
                           "{gate_up_proj,down_proj}: expected packed experts [E, 2I, D] and "
                           "[E, D, I] with E = num_experts");
  seen->insert(gu->name);
  seen->insert(dn->name);
  const int64_t inter = dn->shape[2], hidden = dn->shape[1];
  const std::string unit = "model.layers." + std::to_string(layer) + ".experts";
  for (int e = 0; e < experts; ++e) {
    const std::string m =
        "model.layers." + std::to_string(layer) + ".mlp.experts." + std::to_string(e) + ".";
    // Each expert's gate/up share global scales (as the per-expert layout's tensor list says).
    const std::string gate_up = m + "gate_up";
    layout->linears.push_back({m + "gate_proj", layer, inter, hidden, unit, gate_up, false,
                               false, false, gu->name, e, 0});
    layout->linears.push_back({m + "up_proj", layer, inter, hidden, unit, gate_up, false, false,
                               false, gu->name, e, inter});
    layout->linears.push_back({m + "down_proj", layer, hidden, inter, unit, m + "down_proj",
                               false, false, false, dn->name, e, 0});
  }
  return true;
}

// The global-scale group of a Linear: its scale_sharing key within its layer (or, for
// expert tensors, within its expert), else the module alone.
std::string ScaleGroup(const TensorSpec& spec, int layer, int expert, const std::string& module) {
  if (spec.scale_sharing.empty()) return module;
  std::string p = "model.layers." + std::to_string(layer) + ".";
  if (spec.pattern.find("{E}") != std::string_view::npos)
    p += "mlp.experts." + std::to_string(expert) + ".";
  return p + std::string(spec.scale_sharing);
}

int IntField(const nlohmann::json& c, const char* key, int fallback) {
  return c.contains(key) && c[key].is_number_integer() ? c[key].get<int>() : fallback;
}

}  // namespace

std::span<const ArchDescriptor> AllArchitectures() { return Table(); }

std::string ArchitectureNameList() {
  std::string s;
  for (const auto& a : Table()) s += (s.empty() ? "" : ", ") + std::string(a.name);
  return s;
}

Result<const ArchDescriptor*> DetectArchitecture(const nlohmann::json& config) {
  if (config.contains("architectures") && config["architectures"].is_array())
    for (const auto& a : config["architectures"])
      for (const auto& d : Table())
        for (auto hf : d.hf_architectures)
          if (a.is_string() && a.get<std::string>() == hf) return &d;
  const std::string type = config.value("model_type", "");
  for (const auto& d : Table())
    if (d.name == type) return &d;
  return InvalidArgument("unsupported architecture (model_type \"" + type +
                         "\"); supported: " + ArchitectureNameList());
}

Result<ModelLayout> ResolveLayout(const nlohmann::json& config, const io::CheckpointReader& ckpt) {
  ModelLayout layout;
  PQ_ASSIGN_OR_RETURN(layout.arch, DetectArchitecture(config));
  layout.num_layers = IntField(config, "num_hidden_layers", -1);
  if (layout.num_layers <= 0)
    return InvalidArgument("config.json: num_hidden_layers missing or not positive");
  // transformers v5 writes num_local_experts; older configs num_experts.
  layout.num_experts =
      layout.arch->expert_tensors.empty()
          ? 0
          : IntField(config, "num_experts", IntField(config, "num_local_experts", -1));
  if (!layout.arch->expert_tensors.empty() && layout.num_experts <= 0)
    return InvalidArgument("config.json: num_experts missing for an MoE architecture");
  layout.tie_word_embeddings = config.value("tie_word_embeddings", false);

  std::set<std::string> seen;
  std::map<std::string, const io::TensorInfo*> bias_of;
  auto visit = [&](const TensorSpec& spec, int layer, int expert) -> Status {
    const std::string name = Expand(spec.pattern, layer, expert);
    const bool linear = spec.role == R::kLinear || spec.role == R::kLmHead;
    if (linear) {
      PQ_ASSIGN_OR_RETURN(auto li, ResolveLinear(ckpt, name, spec.required, &seen));
      if (li) {
        li->layer = layer;
        li->is_lm_head = spec.role == R::kLmHead;
        li->unit = spec.sibling.empty()
                       ? li->module
                       : "model.layers." + std::to_string(layer) + "." + std::string(spec.sibling);
        li->scale_group = ScaleGroup(spec, layer, expert, li->module);
        layout.linears.push_back(std::move(*li));
      }
      return Status::Ok();
    }
    const io::TensorInfo* t = ckpt.Find(name);
    if (!t) {
      if (spec.required)
        return NotFound("checkpoint has no tensor \"" + name + "\" required by " +
                        std::string(layout.arch->name));
      return Status::Ok();
    }
    seen.insert(name);
    const size_t dims = spec.role == R::kEmbed || spec.role == R::kRouter ? 2 : 1;
    if (t->shape.size() != dims)
      return InvalidArgument("tensor \"" + name + "\" has " + std::to_string(t->shape.size()) +
                             " dims, expected " + std::to_string(dims));
    if (!IsFloatingPoint(t->dtype))
      return InvalidArgument("tensor \"" + name + "\" has non-float dtype " +
                             std::string(DTypeName(t->dtype)));
    layout.other_tensors.push_back(name);
    if (spec.role == R::kRouter) layout.always_ignored.push_back(ModuleOf(name));
    return Status::Ok();
  };
  for (int l = 0; l < layout.num_layers; ++l) {
    for (const auto& s : layout.arch->layer_tensors) PQ_RETURN_IF_ERROR(visit(s, l, 0));
    if (layout.num_experts == 0) continue;
    PQ_ASSIGN_OR_RETURN(bool packed, AddPackedExperts(ckpt, l, layout.num_experts, &layout, &seen));
    if (packed) continue;
    for (int e = 0; e < layout.num_experts; ++e)
      for (const auto& s : layout.arch->expert_tensors) PQ_RETURN_IF_ERROR(visit(s, l, e));
  }
  for (const auto& s : layout.arch->global_tensors) PQ_RETURN_IF_ERROR(visit(s, -1, 0));
  // The tied head is the embedding; expose it as a (tied) lm_head Linear.
  bool has_head = false;  // dense `lm_head.weight` or a compressed lm_head
  for (const auto& li : layout.linears) has_head |= li.is_lm_head;
  if (!has_head) {
    if (!layout.tie_word_embeddings)
      return NotFound("checkpoint has no lm_head weight and tie_word_embeddings is false");
    const io::TensorInfo* e = ckpt.Find("model.embed_tokens.weight");
    layout.linears.push_back({"lm_head", -1, e->shape[0], e->shape[1], "lm_head", "lm_head",
                              false, true, true, "", -1, 0});
  }
  for (const auto& name : ckpt.names())
    if (!seen.count(name))
      return InvalidArgument("tensor \"" + name + "\" is not part of the " +
                             std::string(layout.arch->name) +
                             " tensor list; refusing to guess how to treat it");
  return layout;
}

Result<nlohmann::json> ReadConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path);
  if (!in) return NotFound(path + ": cannot open (is this a Hugging Face model directory?)");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return DataLoss(path + ": not a JSON object");
  return j;
}

}  // namespace pq::model

namespace pq::model {

Result<std::vector<float>> ReadDenseLinear(const io::CheckpointReader& ckpt, const LinearInfo& li) {
  const std::string name = li.tied                    ? "model.embed_tokens.weight"
                           : li.packed_tensor.empty() ? li.module + ".weight"
                                                      : li.packed_tensor;
  PQ_ASSIGN_OR_RETURN(const io::TensorInfo* t, ckpt.Get(name));
  const auto n = static_cast<size_t>(li.rows * li.cols);
  if (li.packed_tensor.empty()) {
    if (t->numel() != li.rows * li.cols)
      return InvalidArgument("tensor \"" + name + "\" does not have the Linear's shape");
    auto v = io::ReadAsF32(*t);
    io::ReleaseTensorPages(*t);
    return v;
  }
  // Slice [packed_row, packed_row + rows) of expert packed_expert of a [E, R, C] tensor.
  const int64_t r = t->shape[1], c = t->shape[2];
  if (c != li.cols || li.packed_row + li.rows > r || li.packed_expert >= t->shape[0])
    return InvalidArgument("tensor \"" + name + "\": packed slice out of range");
  const size_t elem = DTypeSize(t->dtype);
  const size_t first = static_cast<size_t>((li.packed_expert * r + li.packed_row) * c);
  std::vector<float> out(n);
  ConvertToF32(t->dtype, t->bytes.data() + first * elem, n, out.data());
  io::ReleaseTensorPages(*t);
  return out;
}

}  // namespace pq::model
