// OUT/README.md written by `quantize`: a model card like the original tool's — size against
// the source, bits per parameter, the precision mix, the Pareto table with the knee, how each
// kind of module is stored and why, the quantization passes, measured quality, and the
// `vllm serve` command.
#pragma once

#include <string>

#include "pq/core/status.h"
#include "pq/pipeline/quantize.h"

namespace pq::pipeline {

// The card's Markdown for a finished quantize run (`source_bytes`: tensor bytes of MODEL).
std::string ModelCard(const QuantizeOptions& o, const QuantizeResult& r, uint64_t source_bytes);

// Writes OUT/README.md (the card) for a finished quantize run, atomically.
Status WriteModelCard(const QuantizeOptions& o, const QuantizeResult& r);

}  // namespace pq::pipeline
