#!/usr/bin/env bash
# probe, export --work and eval across MPI ranks (DESIGN §7), with prismaquant-mpi (PQ_BIN):
#   - `mpirun -np R` for R = 1, 2, 3 writes a work dir byte-identical (probe.json, every unit,
#     the calibration samples) to prismaquant without MPI (PQ_PLAIN_BIN) given the same
#     --sample-block, with the default export-aware pricing (Hessians folded too);
#   - the same for a trained MoE (qwen3_moe) and the hybrid (qwen3_5_moe: DeltaNet, experts,
#     the MTP head), MoE block pricing included;
#   - eval (NLL and KL) across R = 2, 3 prints the same JSON as prismaquant without MPI;
#   - export --work (GPTQ on Hessians folded over blocks and ranks) across R = 2, 3 writes the
#     same checkpoint as prismaquant without MPI (stories260K; the hybrid, MTP head included);
#   - the block size changes the bits (so the comparisons above can fail), and more ranks
#     than sample blocks, or a command not data-parallel (allocate, export --uniform), are
#     refused with a message;
#   - rank 0 alone prints;
#   - one rank of the hybrid killed with SIGKILL mid-run: non-zero exit, no probe.json, and a
#     rerun with another R resumes to the same bytes.
# stories260K (models/) and the trained fixtures (models/trained). Prints "N passed, N failed";
# exits non-zero on any failure.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../script_lib.sh"
pq_setup dist_mpi probe
plain="${PQ_PLAIN_BIN:-$(dirname "$bin")/prismaquant}"
if [[ ! -x "$plain" || "$plain" -ef "$bin" ]]; then
  echo "dist_mpi: the one-process prismaquant is needed at '$plain' (PQ_PLAIN_BIN) beside" \
    "prismaquant-mpi (PQ_BIN)" >&2
  exit 1
fi
command -v mpirun > /dev/null || { echo "dist_mpi: no mpirun (scripts/deps.sh --test)" >&2; exit 1; }
model="$src/models/stories260K"
mpi=(mpirun --oversubscribe --allow-run-as-root --bind-to none)
export OMPI_MCA_btl_vader_single_copy_mechanism=none  # containers without CMA

probe() {  # probe BIN WORK SAMPLES BLOCK
  "$1" probe "$model" --calib "$text" --work "$2" --samples "$3" --seqlen 64 --threads 1 \
    --sample-block "$4"
}
same() {  # same NAME DIR_A DIR_B
  if d=$(diff -r "$2" "$3" 2>&1); then ok "$1"; else bad "$1: $(head -3 <<< "$d" | tr '\n' ' ')"; fi
}

# Byte identity across R and against prismaquant without MPI.
probe "$plain" "$work/plain" 6 2 > "$work/plain.out" 2>&1 || bad "plain probe: $(cat "$work/plain.out")"
for r in 1 2 3; do
  if "${mpi[@]}" -np "$r" "$bin" probe "$model" --calib "$text" --work "$work/r$r" --samples 6 \
    --seqlen 64 --threads 1 --sample-block 2 > "$work/r$r.out" 2> "$work/r$r.err"; then
    same "R=$r: work dir identical to prismaquant without MPI" "$work/plain" "$work/r$r"
  else
    bad "R=$r failed: $(tail -3 "$work/r$r.err")"
  fi
done
n=$(grep -c '^wrote ' "$work/r3.out")
[[ $n -eq 1 ]] && ok "R=3: one rank printed the result" || bad "R=3: $n 'wrote' lines"
# Progress: one rank's lines (each finishing line once); per-rank times from rank 0 only.
# (Two forward sweeps: the priced samples' and the Hessian samples'.)
f=$(grep -c '^forward  .*100%' "$work/r3.err") b=$(grep -c '^backward .*100%' "$work/r3.err")
fh=$(grep -c '^forward (Hessian samples) .*100%' "$work/r3.err")
t=$(grep -c '^probe: rank [0-2] of 3: .* s, compute .* s, I/O .* s, reduction .* cpu' "$work/r3.err")
[[ $f -eq 1 && $fh -eq 1 && $b -eq 1 && $t -eq 3 ]] &&
  ok "R=3: ranks 1, 2 quiet; rank 0 logs the 3 ranks' times" ||
  bad "R=3 stderr: $f + $fh forward, $b backward, $t time lines: $(cat "$work/r3.err")"

