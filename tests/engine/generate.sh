#!/usr/bin/env bash
# `prismaquant generate` against transformers' own `model.generate`.
#
#   PQ_BIN=build/release/tools/prismaquant/prismaquant PQ_SOURCE_DIR=. bash tests/engine/generate.sh
#
# (a) Greedy generation of 64 tokens from models/stories260K, models/trained/qwen3_moe,
#     models/trained/qwen2 and models/trained/qwen3_5_moe (hybrid DeltaNet) for 3 prompts gives the same token ids as transformers'
#     model.generate(do_sample=False) in float32 (tests/engine/generate_ref.py: prompt encoded
#     with `tokenizers` from the model's tokenizer.json, BOS prepended as we do; the prompt ids
#     must be equal too). A divergence is accepted only as float noise: transformers' logits of
#     its token and ours at the first differing step within 1e-4 (the gap is printed either
#     way). Our reported mean NLL of the new tokens equals transformers' within 1e-4.
#     The check is shown to bite: one of our outputs with a token changed must be rejected.
# (b) Sampling (--temperature 0.8 --top-p 0.9) is reproducible for a seed and differs for
#     another seed; text mode prints the prompt and its continuation on stdout and the mean
#     NLL and tokens/s on stderr; bad --temperature / --top-p exit 2.
# (c) Quantized exports (NVFP4A16, MXFP8) of stories260K generate 64 tokens; how many of them
#     match the BF16 model's greedy tokens is printed.
# Works in a temp dir (kept with PQ_KEEP_WORK=1). Prints "N passed, N failed"; exit 1 on failure.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../script_lib.sh"
pq_setup generate generate
pq_venv

prompts=("Once upon a time" "Lily and Ben went to the park. They saw" "The little dog was sad because")
n=64

# jfield FILE KEY: a field of a one-line JSON file ("" when absent or unreadable)
jfield() {
  "$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d.get(sys.argv[2], ""); print(json.dumps(v) if isinstance(v, list) else v)' \
    "$1" "$2" 2>/dev/null
}

# gen NAME ARGS...: prismaquant generate ARGS --json > $work/NAME.json; counts a failure.
gen() {
  local name="$1" rc; shift
  "$bin" generate "$@" --json > "$work/$name.json" 2> "$work/$name.err"; rc=$?
  if [[ $rc -ne 0 ]]; then
    bad "$name: exit $rc from: generate $*"
    tail -n 5 "$work/$name.err" | sed 's/^/     | /'
    return 1
  fi
}

