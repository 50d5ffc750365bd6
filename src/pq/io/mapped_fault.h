// Files read through mmap can change under us: a checkpoint truncated (or rewritten) by
// another process while we read it makes the next access to a page beyond its new end raise
// SIGBUS. This registry records which file every mapping belongs to, in a form a signal
// handler can read, and the handler turns such a fault into a clear message naming the file.
//
// The library never installs the handler itself (it would end the process): a program opts
// in once at start-up (the CLI does). A SIGBUS outside any registered mapping keeps the
// default action (a crash with a core dump: that is a bug, not bad input).
#pragma once

#include <cstddef>
#include <string>

#include "pq/core/status.h"

namespace pq::io {

// Records [begin, begin + size) as a mapping of `path`. Silently does nothing if the fixed
// registry is full (the fault message then says "a mapped file").
void RegisterMapping(const void* begin, size_t size, const std::string& path);
// Forgets the mapping that starts at `begin` (before it is unmapped).
void UnregisterMapping(const void* begin);

// Installs the SIGBUS handler: a fault inside a registered mapping writes
//   error: PATH changed while it was being read (truncated or replaced?); nothing was
//   written to the output. Restore the file and run the command again.
// to stderr and ends the process with exit status 2 (outputs are only ever committed by an
// atomic rename at the end, so none is half-written; temp dirs are removed by the next run).
Status InstallMappedFileFaultHandler();

}  // namespace pq::io
