// `prismaquant export MODEL --uniform FORMAT`: data-free, one format for every Linear.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pq/core/exec_context.h"
#include "pq/core/status.h"
#include "pq/formats/format.h"

namespace pq::pipeline {

// Quantizers run on the installed ExecContext's threads (ExecThreads()).
struct ExportWriteOptions {
  uint64_t max_shard_bytes = 5'000'000'000;
  bool overwrite = false;
};

struct UniformExportOptions {
  formats::FormatId format = formats::FormatId::kNVFP4A16;
  formats::FormatId lm_head = formats::FormatId::kBF16;
  formats::FormatId visual = formats::FormatId::kBF16;  // vision-tower Linears
  ExportWriteOptions write;
  ExecContext exec;  // threads, progress, log level: installed for the call
};

struct ExportedLinear {
  std::string module;
  formats::FormatId format;
  int64_t params = 0;
  uint64_t bytes = 0;    // on disk, all tensors of the weight (bias excluded)
  std::string fallback;  // why it stayed BF16 although another format was asked
};

struct ExportSummary {
  std::string out_dir;
  std::vector<ExportedLinear> linears;  // body Linears and lm_head
  uint64_t total_bytes = 0;             // all tensor data bytes of the checkpoint
  int64_t total_params = 0;             // all tensor elements of the source

  nlohmann::json ToJson() const;
  std::string ToText() const;  // human-readable table
};

Result<ExportSummary> ExportUniform(const std::string& model_dir, const std::string& out_dir,
                                    const UniformExportOptions& options);

// What to write: a format per decision unit (every unit of the layout), why a unit stayed
// BF16 when something else was wanted, and per global-scale group (LinearInfo::scale_group)
// the calibration inputs' amax (needed by NVFP4 W4A4: input_global_scale = 2688/amax).
struct UnitPlan {
  std::map<std::string, formats::FormatId> format;
  std::map<std::string, std::string> fallback;
  std::map<std::string, float> input_amax;
};

// RTN export of every Linear in its unit's format (fused siblings share the NVFP4 global
// scales), everything else in BF16, config with one group per format; atomic.
Result<ExportSummary> ExportUnits(const std::string& model_dir, const std::string& out_dir,
                                  const UnitPlan& plan, const ExportWriteOptions& options);

}  // namespace pq::pipeline
