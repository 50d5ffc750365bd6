#include "pq/pipeline/checkpoint_util.h"

#include <filesystem>

#include "pq/core/minifloat.h"

namespace pq::pipeline {

Result<std::vector<float>> ReadAsBf16Values(const io::TensorInfo& t) {
  PQ_ASSIGN_OR_RETURN(std::vector<float> v, io::ReadAsF32(t));
  for (float& x : v) x = RoundBf16(x);
  return v;
}

Status AddBf16Tensor(io::CheckpointWriter& w, const std::string& name,
                     const std::vector<int64_t>& shape, const std::vector<float>& values) {
  std::vector<uint16_t> bits(values.size());
  for (size_t i = 0; i < values.size(); ++i) bits[i] = F32ToBf16(values[i]);
  return w.AddTensor(name, DType::kBF16, shape,
                     {reinterpret_cast<const uint8_t*>(bits.data()), bits.size() * 2});
}

Status CopyNonWeightFiles(const std::string& model_dir, io::CheckpointWriter& w) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(model_dir, ec)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    if (name == "config.json" || name == "model.safetensors.index.json" ||
        entry.path().extension() == ".safetensors")
      continue;
    PQ_RETURN_IF_ERROR(w.CopyFile(entry.path().string(), name));
  }
  if (ec) return IoError(model_dir + ": cannot list directory: " + ec.message());
  return Status::Ok();
}

void SetBf16Dtype(nlohmann::json& config) {
  bool set = false;
  for (const char* key : {"torch_dtype", "dtype"})
    if (config.contains(key)) {
      config[key] = "bfloat16";
      set = true;
    }
  if (!set) config["torch_dtype"] = "bfloat16";
}

}  // namespace pq::pipeline
