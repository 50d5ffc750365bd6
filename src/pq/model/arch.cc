// Layout resolution: the architecture tables (arch_tables.cc) matched against the tensors
// of a concrete checkpoint.
#include "pq/model/arch.h"

#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "pq/formats/format.h"
#include "pq/model/config.h"

namespace pq::model {
namespace {

using R = TensorRole;

// Replaces "{M}" (text model prefix), "{L}" (layer / block) and "{E}" (expert).
std::string Expand(std::string_view pattern, const std::string& text_model, int layer, int expert) {
  std::string s(pattern);
  const std::pair<const char*, std::string> keys[] = {
      {"{M}", text_model}, {"{L}", std::to_string(layer)}, {"{E}", std::to_string(expert)}};
  for (const auto& [key, value] : keys) {
    const size_t at = s.find(key);
    if (at != std::string::npos) s.replace(at, 3, value);
  }
  return s;
}

// Every tensor a Linear module may hold, dense or compressed-tensors (format reference §2):
// those of the format table, and the ones other compressed-tensors schemes write.
constexpr std::string_view kLinearSuffixes[] = {formats::kSuffixWeight,
                                                formats::kSuffixWeightPacked,
                                                formats::kSuffixWeightScale,
                                                formats::kSuffixWeightGlobalScale,
                                                formats::kSuffixInputGlobalScale,
                                                formats::kSuffixWeightShape,
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
      found |= suffix == formats::kSuffixWeight || suffix == formats::kSuffixWeightPacked;
    }
  }
  if (!found) {
    if (required) return NotFound("checkpoint has no weight for Linear \"" + module + "\"");
    return std::optional<LinearInfo>();
  }
  li.has_bias = ckpt.Find(module + ".bias") != nullptr;
  auto find = [&](std::string_view suffix) {
    return ckpt.Find(module + "." + std::string(suffix));
  };
  const io::TensorInfo* shape = find(formats::kSuffixWeightShape);
  const io::TensorInfo* w = find(formats::kSuffixWeight);
  const io::TensorInfo* packed = find(formats::kSuffixWeightPacked);
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
  const std::string p = layout->LayerPrefix(layer) + "mlp.experts.";
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
  const std::string unit = layout->LayerPrefix(layer) + "experts";
  for (int e = 0; e < experts; ++e) {
    const std::string m = p + std::to_string(e) + ".";
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"})
      for (std::string_view suffix : kLinearSuffixes)
        if (ckpt.Find(m + proj + "." + std::string(suffix)))
          return InvalidArgument(layout->LayerPrefix(layer) +
                                 "mlp.experts: packed and per-expert tensors mixed in one layer (" +
                                 m + proj + "." + std::string(suffix) + ")");
    // Each expert's gate/up share global scales (as the per-expert layout's tensor list says).
    const std::string gate_up = m + "gate_up";
    const bool mtp = layer >= layout->num_layers;
    layout->linears.push_back({m + "gate_proj", layer, inter, hidden, unit, gate_up, false, false,
                               false, gu->name, e, 0, false, mtp});
    layout->linears.push_back({m + "up_proj", layer, inter, hidden, unit, gate_up, false, false,
                               false, gu->name, e, inter, false, mtp});
    layout->linears.push_back({m + "down_proj", layer, hidden, inter, unit, m + "down_proj", false,
                               false, false, dn->name, e, 0, false, mtp});
  }
  return true;
}

// The global-scale group of a Linear: its scale_sharing key within its layer (or, for
// expert tensors, within its expert), else the module alone.
std::string ScaleGroup(const TensorSpec& spec, const std::string& layer_prefix, int expert,
                       const std::string& module) {
  if (spec.scale_sharing.empty()) return module;
  std::string p = layer_prefix;
  if (spec.pattern.find("{E}") != std::string_view::npos)
    p += "mlp.experts." + std::to_string(expert) + ".";
  return p + std::string(spec.scale_sharing);
}

// Whether layer `layer` (L + j for MTP layer j) holds tensors of `kind`.
bool LayerHas(const ModelConfig& c, LayerKind kind, int layer) {
  const bool mtp = layer >= c.num_layers;
  switch (kind) {
    case LayerKind::kAny:
      return true;
    case LayerKind::kAttention:
      return mtp || !c.IsLinearAttention(layer);
    case LayerKind::kLinearAttention:
      return !mtp && c.IsLinearAttention(layer);
    case LayerKind::kMoe:
      return c.IsMoeLayer(layer);
    case LayerKind::kDenseMlp:
      return !c.IsMoeLayer(layer);
  }
  return false;
}

