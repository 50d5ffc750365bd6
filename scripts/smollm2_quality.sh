#!/usr/bin/env bash
# The SmolLM2-135M quality table (README "Quality on a real model"): one probe per pricing
# (export-aware search+gptq, and RTN for comparison) on 32 x 512 tokens drawn from the first
# 70 % of the wikitext-2 test paragraphs and of the TinyStories slice; every checkpoint
# measured by our eval on the other 30 % of each (KL(BF16 || checkpoint), ΔNLL; no BOS).
#
#   scripts/smollm2_quality.sh MODEL_DIR OUT_DIR [BIN]     (~1.5 h on 2 cores)
# MODEL_DIR: scripts/fetch_smollm2.sh's output (BF16 weights on Q4_1's grid, see there).
# (The first, slow part: the export-aware probe took 59 min here on a busy 2-core machine.)
# Prints one TSV row per checkpoint: label, pricing, passes, bits/param, total bytes,
# predicted Δloss, KL and ΔNLL on wikitext-2, KL and ΔNLL on TinyStories, export seconds.
# Env: ROWS=N stops after the first N rows, FROM_ROW=N skips the rows before N; PROBE_FORMATS=LIST
# probes only those formats (the first five rows need only NVFP4A16 and BF16 among them; the
# measured-price rows NVFP4A16, INT4, INT8).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
model="$1" out="$2" bin="${3:-$root/build/release/tools/prismaquant/prismaquant}"
assets="$root/../shared/assets"
mkdir -p "$out"

# Calibration / held-out texts: paragraphs (wikitext-2: non-heading lines), first 70 % / rest.
python3 - "$assets" "$out" <<'PY'
import re, sys
assets, out = sys.argv[1], sys.argv[2]
raw = open(f"{assets}/corpus-wikitext2-test/wiki.test.raw", encoding="utf-8").read().replace("\r", "")
wiki = [l.strip() for l in raw.split("\n") if l.strip() and not l.strip().startswith("=")]
ts = open(f"{assets}/corpus-tinystories-valid-slice/tinystories_val.txt", encoding="utf-8").read()
ts = [s.strip() for s in re.split(r"\n\s*\n|<\|endoftext\|>", ts.replace("\r", "")) if s.strip()]
cw, ct = int(len(wiki) * 0.7), int(len(ts) * 0.7)
def write(name, paras): open(f"{out}/{name}", "w", encoding="utf-8").write("\n\n".join(paras) + "\n")
write("calib.txt", wiki[:cw] + ts[:ct]); write("wiki_held.txt", wiki[cw:]); write("ts_held.txt", ts[ct:])
# Text for measured prices (check-costs on calibration text, not the held-out): 9 wikitext-2
# and 27 TinyStories paragraphs of the calibration part, interleaved (~2.4k tokens).
import random
rng = random.Random(2)
w, t = rng.sample(wiki[:cw], 9), rng.sample(ts[:ct], 27)
write("measure.txt", [p for i in range(27) for p in ([w[i]] if i < 9 else []) + [t[i]]])
PY

probe() {  # probe WORK PASSES   (PROBE_FORMATS: candidate formats, default all)
  [[ -f "$1/probe.json" ]] && return 0
  "$bin" -q probe "$model" --calib "$out/calib.txt" --split paragraphs --samples 32 --seqlen 512 \
    --no-bos --work "$1" --passes "$2" ${PROBE_FORMATS:+--formats "$PROBE_FORMATS"} --json \
    > "$1.probe.out"
}

nll() {  # nll CKPT TEXT DOCS [--reference MODEL] -> "NLL KL"
  local c="$1" t="$2" d="$3"; shift 3
  "$bin" -q eval "$c" --text "$t" --split paragraphs --max-docs "$d" --no-bos --json "$@" |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["mean_nll"], j.get("mean_kl", 0))'
}
declare -A base
evalkl() {  # evalkl CKPT TEXT DOCS -> "KL dNLL"
  [[ -n "${base[$2]:-}" ]] || base[$2]=$(nll "$model" "$2" "$3" | cut -d' ' -f1)
  nll "$1" "$2" "$3" --reference "$model" |
    python3 -c 'import sys; n, kl = map(float, sys.stdin.read().split()); print(kl, n - float(sys.argv[1]))' "${base[$2]}"
}

