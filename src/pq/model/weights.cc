#include "pq/model/weights.h"

#include <cmath>
#include <optional>

#include "pq/core/io_clock.h"
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
  PQ_RETURN_IF_ERROR(ws->CheckShapes());
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
  if (shapes_only_) return std::vector<float>();
  const IoTimer io_timer;
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
  if (shapes_only_) return lw;  // rows, cols from the stored tensors (ResolveLayout)
  std::optional<IoTimer> io_timer(std::in_place);  // reading, not the hook below
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
    for (size_t i = 0; i < d->size(); ++i)
      if (!std::isfinite((*d)[i]))
        return DataLoss(path_ + ": " + module + " dequantizes to a non-finite value at [" +
                        std::to_string(i / static_cast<size_t>(li.cols)) + ", " +
                        std::to_string(i % static_cast<size_t>(li.cols)) +
                        "] (a damaged scale); the checkpoint is damaged");
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
  io_timer.reset();
  if (linear_hook_) PQ_RETURN_IF_ERROR(linear_hook_(lw));
  return lw;
}

Result<LinearWeights> WeightSource::LoadLinearShaped(const std::string& module, int64_t rows,
                                                     int64_t cols) const {
  PQ_ASSIGN_OR_RETURN(LinearWeights l, LoadLinear(module));
  if (l.rows == rows && l.cols == cols) return l;
  return InvalidArgument(path_ + ": " + module + " is [" + std::to_string(l.rows) + ", " +
                         std::to_string(l.cols) + "], config implies [" + std::to_string(rows) +
                         ", " + std::to_string(cols) + "]");
}

Status WeightSource::LoadAttention(const std::string& p, LayerWeights& lw) const {
  const ModelConfig& c = config_;
  if (c.qk_norm) {
    PQ_ASSIGN_OR_RETURN(lw.q_norm, LoadVector(p + "self_attn.q_norm.weight", c.head_dim, true));
    PQ_ASSIGN_OR_RETURN(lw.k_norm, LoadVector(p + "self_attn.k_norm.weight", c.head_dim, true));
  }
  PQ_ASSIGN_OR_RETURN(lw.q, LoadLinearShaped(p + "self_attn.q_proj", c.q_proj_rows(), c.hidden));
  PQ_ASSIGN_OR_RETURN(lw.k, LoadLinearShaped(p + "self_attn.k_proj", c.kv_dim(), c.hidden));
  PQ_ASSIGN_OR_RETURN(lw.v, LoadLinearShaped(p + "self_attn.v_proj", c.kv_dim(), c.hidden));
  PQ_ASSIGN_OR_RETURN(lw.o, LoadLinearShaped(p + "self_attn.o_proj", c.hidden, c.q_dim()));
  return Status::Ok();
}

Status WeightSource::LoadLinearAttention(const std::string& p, LayerWeights& lw) const {
  const ModelConfig& c = config_;
  LinearAttentionWeights& a = lw.lin;
  const std::string q = p + "linear_attn.";
  const int64_t d = c.hidden, hv = c.lin_v_heads, conv_dim = c.lin_conv_dim();
  if (c.lin_fused_naming) {
    PQ_ASSIGN_OR_RETURN(a.in_qkv,
                        LoadLinearShaped(q + "in_proj_qkvz", conv_dim + c.lin_value_dim(), d));
    PQ_ASSIGN_OR_RETURN(a.in_b, LoadLinearShaped(q + "in_proj_ba", 2 * hv, d));
  } else {
    PQ_ASSIGN_OR_RETURN(a.in_qkv, LoadLinearShaped(q + "in_proj_qkv", conv_dim, d));
    PQ_ASSIGN_OR_RETURN(a.in_z, LoadLinearShaped(q + "in_proj_z", c.lin_value_dim(), d));
    PQ_ASSIGN_OR_RETURN(a.in_b, LoadLinearShaped(q + "in_proj_b", hv, d));
    PQ_ASSIGN_OR_RETURN(a.in_a, LoadLinearShaped(q + "in_proj_a", hv, d));
  }
  PQ_ASSIGN_OR_RETURN(a.out, LoadLinearShaped(q + "out_proj", d, c.lin_value_dim()));
  PQ_ASSIGN_OR_RETURN(a.conv, LoadVector(q + "conv1d.weight", conv_dim * c.conv_kernel, true));
  PQ_ASSIGN_OR_RETURN(a.a_log, LoadVector(q + "A_log", hv, true));
  PQ_ASSIGN_OR_RETURN(a.dt_bias, LoadVector(q + "dt_bias", hv, true));
  PQ_ASSIGN_OR_RETURN(a.norm, LoadVector(q + "norm.weight", c.lin_v_dim, true));
  return Status::Ok();
}

