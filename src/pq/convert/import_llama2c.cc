#include "pq/convert/import_llama2c.h"

#include <filesystem>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>

#include "pq/convert/llama2c_hf.h"
#include "pq/core/log.h"
#include "pq/core/minifloat.h"
#include "pq/io/file_util.h"
#include "pq/io/safetensors.h"

namespace pq::convert {
namespace {

using io::CheckpointWriter;
using io::Llama2cConfig;
using io::Llama2cReader;
using io::Llama2cTensor;
using io::Llama2cVocab;

Status AddF32Tensor(CheckpointWriter& w, const std::string& name, std::vector<int64_t> shape,
                    const std::vector<float>& values, DType dtype, int64_t* params) {
  *params += static_cast<int64_t>(values.size());
  if (dtype == DType::kF32) {
    return w.AddTensor(name, DType::kF32, std::move(shape),
                       std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(values.data()),
                                                values.size() * 4));
  }
  std::vector<uint16_t> bf(values.size());
  for (size_t i = 0; i < values.size(); ++i) bf[i] = F32ToBf16(values[i]);
  return w.AddTensor(
      name, DType::kBF16, std::move(shape),
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bf.data()), bf.size() * 2));
}

// One HF tensor per llama2.c tensor, in llama2.c file order: `from` (of each layer for the
// per-layer ones) -> `name` (after "model.layers.N." for those), q/k rows RoPE-permuted.
struct TensorMap {
  Llama2cTensor from;
  const char* name;
  bool permute = false;  // q (n_heads) or k (n_kv_heads) rows
};

constexpr TensorMap kLayerTensors[] = {
    {.from = Llama2cTensor::kRmsAtt, .name = "input_layernorm.weight"},
    {.from = Llama2cTensor::kWq, .name = "self_attn.q_proj.weight", .permute = true},
    {.from = Llama2cTensor::kWk, .name = "self_attn.k_proj.weight", .permute = true},
    {.from = Llama2cTensor::kWv, .name = "self_attn.v_proj.weight"},
    {.from = Llama2cTensor::kWo, .name = "self_attn.o_proj.weight"},
    {.from = Llama2cTensor::kRmsFfn, .name = "post_attention_layernorm.weight"},
    {.from = Llama2cTensor::kW1, .name = "mlp.gate_proj.weight"},
    {.from = Llama2cTensor::kW2, .name = "mlp.down_proj.weight"},
    {.from = Llama2cTensor::kW3, .name = "mlp.up_proj.weight"},
};

// The HF shape of llama2.c tensor `t` (one layer's copy).
std::vector<int64_t> HfShape(const Llama2cConfig& c, Llama2cTensor t) {
  const int64_t D = c.dim, H = c.hidden_dim, V = c.vocab_size, KV = c.kv_dim();
  switch (t) {
    case Llama2cTensor::kTokenEmbedding:
    case Llama2cTensor::kClassifier:
      return {V, D};
    case Llama2cTensor::kRmsAtt:
    case Llama2cTensor::kRmsFfn:
    case Llama2cTensor::kRmsFinal:
      return {D};
    case Llama2cTensor::kWq:
    case Llama2cTensor::kWo:
      return {D, D};
    case Llama2cTensor::kWk:
    case Llama2cTensor::kWv:
      return {KV, D};
    case Llama2cTensor::kW1:
    case Llama2cTensor::kW3:
      return {H, D};
    case Llama2cTensor::kW2:
      return {D, H};
  }
  return {};
}

