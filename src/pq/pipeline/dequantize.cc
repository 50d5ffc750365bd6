#include "pq/pipeline/dequantize.h"

#include <set>

#include "pq/formats/format.h"
#include "pq/io/file_util.h"
#include "pq/io/safetensors.h"
#include "pq/model/arch.h"
#include "pq/pipeline/checkpoint_util.h"
#include "pq/pipeline/inspect.h"

namespace pq::pipeline {

Result<size_t> DequantizeCheckpoint(const std::string& in, const std::string& out_dir,
                                    const DequantizeOptions& options) {
  PQ_RETURN_IF_ERROR(io::CheckOutputOutsideInputs(out_dir, {in}));
  PQ_ASSIGN_OR_RETURN(auto ckpt, io::CheckpointReader::Open(in));
  PQ_ASSIGN_OR_RETURN(nlohmann::json config, model::ReadConfig(ckpt->dir()));
  PQ_ASSIGN_OR_RETURN(model::ModelLayout layout, model::ResolveLayout(config, *ckpt));
  std::vector<std::string> violations;
  const auto formats_by_module = ResolveFormats(config, layout, &violations);
  if (!violations.empty())
    return InvalidArgument(in + ": " + violations.front() + " (run `prismaquant inspect`)");
  io::WriterOptions wo;
  wo.overwrite = options.overwrite;
  PQ_ASSIGN_OR_RETURN(auto writer, io::CheckpointWriter::Create(out_dir, wo));
  std::set<std::string> written;
  size_t count = 0;
  for (const auto& li : layout.linears) {
    if (li.tied) continue;
    const formats::FormatId fmt = formats_by_module.at(li.module).format;
    if (fmt == formats::FormatId::kBF16) continue;  // dense already: copied as it is below
    std::vector<formats::QTensorView> views;
    for (auto suffix : formats::TensorSuffixes(fmt)) {
      const std::string name = li.module + "." + std::string(suffix);
      PQ_ASSIGN_OR_RETURN(const io::TensorInfo* t, ckpt->Get(name));
      views.push_back({suffix, t->dtype, t->shape, t->bytes});
      written.insert(name);
    }
    auto w = formats::Dequantize(fmt, views, li.rows, li.cols);
    if (!w.ok()) return w.status().WithContext(li.module);
    PQ_RETURN_IF_ERROR(writer->AddTensor(
        li.module + ".weight", DType::kF32, {li.rows, li.cols},
        {reinterpret_cast<const uint8_t*>(w->data()), w->size() * sizeof(float)}));
    ++count;
  }
  for (const auto& name : ckpt->names()) {
    if (written.count(name)) continue;
    const io::TensorInfo* t = ckpt->Find(name);
    PQ_RETURN_IF_ERROR(writer->AddTensor(name, t->dtype, t->shape, t->bytes));
  }
  config.erase("quantization_config");
  PQ_RETURN_IF_ERROR(writer->AddFile("config.json", config.dump(2) + "\n"));
  PQ_RETURN_IF_ERROR(CopyNonWeightFiles(ckpt->dir(), *writer));
  PQ_RETURN_IF_ERROR(writer->Commit());
  return count;
}

}  // namespace pq::pipeline
