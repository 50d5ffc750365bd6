#!/usr/bin/env bash
# Pricing that sees MoE routing (README "Which cost estimator", "MoE units"): for the trained
# MoE fixtures and trained/qwen3 (dense control), probe on the training part of the TinyStories
# slice (64 x 256 tokens, default passes search+GPTQ, default block pricing), then
# `check-costs --per-unit` quantizes one decision unit at a time (all experts of a layer, the
# shared expert, fused q/k/v, ...; NVFP4 W4A4 and MXFP8, as the probe priced them, inputs
# quantized as the runtime does) and measures KL on the held-out part (first 200 paragraphs).
# Prints, per model:
#   1. per estimator: median predicted/measured KL, Spearman vs KL (all pairs, and within a
#      format), pairs;
#   2. the block pricing's variants, re-probed and scored against the same measurements:
#      window of 1 layer / 2 (default) / to the last layer, and the routing frozen (ablation),
#      with the tokens whose top-k set changed (mean over units, % of calibration tokens);
#   3. (MoE fixtures) KL of uniform NVFP4A16 against PrismaQuant at uniform NVFP4's bytes,
#      allocated with hessian and with block (search+GPTQ export); for a model with an MTP head
#      also with the MTP head held at NVFP4A16 (its Linears' prices in a copy of probe.json set
#      so that only NVFP4A16 is free), which shows what the MTP head's share of the bytes costs
#      the body's KL.
# Per-unit CSVs stay in OUT.
#
#   scripts/moe_cost_experiment.sh [OUT_DIR]   (default /tmp/pq-moe-cost; ~25 min, 2 cores)
set -euo pipefail
source "$(dirname "$0")/experiment_lib.sh"
experiment_setup "${1:-/tmp/pq-moe-cost}"
if [[ -z "${PQ_MODELS:-}" ]]; then models=(trained/qwen3_moe trained/qwen3_5_moe trained/qwen3); fi

probe_variant() {  # probe_variant WORK MODEL ARGS...: probes MODEL into WORK unless done
  local w="$1" m="$2"; shift 2
  [[ -s "$w/probe.json" ]] || "$bin" -q probe "$m" --calib "$out/calib.txt" --work "$w" \
    --samples 64 --seqlen 256 "$@" > /dev/null
}

# quality LABEL WORK MODEL ALLOCATE-ARGS...: allocate, export (search+GPTQ), KL on held-out.
quality() {
  local label="$1" w="$2" m="$3"; shift 3
  "$bin" -q allocate --work "$w" "$@" --json > "$w/alloc.json"
  rm -rf "$w.out"
  "$bin" -q export "$m" --work "$w" -o "$w.out" --json > "$w/export.json"
  "$bin" eval "$w.out" --text "$held" --split paragraphs --max-docs 200 --reference "$m" \
    --json 2> /dev/null > "$w/eval.json"
  python3 - "$w" "$label" <<'PY'
import json, sys
w, label = sys.argv[1], sys.argv[2]
a = json.load(open(f"{w}/alloc.json"))["chosen"]; x = json.load(open(f"{w}/export.json"))
e = json.load(open(f"{w}/eval.json"))
mix = ", ".join(f"{f} {n}" for f, n in a["units_per_format"].items() if n)
print(f"| {label} | {a['achieved_bits']:.3f} | {x['total_bytes']} | {a['predicted_dloss']:.4g} "
      f"| {e['mean_kl']:.4f} | {mix} |")
PY
}

for m in "${models[@]}"; do
  name="${m//\//_}"; w="$out/$name"; model="$root/models/$m"
  probe_variant "$w" "$model"
  [[ -s "$w/units.csv" ]] || "$bin" -q check-costs "$model" --work "$w" --text "$held" \
    --max-docs 200 --per-unit --csv "$w/units.csv" --json > "$w/units.json" 2> /dev/null
  variants=("$w")
  if python3 -c "import json,sys; sys.exit(json.load(open('$w/probe.json'))['model']['num_experts'] == 0)"; then
    probe_variant "$w.l1" "$model" --block-layers 1
    probe_variant "$w.top" "$model" --block-layers 0
    probe_variant "$w.frozen" "$model" --block frozen
    variants+=("$w.l1" "$w.top" "$w.frozen")
  fi
  echo
  echo "### $m"
  python3 - "$w/units.csv" "${variants[@]}" <<'PY'
import csv, json, math, statistics as st, sys

def ranks(v):
    idx = sorted(range(len(v)), key=lambda i: v[i]); r = [0.0] * len(v); i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and v[idx[j + 1]] == v[idx[i]]: j += 1
        for k in range(i, j + 1): r[idx[k]] = (i + j) / 2
        i = j + 1
    return r

