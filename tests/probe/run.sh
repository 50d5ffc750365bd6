#!/usr/bin/env bash
# `prismaquant probe` against PyTorch autograd (transformers 5.23, torch float32, eager).
#
#   PQ_BIN=build/release/tools/prismaquant/prismaquant PQ_SOURCE_DIR=. bash tests/probe/run.sh
#
# Fixtures (each probed with --threads 1):
#   stories260K      models/stories260K (Llama, tied lm_head), TinyStories slice, 6 x 64 tokens
#   qwen3_moe        tests/golden/qwen3_moe/model (per-expert tensors on disk), random ids, 4 x 32
#   qwen3_moe_packed tests/golden/qwen3_moe/model_packed (packed 3-D experts), same ids
#   qwen3            tests/golden/qwen3/model (q/k norms, tied), random ids, 4 x 32 (if present)
#   moe128           a Qwen3-MoE generated here (probe_reference.py make-moe): every Linear has
#                    K=128, so NVFP4A16 and INT4 are priced for experts and lm_head too
#                    (the K=40 golden fixtures only allow BF16 / FP8 / INT8)
# For every fixture tests/probe/probe_reference.py recomputes, one backward per sample of the
# summed next-token CE: fisher_trace (per-sample weight gradients from autograd), g2_out, x2_in,
# input_amax, samples, tokens (experts: routed tokens, also counted from the router's top-k),
# the calibration NLL, and the trace/channel/hessian/output costs of the weight-only formats
# BF16, NVFP4A16, INT4, INT8 where the shapes allow them, with W^ from
# `prismaquant export --uniform FMT --lm-head FMT` (lm_head BF16 where the probe does not price
# FMT for it) + `prismaquant dequantize` (F32), and the probe's weight_mse against that W^.
# It also checks that every Linear the export writes in FMT is priced in FMT (and every priced
# one the export keeps BF16 is kept only because a sibling of its unit cannot hold FMT), and
# that output == hessian exactly for these formats. Tolerances: probe_reference.py (TOL).
#
# Measured max relative errors over all fixtures (tolerance): NLL 4.4e-8 (1e-6), fisher_trace
# 2.9e-6 (3e-5), g2_out 7.4e-6 (7e-5), x2_in 9.4e-7 (1e-5), input_amax 6.7e-7 (1e-5), costs
# 4.7e-6 (5e-5), BF16 hessian/output cost 3.0e-5 (3e-4), weight_mse 6e-14 (1e-9); samples,
# tokens, rows, cols exact. The summary table printed at the end gives them per fixture.
# Runtime ~10-15 s (one Python process; importing torch + transformers is most of it).
#
# lm_head: while `prismaquant dequantize` rejects an export whose lm_head is quantized
# ("checkpoint has no lm_head.weight"), lm_head's W^ comes from compressed-tensors' float32
# decompression graph of that export (equal to `dequantize` bit for bit per tests/interop), and
# the other Linears' from `dequantize` of a second export with lm_head in BF16; a note says so.
#
# Works in a temp dir (kept with PQ_KEEP_WORK=1). Prints "N passed, N failed"; exit 1 on failure.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../script_lib.sh"
pq_setup probe probe
pq_venv
stories="$src/models/stories260K"
golden="$src/tests/golden"
[[ -f "$stories/config.json" ]] || { echo "probe/run.sh: model not found: $stories" >&2; exit 1; }
[[ -f "$golden/qwen3_moe/model/config.json" ]] || { echo "probe/run.sh: fixture not found: $golden/qwen3_moe/model" >&2; exit 1; }

ref="$src/tests/probe/probe_reference.py"

# step NAME command...: stdout -> $work/NAME.out, stderr -> $work/NAME.err; a failure is counted
# and shown, and the step's status returned.
step() {
  local name="$1" rc=0; shift
  "$@" > "$work/$name.out" 2> "$work/$name.err" || rc=$?
  if [[ $rc -ne 0 ]]; then
    bad "$name: exit $rc from: $*"
    tail -n 8 "$work/$name.err" | sed 's/^/     | /'
  fi
  return $rc
}

manifest="$work/manifest.tsv"
: > "$manifest"
head_note=0

