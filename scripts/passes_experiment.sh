#!/usr/bin/env bash
# Which export passes help (README "Which passes help"): for stories260K and the trained
# fixtures, the allocation at the knee (probe of scripts/quality_experiment.sh's work dirs, or
# made here) is exported with each pass combination; reported: the per-Linear output error
# tr(ΔW H ΔWᵀ) against RTN on the export's own calibration Hessians (geometric mean; RTN =
# 1), and measured ΔNLL / KL(BF16 || model) on the held-out text (first 200 paragraphs).
#
#   scripts/passes_experiment.sh [WORK_ROOT]      (default /tmp/pq-quality; ~5 min, 2 cores)
set -euo pipefail
source "$(dirname "$0")/experiment_lib.sh"
experiment_setup "${1:-/tmp/pq-quality}"
echo "| model | passes | output error vs RTN (geomean) | measured ΔNLL | KL |"
echo "|---|---|---|---|---|"
for m in "${models[@]}"; do
  name="${m//\//_}"; w="$out/$name"; model="$root/models/$m"
  probe_model "$w" "$model"
  base=$(base_nll "$model")
  "$bin" -q allocate --work "$w" --target-bits knee > /dev/null
  for p in rtn gptq search search+gptq gptq+search; do
    rm -rf "$w/passes"
    "$bin" -q export "$model" --work "$w" -o "$w/passes" --passes "$p" --json > "$w/passes.json"
    "$bin" eval "$w/passes" --text "$held" --split paragraphs --max-docs 200 --reference "$model" \
      --json 2> /dev/null > "$w/passes_eval.json"
    python3 - "$w" "$m" "$p" "$base" <<'PY'
import json, sys
w, m, p, base = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
x = json.load(open(f"{w}/passes.json")); e = json.load(open(f"{w}/passes_eval.json"))
print(f"| {m} | {p} | {x['error_ratio_vs_rtn_geomean']:.3f} | {e['mean_nll'] - base:+.4f} | "
      f"{e['mean_kl']:.4f} |")
PY
  done
done