Status WriteTensors(const Llama2cReader& bin, DType dtype, CheckpointWriter& w,
                    int64_t* num_tensors, int64_t* params) {
  const Llama2cConfig& c = bin.config();
  auto emit = [&](const std::string& name, Llama2cTensor from,
                  const std::vector<float>& v) -> Status {
    ++*num_tensors;
    return AddF32Tensor(w, name, HfShape(c, from), v, dtype, params).WithContext("writing " + name);
  };

  PQ_ASSIGN_OR_RETURN(auto embed, bin.Read(Llama2cTensor::kTokenEmbedding));
  PQ_RETURN_IF_ERROR(emit("model.embed_tokens.weight", Llama2cTensor::kTokenEmbedding, embed));
  embed = {};

  Progress progress("import-llama2c", static_cast<size_t>(c.n_layers));
  for (int32_t layer = 0; layer < c.n_layers; ++layer) {
    const std::string pre = "model.layers." + std::to_string(layer) + ".";
    for (const TensorMap& m : kLayerTensors) {
      PQ_ASSIGN_OR_RETURN(auto v, bin.Read(m.from, layer));
      if (m.permute) {
        const int32_t heads = m.from == Llama2cTensor::kWq ? c.n_heads : c.n_kv_heads;
        std::vector<float> p(v.size());
        PermuteRopeRows(v, heads, c.head_dim(), c.dim, p);
        v = std::move(p);
      }
      PQ_RETURN_IF_ERROR(emit(pre + m.name, m.from, v));
    }
    progress.Advance();
  }
  progress.Finish();
  PQ_ASSIGN_OR_RETURN(auto norm, bin.Read(Llama2cTensor::kRmsFinal));
  PQ_RETURN_IF_ERROR(emit("model.norm.weight", Llama2cTensor::kRmsFinal, norm));
  if (!c.shared_classifier) {
    PQ_ASSIGN_OR_RETURN(auto v, bin.Read(Llama2cTensor::kClassifier));
    PQ_RETURN_IF_ERROR(emit("lm_head.weight", Llama2cTensor::kClassifier, v));
  }
  return Status::Ok();
}

}  // namespace

Result<ImportSummary> ImportLlama2c(const std::string& bin_path, const std::string& tokenizer_path,
                                    const std::string& out_dir, const ImportOptions& options) {
  if (options.dtype != DType::kF32 && options.dtype != DType::kBF16) {
    return InvalidArgument("import-llama2c: --dtype must be F32 or BF16, not " +
                           std::string(DTypeName(options.dtype)));
  }
  if (out_dir.empty()) return InvalidArgument("import-llama2c: the output directory is empty");
  PQ_RETURN_IF_ERROR(io::CheckOutputOutsideInputs(out_dir, {bin_path, tokenizer_path}));
  std::error_code ec;
  if (!options.overwrite && std::filesystem::exists(out_dir, ec)) {
    return InvalidArgument(out_dir + ": already exists; pass --overwrite to replace it");
  }

  // Validate both inputs completely before writing anything.
  PQ_ASSIGN_OR_RETURN(Llama2cReader bin, Llama2cReader::Open(bin_path));
  PQ_ASSIGN_OR_RETURN(Llama2cVocab vocab, io::ReadLlama2cTokenizer(tokenizer_path));
  if (vocab.pieces.size() != static_cast<size_t>(bin.config().vocab_size)) {
    return InvalidArgument(tokenizer_path + ": the tokenizer has " +
                           std::to_string(vocab.pieces.size()) + " tokens but the checkpoint " +
                           bin_path + " has vocab_size " + std::to_string(bin.config().vocab_size) +
                           "; pass the tokenizer the model was trained with");
  }
  PQ_ASSIGN_OR_RETURN(std::string tokenizer_json, MakeHfTokenizerJson(vocab, tokenizer_path));

  io::WriterOptions wopts;
  wopts.overwrite = options.overwrite;
  PQ_ASSIGN_OR_RETURN(auto writer, CheckpointWriter::Create(out_dir, wopts));
  ImportSummary s;
  s.out_dir = out_dir;
  s.config = bin.config();
  PQ_RETURN_IF_ERROR(WriteTensors(bin, options.dtype, *writer, &s.num_tensors, &s.num_params));
  const std::pair<std::string, std::string> files[] = {
      {"config.json", MakeHfLlamaConfigJson(bin.config(), options.dtype)},
      {"tokenizer.json", std::move(tokenizer_json)},
      {"tokenizer_config.json", MakeHfTokenizerConfigJson(bin.config().seq_len)},
      {"special_tokens_map.json", MakeHfSpecialTokensMapJson()},
  };
  for (const auto& [name, contents] : files) {
    PQ_RETURN_IF_ERROR(writer->AddFile(name, contents));
    s.files.push_back(name);
  }
  PQ_RETURN_IF_ERROR(writer->CopyFile(tokenizer_path, "tokenizer.bin"));
  s.files.push_back("tokenizer.bin");
  s.tensor_bytes = writer->total_tensor_bytes();
  PQ_RETURN_IF_ERROR(writer->Commit());
  return s;
}

}  // namespace pq::convert
