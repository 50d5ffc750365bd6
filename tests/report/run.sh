#!/usr/bin/env bash
# `prismaquant report` end to end, looked at by a real browser.
#
#   PQ_BIN=build/release/tools/prismaquant/prismaquant PQ_SOURCE_DIR=. bash tests/report/run.sh
#
# probe (8 samples × 128 tokens of the TinyStories slice) + allocate (6 bits/param) on
# models/stories260K, then `report`: its --json summary (5 layers × 7 modules + lm_head = 36
# map cells), refusal of an existing output without --overwrite, exit 2 naming probe.json on
# an empty work dir. Then headless Chromium (Debian package `chromium`): a 1280×2000
# screenshot that must have that size, not be blank, and show the exact colour of every format
# the allocation uses (tests/report/png_check.py, Python stdlib only); and --dump-dom of a copy
# with one line of script that records the document's scrollWidth, which must not exceed the
# viewport (nothing scrolls sideways at 1280 px).
# Works in a temp dir (kept with PQ_KEEP_WORK=1: the screenshot is $work/report.png).
# Prints "N passed, N failed"; exit 1 on failure.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../script_lib.sh"
pq_setup report report
chromium="${PQ_CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
[[ -n "$chromium" ]] || { echo "report/run.sh: chromium not found (apt-get install chromium)" >&2; exit 1; }

model="$src/models/stories260K"
[[ -f "$model/config.json" ]] || { echo "report/run.sh: model not found: $model" >&2; exit 1; }

# run NAME command...: stdout -> $work/NAME.out, stderr -> $work/NAME.err; a failure is shown.
run() {
  local name="$1" rc; shift
  "$@" > "$work/$name.out" 2> "$work/$name.err"; rc=$?
  if [[ $rc -ne 0 ]]; then
    bad "$name: exit $rc from: $*"
    tail -n 12 "$work/$name.err" | sed 's/^/     | /'
  fi
  return $rc
}
finish() { echo "$pass passed, $fail failed"; [[ $fail -eq 0 ]]; exit $?; }
# jget FILE KEY: a top-level value of a JSON file.
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

w="$work/w"
run probe "$bin" probe "$model" --work "$w" --calib "$text" --samples 8 --seqlen 128 --threads 2 \
  || finish
run allocate "$bin" allocate --work "$w" --target-bits 6 || finish
html="$work/report.html"
run report "$bin" report --work "$w" -o "$html" --json || finish
cells=$(jget "$work/report.out" cells); rows=$(jget "$work/report.out" rows)
cols=$(jget "$work/report.out" columns)
if [[ "$cells/$rows/$cols" == "36/6/7" && -s "$html" ]]; then
  ok "report: $rows rows × $cols module kinds, $cells cells, $(stat -c %s "$html") bytes"
else
  bad "report: cells/rows/columns = $cells/$rows/$cols, expected 36/6/7"
fi

"$bin" report --work "$w" -o "$html" > /dev/null 2> "$work/again.err"; rc=$?
if [[ $rc -eq 2 ]] && grep -q -- "--overwrite" "$work/again.err"; then
  ok "an existing report is refused without --overwrite (exit 2)"
else
  bad "existing output: exit $rc, $(cat "$work/again.err")"
fi
run overwrite "$bin" report --work "$w" -o "$html" --overwrite && ok "--overwrite replaces it"
mkdir -p "$work/empty"
"$bin" report --work "$work/empty" -o "$work/empty/r.html" > /dev/null 2> "$work/empty.err"; rc=$?
if [[ $rc -eq 2 ]] && grep -q "probe.json" "$work/empty.err" && [[ ! -e "$work/empty/r.html" ]]; then
  ok "empty work dir: exit 2, names probe.json, writes nothing"
else
  bad "empty work dir: exit $rc, $(cat "$work/empty.err")"
fi

# Headless Chromium, offline, its profile in the work dir.
chrome() {
  timeout 180 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --no-first-run --disable-extensions --disable-background-networking \
    --user-data-dir="$work/chrome-profile" --window-size=1280,2000 "$@"
}
shot="$work/report.png"
chrome --screenshot="$shot" "file://$html" > "$work/chrome.out" 2> "$work/chrome.err"
# The colours of the formats this allocation uses (the legend's used entries).
used=$(grep -o '<li class="legend"><span class="chip" style="background:#[0-9a-f]\{6\}' "$html" \
       | grep -o '#[0-9a-f]\{6\}' | sort -u)
if [[ ! -s "$shot" ]]; then
  bad "screenshot: chromium wrote no PNG"; tail -n 5 "$work/chrome.err" | sed 's/^/     | /'
elif out=$(python3 "$src/tests/report/png_check.py" "$shot" 1280 2000 $used 2>&1); then
  ok "screenshot: $out; format colours $(echo $used) present"
else
  bad "screenshot: $out"
fi

# Document width at a 1280-px window: a copy of the page records its own scrollWidth.
sed 's|</body>|<script>document.body.setAttribute("data-sw", document.documentElement.scrollWidth + "/" + document.documentElement.clientWidth)</script></body>|' \
  "$html" > "$work/width.html"
chrome --dump-dom "file://$work/width.html" > "$work/dom.html" 2> "$work/dom.err"
sw=$(grep -o 'data-sw="[0-9]*/[0-9]*"' "$work/dom.html" | grep -o '[0-9]*/[0-9]*')
if [[ -n "$sw" && ${sw%/*} -le ${sw#*/} && ${sw#*/} -le 1280 ]]; then
  ok "no sideways scrolling at 1280 px (scrollWidth/clientWidth $sw)"
else
  bad "document width: scrollWidth/clientWidth '${sw:-none}' (see $work/dom.err)"
fi
finish