# fixture NAME MODEL PROBE_ARGS...: probe, then every weight-only export + dequantize. The
# reference recomputes RTN's candidates, so the probe prices RTN here (--passes rtn); the
# export-aware pricing is checked against what export writes in pq_pipeline_test
# (ExportAwareProbeTest).
fixture() {
  local name="$1" model="$2"; shift 2
  local w="$work/$name"
  mkdir -p "$w"
  step "$name.probe" "$bin" probe "$model" --work "$w/work" --threads 1 --passes rtn --json "$@" \
    || return 0
  ok "$name: probe $* ($(tr -d '\n ' < "$work/$name.probe.out" | grep -o '"linears":[0-9]*'))"
  printf 'fixture\t%s\t%s\t%s\n' "$name" "$model" "$w/work" >> "$manifest"
  local fmt e head
  for fmt in BF16 NVFP4A16 INT4 INT8; do
    e="$w/$fmt"
    # lm_head in FMT only where the probe prices it (export --lm-head FMT on a tied model whose
    # lm_head cannot hold FMT unties it and writes no lm_head at all).
    head=$("$py" -c 'import json, sys
d = json.load(open(sys.argv[1]))
h = [l for l in d["linears"] if l["module"] == "lm_head"]
print(sys.argv[2] if h and any(c["format"] == sys.argv[2] for c in h[0]["candidates"]) else "BF16")' \
      "$w/work/probe.json" "$fmt") || head=BF16
    step "$name.export_$fmt" "$bin" export "$model" --uniform "$fmt" --lm-head "$head" --threads 1 --json \
      -o "$e" || continue
    cp "$work/$name.export_$fmt.out" "$e.json"
    if "$bin" dequantize "$e" -o "$e.dense" > "$work/$name.deq_$fmt.out" 2> "$work/$name.deq_$fmt.err"; then
      printf 'candidate\t%s\t%s\t%s\t%s\n' "$name" "$fmt" "$e.json" "$e.dense" >> "$manifest"
    elif grep -q "no lm_head.weight" "$work/$name.deq_$fmt.err"; then
      # dequantize cannot read a quantized lm_head yet: the body from an export with lm_head
      # BF16, lm_head decompressed by compressed-tensors in float32 (probe_reference.py).
      head_note=1
      step "$name.export_${fmt}_body" "$bin" export "$model" --uniform "$fmt" --threads 1 -o "$e.body" || continue
      step "$name.deq_${fmt}_body" "$bin" dequantize "$e.body" -o "$e.dense" || continue
      printf 'candidate\t%s\t%s\t%s\t%s\t%s\n' "$name" "$fmt" "$e.json" "$e.dense" "$e" >> "$manifest"
    else
      bad "$name: dequantize $fmt failed"; tail -n 8 "$work/$name.deq_$fmt.err" | sed 's/^/     | /'
    fi
  done
}

t0=$SECONDS
echo "== probe + exports"
step tokens "$py" "$ref" tokens "$work/tokens.txt" --vocab 97 --docs 12 --seed 1 || true
step make_moe "$py" "$ref" make-moe "$work/moe128-model" --seed 0 || true

fixture stories260K "$stories" --calib "$text" --samples 6 --seqlen 64
fixture qwen3_moe "$golden/qwen3_moe/model" --calib-tokens "$work/tokens.txt" --samples 4 --seqlen 32
if [[ -f "$golden/qwen3_moe/model_packed/config.json" ]]; then
  fixture qwen3_moe_packed "$golden/qwen3_moe/model_packed" --calib-tokens "$work/tokens.txt" --samples 4 --seqlen 32
fi
if [[ -f "$golden/qwen3/model/config.json" ]]; then
  fixture qwen3 "$golden/qwen3/model" --calib-tokens "$work/tokens.txt" --samples 4 --seqlen 32
fi
if [[ -f "$work/moe128-model/config.json" ]]; then
  fixture moe128 "$work/moe128-model" --calib-tokens "$work/tokens.txt" --samples 4 --seqlen 32
fi
if [[ $head_note == 1 ]]; then
  echo "note: \`prismaquant dequantize\` rejects exports with a quantized lm_head (\"checkpoint has no" \
       "lm_head.weight and tie_word_embeddings is false\"); lm_head's W^ taken from compressed-tensors'" \
       "float32 decompression of the same export"
fi

echo "== PyTorch reference (tests/probe/probe_reference.py)"
rc=0
"$py" "$ref" check "$manifest" | tee "$work/check.out" || rc=$?
n_ok=$(grep -c '^ok ' "$work/check.out" || true)
n_bad=$(grep -c '^FAIL ' "$work/check.out" || true)
pass=$((pass + n_ok)); fail=$((fail + n_bad))
if [[ $rc -ne 0 && $n_bad -eq 0 ]]; then bad "probe_reference.py check exited $rc"; fi

echo "runtime $((SECONDS - t0)) s"
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
