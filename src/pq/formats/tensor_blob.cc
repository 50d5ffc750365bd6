#include "pq/formats/tensor_blob.h"

namespace pq::formats {

void PutTensors(BlobWriter& w, const std::vector<QTensor>& tensors) {
  w.Put(static_cast<uint64_t>(tensors.size()));
  for (const QTensor& t : tensors) {
    w.PutString(t.suffix);
    w.Put(t.dtype);
    w.PutArray(std::span<const int64_t>(t.shape));
    w.PutArray(std::span<const uint8_t>(t.bytes.data(), t.bytes.size()));
  }
}

Status GetTensors(BlobReader& r, std::vector<QTensor>& tensors) {
  PQ_ASSIGN_OR_RETURN(const uint64_t n, r.Get<uint64_t>());
  if (n > 64) return DataLoss("blob: more tensors than any format stores");
  tensors.resize(static_cast<size_t>(n));
  for (QTensor& t : tensors) {
    PQ_RETURN_IF_ERROR(r.GetArray(t.suffix));
    PQ_ASSIGN_OR_RETURN(t.dtype, r.Get<DType>());
    PQ_RETURN_IF_ERROR(r.GetArray(t.shape));
    PQ_RETURN_IF_ERROR(r.GetArray(t.bytes));
  }
  return Status::Ok();
}

}  // namespace pq::formats
