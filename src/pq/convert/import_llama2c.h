// llama2.c import: a legacy (v0) llama2.c checkpoint and its tokenizer.bin (read by
// io/llama2c.h) -> a Hugging Face Llama directory (model.safetensors, config.json,
// tokenizer.json, tokenizer_config.json, special_tokens_map.json, and the original
// tokenizer.bin).
//
// Mapping: w1->gate_proj, w3->up_proj, w2->down_proj; rms_att->input_layernorm,
// rms_ffn->post_attention_layernorm; q/k rows permuted to HF's rotate-half RoPE
// (llama2c_hf.h). The freq_cis tables are dropped (rope_theta 10000).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pq/core/dtype.h"
#include "pq/core/status.h"
#include "pq/io/llama2c.h"

namespace pq::convert {

struct ImportOptions {
  DType dtype = DType::kF32;  // F32 (lossless) or BF16
  bool overwrite = false;     // replace an existing output directory
};

struct ImportSummary {
  std::string out_dir;
  io::Llama2cConfig config;
  int64_t num_tensors = 0;
  int64_t num_params = 0;
  uint64_t tensor_bytes = 0;
  std::vector<std::string> files;  // written into out_dir, besides the safetensors shards
};

// Converts `bin_path` + `tokenizer_path` into `out_dir` (atomically: nothing is left at
// `out_dir` on failure). Both inputs are validated completely before anything is written.
Result<ImportSummary> ImportLlama2c(const std::string& bin_path, const std::string& tokenizer_path,
                                    const std::string& out_dir, const ImportOptions& options = {});

}  // namespace pq::convert
