#!/usr/bin/env bash
# Quality evidence (README "Quality against uniform NVFP4"): for stories260K and the trained
# fixtures, with one probe each (the training part of the TinyStories slice, 64 x 256 tokens):
#   uniform NVFP4 (W4A4; where NVFP4 cannot hold a Linear, INT8) by RTN, and by search+GPTQ;
#   uniform NVFP4A16 (the same weights, activations not quantized: the same bytes), search+GPTQ;
#   PrismaQuant mixes (search+GPTQ) at the uniform checkpoint's bytes, at +0.25 bits/param,
#   and at the knee.
# Each: bits/param (Linears), checkpoint tensor bytes, predicted Δloss, and measured ΔNLL and
# KL(BF16 || model) on the held-out part (models/trained/heldout.txt, first 200 paragraphs),
# activations quantized as the runtime does; for stories260K also KL on out-of-domain text
# (wikitext-2 test: its first 200 lines; tinyshakespeare: its first 200 paragraphs). Prints a
# markdown table.
#
#   scripts/quality_experiment.sh [OUT_DIR]     (default /tmp/pq-quality; ~10 min, 2 cores)
set -euo pipefail
source "$(dirname "$0")/experiment_lib.sh"
experiment_setup "${1:-/tmp/pq-quality}"
ood=("$root/../shared/assets/corpus-wikitext2-test/wiki.test.raw"
     "$root/../shared/assets/corpus-tinyshakespeare/input.txt")
ood_split=(lines paragraphs)
echo "| model | checkpoint | bits/param | tensor bytes | predicted Δloss | measured ΔNLL | KL | KL wikitext-2 | KL shakespeare |"
echo "|---|---|---|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  name="${m//\//_}"; w="$out/$name"; model="$root/models/$m"
  probe_model "$w" "$model"
  base=$(base_nll "$model")
  # row LABEL PASSES ALLOCATE-ARGS...
  row() {
    local label="$1" passes="$2"; shift 2
    "$bin" -q allocate --work "$w" "$@" --json > "$w/alloc.json"
    rm -rf "$w.out"
    "$bin" -q export "$model" --work "$w" -o "$w.out" --passes "$passes" --json > "$w/export.json"
    "$bin" eval "$w.out" --text "$held" --split paragraphs --max-docs 200 --reference "$model" \
      --json 2> /dev/null > "$w/eval.json"
    local i=0
    for t in "${ood[@]}"; do
      i=$((i + 1)); echo '{"mean_kl": null}' > "$w/ood$i.json"
      [[ "$m" == stories260K ]] && "$bin" eval "$w.out" --text "$t" --split "${ood_split[$((i - 1))]}" \
        --max-docs 200 --reference "$model" --json 2> /dev/null > "$w/ood$i.json"
    done
    python3 - "$w" "$m" "$label" "$base" <<'PY'
import json, sys
w, m, label, base = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
a = json.load(open(f"{w}/alloc.json"))["chosen"]; x = json.load(open(f"{w}/export.json"))
e = json.load(open(f"{w}/eval.json"))
ood = [json.load(open(f"{w}/ood{i}.json"))["mean_kl"] for i in (1, 2)]
ood = [f"{k:.4f}" if k is not None else "—" for k in ood]
print(f"| {m} | {label} | {a['achieved_bits']:.3f} | {x['total_bytes']} | {a['predicted_dloss']:.4g} | "
      f"{e['mean_nll'] - base:+.4f} | {e['mean_kl']:.4f} | {ood[0]} | {ood[1]} |")
PY
  }
  # Uniform NVFP4: the smallest allocation over NVFP4 (+ INT8 where NVFP4 cannot go).
  min_bits=$("$bin" -q allocate --work "$w" --formats NVFP4,INT8 --target-bits 64 --json \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['min_bits'] + 1e-6)")
  row "uniform NVFP4, RTN" rtn --formats NVFP4,INT8 --target-bits "$min_bits"
  uni_bytes=$(python3 -c "import json; print(json.load(open('$w/export.json'))['total_bytes'])")
  row "uniform NVFP4, search+GPTQ" search+gptq --formats NVFP4,INT8 --target-bits "$min_bits"
  row "uniform NVFP4A16 (weight-only), search+GPTQ" search+gptq --formats NVFP4A16,INT8 \
    --target-bits "$min_bits"
  row "PrismaQuant, same bytes" search+gptq --target-size "$uni_bytes"
  row "PrismaQuant, +0.25 bits" search+gptq \
    --target-bits "$(python3 -c "print($min_bits + 0.25)")"
  row "PrismaQuant, knee" search+gptq --target-bits knee
done
