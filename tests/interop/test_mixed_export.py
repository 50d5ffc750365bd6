"""prismaquant export MODEL --work W: a MIXED-precision checkpoint (every format at least
once per model), checked against compressed-tensors 0.20 itself.

Per model (stories260K: tied lm_head, in_features 64/172; models/trained/qwen2: q/k/v bias;
a tiny random Qwen3-MoE made here with every in_features a multiple of 128, so INT4 fits;
models/trained/qwen3_5_moe with its experts written 2-D: DeltaNet, gated attention, shared
expert, the MTP head, vision Linears in a fixed format):
`probe` (4 x 64 tokens) + `allocate`, then W/layer_config.json's "formats" is replaced by a
hand-made recipe (every format the model's shapes allow appears on some decision unit,
NVFP4 W4A4 on a fused unit, lm_head not BF16), and

* the config parses and ct resolves every Linear to exactly one group of its intended format
  (or to `ignore` for BF16); top-level format "mixed-precision"; fused siblings (q/k/v,
  gate/up, all experts of an MoE layer: probe.json's "unit") share one scheme, and NVFP4
  Linears of one global-scale group (probe.json's "scale_group": q/k/v, gate/up, each
  expert's gate/up; an expert's down_proj alone) share weight_global_scale and
  input_global_scale;
* input_global_scale == ct's calibration (generate_gparam of the bf16 input amax, max over
  the scale group's members, from probe.json), bit for bit;
* ct's compressor (each scale group as one fused set) makes our bytes; ct's decompression of every
  quantized tensor == our `dequantize` (F32) bit for bit; everything else passes through;
* `inspect` passes and reports the recipe; eval OUT --weights-only == eval of the dense
  dequantized copy exactly, while plain eval OUT (activations quantized) differs;
* the tensor bytes equal the recipe's price (probe.json candidates + other tensors, and our
  own per-format formulas); an untouched allocation's export matches allocate's total;
* two exports (different --threads) are byte-identical;
and export refuses (exit 2) split fused units, a work dir probed from another model, a
recipe from another probe, a format the shape cannot hold, an unknown format.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from compressed_tensors.quantization import QuantizationConfig
from compressed_tensors.quantization.utils import generate_gparam
from compressed_tensors.utils.match import is_match

import ct_reference as ref
import pqtest

ALL_FORMATS = ("BF16", "NVFP4", "NVFP4A16", "MXFP8", "MXFP4", "FP8", "INT4", "INT8")
ACT_QUANT = {"NVFP4", "MXFP8", "MXFP4", "FP8"}          # formats that quantize inputs
MODELS = ("stories260K", "qwen2", "qwen3_moe", "qwen3_5_moe")
# lm_head's format in the recipe (stories: tied, so the export must untie it).
LM_HEAD = {"stories260K": "NVFP4", "qwen2": "MXFP8", "qwen3_moe": "INT4",
           "qwen3_5_moe": "NVFP4A16"}
TRAINED = {"stories260K", "qwen2"}                       # real weights: act. quant costs NLL
_LINEAR = torch.nn.Linear(1, 1)
MAX_LINES = 12

K_MULTIPLE = dict(ref.K_MULTIPLE, NVFP4=16, BF16=None)
TENSORS = dict(ref.TENSORS, NVFP4=dict(ref.TENSORS["NVFP4A16"], input_global_scale="F32"))


def _fail(title: str, lines: list[str]):
    extra = f"\n  ... {len(lines) - MAX_LINES} more" if len(lines) > MAX_LINES else ""
    pytest.fail(f"{title}: {len(lines)} problem(s)\n  " + "\n  ".join(lines[:MAX_LINES]) + extra,
                pytrace=False)


def fits(fmt: str, cols: int) -> bool:
    k = K_MULTIPLE[fmt]
    return k is None or cols % k == 0


def format_bytes(fmt: str, n: int, k: int) -> int:
    """On-disk bytes of one [n, k] Linear in fmt (the README "Formats" table)."""
    nk = n * k
    return {
        "BF16": 2 * nk,
        "NVFP4A16": nk // 2 + nk // 16 + 4,
        "NVFP4": nk // 2 + nk // 16 + 4 + 4,
        "MXFP8": nk + nk // 32,
        "MXFP4": nk // 2 + nk // 32,
        "FP8": nk + 2 * n,
        "INT4": n * ((k * 4 + 31) // 32) * 4 + 2 * n * (k // 128) + 16,
        "INT8": n * ((k * 8 + 31) // 32) * 4 + 2 * n + 16,
    }[fmt]


# ---------------------------------------------------------------- models

def make_qwen3_moe(path: Path) -> Path:
    """A tiny random Qwen3-MoE (transformers' own save_pretrained, bf16): hidden 128,
    moe_intermediate 128, 4 experts, 3 layers (10 decision units with lm_head, enough for 8
    formats), the stories tokenizer (vocab 512)."""
    if (path / "config.json").exists():
        return path
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    torch.manual_seed(7)
    cfg = Qwen3MoeConfig(
        vocab_size=512, hidden_size=128, intermediate_size=256, moe_intermediate_size=128,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        num_experts=4, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1,
        mlp_only_layers=[], max_position_embeddings=512, rms_norm_eps=1e-5,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=None,
        use_sliding_window=False, dtype="bfloat16")
    model = Qwen3MoeForCausalLM(cfg).to(torch.bfloat16)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():   # norms != 1 so that dropping or mixing them shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(pqtest.stories_dir() / f, tmp / f)
    tmp.rename(path)
    return path


def make_qwen3_5_moe(path: Path) -> Path:
    """models/trained/qwen3_5_moe (hybrid DeltaNet + gated attention + MoE with a shared
    expert, MTP head, vision tower) with its packed 3-D experts written per expert 2-D (body
    and MTP), so every source Linear has a `.weight` here; the packed layout itself is
    covered by test_hybrid.py and the golden tests."""
    if (path / "config.json").exists():
        return path
    from safetensors.torch import load_file
    src = pqtest.source_dir() / "models" / "trained" / "qwen3_5_moe"
    sd = load_file(str(src / "model.safetensors"))
    out = {}
    for k, v in sd.items():
        if k.endswith("mlp.experts.gate_up_proj"):
            pre, inter = k[:-len("gate_up_proj")], v.shape[1] // 2
            for e in range(v.shape[0]):
                out[f"{pre}{e}.gate_proj.weight"] = v[e, :inter].clone()
                out[f"{pre}{e}.up_proj.weight"] = v[e, inter:].clone()
        elif k.endswith("mlp.experts.down_proj"):
            pre = k[:-len("down_proj")]
            for e in range(v.shape[0]):
                out[f"{pre}{e}.down_proj.weight"] = v[e].clone()
        else:
            out[k] = v
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pqtest.write_safetensors_file(tmp / "model.safetensors", out)
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / f, tmp / f)
    tmp.rename(path)
    return path


def corpus() -> Path:
    p = pqtest.source_dir().parent / "shared" / "assets" / "corpus-tinystories-valid-slice" / \
        "tinystories_val.txt"
    if not p.exists():
        pytest.skip(f"calibration corpus {p} not found")
    return p


def eval_text() -> Path:
    p = pqtest.source_dir() / "models" / "trained" / "heldout.txt"
    assert p.exists(), p
    return p


# ---------------------------------------------------------------- the recipe

def make_recipe(probe: dict, lm_head: str) -> dict[str, str]:
    """module -> format: every format some unit can hold appears on a unit (scarcest formats
    placed first; NVFP4/NVFP4A16 preferably on a multi-member unit), lm_head gets `lm_head`,
    the rest round-robin over the formats each unit's members can all hold."""
    units: dict[str, list[dict]] = {}
    for li in probe["linears"]:
        units.setdefault(li["unit"], []).append(li)
    names = list(units)
    # Vision Linears are not probed (no candidates): any fixed format their shape holds, but
    # NVFP4 W4A4 (it needs calibrated input scales).
    allowed = {u: [f for f in ALL_FORMATS
                   if all((any(c["format"] == f for c in m["candidates"])
                           or (m.get("is_visual") and f != "NVFP4")) and fits(f, m["cols"])
                          for m in ms)]
               for u, ms in units.items()}
    chosen: dict[str, str] = {}
    if "lm_head" in units:
        assert lm_head in allowed["lm_head"], (lm_head, allowed["lm_head"])
        chosen["lm_head"] = lm_head
    body = [u for u in names if u != "lm_head"]
    needed = [f for f in ALL_FORMATS if any(f in allowed[u] for u in names)]
    needed.sort(key=lambda f: sum(f in allowed[u] for u in body))
    for f in needed:
        if f in chosen.values():
            continue
        free = [u for u in body if u not in chosen and f in allowed[u]]
        if not free:
            continue
        if f.startswith("NVFP4"):
            free.sort(key=lambda u: -len(units[u]) if len(units[u]) > 1 else 0)
        chosen[free[0]] = f
    i = 0
    for u in body:
        if u in chosen:
            continue
        while ALL_FORMATS[i % len(ALL_FORMATS)] not in allowed[u]:
            i += 1
        chosen[u] = ALL_FORMATS[i % len(ALL_FORMATS)]
        i += 1
    return {m["module"]: chosen[u] for u, ms in units.items() for m in ms}


# ---------------------------------------------------------------- the pipeline, once per model

@dataclass
class Mixed:
    model: str
    src_dir: Path
    work: Path
    out: Path
    out2: Path
    deq: Path
    alloc_out: Path
    probe: dict
    alloc_config: dict
    recipe: dict[str, str]
    export_json: dict
    alloc_export_json: dict
    src: pqtest.Checkpoint = None
    ours: pqtest.Checkpoint = None
    dense: pqtest.Checkpoint = None
    rtn: pqtest.Checkpoint = None
    qconfig: QuantizationConfig = None
    units: dict[str, list[str]] = field(default_factory=dict)
    scale_groups: dict[str, list[str]] = field(default_factory=dict)
    linfo: dict[str, dict] = field(default_factory=dict)

    def group_for(self, name: str):
        groups = [g for g in self.qconfig.config_groups.values()
                  if is_match(name, _LINEAR, g.targets, self.qconfig.ignore or [])]
        assert len(groups) <= 1, f"{name} matches {len(groups)} config groups"
        return groups[0] if groups else None

    def quantized(self) -> list[str]:
        return [m for m, f in self.recipe.items() if f != "BF16"]

    def local(self, m: str) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.ours.module(m).items() if k != "bias"}


