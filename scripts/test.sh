#!/usr/bin/env bash
# Builds and runs the whole test suite: release build (unit tests, interop tests against the
# real compressed-tensors / transformers / torch; prismaquant-mpi across 1-3 MPI ranks against
# prismaquant) and an AddressSanitizer build running the I/O and format tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/deps.sh --test
scripts/setup_venv.sh >/dev/null   # test-only references (torch, transformers, compressed-tensors)
jobs="$(nproc)"
cmake --preset release -DPQ_BUILD_TESTS=ON -DPQ_MPI=ON >/dev/null  # + prismaquant-mpi
cmake --build build/release -j "$jobs"
cmake --preset asan >/dev/null
cmake --build build/asan -j "$jobs" --target pq_io_test pq_formats_test pq_tokenizer_test pq_compute_test pq_alloc_test
ctest --preset asan -j "$jobs"
ctest --preset release -j "$jobs"
scripts/fuzz.sh 20   # each libFuzzer target for 20 s (clang build "fuzz"); fails on any finding