// Expected rank of a non-Linear tensor; 0 = any.
size_t RankOf(TensorRole role) {
  switch (role) {
    case R::kEmbed:
    case R::kRouter:
      return 2;
    case R::kTensor:
      return 0;
    default:
      return 1;
  }
}

int VisionDepth(const nlohmann::json& config) {
  if (!config.contains("vision_config") || !config["vision_config"].is_object()) return 0;
  const auto& v = config["vision_config"];
  return v.contains("depth") && v["depth"].is_number_integer() ? v["depth"].get<int>() : 0;
}

}  // namespace

std::string ModelLayout::LayerPrefix(int layer) const {
  if (layer >= num_layers) return "mtp.layers." + std::to_string(layer - num_layers) + ".";
  return text_model + "layers." + std::to_string(layer) + ".";
}

namespace {

// Resolves the tensors of one spec list into `layout` (Linears, other tensors, ignores).
class LayoutBuilder {
 public:
  LayoutBuilder(const io::CheckpointReader& ckpt, ModelLayout* layout)
      : ckpt_(ckpt), layout_(*layout) {}

  // One tensor: `prefix` + the expanded pattern.
  Status Visit(const TensorSpec& spec, const std::string& prefix, int layer, int expert,
               int block = 0) {
    // Layer and expert patterns are relative (no "{L}"); vision block patterns use "{L}".
    const std::string name = prefix + Expand(spec.pattern, layout_.text_model, block, expert);
    if (spec.role == R::kLinear || spec.role == R::kLmHead || spec.role == R::kVisualLinear)
      return VisitLinear(spec, name, prefix, layer, expert);
    const io::TensorInfo* t = ckpt_.Find(name);
    if (CompressedInstead(name))
      return InvalidArgument("tensor \"" + name + "\" is stored compressed (" + ModuleOf(name) +
                             ".weight_packed / .weight_scale): " +
                             "only Linears may be quantized, vLLM loads this one dense; the "
                             "recipe that wrote it did not ignore it (llm-compressor's "
                             "model_free_ptq: add \"" +
                             ModuleOf(name) + "\" to ignore)");
    if (!t) {
      if (spec.required)
        return NotFound("checkpoint has no tensor \"" + name + "\" required by " +
                        std::string(layout_.arch->name));
      return Status::Ok();
    }
    seen_.insert(name);
    const size_t dims = RankOf(spec.role);
    if (dims != 0 && t->shape.size() != dims)
      return InvalidArgument("tensor \"" + name + "\" has " + std::to_string(t->shape.size()) +
                             " dims, expected " + std::to_string(dims));
    if (!IsFloatingPoint(t->dtype))
      return InvalidArgument("tensor \"" + name + "\" has non-float dtype " +
                             std::string(DTypeName(t->dtype)));
    layout_.other_tensors.push_back(name);
    if (spec.role == R::kRouter) layout_.always_ignored.push_back(ModuleOf(name));
    return Status::Ok();
  }

  std::set<std::string>* seen() { return &seen_; }

 private:
  // A non-Linear ".weight" (embedding, router, norm) written as a compressed-tensors Linear
  // (NVFP4/INT: weight_packed; FP8/MX: weight in 8 bits beside a weight_scale).
  bool CompressedInstead(const std::string& name) const {
    if (name.size() < 7 || name.compare(name.size() - 7, 7, ".weight") != 0) return false;
    return ckpt_.Find(name + "_packed") || ckpt_.Find(name + "_scale");
  }

  Status VisitLinear(const TensorSpec& spec, const std::string& name, const std::string& prefix,
                     int layer, int expert) {
    PQ_ASSIGN_OR_RETURN(auto li, ResolveLinear(ckpt_, name, spec.required, &seen_));
    if (!li) return Status::Ok();
    li->is_visual = spec.role == R::kVisualLinear;
    li->layer = li->is_visual ? -1 : layer;
    li->is_mtp = layer >= layout_.num_layers;
    li->is_lm_head = spec.role == R::kLmHead;
    const std::string& unit_prefix = prefix.empty() ? li->module + "." : prefix;
    li->unit = spec.sibling.empty() ? li->module : unit_prefix + std::string(spec.sibling);
    li->scale_group = ScaleGroup(spec, prefix, expert, li->module);
    layout_.linears.push_back(std::move(*li));
    return Status::Ok();
  }

