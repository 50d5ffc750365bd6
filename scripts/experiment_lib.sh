# Shared set-up of the quality experiments (sourced): after `experiment_setup OUT_DIR`,
#   root, bin    the checkout and the prismaquant binary (PQ_BIN overrides)
#   out          the output dir, holding calib.txt = the trained fixtures' training part of the
#                TinyStories slice (its first 619,211 bytes; scripts/train_fixtures.py)
#   held         the held-out text (models/trained/heldout.txt)
#   models       stories260K and the trained fixtures of every architecture (PQ_MODELS, a
#                space-separated list such as "trained/qwen3_5_moe", runs a subset)
# `probe_model W MODEL` probes MODEL on calib.txt (64 x 256 tokens) into W unless W has a probe;
# `base_nll MODEL` prints MODEL's mean NLL on the first 200 held-out paragraphs.

experiment_setup() {
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  bin="${PQ_BIN:-$root/build/release/tools/prismaquant/prismaquant}"
  out="$1"
  held="$root/models/trained/heldout.txt"
  models=(stories260K trained/llama trained/qwen2 trained/qwen3 trained/qwen3_moe
          trained/qwen3_5_moe)
  if [[ -n "${PQ_MODELS:-}" ]]; then read -r -a models <<< "$PQ_MODELS"; fi
  mkdir -p "$out"
  head -c 619211 "$root/../shared/assets/corpus-tinystories-valid-slice/tinystories_val.txt" \
    > "$out/calib.txt"
}

probe_model() {
  [[ -s "$1/probe.json" ]] || "$bin" -q probe "$2" --calib "$out/calib.txt" --work "$1" \
    --samples 64 --seqlen 256 > /dev/null
}

base_nll() {
  "$bin" eval "$1" --text "$held" --split paragraphs --max-docs 200 --json 2> /dev/null \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['mean_nll'])"
}