def spearman(a, b):
    ra, rb = ranks(a), ranks(b); m = (len(a) - 1) / 2
    sab = sum((x - m) * (y - m) for x, y in zip(ra, rb))
    saa = sum((x - m) ** 2 for x in ra); sbb = sum((y - m) ** 2 for y in rb)
    return sab / math.sqrt(saa * sbb) if saa > 0 and sbb > 0 else 0.0

def within(pred, rows):
    tot = 0.0
    for f in sorted({r["format"] for r in rows}):
        i = [k for k, r in enumerate(rows) if r["format"] == f]
        tot += spearman([pred[k] for k in i], [float(rows[k]["measured_kl"]) for k in i]) * len(i)
    return tot / len(rows)

rows = list(csv.DictReader(open(sys.argv[1])))
kl = [float(r["measured_kl"]) for r in rows]
print("| estimator | median predicted/KL | Spearman vs KL | within a format | pairs |")
print("|---|---|---|---|---|")
for e in [k[5:] for k in rows[0] if k.startswith("pred_")]:
    p = [float(r["pred_" + e]) for r in rows]
    print(f"| {e} | {st.median(a / b for a, b in zip(p, kl)):.3f} | {spearman(p, kl):.3f} | "
          f"{within(p, rows):.3f} | {len(rows)} |")
if len(sys.argv) > 3:
    labels = {"": "2 layers (default)", ".l1": "1 layer", ".top": "to the last layer",
              ".frozen": "2 layers, routing frozen"}
    print()
    print("| block pricing | median predicted/KL | Spearman vs KL | within a format | "
          "routing changes, % of tokens (NVFP4 / MXFP8, mean over units) |")
    print("|---|---|---|---|---|")
    for w in sys.argv[2:]:
        j = json.load(open(f"{w}/probe.json")); tokens = j["calibration"]["tokens"]
        pred, flips = {}, {}
        for l in j["linears"]:
            for c in l["candidates"]:
                k = (l["unit"], c["format"])
                pred[k] = pred.get(k, 0.0) + c["cost"].get("block", c["cost"]["hessian"])
                if "routing_changes" in c: flips[k] = c["routing_changes"]
        p = [pred[(r["module"], r["format"])] for r in rows]
        fl = []
        for f in ("NVFP4", "MXFP8"):
            v = [flips.get((r["module"], f), 0) for r in rows if r["format"] == f]
            fl.append(f"{100 * st.mean(v) / tokens:.1f}" if v else "—")
        print(f"| {labels[w[len(sys.argv[2]):]]} | {st.median(a / b for a, b in zip(p, kl)):.3f} | "
              f"{spearman(p, kl):.3f} | {within(p, rows):.3f} | {' / '.join(fl)} |")
PY
  [[ ${#variants[@]} -gt 1 ]] || continue
  echo
  echo "| checkpoint | bits/param | tensor bytes | predicted Δloss | KL | units per format |"
  echo "|---|---|---|---|---|---|"
  min_bits=$("$bin" -q allocate --work "$w" --formats NVFP4,INT8 --target-bits 64 --json \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['min_bits'] + 1e-6)")
  quality "uniform NVFP4 (W4A4)" "$w" "$model" --formats NVFP4,INT8 --target-bits "$min_bits"
  uni_bytes=$(python3 -c "import json; print(json.load(open('$w/export.json'))['total_bytes'])")
  quality "uniform NVFP4A16" "$w" "$model" --formats NVFP4A16,INT8 --target-bits "$min_bits"
  quality "PrismaQuant, same bytes, --cost hessian" "$w" "$model" --target-size "$uni_bytes" \
    --cost hessian
  quality "PrismaQuant, same bytes, --cost block (default)" "$w" "$model" \
    --target-size "$uni_bytes"
  if python3 -c "import json,sys; sys.exit(json.load(open('$w/probe.json'))['model']['mtp_layers'] == 0)"; then
    pin="$w.mtp_pinned"; rm -rf "$pin"; mkdir -p "$pin"; cp -r "$w/probe" "$w/probe.json" "$pin/"
    python3 - "$pin/probe.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
for l in p["linears"]:
    if l.get("is_mtp"):
        for c in l["candidates"]:
            for k in c["cost"]: c["cost"][k] = 0.0 if c["format"] == "NVFP4A16" else 1e3
json.dump(p, open(sys.argv[1], "w"), indent=1, sort_keys=True)
PY
    quality "same bytes, hessian, MTP held at NVFP4A16" "$pin" "$model" --target-size "$uni_bytes" \
      --cost hessian
    quality "same bytes, block, MTP held at NVFP4A16" "$pin" "$model" --target-size "$uni_bytes"
  fi
done
