#!/usr/bin/env bash
# The CLI end to end on bad input: each case must exit non-zero with a message naming the
# problem, and must leave no output behind. Prints "N passed, N failed".
set -uo pipefail
bin="${PQ_BIN:?set PQ_BIN}"
src="${PQ_SOURCE_DIR:?set PQ_SOURCE_DIR}"
model="$src/models/stories260K"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
pass=0; fail=0

# expect CODE PATTERN -- command...: exit code CODE and output (stdout+stderr) matching PATTERN.
expect() {
  local code="$1" pattern="$2"; shift 3
  local err rc
  err="$("$@" 2>&1)"; rc=$?
  if [[ $rc -eq $code && "$err" =~ $pattern ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $* -> rc=$rc (want $code), stderr: $err" >&2
  fi
}
absent() {
  if [[ -e "$1" ]]; then fail=$((fail + 1)); echo "FAIL: $1 exists" >&2; else pass=$((pass + 1)); fi
}

# A truncated copy, a corrupt header, a missing shard.
mkdir -p "$work/trunc" "$work/corrupt" "$work/sharded"
cp "$model/config.json" "$work/trunc/"; head -c 5000 "$model/model.safetensors" > "$work/trunc/model.safetensors"
cp "$model/config.json" "$work/corrupt/"
{ printf '\x10\x00\x00\x00\x00\x00\x00\x00{"a": [1, 2, 3'; } > "$work/corrupt/model.safetensors"
cp "$model/config.json" "$work/sharded/"
printf '{"metadata": {}, "weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}' \
  > "$work/sharded/model.safetensors.index.json"

expect 2 "model.safetensors" -- "$bin" export "$work/trunc" --uniform FP8 -o "$work/o1"
absent "$work/o1"
expect 2 "model.safetensors" -- "$bin" export "$work/corrupt" --uniform FP8 -o "$work/o2"
absent "$work/o2"
expect 2 "model-00001-of-00002" -- "$bin" export "$work/sharded" --uniform FP8 -o "$work/o3"
absent "$work/o3"
expect 2 "NVFP4A16" -- "$bin" export "$model" --uniform NVFP4 -o "$work/o4"
absent "$work/o4"
expect 2 "unknown format" -- "$bin" export "$model" --uniform FP4 -o "$work/o5"
expect 2 "safetensors" -- "$bin" export "$work" --uniform FP8 -o "$work/o6"
expect 2 "trunc" -- "$bin" inspect "$work/trunc"
expect 2 "." -- "$bin" export "$model"                      # missing -o
expect 2 "stories260K.bin|No such|cannot open|not found" -- "$bin" import-llama2c "$work/none.bin" --tokenizer "$work/none" -o "$work/o7"
absent "$work/o7"

# A good export, then an existing output refused without --overwrite.
"$bin" -q export "$model" --uniform MXFP8 -o "$work/ok" > /dev/null 2>&1
expect 2 "overwrite" -- "$bin" export "$model" --uniform MXFP8 -o "$work/ok"
if "$bin" inspect "$work/ok" > /dev/null; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: inspect ok" >&2; fi
# A checkpoint whose config targets a module that lost its scale: inspect exits 1.
mkdir -p "$work/broken"
cp "$work/ok/config.json" "$work/broken/"
"$bin" -q dequantize "$work/ok" -o "$work/dense" > /dev/null
cp "$work/dense/model.safetensors" "$work/broken/"
expect 1 "violation" -- "$bin" inspect "$work/broken"

# eval on bad input: empty text, unknown architecture, missing tensors, shape mismatch,
# unreadable tokenizer.
text="$src/../shared/assets/corpus-tinystories-valid-slice/tinystories_val.txt"
[[ -f "$text" ]] || { head -c 3000 "$model/SOURCE.md" > "$work/text.txt"; text="$work/text.txt"; }
: > "$work/empty.txt"
expect 2 "no documents" -- "$bin" eval "$model" --text "$work/empty.txt"
expect 2 "text.*cannot open|cannot open" -- "$bin" eval "$model" --text "$work/none.txt"
# A FIFO where a file should be: refused at once, never a hang (timeout exits 124).
mkfifo "$work/fifo.txt"
expect 2 "fifo.txt: not a regular file" -- timeout 30 "$bin" eval "$model" --text "$work/fifo.txt"
mkdir -p "$work/m-fifo"; cp "$model/config.json" "$model/tokenizer.json" "$work/m-fifo/"
mkfifo "$work/m-fifo/model.safetensors"
expect 2 "model.safetensors: not a regular file" -- timeout 30 "$bin" export "$work/m-fifo" \
  --uniform FP8 -o "$work/o-fifo"
absent "$work/o-fifo"
# Hostile config.json (hardening): wrong JSON types, duplicate keys and deep nesting are clean
# errors naming the file or key (exit 2), never an abort, and nothing is written.
for case in type dup deep; do mkdir -p "$work/c-$case"; cp "$model"/* "$work/c-$case/"; done
sed -i 's/"tie_word_embeddings": true/"tie_word_embeddings": "yes"/' "$work/c-type/config.json"
sed -i 's/^{/{"hidden_size": 64, /' "$work/c-dup/config.json"
python3 -c "import sys; open(sys.argv[1], 'w').write('[' * 100000 + ']' * 100000)" \
  "$work/c-deep/config.json"
expect 2 "tie_word_embeddings" -- "$bin" eval "$work/c-type" --text "$text" --split paragraphs --max-docs 2
expect 2 "tie_word_embeddings" -- "$bin" export "$work/c-type" --uniform FP8 -o "$work/o-type"
expect 2 "config.json.*(duplicate|hidden_size)" -- "$bin" export "$work/c-dup" --uniform FP8 \
  -o "$work/o-dup"
expect 2 "config.json" -- "$bin" export "$work/c-deep" --uniform FP8 -o "$work/o-deep"
for o in o-type o-dup o-deep; do absent "$work/$o"; done
[[ -z "$(ls -A "$work" | grep -F '.o-deep.tmp')" ]] && pass=$((pass + 1)) || {
  fail=$((fail + 1)); echo "FAIL: a temp dir of the deep-nesting export was left" >&2; }
# Numeric flags out of range (hardening): a clear error, exit 2, before any work.
expect 2 "threads" -- "$bin" eval "$model" --text "$text" --threads -1
expect 2 "memory-budget-gb.*finite" -- "$bin" eval "$model" --text "$text" --memory-budget-gb nan
expect 2 "memory-budget-gb.*finite" -- "$bin" probe "$model" --calib "$text" --work "$work/w-nan" \
  --memory-budget-gb -1
expect 2 "max-shard-gb.*finite" -- "$bin" export "$model" --uniform FP8 -o "$work/o-shard" \
  --max-shard-gb nan
expect 2 "max-shard-gb.*finite" -- "$bin" export "$model" --uniform FP8 -o "$work/o-shard" \
  --max-shard-gb 0
absent "$work/o-shard"
absent "$work/w-nan"
# Configs as llm-compressor writes them (vLLM's resolution: ignore first, then name/regex,
# then class "Linear"): targets ["Linear"] with lm_head and the BF16 down_proj ignored must
# read exactly like our own per-module targets.
"$bin" -q export "$model" --uniform NVFP4A16 -o "$work/llmc" > /dev/null 2>&1
cp -r "$work/llmc" "$work/llmc-style"
python3 - "$work/llmc-style/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
q = c["quantization_config"]
q["config_groups"]["group_0"]["targets"] = ["Linear"]
q["ignore"] = ["lm_head", "re:.*mlp\\.down_proj$"]
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
expect 0 "vLLM loader rules: OK" -- "$bin" inspect "$work/llmc-style"
nll_own="$("$bin" -q eval "$work/llmc" --text "$text" --split paragraphs --max-docs 5 2>&1 | grep -o 'NLL [0-9.]*')"
expect 0 "$nll_own" -- "$bin" -q eval "$work/llmc-style" --text "$text" --split paragraphs --max-docs 5
for case in arch layers hidden tok; do
  mkdir -p "$work/m-$case"; cp "$model"/* "$work/m-$case/"
done
sed -i 's/LlamaForCausalLM/GPT2LMHeadModel/; s/"model_type": "llama"/"model_type": "gpt2"/' "$work/m-arch/config.json"
sed -i 's/"num_hidden_layers": 5/"num_hidden_layers": 6/' "$work/m-layers/config.json"
sed -i 's/"hidden_size": 64/"hidden_size": 32/' "$work/m-hidden/config.json"
printf '{"model": {"type": "BPE", "vocab": ' > "$work/m-tok/tokenizer.json"
expect 2 "unsupported architecture" -- "$bin" eval "$work/m-arch" --text "$text" --max-docs 2 --split paragraphs
expect 2 "model.layers.5" -- "$bin" eval "$work/m-layers" --text "$text" --max-docs 2 --split paragraphs
expect 2 "q_proj|shape|hidden" -- "$bin" eval "$work/m-hidden" --text "$text" --max-docs 2 --split paragraphs
expect 2 "tokenizer.json" -- "$bin" eval "$work/m-tok" --text "$text" --max-docs 2 --split paragraphs
expect 2 "stride" -- "$bin" eval "$model" --text "$text" --ctx 16 --stride 16
expect 2 "exactly one" -- "$bin" eval "$model"
expect 2 "max_position_embeddings 512" -- "$bin" eval "$model" --text "$text" --ctx 513 --max-docs 2

# Pre-tokenized input: `tokenize` then `eval --tokens` gives the same numbers as `eval --text`.
"$bin" tokenize "$model" --text "$text" --split paragraphs --max-docs 30 > "$work/ids.txt"
a=$("$bin" eval "$model" --text "$text" --split paragraphs --max-docs 30 --json | grep -E '"(mean_nll|tokens)"')
b=$("$bin" eval "$model" --tokens "$work/ids.txt" --json | grep -E '"(mean_nll|tokens)"')
if [[ -n "$a" && "$a" == "$b" ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: --tokens '$b' != --text '$a'" >&2; fi
echo "1 2 x3" > "$work/badids.txt"
expect 2 "x3" -- "$bin" eval "$model" --tokens "$work/badids.txt"
echo "1 2 99999" > "$work/bigids.txt"
expect 2 "99999" -- "$bin" eval "$model" --tokens "$work/bigids.txt"

# A quantized lm_head unties a tied model, and our own tools read the result; a head whose
# shape refuses the format stays tied (and is listed as kept BF16).
"$bin" -q export "$model" --uniform NVFP4A16 --lm-head NVFP4A16 -o "$work/head" > /dev/null 2>&1
for cmd in "inspect $work/head" "dequantize $work/head -o $work/head_dense" \
           "eval $work/head --text $text --split paragraphs --max-docs 5"; do
  if $bin $cmd > /dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $cmd" >&2; fi
done
out=$("$bin" export "$model" --uniform NVFP4A16 --lm-head INT4 -o "$work/head4" --json 2> /dev/null)
if grep -q '"tie_word_embeddings": true' "$work/head4/config.json" && [[ "$out" == *'"module": "lm_head"'* ]]; then
  pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: INT4 head should stay tied and be listed" >&2; fi

# An output that is, contains or lies inside an input (symlinks and .. resolved) is refused
# before anything is written, even with --overwrite; the source stays intact.
mkdir -p "$work/src"; cp "$model"/* "$work/src/"; ln -s "$work/src" "$work/src-link"
before=$(cat "$work/src"/* | sha256sum)
for o in "$work/src" "$work/src/sub" "$work/src-link" "$work/src/../src/" "$work"; do
  expect 2 "is the input|inside the input|contains the input" -- \
    "$bin" export "$work/src" --uniform MXFP8 -o "$o" --overwrite
done
expect 2 "inside the input" -- "$bin" dequantize "$work/ok" -o "$work/ok/dense" --overwrite
expect 2 "contains the input" -- "$bin" quantize "$work/src" -o "$work" --overwrite --target-bits 5 \
  --calib "$text" --samples 2 --seqlen 16
if [[ "$(cat "$work/src"/* | sha256sum)" == "$before" && ! -e "$work/src/sub" ]]; then
  pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: the source model was modified" >&2; fi
# quantize checks its arguments and the output location before the probe (no work dir made);
# OUT/ puts the work dir beside OUT, not inside it.
expect 2 "target-bits must be" -- "$bin" quantize "$model" -o "$work/q1" --target-bits -1 --calib "$text"
expect 2 "target-size must be positive" -- "$bin" quantize "$model" -o "$work/q1" --target-size 0 --calib "$text"
expect 2 "exactly one" -- "$bin" quantize "$model" -o "$work/q1" --calib "$text"
expect 2 "not above the .* bytes of tensors outside the Linears" -- \
  "$bin" quantize "$model" -o "$work/q1" --target-size 1B --calib "$text"
expect 2 "parent directory" -- "$bin" quantize "$model" -o "$work/none/q1" --target-bits 5 --calib "$text"
absent "$work/q1.work"
"$bin" -q quantize "$model" -o "$work/q2/" --target-bits 8 --calib "$text" --samples 4 --seqlen 32 \
  > /dev/null 2>&1
if [[ -d "$work/q2.work" && ! -e "$work/q2/.work" && -f "$work/q2/config.json" ]]; then
  pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: quantize -o DIR/ work dir placement" >&2; fi

# Non-finite weights are found and named (tensor and index) by every command that reads them,
# and nothing is written.
poison() {  # poison DIR TENSOR FLAT_INDEX VALUE: a copy of the model with one F32 value replaced
  mkdir -p "$1"; cp "$model"/* "$1/"
  python3 - "$1/model.safetensors" "$2" "$3" "$4" <<'PY'
import json, struct, sys
path, name, index, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    info = json.loads(f.read(n))[name]
    assert info["dtype"] == "F32"
    f.seek(8 + n + info["data_offsets"][0] + 4 * index)
    f.write(struct.pack("<f", value))
PY
}
poison "$work/nan-w" model.layers.0.mlp.down_proj.weight 177 nan        # [1, 5]
poison "$work/inf-norm" model.layers.2.input_layernorm.weight 3 inf
poison "$work/nan-emb" model.embed_tokens.weight $((7 * 64 + 2)) nan     # [7, 2]
pat='down_proj.weight" holds NaN at \[1, 5\]'
expect 2 "$pat" -- "$bin" eval "$work/nan-w" --text "$text" --max-docs 2 --split paragraphs
expect 2 "$pat" -- "$bin" probe "$work/nan-w" --calib "$text" --work "$work/nan-probe" --samples 2 --seqlen 16
expect 2 "$pat" -- "$bin" export "$work/nan-w" --uniform MXFP8 -o "$work/nan-out"
absent "$work/nan-out"
expect 2 'input_layernorm.weight" holds an infinity at \[3\]' -- \
  "$bin" export "$work/inf-norm" --uniform NVFP4A16 -o "$work/inf-out"
absent "$work/inf-out"
expect 2 'input_layernorm.weight" holds an infinity' -- "$bin" eval "$work/inf-norm" --text "$text" --max-docs 2 --split paragraphs
expect 2 'embed_tokens.weight" holds NaN at \[7, 2\]' -- "$bin" export "$work/nan-emb" --uniform FP8 -o "$work/emb-out"
absent "$work/emb-out"

# config.json against the tensors: one validation (model::WeightSource::Open) for every command,
# export included, before any work.
for c in vocab inter; do mkdir -p "$work/cfg-$c"; cp "$model"/* "$work/cfg-$c/"; done
sed -i 's/"vocab_size": 512/"vocab_size": 1000/' "$work/cfg-vocab/config.json"
sed -i 's/"intermediate_size": 172/"intermediate_size": 0/' "$work/cfg-inter/config.json"
for cmd in "export --uniform MXFP8 -o $work/cfg-out" "probe --calib $text --work $work/cfg-w" \
           "eval --text $text --max-docs 2"; do
  expect 2 "config implies \[1000, 64\]" -- "$bin" ${cmd%% *} "$work/cfg-vocab" ${cmd#* }
  expect 2 "gate_proj is \[172, 64\], config implies \[0, 64\]" -- "$bin" ${cmd%% *} "$work/cfg-inter" ${cmd#* }
done
absent "$work/cfg-out"

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
