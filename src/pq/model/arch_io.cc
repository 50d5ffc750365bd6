// Reading what the layout describes: config.json and the dense weights of a Linear.
#include <filesystem>
#include <string>
#include <vector>

#include "pq/io/json_util.h"
#include "pq/model/arch.h"

namespace pq::model {

// The strict parser every reader uses (io/json_util.h): duplicate keys and nesting beyond
// io::kMaxJsonDepth are errors naming the file, and only a regular file is opened.
Result<nlohmann::json> ReadConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return NotFound(path + ": cannot open (is this a Hugging Face model directory?)");
  PQ_ASSIGN_OR_RETURN(nlohmann::json j, io::ReadJsonFile(path));
  if (!j.is_object()) return DataLoss(path + ": not a JSON object");
  return j;
}

Result<std::vector<float>> ReadDenseLinear(const io::CheckpointReader& ckpt, const LinearInfo& li) {
  const std::string embed = ckpt.Find("model.language_model.embed_tokens.weight")
                                ? "model.language_model.embed_tokens.weight"
                                : "model.embed_tokens.weight";
  const std::string name = li.tied                    ? embed
                           : li.packed_tensor.empty() ? li.module + ".weight"
                                                      : li.packed_tensor;
  PQ_ASSIGN_OR_RETURN(const io::TensorInfo* t, ckpt.Get(name));
  const auto n = static_cast<size_t>(li.rows * li.cols);
  if (li.packed_tensor.empty()) {
    if (t->numel() != li.rows * li.cols)
      return InvalidArgument("tensor \"" + name + "\" does not have the Linear's shape");
    auto v = io::ReadAsF32(*t);
    io::ReleaseTensorPages(*t);
    return v;
  }
  // Slice [packed_row, packed_row + rows) of expert packed_expert of a [E, R, C] tensor.
  const int64_t r = t->shape[1], c = t->shape[2];
  if (c != li.cols || li.packed_row + li.rows > r || li.packed_expert >= t->shape[0])
    return InvalidArgument("tensor \"" + name + "\": packed slice out of range");
  const size_t elem = DTypeSize(t->dtype);
  const size_t first = static_cast<size_t>((li.packed_expert * r + li.packed_row) * c);
  std::vector<float> out(n);
  ConvertToF32(t->dtype, t->bytes.data() + first * elem, n, out.data());
  io::ReleaseTensorPages(*t);
  PQ_RETURN_IF_ERROR(io::CheckFinite(out, *t, static_cast<int64_t>(first)));
  return out;
}

}  // namespace pq::model
