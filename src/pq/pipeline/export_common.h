// Pieces every export path shares (uniform, per-allocation RTN, calibrated sequential).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/formats/format.h"
#include "pq/io/safetensors.h"
#include "pq/model/arch.h"
#include "pq/pipeline/export_uniform.h"

namespace pq::pipeline {

// Every tensor that is not a quantizable Linear weight (embeddings, norms, routers, buffers;
// biases are written with their Linear), floating ones as BF16.
Status WriteOtherTensors(const io::CheckpointReader& ckpt, const model::ModelLayout& layout,
                         io::CheckpointWriter& w);

// One Linear's stored tensors (+ its bias in BF16), recorded in `summary`.
Status WriteLinearTensors(const io::CheckpointReader& ckpt, const model::LinearInfo& li,
                          formats::FormatId fmt, const std::vector<formats::QTensor>& tensors,
                          const std::string& fallback, io::CheckpointWriter& w,
                          ExportSummary& summary);

// Other tensors, config.json (quantization_config from `module_formats`, untied when lm_head
// is quantized), the model's non-weight files; commits the writer.
Status FinishCheckpoint(const std::string& model_dir, const io::CheckpointReader& ckpt,
                        const model::ModelLayout& layout, nlohmann::json config,
                        const std::map<std::string, formats::FormatId>& module_formats,
                        io::CheckpointWriter& w, ExportSummary& summary);

}  // namespace pq::pipeline
