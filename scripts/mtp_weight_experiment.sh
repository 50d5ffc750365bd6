#!/usr/bin/env bash
# What the MTP head's share of the bytes is worth (README "MTP head: what its bytes buy"): on the
# trained hybrid (qwen3_5_moe, with an MTP head), probe as scripts/moe_cost_experiment.sh does,
# then allocate at uniform NVFP4's bytes with `--mtp-weight W` for several W, export
# (search+GPTQ) and measure on the held-out text the body's KL(source || checkpoint) and the
# MTP head's NLL of token t+2 and draft acceptance (`eval --mtp`: how often its greedy draft
# equals the checkpoint's own greedy token — what greedy speculative decoding accepts), beside
# uniform NVFP4A16 and the source model. Prints a Markdown table.
#
#   scripts/mtp_weight_experiment.sh [OUT_DIR] [WEIGHTS]   (default /tmp/pq-mtp, "1 0.5 0.25 0.1 0")
set -euo pipefail
source "$(dirname "$0")/experiment_lib.sh"
experiment_setup "${1:-/tmp/pq-mtp}"
weights="${2:-1 0.5 0.25 0.1 0}"
model="$root/models/trained/qwen3_5_moe" w="$out/qwen3_5_moe"
probe_model "$w" "$model"

measure() {  # measure LABEL CKPT [ALLOC_JSON]: one table row
  "$bin" eval "$2" --text "$held" --split paragraphs --max-docs 200 --reference "$model" --mtp \
    --json 2> /dev/null > "$out/eval.json"
  python3 - "$1" "$out/eval.json" "${3:-}" <<'PY'
import json, sys
label, e = sys.argv[1], json.load(open(sys.argv[2]))
bits = pred = mix = "—"
if sys.argv[3]:
    a = json.load(open(sys.argv[3]))["chosen"]
    bits, pred = f"{a['achieved_bits']:.3f}", f"{a['predicted_dloss']:.4g}"
    mix = ", ".join(f"{f} {n}" for f, n in a["units_per_format"].items() if n)
print(f"| {label} | {bits} | {pred} | {e.get('mean_kl', 0):.4f} | {e['mtp_nll']:.4f} "
      f"| {e['mtp_accept']:.4f} | {mix} |")
PY
}

quality() {  # quality LABEL ALLOCATE-ARGS...
  local label="$1"; shift
  "$bin" -q allocate --work "$w" "$@" --json > "$out/alloc.json"
  rm -rf "$out/ckpt"
  "$bin" -q export "$model" --work "$w" -o "$out/ckpt" --json > "$out/export.json"
  measure "$label" "$out/ckpt" "$out/alloc.json"
}

echo "| checkpoint | bits/param | predicted Δloss | KL (body) | MTP NLL | MTP acceptance | units per format |"
echo "|---|---|---|---|---|---|---|"
measure "source (BF16)" "$model"
min_bits=$("$bin" -q allocate --work "$w" --formats NVFP4,INT8 --target-bits 64 --json \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['min_bits'] + 1e-6)")
"$bin" -q allocate --work "$w" --formats NVFP4,INT8 --target-bits "$min_bits" > /dev/null
rm -rf "$out/nvfp4"
"$bin" -q export "$model" --work "$w" -o "$out/nvfp4" --json > "$out/export.json"
uni_bytes=$(python3 -c "import json; print(json.load(open('$out/export.json'))['total_bytes'])")
quality "uniform NVFP4A16" --formats NVFP4A16,INT8 --target-bits "$min_bits"
for wt in $weights; do
  quality "same bytes, --mtp-weight $wt" --target-size "$uni_bytes" --mtp-weight "$wt"
done
