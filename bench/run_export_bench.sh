#!/usr/bin/env bash
# Export benchmarks (not part of the test run):
#  1. `quantize` end to end on stories260K (probe 64 x 256 tokens, allocate at the knee,
#     sequential search+GPTQ export): median wall time of 3 and peak RSS;
#  2. the calibrated export alone on two synthetic Llama checkpoints that differ only in
#     depth (hidden 256, 12 vs 36 layers; 8 x 128 calibration tokens; every Linear NVFP4A16 by
#     search+GPTQ): seconds per layer and peak RSS (memory must not grow with depth).
# GPTQ on a 4096 x 4096 Linear against a PyTorch GPTQ: bench/run_gptq_bench.sh.
# Usage: bench/run_export_bench.sh [build_dir]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build/release}"
bin="$build/tools/prismaquant/prismaquant"
venv="$("$root/scripts/setup_venv.sh" | tail -1)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
text="$root/../shared/assets/corpus-tinystories-valid-slice/tinystories_val.txt"

echo "== 1. quantize stories260K at the knee (probe + allocate + search+GPTQ export)"
walls=(); rss=0
for rep in 1 2 3; do
  rm -rf "$tmp/q" "$tmp/q.work"
  out=$( { /usr/bin/time -f "%e %M" "$bin" -q quantize "$root/models/stories260K" -o "$tmp/q" \
           --target-bits knee --calib "$root/models/calib/tinystories_calib.txt" --samples 64 \
           --seqlen 256 > /dev/null; } 2>&1 | tail -1)
  walls+=("${out% *}"); rss=$(( ${out#* } > rss ? ${out#* } : rss ))
done
echo "median wall $(printf '%s\n' "${walls[@]}" | sort -g | sed -n 2p) s, peak RSS $((rss / 1024)) MiB"

echo
echo "== 2. calibrated export vs depth (synthetic, hidden 256, 8 x 128 tokens, NVFP4A16 search+GPTQ)"
for layers in 12 36; do
  "$venv/bin/python" "$root/bench/make_synthetic_llama.py" "$tmp/deep$layers" "$layers" \
    "$root/models/stories260K" > /dev/null 2>&1
  w="$tmp/w$layers"
  "$bin" -q probe "$tmp/deep$layers" --calib "$text" --work "$w" --samples 8 --seqlen 128 \
    --formats NVFP4A16,BF16 > /dev/null
  "$bin" -q allocate --work "$w" --formats NVFP4A16 --target-bits 4.6 > /dev/null
  out=$( { /usr/bin/time -f "%e %M" "$bin" -q export "$tmp/deep$layers" --work "$w" \
           -o "$tmp/e$layers" > /dev/null; } 2>&1 | tail -1)
  wall="${out% *}"; r="${out#* }"
  echo "layers $layers: export $wall s ($(python3 -c "print(f'{$wall / $layers:.3f}')") s/layer), peak RSS $((r / 1024)) MiB"
done
