// Small helpers shared by the pipeline stages that read and write checkpoints.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/io/safetensors.h"

namespace pq::pipeline {

// A tensor's values as float32 rounded to bf16 (what compressed-tensors sees).
Result<std::vector<float>> ReadAsBf16Values(const io::TensorInfo& t);

// Writes a float tensor as BF16 under `name`.
Status AddBf16Tensor(io::CheckpointWriter& w, const std::string& name,
                     const std::vector<int64_t>& shape, const std::vector<float>& values);

// Copies every regular top-level file of `model_dir` that is not a weight file
// (*.safetensors, the index, config.json) into the writer.
Status CopyNonWeightFiles(const std::string& model_dir, io::CheckpointWriter& w);

// Sets the model dtype keys of a config to bfloat16.
void SetBf16Dtype(nlohmann::json& config);

}  // namespace pq::pipeline
