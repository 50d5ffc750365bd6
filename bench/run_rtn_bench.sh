#!/usr/bin/env bash
# Pairs our RTN quantize+pack (bench/rtn_bench.cc) with compressed-tensors doing the same
# work (bench/ct_rtn_bench.py) on the same machine in the same run; prints medians and the
# speed-up ratio per format and thread count.
# Usage: bench/run_rtn_bench.sh [build_dir]   (default build/release)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build/release}"
venv="$("$root/scripts/setup_venv.sh" | tail -1)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
# Ours runs in milliseconds, so a time slice lost to another process moves a median of 5;
# 15 repetitions (compressed-tensors: 5 of ~0.3-2 s each).
"$build/bench/rtn_bench" 15 > "$tmp/ours.jsonl"
"$venv/bin/python" "$root/bench/ct_rtn_bench.py" > "$tmp/ct.jsonl"
"$venv/bin/python" - "$tmp/ours.jsonl" "$tmp/ct.jsonl" <<'PY'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
ct = [json.loads(l) for l in open(sys.argv[2]) if l.strip().startswith("{")]
def key(r):  # NVFP4 and NVFP4A16 quantize weights identically
    return (r["format"].replace("NVFP4A16", "NVFP4"), "1" if r["threads"] == 1 else "all")
ctm = {key(r): r["median_s"] for r in ct}
print(f"{'format':10} {'threads':>7} {'input':>5} {'prismaquant s':>14} "
      f"{'compressed-tensors s':>21} {'speed-up':>9}")
for r in ours:  # input: float32 (QuantizeRtn) or raw bf16 bits (QuantizeRtnBf16)
    c = ctm.get(key(r))
    ratio = f"{c / r['median_s']:.1f}x" if c else "n/a"
    cs = f"{c:.4f}" if c else "n/a"
    print(f"{r['format']:10} {key(r)[1]:>7} {r.get('input', 'f32'):>5} {r['median_s']:14.4f} "
          f"{cs:>21} {ratio:>9}")
PY
