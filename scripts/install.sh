#!/usr/bin/env bash
# One-step setup: install what is missing, build (release), and run the main job on the
# bundled default model: quantize stories260K to NVFP4A16 and print what was written.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/deps.sh
scripts/setup_venv.sh >/dev/null   # test-only references (torch, transformers, compressed-tensors)
cmake --preset release >/dev/null
cmake --build build/release
bin=build/release/tools/prismaquant/prismaquant
out=out/stories260K-NVFP4A16
"$bin" export models/stories260K --uniform NVFP4A16 -o "$out" --overwrite
"$bin" inspect "$out"
echo
echo "prismaquant is at $root/$bin"