echo "== (a) greedy generation vs transformers' model.generate (float32)"
for m in stories260K trained/qwen3_moe trained/qwen2 trained/qwen3_5_moe; do
  model="$src/models/$m"
  tag=${m//\//_}
  [[ -f "$model/config.json" ]] || { bad "$m: model not found: $model"; continue; }
  files=()
  for i in "${!prompts[@]}"; do
    gen "${tag}_$i" "$model" --prompt "${prompts[$i]}" -n "$n" && files+=("$work/${tag}_$i.json")
  done
  [[ ${#files[@]} -gt 0 ]] || continue
  extra=()
  if [[ $m == stories260K ]]; then
    # A copy of the first output with its 11th token changed: the comparison must reject it.
    "$py" - "${files[0]}" "$work/tampered.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["tokens"][10] = (d["tokens"][10] + 1) % 512
json.dump(d, open(sys.argv[2], "w"))
EOF
    extra=("$work/tampered.json")
  fi
  "$py" "$src/tests/engine/generate_ref.py" "$model" "${files[@]}" "${extra[@]}" --max-new-tokens "$n" \
    > "$work/ref_$tag.jsonl" 2> "$work/ref_$tag.err"
  if [[ ! -s "$work/ref_$tag.jsonl" ]]; then
    bad "$m: generate_ref.py printed nothing"
    tail -n 12 "$work/ref_$tag.err" | sed 's/^/     | /'
    continue
  fi
  while IFS=$'\t' read -r verdict line; do
    case $verdict in
      ok) ok "$m: $line" ;;
      tampered_rejected) ok "$m: a changed token is rejected: $line" ;;
      *) bad "$m: $line" ;;
    esac
  done < <("$py" - "$work/ref_$tag.jsonl" $((${#extra[@]} > 0)) <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
tampered = sys.argv[2] == "1"
for i, d in enumerate(rows):
    last = tampered and i == len(rows) - 1
    gap = "" if d.get("gap") is None else f", first difference at step {d['first_diff']}, logit gap {d['gap']:.3g}"
    desc = (f"{d['prompt']!r}: {len(d.get('ours_tokens', []))} tokens, "
            f"{'identical' if d.get('match') else 'differ'}{gap}; mean NLL {d.get('mean_nll_ours', float('nan')):.6f} "
            f"vs ref {d.get('mean_nll_ref', float('nan')):.6f}; min top-2 logit margin "
            f"{d.get('min_top2_gap', float('nan')):.3g}")
    if d.get("error"):
        desc += f" -- {d['error']}"
    if last:
        print(("tampered_rejected" if not d["ok"] else "fail") + "\t" + desc)
    else:
        print(("ok" if d["ok"] else "fail") + "\t" + desc)
EOF
)
done

echo "== (b) sampling, text mode, bad input"
model="$src/models/stories260K"
sample=(--prompt "${prompts[0]}" -n 48 --temperature 0.8 --top-p 0.9)
if gen s1 "$model" "${sample[@]}" --seed 1 && gen s1b "$model" "${sample[@]}" --seed 1 &&
   gen s2 "$model" "${sample[@]}" --seed 2; then
  t1=$(jfield "$work/s1.json" tokens); t1b=$(jfield "$work/s1b.json" tokens); t2=$(jfield "$work/s2.json" tokens)
  [[ -n "$t1" && "$t1" == "$t1b" ]] && ok "seed 1 twice: same tokens" || bad "seed 1 twice: '$t1' vs '$t1b'"
  [[ -n "$t2" && "$t1" != "$t2" ]] && ok "seed 2 differs from seed 1" || bad "seeds 1 and 2 gave the same tokens"
  [[ $(jfield "$work/s1.json" new_tokens) == 48 ]] && ok "-n 48: 48 new tokens" || bad "-n 48: $(jfield "$work/s1.json" new_tokens) new tokens"
fi
if "$bin" generate "$model" --prompt "${prompts[0]}" -n 32 > "$work/text.out" 2> "$work/text.err"; then
  if [[ $(head -c ${#prompts[0]} "$work/text.out") == "${prompts[0]}" ]] &&
     [[ $(wc -c < "$work/text.out") -gt $((${#prompts[0]} + 20)) ]]; then
    ok "text mode: stdout is the prompt and its continuation: $(head -n 1 "$work/text.out" | cut -c1-80)..."
  else
    bad "text mode stdout: $(head -c 200 "$work/text.out")"
  fi
  grep -Eq "32 new tokens .*mean NLL [0-9.]+ nats/token, [0-9.]+ tokens/s" "$work/text.err" &&
    ok "text mode stderr: $(tail -n 1 "$work/text.err")" || bad "text mode stderr: $(cat "$work/text.err")"
else
  bad "text mode: generate failed: $(tail -n 3 "$work/text.err")"
fi
for args in "--temperature -1" "--top-p 0" "--top-p 1.5"; do
  # shellcheck disable=SC2086
  "$bin" generate "$model" --prompt x -n 4 $args > /dev/null 2> "$work/badarg.err"; rc=$?
  [[ $rc == 2 ]] && ok "$args: exit 2 ($(head -n 1 "$work/badarg.err"))" || bad "$args: exit $rc, want 2"
done

echo "== (c) quantized exports generate"
if gen base "$model" --prompt "${prompts[0]}" -n "$n"; then
  for fmt in NVFP4A16 MXFP8; do
    if ! "$bin" export "$model" --uniform "$fmt" -o "$work/$fmt" > "$work/export_$fmt.log" 2>&1; then
      bad "$fmt: export failed: $(tail -n 3 "$work/export_$fmt.log")"
      continue
    fi
    gen "q_$fmt" "$work/$fmt" --prompt "${prompts[0]}" -n "$n" || continue
    msg=$("$py" - "$work/base.json" "$work/q_$fmt.json" <<'EOF'
import json, math, sys
b, q = (json.load(open(p)) for p in sys.argv[1:3])
same = next((i for i, (x, y) in enumerate(zip(b["tokens"], q["tokens"])) if x != y), min(len(b["tokens"]), len(q["tokens"])))
print(f"{q['new_tokens']} tokens, first {same} equal to BF16's, mean NLL {q['mean_nll']:.4f} "
      f"(BF16 {b['mean_nll']:.4f}), {q['tokens_per_s']:.0f} tokens/s: {q['text'][:60]!r}...")
sys.exit(0 if q["new_tokens"] == len(q["tokens"]) > 0 and math.isfinite(q["mean_nll"]) else 1)
EOF
    ) && ok "$fmt export: $msg" || bad "$fmt export: $msg"
  done
fi

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
