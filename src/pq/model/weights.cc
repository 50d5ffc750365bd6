#include "pq/model/weights.h"

#include "pq/formats/format.h"

namespace pq::model {

Result<std::unique_ptr<WeightSource>> WeightSource::Open(const std::string& path) {
  auto ws = std::unique_ptr<WeightSource>(new WeightSource());
  ws->path_ = path;
  PQ_ASSIGN_OR_RETURN(ws->ckpt_, io::CheckpointReader::Open(path));
  PQ_ASSIGN_OR_RETURN(nlohmann::json cfg, ReadConfig(ws->ckpt_->dir()));
  PQ_ASSIGN_OR_RETURN(ws->layout_, ResolveLayout(cfg, *ws->ckpt_));
  PQ_ASSIGN_OR_RETURN(ws->config_, ParseModelConfig(cfg, std::string(ws->layout_.arch->name)));
  std::vector<std::string> violations;
  ws->formats_ = ResolveLinearFormats(cfg, ws->layout_, &violations);
  if (!violations.empty())
    return InvalidArgument(path + ": " + violations.front() + " (see `prismaquant inspect`)");
  for (const auto& li : ws->layout_.linears) ws->linear_by_module_[li.module] = &li;
  return ws;
}

Result<std::vector<float>> WeightSource::LoadVector(const std::string& name, int64_t size,
                                                    bool required) const {
  const io::TensorInfo* t = ckpt_->Find(name);
  if (!t) {
    if (required) return NotFound(path_ + ": missing tensor \"" + name + "\"");
    return std::vector<float>();
  }
  if (t->numel() != size)
    return InvalidArgument(path_ + ": tensor \"" + name + "\" has " + std::to_string(t->numel()) +
                           " elements, expected " + std::to_string(size));
  auto v = io::ReadAsF32(*t);
  io::ReleaseTensorPages(*t);  // streaming: only the converted copy stays resident
  return v;
}

Result<LinearWeights> WeightSource::LoadLinear(const std::string& module) const {
  auto it = linear_by_module_.find(module);
  if (it == linear_by_module_.end()) return NotFound(path_ + ": no Linear \"" + module + "\"");
  const LinearInfo& li = *it->second;
  LinearWeights lw;
  lw.module = module;
  lw.rows = li.rows;
  lw.cols = li.cols;
  const formats::FormatId fmt = formats_.at(module).format;
  if (li.tied || fmt == formats::FormatId::kBF16) {
    PQ_ASSIGN_OR_RETURN(lw.w, ReadDenseLinear(*ckpt_, li));
  } else {
    std::vector<formats::QTensorView> views;
    std::vector<const io::TensorInfo*> stored;
    for (auto suffix : formats::TensorSuffixes(fmt)) {
      PQ_ASSIGN_OR_RETURN(const io::TensorInfo* t, ckpt_->Get(module + "." + std::string(suffix)));
      views.push_back({suffix, t->dtype, t->shape, t->bytes});
      stored.push_back(t);
    }
    auto d = formats::Dequantize(fmt, views, li.rows, li.cols);
    for (const io::TensorInfo* t : stored) io::ReleaseTensorPages(*t);
    if (!d.ok()) return d.status().WithContext(path_ + ": " + module);
    lw.w = std::move(*d);
    lw.act_format = fmt;
    if (fmt == formats::FormatId::kNVFP4) {
      PQ_ASSIGN_OR_RETURN(const io::TensorInfo* t, ckpt_->Get(module + ".input_global_scale"));
      PQ_ASSIGN_OR_RETURN(const std::vector<float> gs, io::ReadAsF32(*t));
      if (gs.size() != 1)
        return InvalidArgument(path_ + ": " + module + ".input_global_scale must hold one value");
      lw.input_global_scale = gs[0];
    }
  }
  if (li.has_bias) {
    PQ_ASSIGN_OR_RETURN(lw.b, LoadVector(module + ".bias", li.rows, true));
  }
  if (linear_hook_) PQ_RETURN_IF_ERROR(linear_hook_(lw));
  return lw;
}

Result<LayerWeights> WeightSource::LoadLayer(int64_t layer) const {
  const ModelConfig& c = config_;
  if (layer < 0 || layer >= c.num_layers) return InvalidArgument("layer out of range");
  LayerWeights lw;
  lw.layer = layer;
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  PQ_ASSIGN_OR_RETURN(lw.input_norm, LoadVector(p + "input_layernorm.weight", c.hidden, true));
  PQ_ASSIGN_OR_RETURN(lw.post_norm,
                      LoadVector(p + "post_attention_layernorm.weight", c.hidden, true));
  if (c.qk_norm) {
    PQ_ASSIGN_OR_RETURN(lw.q_norm, LoadVector(p + "self_attn.q_norm.weight", c.head_dim, true));
    PQ_ASSIGN_OR_RETURN(lw.k_norm, LoadVector(p + "self_attn.k_norm.weight", c.head_dim, true));
  }
  PQ_ASSIGN_OR_RETURN(lw.q, LoadLinear(p + "self_attn.q_proj"));
  PQ_ASSIGN_OR_RETURN(lw.k, LoadLinear(p + "self_attn.k_proj"));
  PQ_ASSIGN_OR_RETURN(lw.v, LoadLinear(p + "self_attn.v_proj"));
  PQ_ASSIGN_OR_RETURN(lw.o, LoadLinear(p + "self_attn.o_proj"));
  auto expect = [&](const LinearWeights& l, int64_t rows, int64_t cols) -> Status {
    if (l.rows == rows && l.cols == cols) return Status::Ok();
    return InvalidArgument(path_ + ": " + l.module + " is [" + std::to_string(l.rows) + ", " +
                           std::to_string(l.cols) + "], config implies [" + std::to_string(rows) +
                           ", " + std::to_string(cols) + "]");
  };
  PQ_RETURN_IF_ERROR(expect(lw.q, c.q_dim(), c.hidden));
  PQ_RETURN_IF_ERROR(expect(lw.k, c.kv_dim(), c.hidden));
  PQ_RETURN_IF_ERROR(expect(lw.v, c.kv_dim(), c.hidden));
  PQ_RETURN_IF_ERROR(expect(lw.o, c.hidden, c.q_dim()));
  if (!c.IsMoeLayer(layer)) {
    PQ_ASSIGN_OR_RETURN(lw.gate, LoadLinear(p + "mlp.gate_proj"));
    PQ_ASSIGN_OR_RETURN(lw.up, LoadLinear(p + "mlp.up_proj"));
    PQ_ASSIGN_OR_RETURN(lw.down, LoadLinear(p + "mlp.down_proj"));
    PQ_RETURN_IF_ERROR(expect(lw.gate, c.intermediate, c.hidden));
    PQ_RETURN_IF_ERROR(expect(lw.up, c.intermediate, c.hidden));
    PQ_RETURN_IF_ERROR(expect(lw.down, c.hidden, c.intermediate));
    return lw;
  }
  lw.router.module = p + "mlp.gate";
  lw.router.rows = c.num_experts;
  lw.router.cols = c.hidden;
  PQ_ASSIGN_OR_RETURN(lw.router.w,
                      LoadVector(p + "mlp.gate.weight", c.num_experts * c.hidden, true));
  for (int64_t e = 0; e < c.num_experts; ++e) {
    const std::string ep = p + "mlp.experts." + std::to_string(e) + ".";
    ExpertWeights ew;
    PQ_ASSIGN_OR_RETURN(ew.gate, LoadLinear(ep + "gate_proj"));
    PQ_ASSIGN_OR_RETURN(ew.up, LoadLinear(ep + "up_proj"));
    PQ_ASSIGN_OR_RETURN(ew.down, LoadLinear(ep + "down_proj"));
    PQ_RETURN_IF_ERROR(expect(ew.gate, c.moe_intermediate, c.hidden));
    PQ_RETURN_IF_ERROR(expect(ew.up, c.moe_intermediate, c.hidden));
    PQ_RETURN_IF_ERROR(expect(ew.down, c.hidden, c.moe_intermediate));
    lw.experts.push_back(std::move(ew));
  }
  return lw;
}

Result<HeadWeights> WeightSource::LoadHead() const {
  HeadWeights h;
  PQ_ASSIGN_OR_RETURN(h.final_norm, LoadVector("model.norm.weight", config_.hidden, true));
  PQ_ASSIGN_OR_RETURN(h.lm_head, LoadLinear("lm_head"));
  if (h.lm_head.rows != config_.vocab || h.lm_head.cols != config_.hidden)
    return InvalidArgument(path_ + ": lm_head shape does not match vocab_size x hidden_size");
  return h;
}

Status WeightSource::Embed(std::span<const int32_t> ids, std::span<float> out) const {
  PQ_ASSIGN_OR_RETURN(const io::TensorInfo* t, ckpt_->Get("model.embed_tokens.weight"));
  const int64_t d = config_.hidden;
  if (t->shape.size() != 2 || t->shape[1] != d || t->shape[0] < config_.vocab)
    return InvalidArgument(path_ + ": model.embed_tokens.weight shape does not match the config");
  const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(t->dtype);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= t->shape[0])
      return InvalidArgument("token id " + std::to_string(ids[i]) + " is outside the vocabulary (" +
                             std::to_string(t->shape[0]) + ")");
    ConvertToF32(t->dtype, t->bytes.data() + static_cast<size_t>(ids[i]) * row_bytes,
                 static_cast<size_t>(d), out.data() + i * static_cast<size_t>(d));
  }
  io::ReleaseTensorPages(*t);
  return Status::Ok();
}

}  // namespace pq::model