def _build(model: str, root: Path) -> Mixed:
    src_dir = {"stories260K": lambda: pqtest.stories_dir(),
               "qwen2": lambda: pqtest.source_dir() / "models" / "trained" / "qwen2",
               "qwen3_moe": lambda: make_qwen3_moe(root / "models" / "qwen3_moe-k128"),
               "qwen3_5_moe": lambda: make_qwen3_5_moe(root / "models" / "qwen3_5_moe-2d")}[model]()
    assert (src_dir / "config.json").exists(), src_dir
    d = root / "mixed" / model
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    work = d / "work"
    calib = ["--calib", corpus()]
    if model == "qwen3_moe":   # the pre-tokenized path: our tokenizer on the first 400 lines
        lines = corpus().read_text(encoding="utf-8").splitlines(keepends=True)[:400]
        (d / "calib.txt").write_text("".join(lines), encoding="utf-8")
        toks = pqtest.run_pq("tokenize", src_dir, "--text", d / "calib.txt", "--split",
                             "paragraphs").stdout
        (d / "calib.tok").write_text(toks)
        calib = ["--calib-tokens", d / "calib.tok"]
    pqtest.run_pq("probe", src_dir, *calib, "--work", work, "--samples", 4, "--seqlen", 64)
    pqtest.run_pq("allocate", "--work", work, "--target-bits", 6)
    probe = json.loads((work / "probe.json").read_text())
    alloc_config = json.loads((work / "layer_config.json").read_text())
    alloc_out = d / "alloc-export"
    alloc_json = json.loads(pqtest.run_pq("export", src_dir, "--work", work, "-o", alloc_out,
                                          "--json").stdout)

    recipe = make_recipe(probe, LM_HEAD[model])
    cfg = dict(alloc_config, formats=recipe)
    (work / "layer_config.json").write_text(json.dumps(cfg, indent=1))
    out, out2, deq = d / "mixed", d / "mixed-again", d / "mixed-dequantized"
    export_json = json.loads(pqtest.run_pq("export", src_dir, "--work", work, "-o", out,
                                           "--json").stdout)
    pqtest.run_pq("export", src_dir, "--work", work, "-o", out2, "--threads", 1)
    pqtest.run_pq("dequantize", out, "-o", deq)
    # The default export runs GPTQ + scale search; the compressor comparison needs RTN.
    out_rtn = d / "mixed-rtn"
    pqtest.run_pq("export", src_dir, "--work", work, "-o", out_rtn, "--passes", "rtn")
    mx = Mixed(model, src_dir, work, out, out2, deq, alloc_out, probe, alloc_config, recipe,
               export_json, alloc_json)
    mx.src = pqtest.load_checkpoint(src_dir)
    mx.ours = pqtest.load_checkpoint(out)
    mx.rtn = pqtest.load_checkpoint(out_rtn)
    mx.dense = pqtest.load_checkpoint(deq)
    assert mx.ours.qconfig is not None, f"{out}/config.json has no quantization_config"
    mx.qconfig = QuantizationConfig.model_validate(mx.ours.qconfig)
    for li in probe["linears"]:
        mx.units.setdefault(li["unit"], []).append(li["module"])
        mx.scale_groups.setdefault(li["scale_group"], []).append(li["module"])
        mx.linfo[li["module"]] = li
    return mx


