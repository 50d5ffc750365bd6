// prismaquant: mixed-precision quantization of Hugging Face checkpoints into
// compressed-tensors checkpoints that vLLM serves.
#include <cstdio>

#include "commands.h"
#include "pq/core/log.h"
#include "pq/io/mapped_fault.h"

namespace pq::cli {

int ExitCodeFor(const Status& status) {
  if (status.ok()) return 0;
  std::fprintf(stderr, "error: %s\n", status.message().c_str());
  return status.code() == StatusCode::kInvalidArgument || status.code() == StatusCode::kNotFound ||
                 status.code() == StatusCode::kDataLoss
             ? 2
             : 1;
}

}  // namespace pq::cli

int main(int argc, char** argv) {
  // A checkpoint truncated while we read it: a clear message and exit 2, not a bare SIGBUS.
  if (const pq::Status s = pq::io::InstallMappedFileFaultHandler(); !s.ok())
    std::fprintf(stderr, "warning: %s\n", s.message().c_str());
  CLI::App app{
      "PrismaQuant: measure each Linear's sensitivity, pick a format per Linear under a bit "
      "budget, and write a compressed-tensors checkpoint that vLLM serves."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "prismaquant 0.1.0");
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "Only print errors and the final result");
  app.parse_complete_callback([&] {
    if (quiet) pq::SetLogLevel(pq::LogLevel::kQuiet);
  });

  int exit_code = 0;
  pq::cli::AddExportCommand(app, &exit_code);
  pq::cli::AddDequantizeCommand(app, &exit_code);
  pq::cli::AddInspectCommand(app, &exit_code);
  pq::cli::AddImportLlama2cCommand(app, &exit_code);
  pq::cli::AddEvalCommand(app, &exit_code);
  pq::cli::AddTokenizeCommand(app, &exit_code);
  pq::cli::AddProbeCommand(app, &exit_code);
  pq::cli::AddAllocateCommand(app, &exit_code);
  pq::cli::AddCheckCostsCommand(app, &exit_code);
  pq::cli::AddQuantizeCommand(app, &exit_code);
  pq::cli::AddReportCommand(app, &exit_code);
  pq::cli::AddGenerateCommand(app, &exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
