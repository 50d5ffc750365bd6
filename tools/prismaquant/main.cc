// prismaquant: mixed-precision quantization of Hugging Face checkpoints into
// compressed-tensors checkpoints that vLLM serves.
#include <cstdio>

#include "commands.h"
#include "pq/core/log.h"
#include "pq/dist/comm.h"
#include "pq/io/mapped_fault.h"

namespace pq::cli {

int ExitCodeFor(const Status& status) {
  if (status.ok()) return 0;
  const int code = status.code() == StatusCode::kInvalidArgument ||
                           status.code() == StatusCode::kNotFound ||
                           status.code() == StatusCode::kDataLoss
                       ? 2
                       : 1;
  // Across MPI ranks a failing rank ends the job (the others would wait for it forever).
  if (dist::Size() > 1) dist::Abort("error: " + status.message(), code);
  std::fprintf(stderr, "error: %s\n", status.message().c_str());
  return code;
}

}  // namespace pq::cli

int main(int argc, char** argv) {
  pq::cli::InstallRanksBackend();
  if (const pq::Status s = pq::dist::Init(&argc, &argv); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.message().c_str());
    return 1;
  }
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
    if (quiet || pq::dist::Rank() != 0) pq::SetLogLevel(pq::LogLevel::kQuiet);
    const bool parallel = app.got_subcommand("probe") || app.got_subcommand("eval") ||
                          app.got_subcommand("export") || app.got_subcommand("quantize") ||
                          app.got_subcommand("check-costs");
    if (pq::dist::Size() > 1 && !parallel)
      pq::dist::Abort(
          "only `probe`, `eval`, `export --work`, `quantize` and `check-costs` run across MPI "
          "ranks: run the other commands with one process",
          2);
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
    pq::dist::Finalize();
    return rc == 0 ? 0 : 2;
  }
  pq::dist::Finalize();
  return exit_code;
}
