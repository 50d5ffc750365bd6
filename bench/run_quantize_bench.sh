#!/usr/bin/env bash
# End to end against the tool users run today (issue 14 item 3): our `quantize` (probe +
# allocate + search+GPTQ export) against llm-compressor's GPTQ oneshot to NVFP4A16
# (bench/peers, its own virtualenv) on the same calibration tokens, same machine, same run;
# optionally also a previous binary of ours (BASE_BIN, e.g. main's build) for a before/after.
# Never run by CI.
#
#   bench/run_quantize_bench.sh MODEL CALIB_TEXT OUT_DIR [SAMPLES [SEQLEN]]
#
# MODEL: SmolLM2-135M-Instruct (scripts/fetch_smollm2.sh). CALIB_TEXT: a .txt split into
# paragraphs (e.g. wikitext-2 train). Defaults 32 x 512 (the issue's size). Env: BIN (ours,
# default build/release), BASE_BIN (optional), TARGET (--target-bits, default 4.5),
# PQ_BENCH_PEER=0 (skip llm-compressor), PQ_BENCH_THREADS (ours and torch's, default 2).
# Prints one row per tool: wall s, user+sys CPU s, peak RSS MiB, and the ratios ours / peer
# (and ours / BASE_BIN). The machine is shared: compare CPU s, and read `uptime` (printed).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ $# -ge 3 ]] || { sed -n 2,16p "$0" >&2; exit 2; }
model="$1" text="$2" out="$3" samples="${4:-32}" seqlen="${5:-512}"
bin="${BIN:-$root/build/release/tools/prismaquant/prismaquant}"
threads="${PQ_BENCH_THREADS:-2}"
mkdir -p "$out"
echo "# $(date -u +%FT%TZ) $(uptime)"
echo "# ${samples} x ${seqlen} calibration tokens, ${threads} threads"

timing() {  # timing TIMEFILE -> "wall cpu rss_mib"
  python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def get(k): return re.search(re.escape(k) + r": (.*)", t).group(1).strip()
w = [float(x) for x in get("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
wall = sum(x * 60 ** i for i, x in enumerate(reversed(w)))
cpu = float(get("User time (seconds)")) + float(get("System time (seconds)"))
print(f"{wall:.0f} {cpu:.0f} {int(get('Maximum resident set size (kbytes)')) / 1024:.0f}")
PY
}

ours() {  # ours NAME BINARY
  rm -rf "$out/$1" "$out/$1.work"
  /usr/bin/time -v -o "$out/$1.time" "$2" quantize "$model" -o "$out/$1" --threads "$threads" \
    --calib "$text" --split paragraphs --samples "$samples" --seqlen "$seqlen" \
    --target-bits "${TARGET:-4.5}" > "$out/$1.log" 2>&1
  echo "$1 $(timing "$out/$1.time")"
}

rows=()
rows+=("$(ours ours "$bin")")
[[ -z "${BASE_BIN:-}" ]] || rows+=("$(ours base "$BASE_BIN")")
if [[ "${PQ_BENCH_PEER:-1}" != 0 ]]; then
  py=$(bash "$root/scripts/setup_peer_venv.sh" llmcompressor \
    "$root/tests/data/llmcompressor/requirements.txt" | tail -1)/bin/python
  rm -rf "$out/llmc"
  OMP_NUM_THREADS="$threads" PQ_PEER_THREADS="$threads" HF_HUB_OFFLINE=1 \
    /usr/bin/time -v -o "$out/llmc.time" "$py" "$root/bench/peers/peers.py" llmc-gptq-nvfp4a16 \
    "$model" "$out/ours.work/probe/calibration/model.safetensors" "$out/llmc" \
    > "$out/llmc.log" 2>&1
  rows+=("llmc-gptq-nvfp4a16 $(timing "$out/llmc.time")")
fi
printf '%s\n' "${rows[@]}" | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
t = {r[0]: (float(r[1]), float(r[2]), float(r[3])) for r in rows}
print("tool\twall_s\tcpu_s\trss_mib")
for n, (w, c, m) in t.items(): print(f"{n}\t{w:.0f}\t{c:.0f}\t{m:.0f}")
for other in ("llmc-gptq-nvfp4a16", "base"):
    if other in t:
        o = t["ours"]; p = t[other]
        print(f"ours / {other}: wall {o[0] / p[0]:.2f}x  cpu {o[1] / p[1]:.2f}x  rss {o[2] / p[2]:.2f}x")
'
echo "# $(uptime)"
