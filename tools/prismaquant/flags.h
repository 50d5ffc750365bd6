// Flag groups shared by the subcommands, each declared once: a struct holding the values, a
// Register* that declares its flags on a CLI11 subcommand (names, defaults and help texts in
// one place; `compact` picks the shorter help texts quantize shows), and a To* that converts
// it to the library's options. One split rule and one target-bits parser for all commands.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "pq/core/exec_context.h"
#include "pq/core/status.h"
#include "pq/pipeline/allocate.h"
#include "pq/pipeline/calibration.h"
#include "pq/pipeline/eval_text.h"
#include "pq/pipeline/export_calibrated.h"

namespace pq::cli {

// --threads N: the library's ExecContext (and the export writer's thread count).
struct ExecFlags {
  int threads = 0;

  void Register(CLI::App* sub, const std::string& help = "Threads (default: all cores)");
  // threads + the process's log level (-q, set before any command runs).
  ExecContext Context() const;
};

// Validators for sizes given in GB: a finite number >= 0 (or > 0). CLI11's own number checks
// let "nan" through, which then became an undefined conversion to bytes.
const CLI::Validator& FiniteNonNegative();
const CLI::Validator& FinitePositive();

// --json, with the command's own wording ("Print the summary as JSON", ...).
void AddJsonFlag(CLI::App* sub, bool* json, const std::string& what);

// The output group: -o/--out DIR (required; `help` says how it is written) and --overwrite.
void AddOutputDirFlag(CLI::App* sub, std::string* out, const std::string& help);
void AddOverwriteFlag(CLI::App* sub, bool* overwrite);
// --sample-block B (probe, quantize): the block size of the canonical fold across MPI ranks.
void AddSampleBlockFlag(CLI::App* sub, int64_t* sample_block);

// The calibration input: --calib, --calib-tokens, --split, --samples, --seqlen, --seed,
// --hessian-samples.
struct CalibrationFlags {
  std::string calib, calib_tokens, split = "auto", hessian_samples = "auto";
  int64_t samples = 64, seqlen = 512;
  uint64_t seed = 0;

  void Register(CLI::App* sub, bool compact);
  // `command` names the command in the "needs exactly one of" error.
  Status ToOptions(const std::string& command, pipeline::CalibrationOptions& o) const;
};

// --split: "auto" is JSON lines for a .jsonl file and paragraphs otherwise.
Result<pipeline::DocSplit> ResolveSplit(const std::string& split, const std::string& text_file);

// The budget: --target-bits, --target-size, --kv-reserve.
struct TargetFlags {
  std::string bits, size, kv_reserve = "0";

  void Register(CLI::App* sub, bool compact);
  Status ToOptions(pipeline::AllocateOptions& o) const;
};

// --target-bits: one number, or "knee".
Status ParseTargetBits(const std::string& text, pipeline::AllocateOptions& o);

// How allocate chooses: --cost, --pareto (allocate only), --lm-head, --visual-format.
struct ChoiceFlags {
  std::string cost = "block", pareto, lm_head = "BF16", visual = "BF16";
  double mtp_weight = 0.5;

  void Register(CLI::App* sub, bool compact, bool with_pareto);
  Status ToOptions(pipeline::AllocateOptions& o) const;
};

// --passes of the calibrated export.
struct PassesFlag {
  std::string passes = "search+gptq";

  void Register(CLI::App* sub, const std::string& help);
  Result<pipeline::ExportPasses> Parse() const { return pipeline::ParseExportPasses(passes); }
};

}  // namespace pq::cli
