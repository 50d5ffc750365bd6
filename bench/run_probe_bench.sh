#!/usr/bin/env bash
# Probe and allocator benchmarks (not part of the test run):
#  1. probe wall time (median of 3) and peak RSS on stories260K, 64 samples x 256 tokens, all
#     8 candidate formats priced by all 4 estimators;
#  2. the same on two synthetic Llama checkpoints that differ only in depth (hidden 256,
#     12 vs 36 layers, boundaries spilled: --memory-budget-gb 0) — peak memory must not grow
#     with the number of layers, wall time grows linearly;
#  3. the allocator on a 500-unit x 8-format instance (bench/alloc_bench).
# Usage: bench/run_probe_bench.sh [build_dir]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build/release}"
bin="$build/tools/prismaquant/prismaquant"
venv="$("$root/scripts/setup_venv.sh" | tail -1)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
text="$root/../shared/assets/corpus-tinystories-valid-slice/tinystories_val.txt"

# run_probe NAME MODEL ARGS...: prints "NAME: median wall s, peak RSS MiB"
run_probe() {
  local name="$1" model="$2"; shift 2
  local walls=() rss=0
  for rep in 1 2 3; do
    rm -rf "$tmp/w"
    local out
    out=$( { /usr/bin/time -f "%e %M" "$bin" -q probe "$model" --work "$tmp/w" "$@" > /dev/null; } 2>&1 | tail -1)
    walls+=("${out% *}")
    rss=$(( ${out#* } > rss ? ${out#* } : rss ))
  done
  local median
  median=$(printf '%s\n' "${walls[@]}" | sort -g | sed -n 2p)
  local params
  params=$(python3 -c "import json; print(sum(l['rows']*l['cols'] for l in json.load(open('$tmp/w/probe.json'))['linears']))")
  echo "$name: median wall ${median} s, peak RSS $((rss / 1024)) MiB, $params Linear params"
}

echo "== 1. probe on stories260K (64 x 256 tokens, 8 formats x 4 estimators, threads $(nproc))"
run_probe stories260K "$root/models/stories260K" --calib "$text" --samples 64 --seqlen 256

echo
echo "== 2. probe vs depth (synthetic, hidden 256, 8 x 128 tokens, boundaries spilled)"
for layers in 12 36; do
  "$venv/bin/python" "$root/bench/make_synthetic_llama.py" "$tmp/deep$layers" "$layers" \
    "$root/models/stories260K" > /dev/null 2>&1
  bytes=$(stat -c %s "$tmp/deep$layers/model.safetensors")
  echo -n "layers $layers, checkpoint $((bytes / 1048576)) MiB: "
  run_probe "deep$layers" "$tmp/deep$layers" --calib "$text" --samples 8 --seqlen 128 \
    --memory-budget-gb 0
done

echo
echo "== 3. allocator, 500 units x 8 formats, 11-point sweep"
"$build/bench/alloc_bench" 2>&1 | tail -5
