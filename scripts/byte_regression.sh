#!/usr/bin/env bash
# Behaviour check for refactors: runs the same jobs with two prismaquant binaries and compares
# every output byte for byte. Usage:
#   scripts/byte_regression.sh OLD_BIN [NEW_BIN] [OUT_DIR]
#   scripts/byte_regression.sh --commit REV [NEW_BIN] [OUT_DIR]   (builds REV in a worktree)
# NEW_BIN defaults to this checkout's release build. Jobs, on the bundled stories260K and every
# trained fixture (models/trained/*): probe (16 x 64 tokens of models/calib), allocate at the
# knee and at +0.5 bits, export --work with the default passes and with --passes rtn, export
# --uniform NVFP4A16 and MXFP8, eval (NLL + KL) and generate (greedy). PQ_MODELS restricts the
# model list ("stories260K trained/qwen3_5_moe"). Exit 0 when every file and every printed
# result is identical, 1 otherwise (the differing files are listed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
usage() { sed -n '2,10p' "$0" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
if [[ "$1" == "--commit" ]]; then
  [[ $# -ge 2 ]] || usage
  rev="$(git -C "$root" rev-parse --short "$2")"
  wt="${PQ_CACHE:-$HOME/.cache/prismaquant}/byte-regression/$rev"
  if [[ ! -x "$wt/build/release/tools/prismaquant/prismaquant" ]]; then
    rm -rf "$wt"
    git -C "$root" worktree add --detach "$wt" "$rev" >&2
    (cd "$wt" && cmake --preset release -DPQ_BUILD_TESTS=OFF >/dev/null &&
       cmake --build build/release -j "$(nproc)" --target prismaquant >&2)
  fi
  old="$wt/build/release/tools/prismaquant/prismaquant"
  shift 2
else
  old="$1"
  shift
fi
new="${1:-$root/build/release/tools/prismaquant/prismaquant}"
out="${2:-$(mktemp -d)}"
[[ -x "$old" && -x "$new" ]] || { echo "byte_regression: need two executables" >&2; exit 2; }
models=(stories260K trained/llama trained/qwen2 trained/qwen3 trained/qwen3_moe
        trained/qwen3_5_moe)
if [[ -n "${PQ_MODELS:-}" ]]; then read -r -a models <<< "$PQ_MODELS"; fi
calib="$root/models/calib/tinystories_calib.txt"
held="$root/models/trained/heldout.txt"

# run BIN DIR MODEL: every job of one model into DIR (stdout of each job in DIR/*.out).
run() {
  local bin="$1" d="$2" m="$root/models/$3"
  mkdir -p "$d"
  "$bin" -q probe "$m" --calib "$calib" --work "$d/w" --samples 16 --seqlen 64 --threads 1 \
    --json > "$d/probe.out"
  "$bin" -q allocate --work "$d/w" --target-bits knee --json > "$d/allocate.out"
  cp "$d/w/layer_config.json" "$d/layer_config.knee.json"
  "$bin" -q export "$m" --work "$d/w" -o "$d/mixed" --threads 1 --json > "$d/export.out"
  "$bin" -q export "$m" --work "$d/w" -o "$d/mixed_rtn" --passes rtn --threads 1 --json \
    > "$d/export_rtn.out"
  local bits
  bits="$(python3 -c "import json; print(json.load(open('$d/layer_config.knee.json'))['achieved']['bits_per_param'] + 0.5)")"
  "$bin" -q allocate --work "$d/w" --target-bits "$bits" --json > "$d/allocate2.out"
  "$bin" -q export "$m" --work "$d/w" -o "$d/mixed2" --threads 1 --json > "$d/export2.out"
  "$bin" -q export "$m" --uniform NVFP4A16 -o "$d/nvfp4a16" --threads 1 --json > "$d/u1.out"
  "$bin" -q export "$m" --uniform MXFP8 -o "$d/mxfp8" --threads 1 --json > "$d/u2.out"
  "$bin" -q eval "$d/mixed" --reference "$m" --text "$held" --split paragraphs --max-docs 20 \
    --threads 1 --json > "$d/eval.out"
  "$bin" -q generate "$m" --prompt "Once upon a time" --max-new-tokens 12 --threads 1 \
    > "$d/generate.out" 2>/dev/null || echo "generate failed" > "$d/generate.out"
}

status=0
for m in "${models[@]}"; do
  tag="${m//\//_}"
  echo "== $m" >&2
  run "$old" "$out/old/$tag" "$m"
  run "$new" "$out/new/$tag" "$m"
  # Paths differ between the two runs; normalise them in the printed results.
  for f in "$out"/{old,new}/"$tag"/*.out; do sed -i "s#$out/\(old\|new\)/#OUT/#g" "$f"; done
  if ! diff -r "$out/old/$tag" "$out/new/$tag" > "$out/$tag.diff"; then
    echo "   DIFFERS: $(grep -c '' "$out/$tag.diff") diff lines, see $out/$tag.diff" >&2
    status=1
  else
    echo "   identical ($(find "$out/new/$tag" -type f | wc -l) files)" >&2
  fi
done
[[ $status -eq 0 ]] && echo "byte_regression: all outputs identical" >&2
exit $status
