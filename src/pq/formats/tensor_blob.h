// Stored tensors of a quantized Linear in a rank-to-rank message (core/byte_blob.h): what the
// owner rank of a Linear (or of a probe candidate) sends the others.
#pragma once

#include <vector>

#include "pq/core/byte_blob.h"
#include "pq/formats/format.h"

namespace pq::formats {

void PutTensors(BlobWriter& w, const std::vector<QTensor>& tensors);
Status GetTensors(BlobReader& r, std::vector<QTensor>& tensors);

}  // namespace pq::formats