_built: dict[str, Mixed | Exception] = {}


@pytest.fixture(params=MODELS)
def mx(request, work_dir) -> Mixed:
    return _get(request.param, work_dir)


def _get(model: str, work_dir: Path) -> Mixed:
    """The pipeline for one model, run once per session (a failure is re-raised)."""
    if pqtest.pq_bin() is None:
        pytest.skip("PQ_BIN not set (run through tests/interop/run.sh)")
    if model not in _built:
        try:
            _built[model] = _build(model, work_dir)
        except (AssertionError, OSError) as e:
            _built[model] = e
    if isinstance(_built[model], Exception):
        raise _built[model]
    return _built[model]


def _group_format(g) -> str:
    """Our format id whose ct scheme this config group is (exactly one must match)."""
    hits = []
    for f in ALL_FORMATS[1:]:
        want = ref.expected_scheme(f)
        if (g.format == ref.CT_FORMAT[f] and not ref.args_diff(g.weights, want.weights)
                and not ref.args_diff(g.input_activations, want.input_activations)
                and g.output_activations is None):
            hits.append(f)
    assert len(hits) == 1, f"group {g.targets[:3]}... is {hits or 'no known scheme'}"
    return hits[0]


# ---------------------------------------------------------------- the recipe itself

def test_recipe_covers_every_format(mx: Mixed):
    used = set(mx.recipe.values())
    possible = {f for f in ALL_FORMATS
                if any(fits(f, li["cols"]) for li in mx.probe["linears"])}
    assert used == possible, f"recipe uses {sorted(used)}, shapes allow {sorted(possible)}"
    if mx.model != "stories260K":      # stories: every in_features is 64 or 172
        assert used == set(ALL_FORMATS)
    assert mx.recipe.get("lm_head", "BF16") != "BF16"
    nv = [u for u, ms in mx.units.items() if mx.recipe[ms[0]] == "NVFP4"]
    assert any(len(mx.units[u]) > 1 for u in nv), f"NVFP4 only on single Linears: {nv}"
    layer = json.loads((mx.work / "layer_config.json").read_text())
    assert layer["probe_inputs"] == mx.probe["inputs"]


