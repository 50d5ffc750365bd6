#!/usr/bin/env bash
# Builds the libFuzzer targets (preset "fuzz": clang + ASan/UBSan) and runs each for SECONDS
# (default 30) on its seeds: fuzz/corpus/<target>/, fuzz/regressions/<target>/ (past findings)
# and the repo's real files of that kind.
# Any crash, leak, sanitizer report or timeout fails the run (exit 1) and leaves the input
# under build/fuzz/findings/. Prints executions and coverage per target.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 600 fuzz_tokenizer_json
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${1:-30}"; shift || true
targets=("$@")
((${#targets[@]})) || targets=(fuzz_safetensors fuzz_tokenizer_json fuzz_quant_config fuzz_config fuzz_layout
                          fuzz_work_dir)
cmake --preset fuzz >/dev/null
cmake --build build/fuzz -j "$(nproc)" --target "${targets[@]}"

# seeds TARGET DIR: the seed corpus of TARGET copied into DIR.
seeds() {
  local name="${1#fuzz_}" dir="$2"
  mkdir -p "$dir"
  if [[ -d fuzz/corpus/$name ]]; then cp fuzz/corpus/"$name"/* "$dir"/; fi
  # Inputs that once failed (a fixed finding stays a seed forever).
  if [[ -d fuzz/regressions/$name ]]; then cp fuzz/regressions/"$name"/* "$dir"/; fi
  case "$name" in
    safetensors) for m in models/trained/*/; do
                   cp "$m/model.safetensors" "$dir/$(basename "$m").safetensors"; done ;;
    tokenizer_json) cp models/stories260K/tokenizer.json "$dir/stories260K.json" ;;
    quant_config) for m in models/stories260K models/trained/*/; do
                    cp "$m/config.json" "$dir/$(basename "$m").json"; done ;;
    config) for f in models/stories260K/config.json models/trained/*/config.json \
                     tests/golden/*/config_legacy.json tests/golden/*/model/config.json; do
              [[ -f $f ]] && cp "$f" "$dir/$(echo "$f" | tr / _)"; done ;;
    layout) for m in models/stories260K models/trained/*/ tests/data/llmcompressor/*/; do
              [[ -f $m/config.json ]] &&
                python3 fuzz/layout_seed.py "$m" "$dir/$(echo "${m%/}" | tr / _)"; done ;;
  esac
}

status=0
out="build/fuzz/findings"; mkdir -p "$out"
for t in "${targets[@]}"; do
  corpus="build/fuzz/corpus/$t"
  seeds "$t" "$corpus"
  log="build/fuzz/$t.log"
  if "build/fuzz/fuzz/$t" "$corpus" -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 \
       -max_len=262144 -artifact_prefix="$out/$t-" -print_final_stats=1 > "$log" 2>&1; then
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1)"
    echo "$t: ${secs}s, ${execs:-?} executions, $cov, corpus $(ls "$corpus" | wc -l) inputs"
  else
    echo "$t: FAILED (see $log and $out/)" >&2
    tail -30 "$log" >&2
    status=1
  fi
done
exit $status
