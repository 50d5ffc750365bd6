#!/usr/bin/env bash
# Fails if a layer includes a header of a layer it may not depend on.
#
#   check_includes.sh SRC_DIR [CMAKELISTS]
#
# SRC_DIR is the folder of the layers (src/pq); CMAKELISTS (default SRC_DIR/CMakeLists.txt)
# declares them: `pq_add_layer(NAME DEPS pq_a pq_b ...)`. A layer may include its own headers
# and those of every layer it reaches through DEPS (transitively); nothing else. Project
# headers are included from the one include root, as "pq/<layer>/<file>.h"; every folder of
# SRC_DIR must be a declared layer. Prints each violation as FILE:LINE: why, exits 1 if any.
set -euo pipefail

src=${1:?usage: check_includes.sh SRC_DIR [CMAKELISTS]}
cmakelists=${2:-$src/CMakeLists.txt}
[[ -d $src ]] || { echo "check_includes: $src is not a directory" >&2; exit 2; }
[[ -f $cmakelists ]] || { echo "check_includes: no $cmakelists" >&2; exit 2; }

# layer -> its direct pq_* dependencies (space separated), from the pq_add_layer calls.
declare -A direct=()
calls=$(sed 's/#.*$//' "$cmakelists" | tr '\n' ' ' | grep -o 'pq_add_layer([^)]*)' || true)
while read -r call; do
  [[ -n $call ]] || continue
  read -r -a words <<<"$(sed 's/^pq_add_layer(//; s/)$//' <<<"$call")"
  name=${words[0]}
  list=""
  for w in "${words[@]:1}"; do
    [[ $w == pq_* ]] && list+=" ${w#pq_}"
  done
  direct[$name]=$list
done <<<"$calls"
if [[ ${#direct[@]} -eq 0 ]]; then
  echo "check_includes: no pq_add_layer(...) calls in $cmakelists" >&2
  exit 2
fi

# allowed[layer] = " layer dep dep-of-dep ... " (transitive closure, with itself).
declare -A allowed=()
closure() {
  local start=$1 seen=" $1 " stack=("$1") cur dep
  while [[ ${#stack[@]} -gt 0 ]]; do
    cur=${stack[-1]}
    unset 'stack[-1]'
    for dep in ${direct[$cur]-}; do
      if [[ $seen != *" $dep "* ]]; then
        seen+="$dep "
        stack+=("$dep")
      fi
    done
  done
  allowed[$start]=$seen
}
for layer in "${!direct[@]}"; do closure "$layer"; done

violations=0
files=0
report() {
  echo "$1"
  violations=$((violations + 1))
}

for dir in "$src"/*/; do
  layer=$(basename "$dir")
  if [[ -z ${direct[$layer]+set} ]]; then
    report "$dir: folder is not a layer declared with pq_add_layer in $cmakelists"
    continue
  fi
  while IFS= read -r -d '' file; do
    files=$((files + 1))
    while IFS=: read -r line text; do
      inc=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]*)".*/\1/' <<<"$text")
      if [[ $inc != pq/*/* ]]; then
        report "$file:$line: \"$inc\": include project headers from the include root as \"pq/<layer>/...\""
        continue
      fi
      other=${inc#pq/}
      other=${other%%/*}
      if [[ -z ${direct[$other]+set} ]]; then
        report "$file:$line: \"$inc\": $other is not a declared layer"
      elif [[ ${allowed[$layer]} != *" $other "* ]]; then
        report "$file:$line: \"$inc\": layer $layer may not include layer $other" \
          "(allowed:${allowed[$layer]% })"
      fi
    done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" || true)
  done < <(find "$dir" -type f \( -name '*.h' -o -name '*.cc' \) -print0 | sort -z)
done

if [[ $violations -gt 0 ]]; then
  echo "check_includes: $violations layering violation(s) in $src"
  exit 1
fi
echo "check_includes: $files files in ${#direct[@]} layers respect $cmakelists"