# ---------------------------------------------------------------- config

def test_config_resolves_each_linear_to_its_format(mx: Mixed):
    raw, qc = mx.ours.qconfig, mx.qconfig
    probs = []
    if raw.get("quant_method") != "compressed-tensors":
        probs.append(f"quant_method {raw.get('quant_method')!r}")
    if raw.get("quantization_status") != "compressed":
        probs.append(f"quantization_status {raw.get('quantization_status')!r}")
    gfmt = {}
    for gname, g in qc.config_groups.items():
        try:
            gfmt[id(g)] = _group_format(g)
        except AssertionError as e:
            probs.append(f"{gname}: {e}")
        if raw["config_groups"][gname].get("format") != g.format:
            probs.append(f"{gname}: raw format {raw['config_groups'][gname].get('format')!r}")
    ct_formats = {ref.CT_FORMAT[f] for f in set(mx.recipe.values()) if f != "BF16"}
    want_top = "mixed-precision" if len(ct_formats) > 1 else next(iter(ct_formats))
    if raw.get("format") != want_top:
        probs.append(f"top-level format {raw.get('format')!r}, want {want_top!r}")
    ignore = qc.ignore or []
    for m, f in mx.recipe.items():
        g = mx.group_for(m)
        if f == "BF16":
            if g is not None:
                probs.append(f"{m}: BF16 but targeted by a {gfmt.get(id(g))} group")
            elif not is_match(m, _LINEAR, ignore) and f"{m}.weight" in mx.ours.tensors:
                probs.append(f"{m}: BF16 Linear not listed in ignore")
        elif g is None:
            probs.append(f"{m}: {f} but no config group targets it")
        elif gfmt.get(id(g)) != f:
            probs.append(f"{m}: resolves to a {gfmt.get(id(g))} group, recipe says {f}")
    # one group per format, none empty
    counts = {}
    for g in qc.config_groups.values():
        counts[gfmt.get(id(g))] = counts.get(gfmt.get(id(g)), 0) + 1
    for f, n in counts.items():
        if n != 1:
            probs.append(f"{n} groups for {f}")
    if set(counts) != {f for f in mx.recipe.values() if f != "BF16"}:
        probs.append(f"groups for {sorted(map(str, counts))}, recipe uses "
                     f"{sorted(set(mx.recipe.values()) - {'BF16'})}")
    tied_src = mx.src.config.get("tie_word_embeddings", False)
    if tied_src and mx.recipe.get("lm_head", "BF16") != "BF16":
        if mx.ours.config.get("tie_word_embeddings") is not False:
            probs.append("lm_head quantized but tie_word_embeddings is not false")
    if probs:
        _fail(f"{mx.model} mixed config", probs)