  const io::CheckpointReader& ckpt_;
  ModelLayout& layout_;
  std::set<std::string> seen_;
};

// The MTP head is used when the config declares one and its tensors are there (a checkpoint
// stripped of every mtp.* tensor has none; a partial one is an error naming what is missing).
int MtpLayers(const ModelConfig& c, const io::CheckpointReader& ckpt) {
  if (c.mtp_layers == 0) return 0;
  for (const auto& name : ckpt.names())
    if (name.rfind("mtp.", 0) == 0) return static_cast<int>(c.mtp_layers);
  return 0;
}

}  // namespace

Result<ModelLayout> ResolveLayout(const nlohmann::json& config, const io::CheckpointReader& ckpt) {
  ModelLayout layout;
  PQ_ASSIGN_OR_RETURN(layout.arch, DetectArchitecture(config));
  PQ_ASSIGN_OR_RETURN(const ModelConfig c,
                      ParseModelConfig(config, std::string(layout.arch->name)));
  layout.num_layers = static_cast<int>(c.num_layers);
  if (layout.num_layers <= 0)
    return InvalidArgument("config.json: num_hidden_layers missing or not positive");
  layout.num_experts = static_cast<int>(c.num_experts);
  if (!layout.arch->expert_tensors.empty() && layout.num_experts <= 0)
    return InvalidArgument("config.json: num_experts missing for an MoE architecture");
  layout.tie_word_embeddings = c.tie_word_embeddings;
  // Text-only exports of the multimodal families use "model." instead of the preferred prefix.
  layout.text_model = std::string(layout.arch->text_model);
  if (!ckpt.Find(layout.text_model + "embed_tokens.weight") &&
      ckpt.Find("model.embed_tokens.weight"))
    layout.text_model = "model.";
  layout.mtp_layers = MtpLayers(c, ckpt);

  LayoutBuilder b(ckpt, &layout);
  for (int l = 0; l < layout.num_layers + layout.mtp_layers; ++l) {
    const std::string prefix = layout.LayerPrefix(l);
    for (const auto& s : layout.arch->layer_tensors)
      if (LayerHas(c, s.kind, l)) PQ_RETURN_IF_ERROR(b.Visit(s, prefix, l, 0));
    if (!c.IsMoeLayer(l)) continue;
    const size_t first_expert = layout.linears.size();
    PQ_ASSIGN_OR_RETURN(bool packed,
                        AddPackedExperts(ckpt, l, layout.num_experts, &layout, b.seen()));
    if (!packed)
      for (int e = 0; e < layout.num_experts; ++e)
        for (const auto& s : layout.arch->expert_tensors)
          PQ_RETURN_IF_ERROR(b.Visit(s, prefix, l, e));
    for (size_t i = first_expert; i < layout.linears.size(); ++i)
      layout.linears[i].is_routed_expert = true;
  }
  if (layout.mtp_layers > 0)
    for (const auto& s : layout.arch->mtp_tensors)
      PQ_RETURN_IF_ERROR(b.Visit(s, "", layout.num_layers, 0));
  const int depth = VisionDepth(config);
  if (!layout.arch->vision_tensors.empty() && ckpt.Find("model.visual.patch_embed.proj.weight")) {
    for (int blk = 0; blk < depth; ++blk)
      for (const auto& s : layout.arch->vision_block_tensors)
        PQ_RETURN_IF_ERROR(b.Visit(s, "", -1, 0, blk));
    for (const auto& s : layout.arch->vision_tensors) PQ_RETURN_IF_ERROR(b.Visit(s, "", -1, 0));
  }
  for (const auto& s : layout.arch->global_tensors) PQ_RETURN_IF_ERROR(b.Visit(s, "", -1, 0));
  // The tied head is the embedding; expose it as a (tied) lm_head Linear.
  bool has_head = false;  // dense `lm_head.weight` or a compressed lm_head
  for (const auto& li : layout.linears) has_head |= li.is_lm_head;
  if (!has_head) {
    if (!layout.tie_word_embeddings)
      return NotFound("checkpoint has no lm_head weight and tie_word_embeddings is false");
    const io::TensorInfo* e = ckpt.Find(layout.text_model + "embed_tokens.weight");
    layout.linears.push_back({"lm_head", -1, e->shape[0], e->shape[1], "lm_head", "lm_head", false,
                              true, true, "", -1, 0});
  }
  for (const auto& name : ckpt.names())
    if (!b.seen()->count(name))
      return InvalidArgument("tensor \"" + name + "\" is not part of the " +
                             std::string(layout.arch->name) +
                             " tensor list; refusing to guess how to treat it");
  return layout;
}

}  // namespace pq::model
