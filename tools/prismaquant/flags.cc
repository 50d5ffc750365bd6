#include "flags.h"

#include <charconv>
#include <cmath>

#include "cli_util.h"
#include "pq/core/log.h"
#include "pq/core/thread_pool.h"

namespace pq::cli {

namespace {

CLI::Validator FiniteNumber(bool allow_zero) {
  return CLI::Validator(
      [allow_zero](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v) || !std::isfinite(v) || v < 0 ||
            (!allow_zero && v == 0))
          return "must be a finite number " + std::string(allow_zero ? ">= 0" : "> 0") + ", got " +
                 text;
        return "";
      },
      allow_zero ? "NUMBER >= 0" : "NUMBER > 0");
}

}  // namespace

const CLI::Validator& FiniteNonNegative() {
  static const CLI::Validator v = FiniteNumber(true);
  return v;
}

const CLI::Validator& FinitePositive() {
  static const CLI::Validator v = FiniteNumber(false);
  return v;
}

void ExecFlags::Register(CLI::App* sub, const std::string& help) {
  // 0 = all cores; a negative count tripped an internal check before.
  sub->add_option("--threads", threads, help)->check(CLI::Range(0, 1 << 16));
}

ExecContext ExecFlags::Context() const {
  ExecContext c;
  c.threads = threads;
  c.log_level = GetLogLevel();
  return c;
}

void AddJsonFlag(CLI::App* sub, bool* json, const std::string& what) {
  sub->add_flag("--json", *json, "Print the " + what + " as JSON");
}

void AddOutputDirFlag(CLI::App* sub, std::string* out, const std::string& help) {
  sub->add_option("-o,--out", *out, help)->required();
}

void AddOverwriteFlag(CLI::App* sub, bool* overwrite) {
  sub->add_flag("--overwrite", *overwrite, "Replace OUT if it exists");
}

void AddSampleBlockFlag(CLI::App* sub, int64_t* sample_block) {
  sub->add_option("--sample-block", *sample_block,
                  "Sum the statistics per block of this many calibration samples, then the "
                  "blocks in order (default 0: one block). MPI ranks take whole blocks, and the "
                  "same value gives the same bytes on any number of ranks (mpirun -np R)")
      ->check(CLI::NonNegativeNumber);
}

void CalibrationFlags::Register(CLI::App* sub, bool compact) {
  sub->add_option("--calib", calib,
                  compact ? "Calibration text (.txt, or .jsonl with \"text\")"
                          : "Calibration text (.txt, or .jsonl with a \"text\" field)");
  sub->add_option("--calib-tokens", calib_tokens,
                  compact ? "Pre-tokenized calibration input"
                          : "Pre-tokenized calibration input: one document per line, ids by "
                            "spaces");
  sub->add_option("--split", split,
                  compact ? "Documents of --calib (auto, none, lines, paragraphs, jsonl)"
                          : "Documents of --calib: auto (jsonl for .jsonl, else paragraphs), "
                            "none, lines, paragraphs, jsonl");
  sub->add_option("--samples", samples, "Calibration samples (default 64)");
  sub->add_option("--seqlen", seqlen, "Tokens per sample (default 512)");
  sub->add_option(
      "--seed", seed,
      compact ? "Sampling seed (default 0)" : "Seed for choosing the samples (default 0)");
  sub->add_option("--hessian-samples", hessian_samples,
                  compact ? "Samples the GPTQ Hessians come from (auto, or N; 0 = the samples)"
                          : "Further samples, disjoint from --samples, that scale search and GPTQ "
                            "build their Hessians from, so candidates are priced on tokens they "
                            "were not fitted to (forward passes only). auto (default): as many as "
                            "--samples where the input has them; 0: the samples themselves");
}

Status CalibrationFlags::ToOptions(const std::string& command,
                                   pipeline::CalibrationOptions& o) const {
  if (calib.empty() == calib_tokens.empty())
    return InvalidArgument(command + " needs exactly one of --calib FILE or --calib-tokens FILE");
  o.input.text_file = calib;
  o.input.tokens_file = calib_tokens;
  PQ_ASSIGN_OR_RETURN(o.input.split, ResolveSplit(split, calib));
  o.samples = samples;
  o.seqlen = seqlen;
  o.seed = seed;
  if (hessian_samples == "auto") {
    o.hessian_samples = pipeline::CalibrationOptions::kAutoHessianSamples;
  } else {
    int64_t n = -1;
    const char* end = hessian_samples.data() + hessian_samples.size();
    const auto r = std::from_chars(hessian_samples.data(), end, n);
    if (r.ec != std::errc() || r.ptr != end || n < 0)
      return InvalidArgument("--hessian-samples must be auto or a whole number >= 0, not '" +
                             hessian_samples + "'");
    o.hessian_samples = n;
  }
  return Status::Ok();
}

