// `prismaquant export MODEL --uniform FORMAT -o OUT`
#include <cstdio>

#include "cli_util.h"
#include "commands.h"
#include "flags.h"
#include "pq/dist/comm.h"
#include "pq/formats/format.h"
#include "pq/pipeline/export_calibrated.h"
#include "pq/pipeline/export_uniform.h"

namespace pq::cli {
namespace {

struct ExportArgs {
  std::string model, out, uniform, work, lm_head = "BF16", visual = "BF16";
  PassesFlag passes;
  int64_t min_tokens = 32;
  bool act_order = false;
  ExecFlags exec;
  double max_shard_gb = 5.0;
  bool overwrite = false, json = false;
};

// --work W: the allocation of `probe` + `allocate`, calibrated.
Status RunCalibrated(const ExportArgs& a, const pipeline::ExportWriteOptions& write) {
  pipeline::CalibratedExportOptions c;
  c.model = a.model;
  c.work = a.work;
  c.out = a.out;
  c.write = write;
  c.min_tokens = a.min_tokens;
  c.gptq.act_order = a.act_order;
  PQ_ASSIGN_OR_RETURN(c.passes, a.passes.Parse());
  c.exec = a.exec.Context();
  PQ_ASSIGN_OR_RETURN(pipeline::CalibratedExportResult r, pipeline::ExportCalibrated(c));
  if (dist::Rank() != 0) return Status::Ok();  // across MPI ranks: rank 0 writes and prints
  if (a.json) {
    std::printf("%s\n", r.ToJson(c).dump(2).c_str());
  } else {
    std::printf("%s", r.summary.ToText().c_str());
    std::printf(
        "passes %s: %lld Linears calibrated (output error vs RTN, geometric mean %.4f), "
        "%lld by RTN\n",
        a.passes.passes.c_str(), static_cast<long long>(r.linears_calibrated),
        r.error_ratio_geomean, static_cast<long long>(r.linears_rtn));
  }
  return Status::Ok();
}

Status Run(const ExportArgs& a) {
  pipeline::UniformExportOptions o;
  o.write.max_shard_bytes = static_cast<uint64_t>(a.max_shard_gb * 1e9);
  o.write.overwrite = a.overwrite;
  if (a.uniform.empty() == a.work.empty())
    return InvalidArgument(
        "export needs exactly one of --uniform FORMAT (data-free) or --work W (the allocation "
        "of `probe` + `allocate`)");
  if (!a.work.empty()) return RunCalibrated(a, o.write);
  if (dist::Size() > 1)
    return InvalidArgument("export --uniform is data-free: run it with one process, not mpirun");
  auto fmt = formats::ParseFormat(a.uniform);
  if (!fmt)
    return InvalidArgument("unknown format \"" + a.uniform + "\"; one of " +
                           formats::FormatNameList());
  auto head = formats::ParseFormat(a.lm_head);
  if (!head) return InvalidArgument("unknown --lm-head format \"" + a.lm_head + "\"");
  o.format = *fmt;
  o.lm_head = *head;
  PQ_ASSIGN_OR_RETURN(o.visual, ParseVisualFormat(a.visual));
  o.exec = a.exec.Context();
  PQ_ASSIGN_OR_RETURN(pipeline::ExportSummary s, pipeline::ExportUniform(a.model, a.out, o));
  if (a.json)
    std::printf("%s\n", s.ToJson().dump(2).c_str());
  else
    std::printf("%s", s.ToText().c_str());
  return Status::Ok();
}

}  // namespace

void AddExportCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* sub = app.add_subcommand(
      "export",
      "Quantize a dense Hugging Face checkpoint (Llama, Qwen2, Qwen3, Qwen3-MoE, Qwen3-Next,\n"
      "Qwen3.5/3.6 dense and MoE incl. their MTP head and vision tower) into a\n"
      "compressed-tensors checkpoint. --work W writes the per-Linear allocation of `allocate`.\n"
      "Data-free: --uniform FORMAT puts every Linear in FORMAT\n"
      "(embeddings and norms stay BF16; Linears whose shape FORMAT cannot hold stay BF16 and are\n"
      "listed). Formats: " +
          formats::FormatNameList() +
          " (NVFP4 W4A4 needs calibration: use\n"
          "NVFP4A16 here).\n"
          "Example: prismaquant export models/stories260K --uniform NVFP4A16 -o out/stories-nvfp4");
  sub->add_option("model", args->model, "Hugging Face model directory or .safetensors file")
      ->required();
  AddOutputDirFlag(sub, &args->out, "Output directory (written atomically)");
  sub->add_option("--uniform", args->uniform, "Format for every Linear");
  sub->add_option("--work", args->work,
                  "Work dir of `probe` + `allocate`: every Linear in its allocated format "
                  "(W/layer_config.json), NVFP4 input scales calibrated");
  sub->add_option("--lm-head", args->lm_head, "Format for lm_head (default BF16)");
  sub->add_option("--visual-format", args->visual,
                  std::string(kVisualFormatHelp) + " (with --uniform; --work takes allocate's)");
  args->passes.Register(
      sub, "With --work: rtn, gptq, search, search+gptq (default; measured best), gptq+search");
  sub->add_flag("--act-order", args->act_order,
                "With --work: GPTQ sweeps columns by descending H diagonal (groups and the stored "
                "layout stay in plain order, scales static)");
  sub->add_option(
      "--min-tokens", args->min_tokens,
      "With --work: Linears (experts) with fewer calibration rows get RTN (default 32)");
  args->exec.Register(sub, "Worker threads (default: all cores)");
  sub->add_option("--max-shard-gb", args->max_shard_gb, "Shard size limit in GB (default 5)")
      ->check(FinitePositive());
  AddOverwriteFlag(sub, &args->overwrite);
  AddJsonFlag(sub, &args->json, "summary");
  sub->callback([args, exit_code] { *exit_code = ExitCodeFor(Run(*args)); });
}

}  // namespace pq::cli