def test_fused_siblings_share_scheme_and_scales(mx: Mixed):
    probs = []
    for unit, members in mx.units.items():
        fmt = mx.recipe[members[0]]
        if any(mx.recipe[m] != fmt for m in members):
            probs.append(f"{unit}: recipe bug")
            continue
        groups = {id(mx.group_for(m)) for m in members}
        if len(groups) != 1:
            probs.append(f"{unit}: members resolve to {len(groups)} different schemes")
        if not fmt.startswith("NVFP4"):
            for m in members:
                for k in ("weight_global_scale", "input_global_scale"):
                    if f"{m}.{k}" in mx.ours.tensors:
                        probs.append(f"{m}: {fmt} but has {k}")
    for unit, members in mx.scale_groups.items():
        fmt = mx.recipe[members[0]]
        if not fmt.startswith("NVFP4"):
            continue
        keys = ["weight_global_scale"] + (["input_global_scale"] if fmt == "NVFP4" else [])
        for k in keys:
            vals = [mx.ours.tensors.get(f"{m}.{k}") for m in members]
            if any(v is None for v in vals):
                probs.append(f"{unit}: {k} missing on "
                             f"{[m for m, v in zip(members, vals) if v is None]}")
                continue
            if any(ref.raw_bytes(v) != ref.raw_bytes(vals[0]) or v.shape != vals[0].shape
                   for v in vals):
                probs.append(f"{unit}: {k} differs among siblings: "
                             f"{sorted({float(v.flatten()[0]) for v in vals})}")
        if fmt == "NVFP4A16" and any(f"{m}.input_global_scale" in mx.ours.tensors
                                     for m in members):
            probs.append(f"{unit}: NVFP4A16 with an input_global_scale")
    if probs:
        _fail(f"{mx.model} fused siblings", probs)


def test_input_global_scale_is_cts_calibration(mx: Mixed):
    """input_global_scale == generate_gparam(-a, a), a = bf16(max input_amax over the scale
    group) (llm-compressor's static_minmax observer on bf16 activations):
    NvFp4InputGlobalScale."""
    probs, checked = [], 0
    for unit, members in mx.scale_groups.items():
        if mx.recipe[members[0]] != "NVFP4":
            continue
        amax = max(torch.tensor(mx.linfo[m]["input_amax"], dtype=torch.float32).abs()
                   for m in members)
        a = amax.to(torch.bfloat16).reshape(1)
        want = generate_gparam(-a, a)
        assert want.dtype == torch.float32
        for m in members:
            got = mx.ours.tensors.get(f"{m}.input_global_scale")
            if got is None:
                probs.append(f"{m}: no input_global_scale")
                continue
            checked += 1
            if mx.ours.dtypes[f"{m}.input_global_scale"] != "F32" or got.numel() != 1:
                probs.append(f"{m}.input_global_scale: {mx.ours.dtypes[f'{m}.input_global_scale']}"
                             f" {list(got.shape)}")
            elif ref.raw_bytes(got.reshape(1)) != ref.raw_bytes(want.reshape(1)):
                probs.append(f"{m}.input_global_scale {got.item()!r}, ct {want.item()!r} "
                             f"(unit amax {amax.item()!r})")
    assert checked or probs, "no NVFP4 Linear checked"
    if probs:
        _fail(f"{mx.model} input_global_scale", probs)


# ---------------------------------------------------------------- tensors

