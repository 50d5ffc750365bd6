#!/usr/bin/env bash
# Engine benchmarks (not part of the test run):
#  1. forward+backward tokens/s of our streaming engine against PyTorch (transformers, CPU,
#     float32, sdpa attention) doing the same work — same checkpoint, same batch and sequence
#     length, same thread count — in the same run, printed as a ratio;
#  2. peak resident memory (/usr/bin/time -v) of a forward+backward sweep on two synthetic
#     checkpoints that differ only in depth, with boundaries spilled to disk, to show it does
#     not grow with the number of layers.
# Usage: bench/run_engine_bench.sh [build_dir]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build/release}"
venv="$("$root/scripts/setup_venv.sh" | tail -1)"
py="$venv/bin/python"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
threads_all="$(nproc)"

echo "== 1. forward+backward throughput (batch 4 x 256 tokens), medians of 5"
"$py" "$root/bench/engine_torch_bench.py" --make-synthetic "$tmp/synth" >/dev/null 2>&1
"$py" "$root/bench/engine_torch_bench.py" --model "$root/models/stories260K" --model "$tmp/synth" \
  --threads 1 "$threads_all" --batch 4 --seq 256 --reps 5 2>/dev/null > "$tmp/torch.jsonl"
# Ours twice: with the environment as it is, and with OPENBLAS_CORETYPE removed so OpenBLAS
# picks its kernel by its own CPU detection (some machines force an older kernel through it;
# PyTorch's MKL ignores the variable).
: > "$tmp/ours.jsonl"; : > "$tmp/ours_auto.jsonl"
for m in "$root/models/stories260K" "$tmp/synth"; do
  for t in 1 "$threads_all"; do
    "$build/bench/engine_bench" "$m" --tokens 256 --batch 4 --threads "$t" --reps 5 >> "$tmp/ours.jsonl"
    env -u OPENBLAS_CORETYPE "$build/bench/engine_bench" "$m" --tokens 256 --batch 4 --threads "$t" \
      --reps 5 >> "$tmp/ours_auto.jsonl"
  done
done
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>}"
for f in ours ours_auto; do
[[ $f == ours_auto ]] && echo "-- with OPENBLAS_CORETYPE unset (OpenBLAS's own detection)"
"$py" - "$tmp/$f.jsonl" "$tmp/torch.jsonl" <<'PY'
import json, os, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
torch = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
def name(p): return os.path.basename(os.path.normpath(p))
tm = {(name(r.get("path", r["model"])), r["threads"]): r["tokens_per_s"] for r in torch}
print(f"{'model':14} {'threads':>7} {'prismaquant tok/s':>18} {'pytorch tok/s':>14} {'ratio':>7}")
for r in ours:
    k = (name(r["model"]), r["threads"])
    t = tm.get(k)
    print(f"{k[0]:14} {k[1]:7d} {r['tokens_per_s']:18.1f} {t if t else float('nan'):14.1f} "
          f"{(r['tokens_per_s'] / t) if t else float('nan'):6.2f}x")
PY
done

echo
echo "== 2. peak RSS of forward+backward vs depth (hidden 256, boundaries spilled: --budget-mb 0)"
for layers in 12 36; do
  "$py" - "$tmp/deep$layers" "$layers" <<'PY'
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=256, num_hidden_layers=int(sys.argv[2]), num_attention_heads=8,
                  num_key_value_heads=4, intermediate_size=688, vocab_size=4096,
                  max_position_embeddings=1024, tie_word_embeddings=False)
LlamaForCausalLM(cfg).save_pretrained(sys.argv[1])
PY
  bytes=$(stat -c %s "$tmp/deep$layers/model.safetensors")
  rss=$( { /usr/bin/time -v "$build/bench/engine_bench" "$tmp/deep$layers" --tokens 256 --batch 4 \
            --threads 1 --reps 1 --budget-mb 0 >/dev/null; } 2>&1 | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
  echo "layers $layers: checkpoint $((bytes / 1048576)) MiB, peak RSS $((rss / 1024)) MiB"
done
