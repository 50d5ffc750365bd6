// The subcommands of the `prismaquant` CLI. Each Add*Command declares its flags on a CLI11
// subcommand and, when that subcommand runs, stores its exit code in `*exit_code`.
// The CLI is thin: parse flags, call one library function, map Status to an exit code.
#pragma once

#include <CLI/CLI.hpp>

#include "pq/core/status.h"

namespace pq::cli {

// Prints "error: ..." to stderr for a failed status; returns the process exit code
// (0 ok, 2 invalid input/usage, 1 anything else).
int ExitCodeFor(const Status& status);
// Installs the ranks' backend of this executable (none for `prismaquant`, MPI for
// `prismaquant-mpi`); main calls it before dist::Init.
void InstallRanksBackend();

void AddExportCommand(CLI::App& app, int* exit_code);
void AddDequantizeCommand(CLI::App& app, int* exit_code);
void AddInspectCommand(CLI::App& app, int* exit_code);
void AddImportLlama2cCommand(CLI::App& app, int* exit_code);
void AddEvalCommand(CLI::App& app, int* exit_code);
void AddTokenizeCommand(CLI::App& app, int* exit_code);
void AddProbeCommand(CLI::App& app, int* exit_code);
void AddAllocateCommand(CLI::App& app, int* exit_code);
void AddCheckCostsCommand(CLI::App& app, int* exit_code);
void AddQuantizeCommand(CLI::App& app, int* exit_code);
void AddReportCommand(CLI::App& app, int* exit_code);
void AddGenerateCommand(CLI::App& app, int* exit_code);

}  // namespace pq::cli