# row LABEL WORK PASSES ALLOCATE-ARGS...
row() {
  local label="$1" w="$2" passes="$3"; shift 3
  "$bin" -q allocate --work "$w" "$@" --json > "$out/alloc.json"
  local ckpt="$out/ckpt"
  rm -rf "$ckpt"
  local s; s=$(date +%s)
  "$bin" -q export "$model" --work "$w" -o "$ckpt" --passes "$passes" --json > /dev/null
  local secs=$(( $(date +%s) - s ))
  local a; a=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["chosen"]; print(c["achieved_bits"], c["total_bytes"], c["predicted_dloss"])' "$out/alloc.json")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$(basename "$w")" "$passes" "${a// /	}" \
    "$(evalkl "$ckpt" "$out/wiki_held.txt" 40 | tr ' ' '\t')" \
    "$(evalkl "$ckpt" "$out/ts_held.txt" 150 | tr ' ' '\t')" "$secs"
}

wg="$out/w_search_gptq" wr="$out/w_rtn"
probe "$wg" search+gptq
menu="NVFP4,MXFP8,FP8,BF16"
min_bits() { "$bin" -q allocate --work "$wg" --formats "$1" --target-bits 16 --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["min_bits"] + 1e-6)'; }
# (FROM_ROW > 7 with PROBE_FORMATS=NVFP4,MXFP8,FP8,BF16 runs only the W4A4-menu rows.)
[[ "${FROM_ROW:-1}" -gt 7 ]] || nvfp4a16=$(min_bits NVFP4A16,BF16)
# Rows in order of importance (each export is minutes on 2 cores); ROWS=N stops after N.
# The first five need only NVFP4A16 among the probed formats (PROBE_FORMATS may leave the W4A4
# menu out); "token" rows price with allocate --cost token instead of the default.
rows=0; max_rows="${ROWS:-99}" from_row="${FROM_ROW:-1}"
next() { rows=$((rows + 1)); [[ $rows -ge $from_row && $rows -le $max_rows ]]; }
# Measured prices (README "Measured prices"): every unit quantized alone in NVFP4A16, INT4 and
# INT8 as the probe priced it, KL measured on measure.txt (~40 min here), then allocated by it.
measured() {
  [[ -f "$out/measured.csv" ]] ||
    "$bin" -q check-costs "$model" --work "$wg" --text "$out/measure.txt" --no-bos --per-unit \
      --formats NVFP4A16,INT4,INT8 --csv "$out/measured.csv" > "$out/measured.out"
  row "PrismaQuant, measured prices, $1" "$wg" search+gptq --formats BF16,NVFP4A16,INT4,INT8 \
    --measured-costs "$out/measured.csv" "${@:2}"
}
next && row "uniform NVFP4A16" "$wg" search+gptq --formats NVFP4A16,BF16 --target-bits "$nvfp4a16"
next && row "PrismaQuant, all formats, uniform NVFP4A16's bytes" "$wg" search+gptq --target-bits "$nvfp4a16"
next && measured "uniform NVFP4A16's bytes" --target-bits "$nvfp4a16"
next && measured "4.75 bits" --target-bits 4.75
next && row "PrismaQuant, all formats, uniform NVFP4A16's bytes, token" "$wg" search+gptq --target-bits "$nvfp4a16" --cost token
next && row "PrismaQuant, all formats, 4.75 bits" "$wg" search+gptq --target-bits 4.75
next && row "PrismaQuant, all formats, 4.75 bits, token" "$wg" search+gptq --target-bits 4.75 --cost token
[[ $max_rows -gt 7 ]] || exit 0
nvfp4=$(min_bits NVFP4,BF16); mxfp8=$(min_bits MXFP8,BF16)
next && row "uniform NVFP4 (W4A4)" "$wg" search+gptq --formats NVFP4,BF16 --target-bits "$nvfp4"
next && row "PrismaQuant, NVFP4/MXFP8/FP8/BF16, 4.75 bits" "$wg" search+gptq --formats "$menu" --target-bits 4.75
next && row "PrismaQuant, NVFP4/MXFP8/FP8/BF16, 4.75 bits, token" "$wg" search+gptq --formats "$menu" --target-bits 4.75 --cost token
next && row "PrismaQuant, NVFP4/MXFP8/FP8/BF16, knee" "$wg" search+gptq --formats "$menu" --target-bits knee
[[ $max_rows -gt 11 ]] || exit 0
# The same allocations priced by RTN (the earlier probe), exported the same way.
probe "$wr" rtn
next && row "PrismaQuant (RTN-priced), all formats, uniform NVFP4A16's bytes" "$wr" search+gptq --target-bits "$nvfp4a16"
next && row "PrismaQuant, all formats, knee" "$wg" search+gptq --target-bits knee
next && row "uniform MXFP8 (W8A8)" "$wg" search+gptq --formats MXFP8,BF16 --target-bits "$mxfp8"
next && row "PrismaQuant (RTN-priced), all formats, 4.75 bits" "$wr" search+gptq --target-bits 4.75
next && row "uniform NVFP4 (W4A4), RTN" "$wg" rtn --formats NVFP4,BF16 --target-bits "$nvfp4"
