#!/usr/bin/env bash
# Creates or updates the test-only virtualenv used by tests/interop and bench/ct_rtn_bench.py.
#
#   venv: ${PQ_VENV:-$HOME/.cache/prismaquant/venv}   python: ${PQ_PYTHON:-python3}
#   pins: tests/interop/requirements.txt
#
# Idempotent: pip runs only when the venv's stamp differs from the hash of the requirements
# (plus the venv's Python version). Progress goes to stderr; the venv path is the only line
# printed on stdout, so callers can do  venv=$(bash scripts/setup_venv.sh).
# Needs python3 with the venv module (Debian: apt-get install python3-venv) and access to PyPI.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
req="$root/tests/interop/requirements.txt"
venv="${PQ_VENV:-$HOME/.cache/prismaquant/venv}"
python="${PQ_PYTHON:-python3}"

[[ -f "$req" ]] || { echo "setup_venv: missing $req" >&2; exit 1; }
mkdir -p "$(dirname "$venv")"

# One writer at a time (two test runs may start together).
exec 9>"$venv.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  command -v "$python" >/dev/null 2>&1 || {
    echo "setup_venv: '$python' not found; install Python 3 (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
  }
  echo "setup_venv: creating $venv" >&2
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" >&2; then
    echo "setup_venv: '$python -m venv' failed; on Debian: apt-get install python3-venv" >&2
    rm -rf "$venv"
    exit 1
  fi
fi

pyver=$("$venv/bin/python" -c 'import sys; print(sys.version)')
want=$( { cat "$req"; echo "$pyver"; } | sha256sum | cut -d' ' -f1)
stamp="$venv/.prismaquant-requirements.sha256"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$venv"
  exit 0
fi

echo "setup_venv: installing $req into $venv" >&2
rm -f "$stamp"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -r "$req" >&2
"$venv/bin/python" -c 'import torch, transformers, compressed_tensors, safetensors, tokenizers, numpy, pytest, gguf, accelerate' >&2
echo "$want" >"$stamp"
echo "$venv"
