#include "pq/report/model_card.h"

#include <cstdio>
#include <filesystem>
#include <map>

#include "pq/io/file_util.h"
#include "pq/io/safetensors.h"

namespace pq::report {
namespace {

using pipeline::AllocateOptions;
using pipeline::AllocateResult;
using pipeline::ParetoPoint;
using pipeline::QuantizeOptions;
using pipeline::QuantizeResult;

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string MiB(uint64_t bytes) { return Fmt("%.2f MiB", static_cast<double>(bytes) / 1048576.0); }

std::string Target(const AllocateOptions& a) {
  if (a.target_knee) return "the knee of the Pareto sweep";
  if (a.target_bits) return Fmt("%.4g bits/param", *a.target_bits);
  if (a.target_size) return MiB(*a.target_size) + " for the whole checkpoint";
  return "?";
}

std::string FormatList(const AllocateResult& a) {
  std::string s;
  for (const auto& f : a.formats) s += (s.empty() ? "" : ", ") + f;
  return s;
}

std::string MixTable(const QuantizeResult& r) {
  std::string s = "| format | Linears | parameters | bytes | bits/param |\n|---|---|---|---|---|\n";
  const nlohmann::json j = r.exported.ToJson();
  for (const auto& [name, f] : j["formats"].items())
    s += "| " + name + " | " + std::to_string(f["linears"].get<int64_t>()) + " | " +
         std::to_string(f["params"].get<int64_t>()) + " | " +
         std::to_string(f["bytes"].get<uint64_t>()) + " | " +
         Fmt("%.3f", f["bits_per_param"].get<double>()) + " |\n";
  return s;
}

std::string ParetoMarkdown(const AllocateResult& a) {
  std::string s =
      "| bits/param | total bytes | predicted Δloss (nats/token) | mix (decision units) |\n"
      "|---|---|---|---|\n";
  for (size_t i = 0; i < a.pareto.size(); ++i) {
    const ParetoPoint& p = a.pareto[i];
    std::string mix;
    for (size_t f = 0; f < a.formats.size(); ++f)
      if (p.count[f])
        mix += (mix.empty() ? "" : ", ") + a.formats[f] + " " + std::to_string(p.count[f]);
    s += "| " + Fmt("%.3f", p.achieved_bits) + (a.knee == i ? " (knee)" : "") + " | " +
         std::to_string(p.total_bytes) + " | " + Fmt("%.4g", p.predicted_dloss) + " | " + mix +
         " |\n";
  }
  return s;
}

std::string WhyTable(const QuantizeOptions& o, const QuantizeResult& r) {
  std::string s =
      "- Every Linear (attention q/k/v/o, MLP gate/up/down, each MoE expert) got the format the\n"
      "  allocator chose for its decision unit: q/k/v, gate/up and all experts of a layer share\n"
      "  one format (vLLM fuses them); formats a shape cannot hold were never offered.\n"
      "- `lm_head`: fixed to " +
      std::string(formats::Spec(o.allocate.lm_head).name) +
      " (`--lm-head`).\n"
      "- Embeddings, norms, biases and MoE routers: BF16 (not quantizable by vLLM's loaders).\n";
  const nlohmann::json j = r.exported.ToJson();
  for (const auto& k : j["kept_bf16"])
    s += "- `" + k["module"].get<std::string>() + "`: BF16 — " + k["reason"].get<std::string>() +
         "\n";
  return s;
}

}  // namespace

std::string ModelCard(const QuantizeOptions& o, const QuantizeResult& r, uint64_t source_bytes) {
  const std::string name = std::filesystem::path(o.probe.model).filename().string();
  const ParetoPoint& c = r.allocation.chosen;
  std::string s = "# " + name + " — PrismaQuant mixed precision\n\n";
  s += "Quantized from `" + o.probe.model + "` by `prismaquant quantize` with target " +
       Target(o.allocate) + ": every Linear gets the format, among " + FormatList(r.allocation) +
       ", that minimises the predicted loss increase within the budget, priced on " +
       std::to_string(r.probe.tokens) + " calibration tokens (estimator `" +
       std::string(quant::EstimatorName(o.allocate.cost)) + "`).\n\n";
  s += "## Size\n\n| | bytes | |\n|---|---|---|\n";
  s += "| source tensors | " + std::to_string(source_bytes) + " | " + MiB(source_bytes) + " |\n";
  s += "| this checkpoint | " + std::to_string(r.exported.total_bytes) + " | " +
       MiB(r.exported.total_bytes) +
       Fmt(" (%.1f %% of the source)", 100.0 * static_cast<double>(r.exported.total_bytes) /
                                           static_cast<double>(source_bytes ? source_bytes : 1)) +
       " |\n\n";
  s += Fmt("Linears: %.4f bits per parameter", c.achieved_bits) +
       Fmt(" (allocator's prediction of Δloss: %.4g nats/token).\n\n", c.predicted_dloss);
  s += "## Precision mix (as written)\n\n" + MixTable(r) + "\n";
  s += "## Pareto sweep (same probe)\n\n" + ParetoMarkdown(r.allocation) + "\n";
  s += "## Which modules, how, and why\n\n" + WhyTable(o, r) + "\n";
  s += "## Quantization passes\n\n`" + std::string(pipeline::ExportPassesName(o.passes)) +
       "` (sequential: each layer quantized on the outputs of the already-quantized layers "
       "before it), compressed-tensors' exact arithmetic; NVFP4 global scales shared by fused "
       "siblings; NVFP4 (W4A4) input scales calibrated from the probe's activation amax. "
       "Output error of the written weights against round-to-nearest, on the export's own "
       "calibration Hessians (geometric mean over the Linears): " +
       Fmt("%.3f", r.error_ratio_geomean) + ".\n\n";
  if (r.eval_out) {
    s += "## Measured quality\n\n";
    s += "On `" + o.eval_text + "` (" + std::to_string(r.eval_out->tokens) +
         " tokens, inputs quantized as the runtime does):\n\n";
    s += "| model | mean NLL | KL(source ‖ model) |\n|---|---|---|\n";
    s += "| source | " + Fmt("%.6f", r.eval_base->mean_nll) + " | 0 |\n";
    s += "| this checkpoint | " + Fmt("%.6f", r.eval_out->mean_nll) + " | " +
         Fmt("%.6g", r.eval_out->mean_kl.value_or(0)) + " |\n\n";
  }
  s += "## Serve\n\n```sh\nvllm serve " + o.out +
       "\n```\n\n"
       "vLLM reads the `compressed-tensors` config (format `mixed-precision`, one group per "
       "format) on its own. NVFP4 and MXFP4 need a GPU generation with FP4 support for full "
       "speed (elsewhere vLLM may fall back to weight-only kernels).\n";
  return s;
}

Status WriteModelCard(const QuantizeOptions& o, const QuantizeResult& r) {
  PQ_ASSIGN_OR_RETURN(auto src, io::CheckpointReader::Open(o.probe.model));
  uint64_t source_bytes = 0;
  for (const auto& n : src->names()) source_bytes += src->Find(n)->bytes.size();
  return io::WriteFileAtomic(o.out + "/README.md", ModelCard(o, r, source_bytes));
}

}  // namespace pq::report
