// prismaquant: one process (dist/'s default backend).
#include "commands.h"

namespace pq::cli {

void InstallRanksBackend() {}

}  // namespace pq::cli
