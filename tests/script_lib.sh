# Shared prelude of the script tests (sourced, not run). After `pq_setup NAME SUBCOMMAND`:
#   src   absolute source dir (PQ_SOURCE_DIR or the checkout holding this file)
#   bin   absolute prismaquant binary (PQ_BIN or build/release), checked to have SUBCOMMAND
#   text  the TinyStories slice in ../shared/assets (checked to exist)
#   work  a fresh temp dir, removed at exit unless PQ_KEEP_WORK=1
#   pass/fail counters with ok/bad, and the Hugging Face offline environment exported.
# `pq_venv` then sets venv/py to the test-only virtualenv (scripts/setup_venv.sh).

pq_setup() {
  local name="$1" sub="$2"
  src="${PQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
  src=$(cd "$src" && pwd)
  bin="${PQ_BIN:-$src/build/release/tools/prismaquant/prismaquant}"
  if [[ ! -x "$bin" ]]; then
    echo "$name: prismaquant binary not found at '$bin' (set PQ_BIN or build first)" >&2
    exit 1
  fi
  bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
  # CLI11 answers `--help` of an unknown subcommand with the top-level help and exit 0, so
  # look for the subcommand's own usage line (not piped into grep -q: SIGPIPE + pipefail).
  local help
  help=$("$bin" "$sub" --help 2>&1 || true)
  if ! grep -Eq "Usage: .*[[:space:]]$sub([[:space:]]|$)" <<< "$help"; then
    echo "$name: '$bin' has no '$sub' subcommand; nothing tested" >&2
    exit 1
  fi
  text="$src/../shared/assets/corpus-tinystories-valid-slice/tinystories_val.txt"
  [[ -f "$text" ]] || { echo "$name: corpus not found: $text" >&2; exit 1; }
  work=$(mktemp -d "${TMPDIR:-/tmp}/pq-$name.XXXXXX")
  if [[ "${PQ_KEEP_WORK:-0}" == 1 ]]; then
    echo "$name: keeping work dir $work" >&2
  else
    trap 'rm -rf "$work"' EXIT
  fi
  export PQ_SOURCE_DIR="$src" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  export PYTHONDONTWRITEBYTECODE=1 TRANSFORMERS_VERBOSITY=error PYTHONWARNINGS=ignore
  pass=0
  fail=0
}

ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

pq_venv() {
  venv=$(bash "$src/scripts/setup_venv.sh") || { echo "venv setup failed" >&2; exit 1; }
  py="$venv/bin/python"
}