def test_tensor_set_and_passthrough(mx: Mixed):
    probs, expected = [], set()
    for m, f in mx.recipe.items():
        if f == "BF16":
            continue
        for local, dt in TENSORS[f].items():
            name = f"{m}.{local}"
            expected.add(name)
            got = mx.ours.dtypes.get(name)
            if got != dt:
                probs.append(f"{name}: {'missing' if got is None else got}, want {dt} ({f})")
    qweights = {f"{m}.weight" for m in mx.quantized()}
    for name, t in mx.src.tensors.items():
        if name in qweights:
            continue
        expected.add(name)
        if name not in mx.ours.tensors:
            probs.append(f"{name}: missing (pass-through)")
        elif mx.ours.dtypes[name] != "BF16":
            probs.append(f"{name}: dtype {mx.ours.dtypes[name]}, want BF16")
        else:
            mm = ref.compare_tensor(name, mx.ours.tensors[name], pqtest.to_bf16(t))
            if mm:
                probs.append(f"pass-through {mm}")
    tied_head = mx.recipe.get("lm_head", "BF16") != "BF16" and "lm_head.weight" not in \
        mx.src.tensors
    for name in sorted(set(mx.ours.tensors) - expected):
        if tied_head and name.startswith("lm_head."):
            continue
        probs.append(f"{name}: unexpected tensor ({mx.ours.dtypes[name]})")
    if mx.model == "qwen2":
        biases = [n for n in mx.src.tensors if n.endswith(("q_proj.bias", "k_proj.bias",
                                                            "v_proj.bias"))]
        assert len(biases) == 12, biases
    if probs:
        _fail(f"{mx.model} mixed tensors", probs)


def _ct_compress_unit(weights: dict[str, torch.Tensor], scheme):
    """ref.ct_compress with one global-scale group as one fused set (our rule: the group's
    NVFP4 weight global scale comes from its largest amax)."""
    orig = ref.fused_sets
    ref.fused_sets = lambda names: [sorted(names)]
    try:
        return ref.ct_compress(weights, scheme)
    finally:
        ref.fused_sets = orig


def test_ct_compressor_produces_our_bytes(mx: Mixed):
    """With --passes rtn, ct's own compressor on the same bf16 weights writes our bytes."""
    probs = []
    head_src = mx.src.tensors.get("lm_head.weight", mx.src.tensors.get("model.embed_tokens.weight"))
    for unit, members in mx.scale_groups.items():
        fmt = mx.recipe[members[0]]
        if fmt == "BF16":
            continue
        scheme = mx.group_for(members[0]).model_copy(deep=True)
        weights = {m: pqtest.to_bf16(head_src if m == "lm_head" else mx.src.tensors[f"{m}.weight"])
                   for m in members}
        theirs = _ct_compress_unit(weights, scheme)
        for m in members:
            ours = {k: v for k, v in mx.rtn.module(m).items()
                    if k not in ("bias", "input_global_scale")}
            th = {k: v for k, v in theirs[m].items() if k != "input_global_scale"}
            for k in sorted(set(ours) | set(th)):
                if k not in ours:
                    probs.append(f"{m}.{k}: ct writes it, we do not")
                elif k not in th:
                    probs.append(f"{m}.{k}: we write it, ct does not")
                else:
                    mm = ref.compare_tensor(f"{m}.{k}", ours[k], th[k])
                    if mm:
                        probs.append(f"{fmt} {mm}")
    if probs:
        _fail(f"{mx.model}: ct compressor vs our mixed export", probs)


def test_ct_decompress_equals_our_dequantize(mx: Mixed):
    """ct's decompress() (bf16) == bf16(our F32 dequantize), and ct's decode graph run in f32
    == our F32 dequantize, bit for bit, for every quantized Linear of every format."""
    probs, seen = [], set()
    for m in mx.quantized():
        fmt = mx.recipe[m]
        seen.add(fmt)
        scheme = mx.group_for(m)
        local = {k: v for k, v in mx.local(m).items() if k != "input_global_scale"}
        name = f"{m}.weight"
        if mx.dense.dtypes.get(name) != "F32":
            probs.append(f"{name}: dequantized dtype {mx.dense.dtypes.get(name)}, want F32")
            continue
        ours32 = mx.dense.tensors[name]
        theirs = ref.ct_decompress(local, scheme)
        if theirs.dtype != torch.bfloat16 or theirs.shape != ours32.shape:
            probs.append(f"{m}: ct decompressed to {theirs.dtype} {list(theirs.shape)}")
            continue
        d = theirs.view(torch.int16) != ours32.to(torch.bfloat16).view(torch.int16)
        if d.any():
            at = tuple(d.nonzero()[0].tolist())
            probs.append(f"{m} ({fmt}): {int(d.sum())} of {d.numel()} differ (bf16); first {at}:"
                         f" ct {theirs[at].item()!r} ours {ours32[at].item()!r}")
        f32 = ref.ct_decompress_f32(local, scheme, fmt)
        d = f32.view(torch.int32) != ours32.view(torch.int32)
        if d.any():
            at = tuple(d.nonzero()[0].tolist())
            probs.append(f"{m} ({fmt}): {int(d.sum())} of {d.numel()} differ (f32 graph); "
                         f"first {at}: ct {f32[at].item()!r} ours {ours32[at].item()!r}")
    assert seen == set(mx.recipe.values()) - {"BF16"}
    if probs:
        _fail(f"{mx.model}: ct decompress vs our dequantize", probs)


