#!/usr/bin/env bash
# Peers on the same work (bench/peers/README.md): each peer tool, in its own virtualenv, on
# the calibration tokens our probe chose; each checkpoint measured by our eval exactly like
# scripts/smollm2_quality.sh. Never run by CI.
#
#   bench/peers/run_peers.sh MODEL PROBE_WORK TEXT_DIR OUT_DIR [CASE ...]
#
# MODEL: the BF16 source (scripts/fetch_smollm2.sh). PROBE_WORK: a probe's work dir (its
# probe/calibration/model.safetensors holds the chosen ids). TEXT_DIR: wiki_held.txt and
# ts_held.txt of scripts/smollm2_quality.sh. CASE: names in peers.py (default: all); a case
# whose checkpoint exists in OUT_DIR/ckpt is not rerun. Each peer runs under nice -n 10 and
# /usr/bin/time -v (OUT_DIR/logs/CASE.{log,time}). Prints one TSV row per case: case, status,
# bits/param, total bytes, KL and ΔNLL on wikitext-2 (40 docs), KL and ΔNLL on TinyStories
# (150 docs), wall s, user+sys CPU s, peak RSS MiB. Env: BIN (our CLI), PQ_AR_ITERS,
# PQ_AR_BATCH (AutoRound), PQ_PEER_THREADS (torch threads, default 2), PQ_PEER_TIMEOUT (s),
# PQ_PEERS_STEP=run|eval (only quantize / only measure existing checkpoints; default both).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ $# -ge 4 ]] || { sed -n 2,15p "$0" >&2; exit 2; }
model="$1" work="$2" texts="$3" out="$4"; shift 4
bin="${BIN:-$root/build/release/tools/prismaquant/prismaquant}"
calib="$work/probe/calibration/model.safetensors"
[[ -f "$calib" ]] || { echo "run_peers: no $calib" >&2; exit 1; }
mkdir -p "$out/ckpt" "$out/logs"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1  # everything is local; no hub look-ups

cases=("$@")
[[ ${#cases[@]} -gt 0 ]] || cases=(llmc-gptq-nvfp4a16 llmc-modelfree-nvfp4a16 llmc-oneshot-nvfp4
  autoround-nvfp4-rtn autoround-mxfp4-rtn llmc-gptq-nvfp4 autoround-nvfp4 autoround-mxfp4
  autoround-autoscheme)

venv_for() {  # venv_for CASE -> python of the peer's venv
  case "$1" in
    llmc-*) bash "$root/scripts/setup_peer_venv.sh" llmcompressor \
              "$root/tests/data/llmcompressor/requirements.txt" ;;
    autoround-*) bash "$root/scripts/setup_peer_venv.sh" autoround \
                   "$root/bench/peers/autoround-requirements.txt" ;;
  esac | tail -1 | sed 's|$|/bin/python|'
}

nll() {  # nll CKPT TEXT DOCS [--reference MODEL] -> "NLL KL"
  local c="$1" t="$2" d="$3"; shift 3
  nice -n 10 "$bin" -q eval "$c" --text "$t" --split paragraphs --max-docs "$d" --no-bos --json "$@" |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["mean_nll"], j.get("mean_kl", 0))'
}
evalkl() {  # evalkl CKPT TEXT DOCS -> "KL dNLL" (the source's NLL cached in OUT/logs)
  local base="$out/logs/base_$(basename "$2").nll"
  [[ -s "$base" ]] || nll "$model" "$2" "$3" | cut -d' ' -f1 > "$base"
  nll "$1" "$2" "$3" --reference "$model" |
    python3 -c 'import sys; n, kl = map(float, sys.stdin.read().split()); print(kl, n - float(sys.argv[1]))' "$(cat "$base")"
}
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

for c in "${cases[@]}"; do
  ckpt="$out/ckpt/$c" log="$out/logs/$c.log" tf="$out/logs/$c.time"
  step="${PQ_PEERS_STEP:-all}"
  if [[ ! -f "$ckpt/config.json" && "$step" != eval ]]; then
    py=$(venv_for "$c")
    rc=0
    /usr/bin/time -v -o "$tf" timeout "${PQ_PEER_TIMEOUT:-3600}" nice -n 10 "$py" \
      "$root/bench/peers/peers.py" "$c" "$model" "$calib" "$ckpt" > "$log" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
      printf '%s\tfailed rc=%s (%s)\n' "$c" "$rc" "$log"
      continue
    fi
  fi
  [[ "$step" != run ]] || continue
  [[ -f "$ckpt/config.json" ]] || { printf '%s\tno checkpoint\n' "$c"; continue; }
  t=$( [[ -s "$tf" ]] && timing "$tf" || echo "- - -")
  if ! "$bin" -q inspect "$ckpt" --json > "$out/logs/$c.inspect.json" 2> "$out/logs/$c.inspect.err"; then
    printf '%s\tinspect refused (%s)\t%s\n' "$c" "$out/logs/$c.inspect.err" "${t// /	}"
    continue
  fi
  b=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["linear_bits_per_param"], j["total_bytes"])' \
    "$out/logs/$c.inspect.json")
  if ! w=$(evalkl "$ckpt" "$texts/wiki_held.txt" 40 2> "$out/logs/$c.eval.err") ||
     ! s=$(evalkl "$ckpt" "$texts/ts_held.txt" 150 2>> "$out/logs/$c.eval.err"); then
    printf '%s\teval refused (%s)\t%s\n' "$c" "$out/logs/$c.eval.err" "${t// /	}"
    continue
  fi
  printf '%s\tok\t%s\t%s\t%s\t%s\n' "$c" "${b// /	}" "${w// /	}" "${s// /	}" "${t// /	}"
done
