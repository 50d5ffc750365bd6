#!/usr/bin/env bash
# Installs the Debian 12 packages PrismaQuant needs, if any is missing (idempotent).
#   scripts/deps.sh          what building and running `prismaquant` needs
#   scripts/deps.sh --test   that plus what the test suite needs (GoogleTest, Python with venv
#                            for the test-only reference virtualenv, Chromium for the report test,
#                            Open MPI for prismaquant-mpi's tests)
set -euo pipefail
pkgs=(cmake ninja-build g++ pkg-config nlohmann-json3-dev libcli11-dev libopenblas-dev
      libpcre2-dev)
case "${1:-}" in
  --test) pkgs+=(libgtest-dev python3 python3-venv chromium libopenmpi-dev openmpi-bin) ;;
  "") ;;
  *) echo "usage: scripts/deps.sh [--test]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}"
fi