# A trained MoE (qwen3_moe: experts no sample of a rank may reach, routed counts, per-expert
# Hessians) and the hybrid (Gated DeltaNet, gated attention, experts, the MTP head), both with
# the MoE units priced at the block output (router re-run, routing changes, a window of two
# layers).
moe="$src/models/trained/qwen3_moe" hyb="$src/models/trained/qwen3_5_moe"
for m in moe:2 hyb:3; do
  name=${m%%:*} r=${m#*:} path=${!name}
  "$plain" probe "$path" --calib "$text" --work "$work/$name" --samples 6 --seqlen 64 \
    --threads 1 --sample-block 2 > /dev/null 2>&1 || bad "plain $name probe failed"
  "${mpi[@]}" -np "$r" "$bin" probe "$path" --calib "$text" --work "$work/$name$r" --samples 6 \
    --seqlen 64 --threads 1 --sample-block 2 > /dev/null 2>&1 &&
    same "$name, R=$r: work dir identical to prismaquant without MPI" "$work/$name" \
      "$work/$name$r" || bad "$name, R=$r failed"
done
grep -q '"routing_changes": [1-9]' "$work/hyb3/probe.json" &&
  ok "hybrid: block pricing saw routing changes" || bad "hybrid: no routing changes priced"
grep -q '"mtp_nll"' "$work/hyb3/probe.json" && [[ -d "$work/hyb3/probe/layer_0004" ]] &&
  ok "hybrid: the MTP head (unit 4 after layers 0-3) was probed" || bad "hybrid: no MTP unit"
# --block-samples K: the block reruns take the samples below K, so some ranks re-run a part of
# theirs or none (6 samples in blocks of 2: K = 2 leaves ranks 1 and 2 none, K = 3 gives
# rank 1 of 2 one sample of its four).
for k in 2:3 3:2; do
  kb=${k%%:*} r=${k#*:}
  "$plain" probe "$moe" --calib "$text" --work "$work/moek$kb" --samples 6 --seqlen 64 \
    --threads 1 --sample-block 2 --block-samples "$kb" > /dev/null 2>&1 ||
    bad "plain probe --block-samples $kb failed"
  "${mpi[@]}" -np "$r" "$bin" probe "$moe" --calib "$text" --work "$work/moek$kb-$r" --samples 6 \
    --seqlen 64 --threads 1 --sample-block 2 --block-samples "$kb" > /dev/null 2> "$work/x.err" &&
    same "moe, --block-samples $kb, R=$r: work dir identical to prismaquant without MPI" \
      "$work/moek$kb" "$work/moek$kb-$r" || bad "--block-samples $kb, R=$r: $(tail -3 "$work/x.err")"
done
cmp -s "$work/moe/probe.json" "$work/moek2/probe.json" &&
  bad "--block-samples 2 priced like all samples (the comparison could not fail)" ||
  ok "--block-samples 2 prices differ from all samples'"

# The block size is folded in, so a wrong fold would show.
probe "$plain" "$work/plain1" 6 1 > /dev/null 2>&1 || bad "plain probe with blocks of 1"
cmp -s "$work/plain/probe.json" "$work/plain1/probe.json" &&
  bad "blocks of 1 and 2 samples gave the same probe.json (the comparisons could not fail)" ||
  ok "blocks of 1 and 2 samples differ in probe.json"
"${mpi[@]}" -np 2 "$bin" probe "$model" --calib "$text" --work "$work/r2b1" --samples 6 \
  --seqlen 64 --threads 1 --sample-block 1 > /dev/null 2>&1 &&
  same "R=2, blocks of 1: identical to prismaquant without MPI" "$work/plain1" "$work/r2b1" ||
  bad "R=2 with blocks of 1 failed"

# Refusals.
err=$("${mpi[@]}" -np 2 "$bin" probe "$model" --calib "$text" --work "$work/x" --samples 6 \
  --seqlen 64 2>&1); rc=$?
[[ $rc -ne 0 && "$err" == *"of 2: error"*"sample block"* && ! -e "$work/x/probe.json" ]] &&
  ok "2 ranks, one sample block: refused (rc $rc)" || bad "one block, 2 ranks: rc=$rc $err"
err=$("${mpi[@]}" -np 2 "$bin" export "$model" --uniform INT8 -o "$work/y" 2>&1); rc=$?
[[ $rc -ne 0 && "$err" == *"data-free: run it with one process"* && ! -e "$work/y" ]] &&
  ok "export --uniform across ranks: refused" || bad "export --uniform across ranks: rc=$rc $err"
err=$("${mpi[@]}" -np 2 "$bin" allocate --work "$work/plain" --target-bits 6 2>&1); rc=$?
[[ $rc -ne 0 && "$err" == *"only \`probe\`, \`eval\`, \`export --work\`, \`quantize\` and \`check-costs\`"* ]] &&
  ok "allocate across ranks: refused" || bad "allocate across ranks: rc=$rc $err"

# export --work: the Hessians of each layer folded over the probe's sample blocks and the ranks;
# each Linear quantized by its owner rank (balanced by cost) and broadcast; rank 0 writes.
for m in model:plain:3 hyb:hyb:2; do
  IFS=: read -r var w r <<< "$m"
  "$plain" -q allocate --work "$work/$w" --target-bits 6 > /dev/null 2>&1 || bad "allocate $w"
  "$plain" -q export "${!var}" --work "$work/$w" -o "$work/$w-ckpt" > /dev/null 2>&1 ||
    bad "plain export of $w failed"
  "${mpi[@]}" -np "$r" "$bin" export "${!var}" --work "$work/$w" -o "$work/$w-ckpt$r" \
    > "$work/x.out" 2> "$work/x.err" &&
    same "export of $w, R=$r: checkpoint identical to prismaquant without MPI" "$work/$w-ckpt" \
      "$work/$w-ckpt$r" || bad "export of $w, R=$r failed"
  # The work shared out: every rank quantized some Linears, together each once.
  total=$(sed -nE 's/.*: ([0-9]+) Linears calibrated.*, ([0-9]+) by RTN/\1 \2/p' "$work/x.out")
  mapfile -t per < <(sed -nE "s/^export: rank [0-9]+ of $r: .*; ([0-9]+) Linears quantized\$/\1/p" \
    "$work/x.err")
  sum=0 nonzero=0
  for n in "${per[@]}"; do ((sum += n)); ((n > 0 && ++nonzero)); done
  [[ -n $total && ${#per[@]} -eq $r && $nonzero -eq $r && $sum -eq $((${total% *} + ${total#* })) ]] &&
    ok "export of $w, R=$r: Linears quantized per rank ${per[*]} (sum $sum = calibrated + RTN)" ||
    bad "export of $w, R=$r: per-rank counts '${per[*]}' vs '$total': $(cat "$work/x.err" "$work/x.out")"
done

# quantize (probe + allocate on rank 0 + export) across R = 2: the same checkpoint and work dir.
qz=(quantize "$model" --calib "$text" --samples 6 --seqlen 64 --threads 1 --sample-block 2
    --target-bits 6)
"$plain" -q "${qz[@]}" -o "$work/qz" > /dev/null 2>&1 || bad "plain quantize failed"
if "${mpi[@]}" -np 2 "$bin" "${qz[@]}" -o "$work/qz2" > "$work/qz2.out" 2> "$work/qz2.err"; then
  # (the model card names its own directory)
  if d=$(diff -r -x README.md "$work/qz" "$work/qz2" 2>&1) &&
     cmp -s "$work/qz/README.md" <(sed "s#$work/qz2#$work/qz#g" "$work/qz2/README.md"); then
    ok "quantize, R=2: checkpoint identical to prismaquant without MPI"
  else
    bad "quantize, R=2: checkpoints differ: $(head -3 <<< "$d" | tr '\n' ' ')"
  fi
  same "quantize, R=2: work dir identical" "$work/qz.work" "$work/qz2.work"
  n=$(grep -c '^wrote .*(work dir' "$work/qz2.out")
  [[ $n -eq 1 ]] && ok "quantize, R=2: rank 0 alone printed" || bad "quantize: $n result lines"
else
  bad "quantize, R=2 failed: $(tail -3 "$work/qz2.err")"
fi

# check-costs: the perturbations split over the ranks, each measured whole on one rank, rows
# gathered in order (per unit on the hybrid: experts, DeltaNet, MTP units).
cc=(check-costs "$hyb" --work "$work/hyb" --text "$text" --max-docs 20 --per-unit
    --formats NVFP4A16 -o)
"$plain" -q "${cc[@]}" "$work/cc.csv" > "$work/cc.txt" 2> /dev/null || bad "plain check-costs failed"
for r in 2 3; do
  "${mpi[@]}" -np "$r" "$bin" -q "${cc[@]}" "$work/cc$r.csv" > "$work/cc$r.txt" 2> /dev/null &&
    cmp -s "$work/cc.csv" "$work/cc$r.csv" && cmp -s "$work/cc.txt" "$work/cc$r.txt" &&
    ok "check-costs, R=$r: rows and summary identical to prismaquant without MPI ($(($(wc -l < "$work/cc.csv") - 1)) rows)" ||
    bad "check-costs, R=$r: $(diff "$work/cc.csv" "$work/cc$r.csv" | head -3)"
done

# eval: chunks of windows split over the ranks, their sums added on rank 0 in chunk order
# (2 chunks here: with R = 3 one rank has none). NLL and KL against the unquantized model.
"$plain" -q export "$model" --uniform NVFP4A16 -o "$work/q" > /dev/null 2>&1 || bad "export failed"
ev=(eval "$work/q" --text "$text" --split paragraphs --max-docs 200 --reference "$model" --json)
"$plain" "${ev[@]}" > "$work/eval.json" 2> /dev/null || bad "plain eval failed"
for r in 2 3; do
  "${mpi[@]}" -np "$r" "$bin" "${ev[@]}" > "$work/eval$r.json" 2> /dev/null &&
    cmp -s "$work/eval.json" "$work/eval$r.json" &&
    ok "eval, R=$r: identical to prismaquant without MPI: $(tr -d ' \n' < "$work/eval$r.json")" ||
    bad "eval, R=$r: $(cat "$work/eval$r.json")"
done

# A rank killed mid-run (SIGKILL): the job fails, nothing final written, and a rerun with
# another R resumes — on the hybrid, whose block windows keep gradients above a layer.
killed=0
for n in 16 48; do
  rm -rf "$work/k"
  "${mpi[@]}" -np 2 "$bin" -q probe "$hyb" --calib "$text" --work "$work/k" --samples "$n" \
    --seqlen 64 --threads 1 --sample-block 4 > "$work/k.out" 2>&1 &
  launcher=$!
  while kill -0 "$launcher" 2> /dev/null && [[ ! -d "$work/k/probe/layer_0002" ]]; do sleep 0.02; done
  rank1=""
  for p in $(pgrep -P "$launcher"); do
    grep -qz '^OMPI_COMM_WORLD_RANK=1$' "/proc/$p/environ" 2> /dev/null && rank1=$p
  done
  [[ -n $rank1 ]] && kill -9 "$rank1" 2> /dev/null
  wait "$launcher"; rc=$?
  if [[ -n $rank1 && $rc -ne 0 && ! -e "$work/k/probe.json" && -d "$work/k/probe/layer_0002" &&
        ! -d "$work/k/probe/layer_0000" ]]; then
    killed=1; break
  fi
done
((killed)) && ok "rank 1 killed after units $(ls -d "$work"/k/probe/layer_* | xargs -n1 basename | tr '\n' ' ')(exit $rc), no probe.json" ||
  bad "could not kill a rank mid-run (rc=${rc:-?}): $(tail -3 "$work/k.out")"
"${mpi[@]}" -np 3 "$bin" probe "$hyb" --calib "$text" --work "$work/k" --samples "$n" --seqlen 64 \
  --threads 1 --sample-block 4 > "$work/k2.out" 2>&1 && grep -q resumed "$work/k2.out" &&
  ok "rerun with R=3 resumed" || bad "rerun with R=3: $(tail -3 "$work/k2.out")"
"$plain" probe "$hyb" --calib "$text" --work "$work/kref" --samples "$n" --seqlen 64 \
  --threads 1 --sample-block 4 > /dev/null 2>&1 || bad "plain reference run"
same "resumed work dir identical to an uninterrupted run without MPI" "$work/kref" "$work/k"

echo "$pass passed, $fail failed"
((fail == 0))
