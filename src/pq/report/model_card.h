// OUT/README.md written by `quantize`: a model card like the original tool's — size against
// the source, bits per parameter, the precision mix, the Pareto table with the knee, how each
// kind of module is stored and why, the quantization passes, measured quality, and the
// `vllm serve` command.
#pragma once

#include <string>

#include "pq/core/status.h"
#include "pq/pipeline/quantize.h"

namespace pq::report {

// The card's Markdown for a finished quantize run (`source_bytes`: tensor bytes of MODEL).
std::string ModelCard(const pipeline::QuantizeOptions& o, const pipeline::QuantizeResult& r,
                      uint64_t source_bytes);

// Writes OUT/README.md (the card) for a finished quantize run, atomically.
Status WriteModelCard(const pipeline::QuantizeOptions& o, const pipeline::QuantizeResult& r);

}  // namespace pq::report