def test_dequantized_copy(mx: Mixed):
    """The dense copy: F32 weight per quantized Linear, everything else as exported, no
    quantization_config (so it runs without activation quantization)."""
    probs = []
    if mx.dense.qconfig is not None:
        probs.append("dequantized copy still has a quantization_config")
    qnames = {f"{m}.{k}" for m in mx.quantized() for k in TENSORS[mx.recipe[m]]}
    for m in mx.quantized():
        w = mx.dense.tensors.get(f"{m}.weight")
        if w is None or list(w.shape) != [mx.linfo[m]["rows"], mx.linfo[m]["cols"]]:
            probs.append(f"{m}.weight: {None if w is None else list(w.shape)}")
    for name, t in mx.ours.tensors.items():
        if name in qnames:
            if name in mx.dense.tensors and not name.endswith(".weight"):
                probs.append(f"{name}: compressed tensor left in the dense copy")
            continue
        if name not in mx.dense.tensors:
            probs.append(f"{name}: missing")
        else:
            mm = ref.compare_tensor(name, mx.dense.tensors[name], t)
            if mm:
                probs.append(str(mm))
    extra = set(mx.dense.tensors) - set(mx.ours.tensors) - {f"{m}.weight" for m in mx.quantized()}
    probs += [f"{n}: unexpected in the dense copy" for n in sorted(extra)]
    if probs:
        _fail(f"{mx.model}: dequantized copy", probs)


def test_inspect_passes_and_reports_the_recipe(mx: Mixed):
    p = pqtest.run_pq("inspect", mx.out, check=False)
    assert p.returncode == 0, f"inspect rc {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-2000:]}"
    rep = json.loads(pqtest.run_pq("inspect", mx.out, "--json").stdout)
    got = {li["module"]: li["format"] for li in rep["linears"]}
    want = dict(mx.recipe)
    diff = sorted(m for m in set(got) | set(want) if got.get(m) != want.get(m))
    assert not diff, [(m, got.get(m), want.get(m)) for m in diff[:MAX_LINES]]


# ---------------------------------------------------------------- eval

def _nll(*args) -> float:
    p = pqtest.run_pq("eval", *args, "--text", eval_text(), "--split", "paragraphs",
                      "--max-docs", 24, "--json")
    return json.loads(p.stdout)["mean_nll"]


def test_eval_matches_dequantized_with_weights_only(mx: Mixed):
    """The dense copy has no activation quantization: eval OUT --weights-only equals it, plain
    eval OUT (NVFP4/MXFP*/FP8 inputs quantized at run time) does not."""
    act = set(mx.recipe.values()) & ACT_QUANT
    assert act, "recipe has no activation-quantizing format"
    full = _nll(mx.out)
    wonly = _nll(mx.out, "--weights-only")
    dense = _nll(mx.deq)
    base = _nll(mx.src_dir)
    msg = (f"nll: source {base!r}, OUT {full!r}, OUT --weights-only {wonly!r}, "
           f"dequantized {dense!r}")
    assert abs(wonly - dense) < 1e-9, msg
    assert full != dense, msg
    if mx.model in TRAINED:
        assert full > wonly, msg
        assert wonly > base, msg


# ---------------------------------------------------------------- bytes

def _tensor_bytes(ckpt: Path) -> int:
    total = 0
    for f in pqtest.shard_files(ckpt):
        for k, v in pqtest.read_header(f).items():
            if k != "__metadata__":
                a, b = v["data_offsets"]
                total += b - a
    return total


