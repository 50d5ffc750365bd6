#!/usr/bin/env bash
# The layering check on the real tree, and on fixtures that must fail: a lower layer
# including a higher one (directly and in a copy of the real tree), an include outside the
# one include root, an include of an undeclared layer, an undeclared folder.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=${PQ_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
check="$here/check_includes.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

expect_pass() {  # NAME SRC
  if ! out=$(bash "$check" "$2" 2>&1); then
    echo "FAIL $1: expected the check to pass:"
    echo "$out"
    fail=1
  else
    echo "ok   $1"
  fi
}
expect_fail() {  # NAME SRC MESSAGE
  if out=$(bash "$check" "$2" 2>&1); then
    echo "FAIL $1: expected the check to fail, it passed:"
    echo "$out"
    fail=1
  elif [[ $out != *"$3"* ]]; then
    echo "FAIL $1: the check failed without naming \"$3\":"
    echo "$out"
    fail=1
  else
    echo "ok   $1"
  fi
}

expect_pass "the real tree" "$root/src/pq"

# A three-layer fixture: core <- io <- model (model reaches core only through io).
fx="$tmp/fixture"
mkdir -p "$fx/core" "$fx/io" "$fx/model"
cat >"$fx/CMakeLists.txt" <<'CMAKE'
# a comment with pq_add_layer(bogus DEPS pq_model) is ignored
pq_add_layer(core DEPS Threads::Threads)
pq_add_layer(io DEPS pq_core
             nlohmann_json::nlohmann_json)
pq_add_layer(model DEPS pq_io)
CMAKE
printf '#pragma once\n#include <vector>\n' >"$fx/core/status.h"
printf '#include "pq/core/status.h"\n' >"$fx/core/status.cc"
printf '#pragma once\n#include "pq/core/status.h"\n' >"$fx/io/file.h"
printf '#include "pq/io/file.h"\n#include "pq/core/status.h"\n' >"$fx/model/arch.cc"
expect_pass "fixture" "$fx"

cp -r "$fx" "$tmp/up"
printf '#include "pq/model/arch.h"\n' >>"$tmp/up/core/status.cc"
expect_fail "core includes model" "$tmp/up" "status.cc:2: \"pq/model/arch.h\": layer core may not include layer model"

cp -r "$fx" "$tmp/sideways"
printf '  #  include "pq/model/arch.h"  // indented\n' >>"$tmp/sideways/io/file.h"
expect_fail "io includes model (indented directive)" "$tmp/sideways" "layer io may not include layer model"

cp -r "$fx" "$tmp/relative"
printf '#include "../core/status.h"\n' >>"$tmp/relative/model/arch.cc"
expect_fail "relative include" "$tmp/relative" "include project headers from the include root"

cp -r "$fx" "$tmp/unknown"
printf '#include "pq/engine/runner.h"\n' >>"$tmp/unknown/model/arch.cc"
expect_fail "undeclared layer" "$tmp/unknown" "engine is not a declared layer"

cp -r "$fx" "$tmp/folder"
mkdir -p "$tmp/folder/extra"
expect_fail "undeclared folder" "$tmp/folder" "folder is not a layer declared"

# The real tree with one planted violation: core including pipeline.
cp -r "$root/src/pq" "$tmp/real"
printf '#include "pq/pipeline/probe.h"\n' >>"$tmp/real/core/status.cc"
expect_fail "real tree, core includes pipeline" "$tmp/real" "layer core may not include layer pipeline"

exit $fail
