#!/usr/bin/env bash
# Results do not depend on --threads: probe work dirs, allocations, checkpoints and eval's
# NLL/KL are byte-identical with 1 and 3 threads (3 splits every product unevenly), on a dense
# model (Llama) and the hybrid MoE (Gated DeltaNet, gated attention, experts with block
# pricing, MTP) with the default export passes (scale search + GPTQ) and activation-quantized
# formats in the mix. Prints "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../script_lib.sh"
pq_setup probe_threads probe

# run MODEL DIR THREADS: probe, allocate (every format), export, eval with KL, into DIR.
run() {
  local model="$1" d="$2" t="$3"
  mkdir -p "$d"
  "$bin" -q probe "$model" --calib "$text" --work "$d/w" --samples 8 --seqlen 64 --threads "$t" \
    > /dev/null &&
    "$bin" -q allocate --work "$d/w" --target-bits 5 > /dev/null &&
    "$bin" -q export "$model" --work "$d/w" -o "$d/ckpt" --threads "$t" > /dev/null &&
    "$bin" -q eval "$d/ckpt" --text "$text" --split paragraphs --max-docs 20 --reference "$model" --threads "$t" \
      --json > "$d/eval.json"
}

for name in llama qwen3_5_moe; do
  model="$src/models/trained/$name"
  if ! run "$model" "$work/$name-1" 1 || ! run "$model" "$work/$name-3" 3; then
    bad "$name: a step failed"
    continue
  fi
  for part in w ckpt eval.json; do
    if diff -r "$work/$name-1/$part" "$work/$name-3/$part" > /dev/null; then
      ok "$name: $part identical with 1 and 3 threads"
    else
      bad "$name: $part differs between 1 and 3 threads: $(diff -rq "$work/$name-1/$part" \
        "$work/$name-3/$part" | head -3 | tr '\n' ' ')"
    fi
  done
  grep -q '"NVFP4"\|"MXFP8"\|"FP8"\|"MXFP4"' "$work/$name-1/w/layer_config.json" &&
    ok "$name: activation-quantized formats in the mix" ||
    bad "$name: no activation-quantized format chosen (the eval check would not cover them)"
done

echo "$pass passed, $fail failed"
((fail == 0))
