#!/usr/bin/env bash
# GPTQ and scale search (src/pq/quant) against an independent PyTorch implementation
# (tests/quant/gptq_reference.py, float64 on both sides) on random problems with correlated
# Hessians: NVFP4A16 (also act_order, block 32 with dead inputs, rank-deficient H), NVFP4,
# MXFP4 (+act_order), MXFP8, INT4 (+act_order with dead inputs), INT8 (+act_order), FP8.
# Prints one JSON line per case: fraction of elements whose codes differ, rows whose first
# difference is a rounding tie (the reference's decision flips within 2 float32 ulps) and
# rows left unexplained, stored-scale differences, scale search differences, and the output
# error ratios GPTQ/RTN, (GPTQ + scale search)/GPTQ and (RTN + scale search)/RTN. Fails on any unexplained row, more
# than 1% differing elements, any scale-search difference, or GPTQ worse than RTN.
#
#   PQ_GPTQ_TOOL=build/release/tests/pq_gptq_tool bash tests/quant/run.sh
#
# Registered in ctest as quant_gptq_reference (label quant). Work dir removed at exit unless
# PQ_KEEP_WORK=1.
set -euo pipefail

src="${PQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
src=$(cd "$src" && pwd)
tool="${PQ_GPTQ_TOOL:-$src/build/release/tests/pq_gptq_tool}"
if [[ ! -x "$tool" ]]; then
  echo "run.sh: pq_gptq_tool not found at '$tool' (set PQ_GPTQ_TOOL or build it first)" >&2
  exit 1
fi

venv=$(bash "$src/scripts/setup_venv.sh")

work=$(mktemp -d "${TMPDIR:-/tmp}/pq-quant.XXXXXX")
if [[ "${PQ_KEEP_WORK:-0}" == 1 ]]; then
  echo "run.sh: keeping work dir $work" >&2
else
  trap 'rm -rf "$work"' EXIT
fi

export PYTHONDONTWRITEBYTECODE=1 PYTHONWARNINGS=ignore
"$venv/bin/python" "$src/tests/quant/gptq_reference.py" compare --tool "$tool" --work "$work"
