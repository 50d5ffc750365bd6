// Test-only bridge from Python to quant/gptq.h and quant/scale_search.h
// (tests/quant/gptq_reference.py compares it with an independent PyTorch GPTQ).
//
//   pq_gptq_tool FORMAT IN.safetensors OUT_DIR [--block B] [--damp D] [--act-order]
//                [--threads T] [--input-global-scale X] [--scale-search]
//       IN holds F32 "w" [N, K] (bf16-representable) and "h" [K, K]. OUT_DIR/model.safetensors
//       gets F32 "w_hat" [N, K] (GptqResult::w_hat), "scales" [N, groups] (the stored scale
//       values), "weight_global_scale" [1] (NVFP4; 1 otherwise), "damp_used" [1], and with
//       --scale-search also "w_hat_ss" and "scales_ss": ScaleSearch on the GPTQ output with
//       hdiag = diag(h). Each stored tensor of the GPTQ result is written as "q.<suffix>".
//       --search-first: RTN, then ScaleSearch (hdiag = diag(h)), then GPTQ with those scales
//       (GptqOptions::scales).
//
// Exit status 0 on success, 1 with a message on stderr otherwise (also when GPTQ fell back
// to RTN: the comparison needs real GPTQ).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "pq/core/status.h"
#include "pq/formats/format.h"
#include "pq/formats/quantize_with_scales.h"
#include "pq/io/safetensors.h"
#include "pq/quant/gptq.h"
#include "pq/quant/scale_search.h"

namespace {

constexpr const char* kUsage =
    "usage: pq_gptq_tool FORMAT IN.safetensors OUT_DIR [--block B] [--damp D] [--act-order]\n"
    "                    [--threads T] [--input-global-scale X] [--scale-search]\n"
    "                    [--search-first]\n";

struct Args {
  pq::formats::FormatId format{};
  std::string in, out;
  pq::quant::GptqOptions gptq;
  bool scale_search = false;
  bool search_first = false;
};

std::span<const uint8_t> AsBytes(const std::vector<float>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)};
}

pq::Result<std::vector<float>> ReadF32(const pq::io::CheckpointReader& r, const std::string& name,
                                       size_t dims) {
  PQ_ASSIGN_OR_RETURN(const pq::io::TensorInfo* t, r.Get(name));
  if (t->dtype != pq::DType::kF32 || t->shape.size() != dims)
    return pq::InvalidArgument(name + ": expected a " + std::to_string(dims) + "-D F32 tensor");
  return pq::io::ReadAsF32(*t);
}

pq::Status Add(pq::io::CheckpointWriter& w, const std::string& name, std::vector<int64_t> shape,
               const std::vector<float>& v) {
  return w.AddTensor(name, pq::DType::kF32, std::move(shape), AsBytes(v));
}

// The stored scales and global scale of `tensors`, as F32 tensors named with `tag`.
pq::Status AddScales(pq::io::CheckpointWriter& w, const Args& a,
                     const std::vector<pq::formats::QTensor>& tensors, int64_t n, int64_t k,
                     const std::string& tag) {
  PQ_ASSIGN_OR_RETURN(auto q,
                      pq::formats::UnpackCodes(a.format, pq::formats::Views(tensors), n, k));
  const auto groups = static_cast<int64_t>(q.scales.size()) / n;
  PQ_RETURN_IF_ERROR(Add(w, "scales" + tag, {n, groups}, q.scales));
  if (tag.empty()) PQ_RETURN_IF_ERROR(Add(w, "weight_global_scale", {1}, {q.weight_global_scale}));
  return pq::Status::Ok();
}

// RTN, then ScaleSearch: the searched stored scales.
pq::Result<std::vector<float>> SearchedScales(const Args& a, const std::vector<float>& w,
                                              const std::vector<float>& hdiag, int64_t n,
                                              int64_t k) {
  pq::formats::QuantizeOptions qo;
  qo.input_global_scale = a.gptq.input_global_scale;
  PQ_ASSIGN_OR_RETURN(auto rtn, pq::formats::QuantizeRtn(a.format, w, n, k, qo));
  PQ_ASSIGN_OR_RETURN(auto s,
                      pq::quant::ScaleSearch(a.format, w, pq::formats::Views(rtn), hdiag, n, k));
  PQ_ASSIGN_OR_RETURN(auto q,
                      pq::formats::UnpackCodes(a.format, pq::formats::Views(s.tensors), n, k));
  return q.scales;
}

