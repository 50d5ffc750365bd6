#!/usr/bin/env bash
# The MPI build (preset release-mpi, Open MPI) and its tests: the probe across 1, 2, 3 ranks
# byte-identical to the build without MPI (which it builds too, as scripts/test.sh does), a
# killed rank, resume. Not part of scripts/test.sh: a second build of the library.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/deps.sh --test
jobs="$(nproc)"
cmake --preset release >/dev/null
cmake --build build/release -j "$jobs" --target prismaquant
cmake --preset release-mpi >/dev/null
cmake --build build/release-mpi -j "$jobs" --target prismaquant pq_dist_test
ctest --preset release-mpi -L dist
