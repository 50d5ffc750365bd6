#!/usr/bin/env bash
# Pairs our GPTQ (bench/gptq_bench.cc: 4096x4096 NVFP4A16, random correlated H, all threads)
# with the independent PyTorch reference (tests/quant/gptq_reference.py, float64, same rules)
# on the same problem in the same run; prints both wall times, the speed-up, and the fraction
# of elements whose codes differ (expected 0).
# Usage: bench/run_gptq_bench.sh [build_dir] [N K]   (default build/release, 4096 4096)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build/release}"
shift || true
venv="$("$root/scripts/setup_venv.sh" | tail -1)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$build/bench/gptq_bench" "$tmp" "$@" > "$tmp/ours.jsonl"
"$venv/bin/python" "$root/tests/quant/gptq_reference.py" bench \
  "$tmp/problem/model.safetensors" --format NVFP4A16 \
  --ours "$tmp/ours/model.safetensors" > "$tmp/torch.jsonl"
"$venv/bin/python" - "$tmp/ours.jsonl" "$tmp/torch.jsonl" <<'PY'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")][0]
ref = [json.loads(l) for l in open(sys.argv[2]) if l.strip().startswith("{")][0]
print(f"{'impl':12} {'format':9} {'shape':>11} {'threads':>7} {'seconds':>9}")
for r in (ours, ref):
    shape = "x".join(map(str, r["shape"]))
    print(f"{r['impl']:12} {r['format']:9} {shape:>11} {r['threads']:>7} {r['seconds']:9.2f}")
print(f"speed-up (torch / prismaquant): {ref['seconds'] / ours['seconds']:.1f}x")
print(f"elements whose codes differ: {ref['frac_elements_differ_vs_ours']:.2e}")
PY
