#!/usr/bin/env bash
# The probe's work dir: a run killed with SIGKILL in the middle of its reverse sweep, then
# rerun, must give byte-identical results to an uninterrupted run (probe.json, every layer's
# results.json and statistics); a work dir made with other inputs is refused; allocate reads
# the result. Prints "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail
bin="${PQ_BIN:?set PQ_BIN}"
src="${PQ_SOURCE_DIR:?set PQ_SOURCE_DIR}"
model="$src/models/stories260K"
text="$src/../shared/assets/corpus-tinystories-valid-slice/tinystories_val.txt"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*" >&2; }

probe() {  # probe WORK SAMPLES [extra args]
  local w="$1" n="$2"; shift 2
  "$bin" -q probe "$model" --calib "$text" --work "$w" --samples "$n" --seqlen 256 --threads 1 "$@"
}

# Kill a run once some but not all layers are done; retry with more samples if it was too fast.
interrupted=0
for n in 48 96 192; do
  rm -rf "$work/a"
  # The binary itself in the background (not a function's subshell), so the kill reaches it.
  "$bin" -q probe "$model" --calib "$text" --work "$work/a" --samples "$n" --seqlen 256 \
    --threads 1 > /dev/null 2>&1 &
  pid=$!
  while kill -0 "$pid" 2> /dev/null && [[ ! -d "$work/a/probe/layer_0004" ]]; do sleep 0.02; done
  sleep 0.3  # somewhere inside the next layers
  kill -9 "$pid" 2> /dev/null; wait "$pid" 2> /dev/null
  if [[ -d "$work/a/probe/layer_0004" && ! -d "$work/a/probe/layer_0000" && ! -e "$work/a/probe.json" ]]; then
    interrupted=1; break
  fi
done
if ((interrupted)); then
  ok "killed after $(ls -d "$work"/a/probe/layer_* | wc -l) of 5 layers ($n samples)"
else
  bad "could not interrupt the probe mid-run"
fi

out="$(probe "$work/a" "$n" 2>&1)" && [[ "$out" == *resumed* ]] && ok "rerun resumed: $out" || bad "rerun: $out"
probe "$work/b" "$n" > /dev/null 2>&1 || bad "uninterrupted run failed"
for f in probe.json probe/inputs.json probe/head/results.json probe/head/model.safetensors \
         probe/calibration/model.safetensors \
         probe/layer_000{0,1,2,3,4}/results.json probe/layer_000{0,1,2,3,4}/model.safetensors; do
  if cmp -s "$work/a/$f" "$work/b/$f"; then ok "identical $f"; else bad "differs: $f"; fi
done
leftover="$(cd "$work/a/probe" && ls -A | grep -E '^(grad_|\.)' || true)"
[[ -z "$leftover" ]] && ok "no gradient or temp dirs left" || bad "left behind: $leftover"

# A finished work dir: rerunning is a no-op with the same result; other inputs are refused.
before="$(md5sum < "$work/a/probe.json")"
probe "$work/a" "$n" > /dev/null 2>&1 && [[ "$(md5sum < "$work/a/probe.json")" == "$before" ]] \
  && ok "rerun of a finished probe" || bad "rerun of a finished probe changed it"
err="$(probe "$work/a" "$n" --seed 7 2>&1)"; rc=$?
[[ $rc -eq 2 && "$err" == *"different inputs"*seed* ]] && ok "other seed refused: $err" || bad "seed: rc=$rc $err"
err="$(probe "$work/a" "$n" --formats NVFP4A16,BF16 2>&1)"; rc=$?
[[ $rc -eq 2 && "$err" == *"different inputs"*formats* ]] && ok "other formats refused" || bad "formats: rc=$rc $err"

# Bad input: clear errors, exit 2.
err="$("$bin" probe "$model" --calib "$text" --work "$work/c" --samples 100000 --seqlen 512 2>&1)"; rc=$?
[[ $rc -eq 2 && "$err" == *"lower --samples"* ]] && ok "too little text: $err" || bad "too little text: rc=$rc $err"
err="$("$bin" probe "$model" --work "$work/c" 2>&1)"; rc=$?
[[ $rc -eq 2 && "$err" == *"--calib"* ]] && ok "no calibration input" || bad "no calib: rc=$rc $err"
err="$("$bin" allocate --work "$work/nowhere" --target-bits 5 2>&1)"; rc=$?
[[ $rc -eq 2 && "$err" == *"run \`prismaquant probe"* ]] && ok "allocate without probe" || bad "allocate w/o probe: rc=$rc $err"
err="$("$bin" allocate --work "$work/a" --target-bits 2 2>&1)"; rc=$?
[[ $rc -eq 2 && "$err" == *"needs 5."*"bits/param"* ]] && ok "infeasible target: $err" || bad "infeasible: rc=$rc $err"
"$bin" -q allocate --work "$work/a" --target-bits knee > /dev/null && [[ -s "$work/a/layer_config.json" ]] \
  && ok "allocate --target-bits knee" || bad "allocate knee"

echo "$pass passed, $fail failed"
((fail == 0))