def test_bytes_match_the_recipe_price(mx: Mixed):
    got = _tensor_bytes(mx.out)
    # (a) the allocator's own price list: probe candidates + other tensors (lm_head tied and
    # BF16 costs nothing).
    tied = mx.probe["model"]["tie_word_embeddings"]
    by_probe = mx.probe["model"]["other_tensor_bytes"]
    for m, f in mx.recipe.items():
        li = mx.linfo[m]
        if li["is_lm_head"] and tied and f == "BF16":
            continue
        cands = {c["format"]: c["bytes"] for c in li["candidates"]}
        by_probe += format_bytes(f, li["rows"], li["cols"]) if li.get("is_visual") else cands[f]
    # (b) our own formulas on the source: non-Linear tensors as bf16 + per-format bytes.
    lin_weights = {f"{m}.weight" for m in mx.recipe}
    other = sum(t.numel() * 2 for n, t in mx.src.tensors.items() if n not in lin_weights)
    by_formula = other + sum(format_bytes(f, mx.linfo[m]["rows"], mx.linfo[m]["cols"])
                             for m, f in mx.recipe.items()
                             if not (mx.linfo[m]["is_lm_head"] and tied and f == "BF16"))
    assert mx.probe["model"]["other_tensor_bytes"] == other
    assert got == by_formula, f"checkpoint {got} bytes, formulas {by_formula}"
    assert got == by_probe, f"checkpoint {got} bytes, probe price {by_probe}"
    assert mx.export_json["total_bytes"] == got, mx.export_json["total_bytes"]
    # allocate's own allocation: its predicted total is what export writes
    want = mx.alloc_config["achieved"]["total_bytes"]
    assert _tensor_bytes(mx.alloc_out) == want == mx.alloc_export_json["total_bytes"], \
        (_tensor_bytes(mx.alloc_out), want, mx.alloc_export_json["total_bytes"])


def test_export_is_deterministic(mx: Mixed):
    """Two exports of the same work dir (all threads / --threads 1) are byte-identical."""
    a = sorted(p.relative_to(mx.out) for p in mx.out.rglob("*") if p.is_file())
    b = sorted(p.relative_to(mx.out2) for p in mx.out2.rglob("*") if p.is_file())
    assert a == b
    diff = [str(p) for p in a if (mx.out / p).read_bytes() != (mx.out2 / p).read_bytes()]
    assert not diff, f"differ between two exports: {diff}"


# ---------------------------------------------------------------- refusals

def _refused(mx: Mixed, work: Path, label: str, model_dir: Path | None = None):
    out = mx.work.parent / f"refused-{label}"
    p = pqtest.run_pq("export", model_dir or mx.src_dir, "--work", work, "-o", out, check=False)
    assert not out.exists() or not any(out.iterdir()), f"{label}: refused export left files"
    return p, p.stderr + p.stdout


def _work_copy(mx: Mixed, label: str, edit) -> Path:
    w = mx.work.parent / f"work-{label}"
    shutil.rmtree(w, ignore_errors=True)
    shutil.copytree(mx.work, w)
    cfg = json.loads((w / "layer_config.json").read_text())
    edit(cfg)
    (w / "layer_config.json").write_text(json.dumps(cfg, indent=1))
    return w


@pytest.mark.parametrize("model", ["stories260K", "qwen3_moe"])
def test_refuses_split_fused_unit(model, work_dir):
    mx = _get(model, work_dir)
    if model == "stories260K":
        unit = "model.layers.0.qkv"
        a, b = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"
    else:
        unit = "model.layers.1.experts"
        a, b = "model.layers.1.mlp.experts.0.gate_proj", "model.layers.1.mlp.experts.3.down_proj"
    assert mx.linfo[a]["unit"] == unit == mx.linfo[b]["unit"]

    def edit(cfg):
        cfg["formats"][a] = "FP8"
        cfg["formats"][b] = "INT8"
    p, text = _refused(mx, _work_copy(mx, "split", edit), "split")
    assert p.returncode == 2, f"rc {p.returncode}: {text[-2000:]}"
    assert unit in text, text[-2000:]



def test_refuses_work_dir_of_another_model(work_dir):
    stories = _get("stories260K", work_dir)
    qwen2 = _get("qwen2", work_dir)
    p, text = _refused(stories, stories.work, "other-model", model_dir=qwen2.src_dir)
    assert p.returncode == 2, f"rc {p.returncode}: {text[-2000:]}"
    assert "different model" in text, text[-2000:]


def test_refuses_other_probe_bad_shape_unknown_format(work_dir):
    mx = _get("stories260K", work_dir)
    cases = {
        "other-probe": (lambda c: c["probe_inputs"].__setitem__("seed", 12345), "another probe"),
        "int4-k64": (lambda c: [c["formats"].__setitem__(m, "INT4") for m in
                                ("model.layers.2.self_attn.o_proj",)], "o_proj"),
        "unknown": (lambda c: c["formats"].__setitem__("model.layers.2.self_attn.o_proj", "FP3"),
                    "FP3"),
        "missing": (lambda c: c["formats"].pop("model.layers.2.mlp.down_proj"), "down_proj"),
    }
    bad = []
    for label, (edit, needle) in cases.items():
        p, text = _refused(mx, _work_copy(mx, label, edit), label)
        if p.returncode != 2 or needle not in text:
            bad.append(f"{label}: rc {p.returncode}, {text.strip()[-300:]!r}")
    assert not bad, bad
