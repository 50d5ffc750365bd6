#!/usr/bin/env bash
# GPTQ of one Linear (bench/gptq_bench.cc: 4096x4096 NVFP4A16, random correlated H), in one run
# on the same W and H:
#  - ours (GPTQ's own group-scale rule, gptq.h), ours given RTN's static scales (what
#    llm-compressor does) and ours with act_order;
#  - llm-compressor's own GPTQ (bench/gptq_peer.py: its observer + prepare_batch +
#    quantize_weight, float32), in ITS virtualenv (scripts/setup_peer_venv.sh llmcompressor
#    tests/data/llmcompressor/requirements.txt; never the test venv), actorder none (as ours)
#    and "static" (its GPTQModifier's default), plus compressed-tensors' RTN as a baseline;
#  - the independent float64 PyTorch GPTQ (tests/quant/gptq_reference.py, ours' rules), which
#    must write our codes (fraction that differ, expected 0).
# Each at every thread count in PQ_GPTQ_THREADS (default "1 2"), PQ_GPTQ_REPEATS times
# (default 3), interleaved (repeat, threads, tool) so that all see the same load; medians.
# Prints `uptime` before and after, the float64 reference's speed-up line, and
# bench/gptq_peer.py's table: median seconds, ratio to ours, tr(dW H dW^T) (float64), MSE, and
# the fraction of E2M1 codes that differ from ours and from llm-compressor's, and of group
# scales that differ from ours. Needs PyPI only the first time the peer venv is made. Never run
# by CI. Usage: bench/run_gptq_bench.sh [build_dir] [N K]   (default build/release, 4096 4096)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build/release}"
shift || true
nk=(4096 4096)
[[ $# -lt 2 ]] || nk=("$1" "$2")
threads="${PQ_GPTQ_THREADS:-1 2}"
reps="${PQ_GPTQ_REPEATS:-3}"
venv="$("$root/scripts/setup_venv.sh" | tail -1)"
peer="$(bash "$root/scripts/setup_peer_venv.sh" llmcompressor \
  "$root/tests/data/llmcompressor/requirements.txt" | tail -1)"
export HF_HUB_OFFLINE=1
# torch's OpenMP threads spin while they wait; on this shared 2-core machine under load that
# made its 2-thread runs 5x slower than 1 thread (llm-compressor 45 s vs 8.6 s passive, same
# load 6-7). Passive waiting measures the algorithms, not the spin; set OMP_WAIT_POLICY to
# override.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
problem="$tmp/gptq/problem/model.safetensors"
modes=(gptq rtn act-order)
echo "load before: $(uptime); OMP_WAIT_POLICY=$OMP_WAIT_POLICY"

for ((rep = 0; rep < reps; rep++)); do
  for t in $threads; do
    for m in "${modes[@]}"; do  # each call writes the same problem (fixed seeds) and its result
      "$build/bench/gptq_bench" "$tmp/$m" "${nk[@]}" "$t" 1 "$m" >> "$tmp/ours_$m.jsonl"
      cmp -s "$problem" "$tmp/$m/problem/model.safetensors" ||
        { echo "run_gptq_bench: the problems differ" >&2; exit 1; }
    done
    extra=()
    [[ $rep -gt 0 ]] || extra=(--rtn-out "$tmp/ct_rtn")
    "$peer/bin/python" "$root/bench/gptq_peer.py" llmcompressor "$problem" "$tmp/llmc" \
      --actorder none,static --threads "$t" --repeats 1 "${extra[@]}" \
      > /dev/null 2> "$tmp/llmc.err" || { cat "$tmp/llmc.err" >&2; exit 1; }
    "$venv/bin/python" "$root/tests/quant/gptq_reference.py" bench "$problem" \
      --format NVFP4A16 --ours "$tmp/gptq/ours/model.safetensors" --threads "$t" --repeats 1 \
      --out "$tmp/ref" >> "$tmp/torch.jsonl"
  done
done
echo "load after: $(uptime)"
for m in "${modes[@]}"; do cp "$tmp/ours_$m.jsonl" "$tmp/$m/ours/runs.jsonl"; done
cp "$tmp/torch.jsonl" "$tmp/ref/runs.jsonl"

"$venv/bin/python" - "$tmp/ours_gptq.jsonl" "$tmp/torch.jsonl" <<'PY'
import json, statistics, sys
def load(p):
    runs = {}
    for l in open(p):
        if l.strip().startswith("{"):
            r = json.loads(l)
            runs.setdefault(r["threads"], []).append(r)
    return runs
ours, ref = load(sys.argv[1]), load(sys.argv[2])
for t in sorted(ours.keys() & ref.keys()):
    o = statistics.median(r["seconds"] for r in ours[t])
    f = statistics.median(r["seconds"] for r in ref[t])
    d = max(r["frac_elements_differ_vs_ours"] for r in ref[t])
    print(f"{t} thread(s): prismaquant {o:.2f} s, float64 torch reference {f:.2f} s, "
          f"speed-up {f / o:.1f}x, elements whose codes differ: {d:.2e}")
PY
"$venv/bin/python" "$root/bench/gptq_peer.py" table "$problem" \
  "ours=$tmp/gptq/ours" "ours-rtn-scales=$tmp/rtn/ours" "ours-act-order=$tmp/act-order/ours" \
  "llmc=$tmp/llmc/none" "llmc-actorder-static=$tmp/llmc/static" "ct-rtn=$tmp/ct_rtn" \
  "torch-f64-ref=$tmp/ref" --peer llmc,llmc-actorder-static