Status WeightSource::LoadFfn(const std::string& p, LayerWeights& lw) const {
  const ModelConfig& c = config_;
  const int64_t d = c.hidden;
  if (!c.IsMoeLayer(lw.layer)) {
    PQ_ASSIGN_OR_RETURN(lw.gate, LoadLinearShaped(p + "mlp.gate_proj", c.intermediate, d));
    PQ_ASSIGN_OR_RETURN(lw.up, LoadLinearShaped(p + "mlp.up_proj", c.intermediate, d));
    PQ_ASSIGN_OR_RETURN(lw.down, LoadLinearShaped(p + "mlp.down_proj", d, c.intermediate));
    return Status::Ok();
  }
  auto gate_vector = [&](LinearWeights& g, const std::string& module, int64_t rows) -> Status {
    g.module = module;
    g.rows = rows;
    g.cols = d;
    PQ_ASSIGN_OR_RETURN(g.w, LoadVector(module + ".weight", rows * d, true));
    return Status::Ok();
  };
  PQ_RETURN_IF_ERROR(gate_vector(lw.router, p + "mlp.gate", c.num_experts));
  const int64_t f = c.moe_intermediate;
  for (int64_t e = 0; e < c.num_experts; ++e) {
    const std::string ep = p + "mlp.experts." + std::to_string(e) + ".";
    ExpertWeights ew;
    PQ_ASSIGN_OR_RETURN(ew.gate, LoadLinearShaped(ep + "gate_proj", f, d));
    PQ_ASSIGN_OR_RETURN(ew.up, LoadLinearShaped(ep + "up_proj", f, d));
    PQ_ASSIGN_OR_RETURN(ew.down, LoadLinearShaped(ep + "down_proj", d, f));
    lw.experts.push_back(std::move(ew));
  }
  if (c.shared_expert_intermediate == 0) return Status::Ok();
  const int64_t fs = c.shared_expert_intermediate;
  PQ_ASSIGN_OR_RETURN(lw.shared_gate, LoadLinearShaped(p + "mlp.shared_expert.gate_proj", fs, d));
  PQ_ASSIGN_OR_RETURN(lw.shared_up, LoadLinearShaped(p + "mlp.shared_expert.up_proj", fs, d));
  PQ_ASSIGN_OR_RETURN(lw.shared_down, LoadLinearShaped(p + "mlp.shared_expert.down_proj", d, fs));
  return gate_vector(lw.shared_expert_gate, p + "mlp.shared_expert_gate", 1);
}

Result<LayerWeights> WeightSource::LoadLayer(int64_t layer) const {
  const ModelConfig& c = config_;
  if (layer < 0 || layer >= c.num_layers + layout_.mtp_layers)
    return InvalidArgument("layer out of range");
  LayerWeights lw;
  lw.layer = layer;
  const std::string p = layout_.LayerPrefix(static_cast<int>(layer));
  PQ_ASSIGN_OR_RETURN(lw.input_norm, LoadVector(p + "input_layernorm.weight", c.hidden, true));
  PQ_ASSIGN_OR_RETURN(lw.post_norm,
                      LoadVector(p + "post_attention_layernorm.weight", c.hidden, true));
  if (c.IsLinearAttention(layer)) {
    PQ_RETURN_IF_ERROR(LoadLinearAttention(p, lw));
  } else {
    PQ_RETURN_IF_ERROR(LoadAttention(p, lw));
  }
  PQ_RETURN_IF_ERROR(LoadFfn(p, lw));
  return lw;
}

