#!/usr/bin/env bash
# Tokenizer equivalence suite: our tokenizers (src/pq/tokenizer) against the real Hugging Face
# `tokenizers` library and the Python run.c encoder, on every line of the shared corpora.
#
#   PQ_TOKENIZER_TEST_BIN=build/release/src/pq/pq_tokenizer_test PQ_SOURCE_DIR=. \
#     bash tests/tokenizer/run.sh [check_tokenizers.py args, e.g. --only gpt2,qwen2 --max-lines 500]
#
# Needs: the built pq_tokenizer_test (default build/release/src/pq/pq_tokenizer_test), the
# shared assets at PQ_SOURCE_DIR/../shared (or PQ_SHARED_DIR), and the test-only venv
# (scripts/setup_venv.sh; tokenizers 0.23.3, transformers). Works in a fresh temp dir
# (removed at exit unless PQ_KEEP_WORK=1); never writes into the repo or ../shared.
# Prints "N passed, N failed" per tokenizer and input set; exits non-zero on any mismatch.
# About a minute on 2 cores.
set -euo pipefail

src="${PQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
src=$(cd "$src" && pwd)
bin="${PQ_TOKENIZER_TEST_BIN:-$src/build/release/src/pq/pq_tokenizer_test}"
if [[ ! -x "$bin" ]]; then
  echo "run.sh: pq_tokenizer_test not found at '$bin' (set PQ_TOKENIZER_TEST_BIN or build" \
       "the pq_tokenizer_test target first)" >&2
  exit 1
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

venv=$(bash "$src/scripts/setup_venv.sh")

work=$(mktemp -d "${TMPDIR:-/tmp}/pq-tokenizer.XXXXXX")
if [[ "${PQ_KEEP_WORK:-0}" == 1 ]]; then
  echo "run.sh: keeping work dir $work" >&2
else
  trap 'rm -rf "$work"' EXIT
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
export PYTHONDONTWRITEBYTECODE=1
"$venv/bin/python" "$src/tests/tokenizer/check_tokenizers.py" --work "$work" --bin "$bin" "$@"
