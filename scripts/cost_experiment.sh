#!/usr/bin/env bash
# Which cost estimator to trust (README "Which cost estimator"): for stories260K and the
# trained fixtures of every architecture (models/trained, scripts/train_fixtures.py), probe on
# the training part of the TinyStories slice, then `check-costs` quantizes one Linear at a time
# (NVFP4 W4A4 and MXFP8, RTN as probed, inputs quantized as the runtime does) and measures
# ΔNLL and KL on the held-out part (models/trained/heldout.txt, first 200 paragraphs).
# Prints one markdown table row per (model, estimator); per-perturbation CSVs stay in OUT.
#
#   scripts/cost_experiment.sh [OUT_DIR]     (default /tmp/pq-cost-experiment; ~15 min, 2 cores)
set -euo pipefail
source "$(dirname "$0")/experiment_lib.sh"
experiment_setup "${1:-/tmp/pq-cost-experiment}"
echo "| model | estimator | Spearman vs ΔNLL | Spearman vs KL | Spearman vs KL within a format | median predicted/KL | median predicted/ΔNLL | pairs |"
echo "|---|---|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  name="${m//\//_}"
  w="$out/$name"
  probe_model "$w" "$root/models/$m"
  "$bin" -q check-costs "$root/models/$m" --work "$w" --text "$held" \
    --max-docs 200 --csv "$w/perturbations.csv" --json > "$w/check.json" 2> /dev/null
  python3 - "$w/check.json" "$m" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for est, v in j["estimators"].items():
    print(f"| {sys.argv[2]} | {est} | {v['spearman_dnll']:.3f} | {v['spearman_kl']:.3f} | "
          f"{v['spearman_kl_within_format']:.3f} | "
          f"{v['median_pred_over_kl']:.3g} | {v['median_pred_over_dnll']:.3g} | {j['pairs']} |")
PY
done