pq::Status Run(const Args& a) {
  PQ_ASSIGN_OR_RETURN(auto reader, pq::io::CheckpointReader::Open(a.in));
  PQ_ASSIGN_OR_RETURN(const pq::io::TensorInfo* wt, reader->Get("w"));
  if (wt->shape.size() != 2) return pq::InvalidArgument("w: expected a 2-D tensor");
  const int64_t n = wt->shape[0], k = wt->shape[1];
  PQ_ASSIGN_OR_RETURN(std::vector<float> w, ReadF32(*reader, "w", 2));
  PQ_ASSIGN_OR_RETURN(std::vector<float> h, ReadF32(*reader, "h", 2));
  std::vector<float> hdiag(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) hdiag[static_cast<size_t>(i)] = h[static_cast<size_t>(i * k + i)];
  pq::quant::GptqOptions go = a.gptq;
  if (a.search_first) {
    PQ_ASSIGN_OR_RETURN(go.scales, SearchedScales(a, w, hdiag, n, k));
  }
  PQ_ASSIGN_OR_RETURN(auto g, pq::quant::GptqQuantize(a.format, w, h, n, k, go));
  if (!g.fallback.ok()) return g.fallback;
  pq::io::WriterOptions wo;
  wo.overwrite = true;
  PQ_ASSIGN_OR_RETURN(auto writer, pq::io::CheckpointWriter::Create(a.out, wo));
  PQ_RETURN_IF_ERROR(Add(*writer, "w_hat", {n, k}, g.w_hat));
  PQ_RETURN_IF_ERROR(Add(*writer, "damp_used", {1}, {static_cast<float>(g.damp_used)}));
  PQ_RETURN_IF_ERROR(AddScales(*writer, a, g.tensors, n, k, ""));
  for (const auto& t : g.tensors)
    PQ_RETURN_IF_ERROR(writer->AddTensor("q." + t.suffix, t.dtype, t.shape, t.bytes));
  if (a.scale_search) {
    pq::quant::ScaleSearchOptions so;
    so.num_threads = a.gptq.num_threads;
    PQ_ASSIGN_OR_RETURN(auto s, pq::quant::ScaleSearch(a.format, w, pq::formats::Views(g.tensors),
                                                       hdiag, n, k, so));
    PQ_RETURN_IF_ERROR(Add(*writer, "w_hat_ss", {n, k}, s.w_hat));
    PQ_RETURN_IF_ERROR(AddScales(*writer, a, s.tensors, n, k, "_ss"));
  }
  return writer->Commit();
}

bool Number(const char* s, double* out) {
  char* end = nullptr;
  *out = std::strtod(s, &end);
  return end != s && *end == '\0';
}

bool Parse(int argc, char** argv, Args* a) {
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    double v = 0;
    const bool has_value = i + 1 < argc;
    if (arg == "--act-order") {
      a->gptq.act_order = true;
    } else if (arg == "--scale-search") {
      a->scale_search = true;
    } else if (arg == "--search-first") {
      a->search_first = true;
    } else if (arg == "--block" || arg == "--threads" || arg == "--damp" ||
               arg == "--input-global-scale") {
      if (!has_value || !Number(argv[++i], &v)) return false;
      if (arg == "--block") a->gptq.block = static_cast<int>(v);
      if (arg == "--threads") a->gptq.num_threads = static_cast<int>(v);
      if (arg == "--damp") a->gptq.damp = v;
      if (arg == "--input-global-scale") a->gptq.input_global_scale = static_cast<float>(v);
    } else {
      pos.push_back(arg);
    }
  }
  if (pos.size() != 3) return false;
  const auto f = pq::formats::ParseFormat(pos[0]);
  if (!f) return false;
  a->format = *f;
  a->in = pos[1];
  a->out = pos[2];
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!Parse(argc, argv, &a)) {
    std::fputs(kUsage, stderr);
    return 1;
  }
  const pq::Status s = Run(a);
  if (!s.ok()) {
    std::fprintf(stderr, "pq_gptq_tool: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