Result<pipeline::DocSplit> ResolveSplit(const std::string& split, const std::string& text_file) {
  if (split != "auto") return pipeline::ParseDocSplit(split);
  const bool jsonl = text_file.size() > 6 && text_file.substr(text_file.size() - 6) == ".jsonl";
  return jsonl ? pipeline::DocSplit::kJsonl : pipeline::DocSplit::kParagraphs;
}

void TargetFlags::Register(CLI::App* sub, bool compact) {
  sub->add_option("--target-bits", bits,
                  compact ? "Bits per Linear parameter, or \"knee\""
                          : "Bits per parameter over the quantizable Linears (lm_head excluded), "
                            "or \"knee\" for the knee of the Pareto sweep");
  sub->add_option("--target-size", size,
                  compact ? "Whole-checkpoint size (e.g. 22GB, 500MiB)"
                          : "Whole-checkpoint size: every tensor as exported (e.g. 22GB, 500MiB, "
                            "bytes)");
  sub->add_option("--kv-reserve", kv_reserve,
                  compact ? "Bytes to keep free out of --target-size"
                          : "Bytes to keep free out of --target-size (e.g. for the KV cache)");
}

Status TargetFlags::ToOptions(pipeline::AllocateOptions& o) const {
  PQ_RETURN_IF_ERROR(ParseTargetBits(bits, o));
  if (!size.empty()) {
    PQ_ASSIGN_OR_RETURN(o.target_size, ParseByteSize(size));
  }
  PQ_ASSIGN_OR_RETURN(o.kv_reserve, ParseByteSize(kv_reserve));
  return Status::Ok();
}

Status ParseTargetBits(const std::string& text, pipeline::AllocateOptions& o) {
  if (text == "knee") {
    o.target_knee = true;
  } else if (!text.empty()) {
    PQ_ASSIGN_OR_RETURN(auto v, ParseNumberList(text));
    if (v.size() != 1) return InvalidArgument("--target-bits takes one number or \"knee\"");
    o.target_bits = v[0];
  }
  return Status::Ok();
}

void ChoiceFlags::Register(CLI::App* sub, bool compact, bool with_pareto) {
  sub->add_option("--cost", cost,
                  compact
                      ? "Cost estimator (default block)"
                      : "Cost estimator: block (default, measured best: MoE units priced at "
                        "the block output with the routers re-run, hessian elsewhere), "
                        "hessian, output, token (per-token output Fisher), channel, trace (README: "
                        "\"Which cost estimator\")");
  if (with_pareto)
    sub->add_option("--pareto", pareto,
                    "Bits/param targets to sweep, comma-separated (default: 11 points from the "
                    "smallest to the largest achievable)");
  sub->add_option("--lm-head", lm_head, "Fixed format of lm_head (default BF16)");
  sub->add_option("--visual-format", visual, kVisualFormatHelp);
  sub->add_option("--mtp-weight", mtp_weight,
                  "Weight of the MTP head's predicted loss (it moves speculative-decoding "
                  "acceptance, not the outputs) against the body's (default 0.5; README \"MTP "
                  "head: what its bytes buy\")");
}

Status ChoiceFlags::ToOptions(pipeline::AllocateOptions& o) const {
  PQ_ASSIGN_OR_RETURN(o.cost, quant::ParseCostEstimator(cost));
  PQ_ASSIGN_OR_RETURN(o.pareto_bits, ParseNumberList(pareto));
  const auto head = formats::ParseFormat(lm_head);
  if (!head) return InvalidArgument("--lm-head: unknown format \"" + lm_head + "\"");
  o.lm_head = *head;
  PQ_ASSIGN_OR_RETURN(o.visual, ParseVisualFormat(visual));
  o.mtp_weight = mtp_weight;
  return Status::Ok();
}

void PassesFlag::Register(CLI::App* sub, const std::string& help) {
  sub->add_option("--passes", passes, help);
}

}  // namespace pq::cli
