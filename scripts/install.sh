#!/usr/bin/env bash
# One-step setup: install what is missing for the product (Debian packages only; no Python:
# the test suite's virtualenv is made by scripts/test.sh), build `prismaquant` (release,
# without the tests), and run the main job on the bundled default model: quantize stories260K at the knee of its size/quality curve
# (probe on bundled calibration text, allocate, export), measure it on held-out text, and
# print a story from the original and from the quantized model.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/deps.sh
cmake --preset release -DPQ_BUILD_TESTS=OFF >/dev/null
cmake --build build/release --target prismaquant
bin=build/release/tools/prismaquant/prismaquant
out=out/stories260K-knee
"$bin" quantize models/stories260K -o "$out" --overwrite --target-bits knee \
  --calib models/calib/tinystories_calib.txt --samples 64 --seqlen 256 \
  --eval models/trained/heldout.txt --eval-docs 200
"$bin" inspect "$out" | tail -1
for m in models/stories260K "$out"; do
  echo
  echo "== $m"
  "$bin" generate "$m" --prompt "Once upon a time, there was a little dog" -n 60
done
echo
echo "prismaquant is at $root/$bin"