Result<MtpWeights> WeightSource::LoadMtp() const {
  if (!layout_.has_mtp()) return NotFound(path_ + ": checkpoint has no MTP head (mtp.*)");
  const int64_t d = config_.hidden;
  MtpWeights m;
  PQ_ASSIGN_OR_RETURN(m.norm_embedding, LoadVector("mtp.pre_fc_norm_embedding.weight", d, true));
  PQ_ASSIGN_OR_RETURN(m.norm_hidden, LoadVector("mtp.pre_fc_norm_hidden.weight", d, true));
  PQ_ASSIGN_OR_RETURN(m.norm, LoadVector("mtp.norm.weight", d, true));
  PQ_ASSIGN_OR_RETURN(m.fc, LoadLinearShaped("mtp.fc", d, 2 * d));
  return m;
}

Result<HeadWeights> WeightSource::LoadHead() const {
  HeadWeights h;
  PQ_ASSIGN_OR_RETURN(h.final_norm,
                      LoadVector(layout_.text_model + "norm.weight", config_.hidden, true));
  PQ_ASSIGN_OR_RETURN(h.lm_head, LoadLinear("lm_head"));
  if (h.lm_head.rows != config_.vocab || h.lm_head.cols != config_.hidden)
    return InvalidArgument(path_ + ": lm_head" + " is [" + std::to_string(h.lm_head.rows) + ", " +
                           std::to_string(h.lm_head.cols) + "], config implies [" +
                           std::to_string(config_.vocab) + ", " + std::to_string(config_.hidden) +
                           "] (vocab_size, hidden_size)");
  return h;
}

Status WeightSource::CheckShapes() const {
  shapes_only_ = true;
  struct Restore {
    bool& flag;
    ~Restore() { flag = false; }
  } restore{shapes_only_};
  for (int64_t l = 0; l < config_.num_layers + layout_.mtp_layers; ++l)
    PQ_RETURN_IF_ERROR(LoadLayer(l).status());
  if (layout_.has_mtp()) PQ_RETURN_IF_ERROR(LoadMtp().status());
  PQ_RETURN_IF_ERROR(LoadHead().status());
  const std::string name = layout_.text_model + "embed_tokens.weight";
  PQ_ASSIGN_OR_RETURN(const io::TensorInfo* t, ckpt_->Get(name));
  if (t->shape.size() != 2 || t->shape[1] != config_.hidden || t->shape[0] < config_.vocab)
    return InvalidArgument(path_ + ": " + name + " is [" +
                           (t->shape.size() == 2
                                ? std::to_string(t->shape[0]) + ", " + std::to_string(t->shape[1])
                                : std::to_string(t->shape.size()) + "-D") +
                           "], config implies [" + std::to_string(config_.vocab) + ", " +
                           std::to_string(config_.hidden) + "] (vocab_size, hidden_size)");
  return Status::Ok();
}

Status WeightSource::Embed(std::span<const int32_t> ids, std::span<float> out) const {
  const std::string name = layout_.text_model + "embed_tokens.weight";
  PQ_ASSIGN_OR_RETURN(const io::TensorInfo* t, ckpt_->Get(name));
  const int64_t d = config_.hidden;
  if (t->shape.size() != 2 || t->shape[1] != d || t->shape[0] < config_.vocab)
    return InvalidArgument(path_ + ": " + name + " shape does not match the config");
  const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(t->dtype);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= t->shape[0])
      return InvalidArgument("token id " + std::to_string(ids[i]) + " is outside the vocabulary (" +
                             std::to_string(t->shape[0]) + ")");
    float* row = out.data() + i * static_cast<size_t>(d);
    ConvertToF32(t->dtype, t->bytes.data() + static_cast<size_t>(ids[i]) * row_bytes,
                 static_cast<size_t>(d), row);
    PQ_RETURN_IF_ERROR(io::CheckFinite(std::span<const float>(row, static_cast<size_t>(d)), *t,
                                       static_cast<int64_t>(ids[i]) * d));
  }
  io::ReleaseTensorPages(*t);
  return Status::Ok();
}

}  // namespace pq::model
