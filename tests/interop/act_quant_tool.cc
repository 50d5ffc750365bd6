// Test-only bridge from Python to the formats layer's activation quantizer
// (tests/interop/test_act_quant.py compares its output with compressed-tensors).
//
//   pq_act_quant_tool fake-quant FORMAT IN.safetensors OUT_DIR [--input-global-scale X]
//       every tensor of IN (F32, 2-D [rows, cols]) -> FakeQuantizeActivations -> F32 in
//       OUT_DIR/model.safetensors under the same name. X is parsed with strtof, so a hex
//       float (Python's float.hex()) passes the exact FP32 value.
//   pq_act_quant_tool input-global-scale IN.safetensors OUT_DIR
//       every F32 tensor of amaxes -> NvFp4InputGlobalScale element-wise, same shape.
//   pq_act_quant_tool input-args FORMAT
//       prints the `input_activations` JSON we write for FORMAT (InputArgs).
//
// Exit status 0 on success, 1 with a message on stderr otherwise.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/formats/act_quant.h"
#include "pq/formats/compressed_tensors.h"
#include "pq/formats/format.h"
#include "pq/io/safetensors.h"

namespace {

constexpr const char* kUsage =
    "usage: pq_act_quant_tool fake-quant FORMAT IN.safetensors OUT_DIR "
    "[--input-global-scale X]\n"
    "       pq_act_quant_tool input-global-scale IN.safetensors OUT_DIR\n"
    "       pq_act_quant_tool input-args FORMAT\n";

std::span<const uint8_t> AsBytes(const std::vector<float>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)};
}

pq::Status Run(const std::string& mode, std::optional<pq::formats::FormatId> format,
               const std::string& in, const std::string& out, std::optional<float> gs) {
  PQ_ASSIGN_OR_RETURN(auto reader, pq::io::CheckpointReader::Open(in));
  pq::io::WriterOptions wo;
  wo.overwrite = true;
  PQ_ASSIGN_OR_RETURN(auto writer, pq::io::CheckpointWriter::Create(out, wo));
  for (const std::string& name : reader->names()) {
    PQ_ASSIGN_OR_RETURN(const pq::io::TensorInfo* t, reader->Get(name));
    if (t->dtype != pq::DType::kF32)
      return pq::InvalidArgument(name + ": expected F32, got " +
                                 std::string(pq::DTypeName(t->dtype)));
    PQ_ASSIGN_OR_RETURN(std::vector<float> v, pq::io::ReadAsF32(*t));
    if (mode == "fake-quant") {
      if (t->shape.size() != 2) return pq::InvalidArgument(name + ": expected a 2-D tensor");
      PQ_RETURN_IF_ERROR(
          pq::formats::FakeQuantizeActivations(*format, v, t->shape[0], t->shape[1], gs)
              .WithContext(name));
    } else {
      for (float& a : v) a = pq::formats::NvFp4InputGlobalScale(a);
    }
    PQ_RETURN_IF_ERROR(writer->AddTensor(name, pq::DType::kF32, t->shape, AsBytes(v)));
  }
  return writer->Commit();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> pos;
  std::optional<float> gs;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--input-global-scale") == 0 && i + 1 < argc) {
      char* end = nullptr;
      errno = 0;
      gs = std::strtof(argv[++i], &end);
      if (errno != 0 || end == argv[i] || *end != '\0') {
        std::fprintf(stderr, "bad --input-global-scale '%s'\n%s", argv[i], kUsage);
        return 1;
      }
    } else {
      pos.emplace_back(argv[i]);
    }
  }
  std::optional<pq::formats::FormatId> format;
  if ((pos.size() == 4 && pos[0] == "fake-quant") || (pos.size() == 2 && pos[0] == "input-args")) {
    format = pq::formats::ParseFormat(pos[1]);
    if (!format) {
      std::fprintf(stderr, "unknown format '%s' (one of %s)\n", pos[1].c_str(),
                   pq::formats::FormatNameList().c_str());
      return 1;
    }
  }
  std::string in, out;
  if (pos.size() == 2 && pos[0] == "input-args") {
    std::printf("%s\n", pq::formats::InputArgs(*format).dump().c_str());
    return 0;
  }
  if (pos.size() == 4 && pos[0] == "fake-quant") {
    in = pos[2];
    out = pos[3];
  } else if (pos.size() == 3 && pos[0] == "input-global-scale") {
    in = pos[1];
    out = pos[2];
  } else {
    std::fputs(kUsage, stderr);
    return 1;
  }
  const pq::Status s = Run(pos[0], format, in, out, gs);
  if (!s.ok()) {
    std::fprintf(stderr, "pq_act_quant_tool: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
