// `prismaquant dequantize`: a compressed-tensors checkpoint back to a dense one, every
// quantized Linear replaced by our own dequantization as F32 `M.weight`; every other tensor
// (BF16 Linears included) copied unchanged.
#pragma once

#include <string>

#include "pq/core/status.h"

namespace pq::pipeline {

struct DequantizeOptions {
  bool overwrite = false;
};

// Returns the number of Linears dequantized.
Result<size_t> DequantizeCheckpoint(const std::string& in, const std::string& out_dir,
                                    const DequantizeOptions& options);

}  // namespace pq::pipeline
