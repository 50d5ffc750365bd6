#!/usr/bin/env bash
# Creates or updates a peer tool's own virtualenv (e.g. llm-compressor), separate from the
# test venv of scripts/setup_venv.sh: peers pin their own torch/transformers/compressed-tensors.
#
#   bash scripts/setup_peer_venv.sh NAME REQUIREMENTS   -> prints the venv path on stdout
#
#   venv: ${PQ_PEER_VENV_ROOT:-$HOME/.cache/prismaquant}/venv-NAME   python: ${PQ_PYTHON:-python3}
#
# Idempotent (stamp = hash of REQUIREMENTS and the Python version). Needs PyPI. Never run by
# CI: what a peer writes is generated once and committed (e.g. tests/data/llmcompressor).
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: setup_peer_venv.sh NAME REQUIREMENTS" >&2; exit 2; }
name=$1
req=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
[[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "setup_peer_venv: bad name '$name'" >&2; exit 2; }
[[ -f "$req" ]] || { echo "setup_peer_venv: missing $req" >&2; exit 1; }
venv="${PQ_PEER_VENV_ROOT:-$HOME/.cache/prismaquant}/venv-$name"
python="${PQ_PYTHON:-python3}"
mkdir -p "$(dirname "$venv")"

exec 9>"$venv.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "setup_peer_venv: creating $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2 || {
    echo "setup_peer_venv: '$python -m venv' failed; on Debian: apt-get install python3-venv" >&2
    rm -rf "$venv"
    exit 1
  }
fi

pyver=$("$venv/bin/python" -c 'import sys; print(sys.version)')
want=$( { cat "$req"; echo "$pyver"; } | sha256sum | cut -d' ' -f1)
stamp="$venv/.prismaquant-requirements.sha256"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$venv"
  exit 0
fi

echo "setup_peer_venv: installing $req into $venv" >&2
rm -f "$stamp"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -r "$req" >&2
echo "$want" >"$stamp"
echo "$venv"
