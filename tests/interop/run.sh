#!/usr/bin/env bash
# Interop suite: our checkpoints against the real compressed-tensors / transformers / torch.
#
#   PQ_BIN=build/release/tools/prismaquant/prismaquant PQ_SOURCE_DIR=. bash tests/interop/run.sh [pytest args]
#
# Registered in ctest as interop_compressed_tensors. Makes/updates the test-only venv
# (scripts/setup_venv.sh), works in a fresh temp dir (removed at exit unless PQ_KEEP_WORK=1),
# and exits non-zero on any failure. Extra arguments go to pytest (e.g. -k NVFP4A16 -x).
# PQ_INTEROP_TESTS (default ".": every test_*.py here) names the test file to run instead
# (tests/interop/smollm2.sh runs check_smollm2.py this way).
# PQ_ACT_TOOL (default: tests/pq_act_quant_tool in PQ_BIN's build tree) is the test-only
# bridge that test_act_quant.py runs.
set -euo pipefail

src="${PQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
src=$(cd "$src" && pwd)
bin="${PQ_BIN:-$src/build/release/tools/prismaquant/prismaquant}"
if [[ ! -x "$bin" ]]; then
  echo "run.sh: prismaquant binary not found at '$bin' (set PQ_BIN or build first)" >&2
  exit 1
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
# The test-only activation tool (tests/CMakeLists.txt) lives in the same build tree:
# <build>/tools/prismaquant/prismaquant -> <build>/tests/pq_act_quant_tool.
act_tool="${PQ_ACT_TOOL:-$(dirname "$(dirname "$(dirname "$bin")")")/tests/pq_act_quant_tool}"

venv=$(bash "$src/scripts/setup_venv.sh")

work=$(mktemp -d "${TMPDIR:-/tmp}/pq-interop.XXXXXX")
if [[ "${PQ_KEEP_WORK:-0}" == 1 ]]; then
  echo "run.sh: keeping work dir $work" >&2
else
  trap 'rm -rf "$work"' EXIT
fi

export PQ_BIN="$bin" PQ_ACT_TOOL="$act_tool" PQ_SOURCE_DIR="$src" PQ_WORK="$work"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONDONTWRITEBYTECODE=1 TRANSFORMERS_VERBOSITY=error

cd "$src/tests/interop"
"$venv/bin/python" -m pytest -p no:cacheprovider -q -rfE --tb=short \
  -W "ignore::UserWarning" "$@" "${PQ_INTEROP_TESTS:-.}"
