"""Qwen3.5 / Qwen3.6 hybrid checkpoints (Gated DeltaNet + gated attention + MoE with a shared
expert + MTP head + vision tower): our exports against compressed-tensors and transformers.

Sources: the golden fixtures tests/golden/{qwen3_5_moe,qwen3_5}/model (real tensor names,
packed 3-D experts on disk, mtp.*, model.visual.*; scripts/make_golden.py).

* `export --uniform NVFP4A16 --visual-format MXFP8`: experts are written per expert 2-D
  (no packed tensor survives), the MTP head under its own mtp.* names, routers and
  shared_expert_gate BF16 and in `ignore`; every Linear resolves (ct's matcher) to exactly
  one group of its format or to `ignore`; vLLM's fused units (q/k/v, in_proj_qkv+in_proj_z,
  in_proj_b+in_proj_a, shared-expert gate/up, all experts of a layer) share one scheme and
  their NVFP4 global scales; vision Linears carry the --visual-format; inspect passes;
* ct's decompress() of every quantized Linear == bf16(our `dequantize`), bit for bit;
* transformers (the model's own class) loads an export through compressed-tensors and gives
  the logits of the same class loaded from our dense `dequantize` output (MXFP8 for the MoE
  model: see PLAIN_FORMAT);
* bad input: a checkpoint with only part of the MTP head, an unknown layer type, packed and
  per-expert experts mixed in one layer: exit 2 with a message naming the problem.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from compressed_tensors.quantization import QuantizationConfig
from compressed_tensors.utils.match import is_match

import ct_reference as ref
import pqtest

MODELS = ("qwen3_5_moe", "qwen3_5")
# The format of the export transformers loads. transformers 5.23 decompresses MoE experts in
# its own code (integrations/compressed_tensors.py CompressedTensorsDequantize): its NVFP4
# expert path builds the module without weight_global_scale, so NVFP4 experts load wrong
# (off by the global scale) whoever wrote them; ct's own decompress (tested below) is right.
# MXFP8 experts go through the same stacking and load exactly.
PLAIN_FORMAT = {"qwen3_5_moe": "MXFP8", "qwen3_5": "NVFP4A16"}
_LINEAR = torch.nn.Linear(1, 1)
_built: dict[str, dict] = {}


def _golden(model: str) -> Path:
    return pqtest.source_dir() / "tests" / "golden" / model / "model"


def _get(model: str, work_dir: Path) -> dict:
    if pqtest.pq_bin() is None:
        pytest.skip("PQ_BIN not set (run through tests/interop/run.sh)")
    if model not in _built:
        d = work_dir / "hybrid" / model
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        src = _golden(model)
        out, deq, plain = d / "export", d / "dequantized", d / "export-plain"
        pqtest.run_pq("export", src, "--uniform", "NVFP4A16", "--visual-format", "MXFP8",
                      "-o", out)
        pqtest.run_pq("dequantize", out, "-o", deq)
        pqtest.run_pq("export", src, "--uniform", PLAIN_FORMAT[model], "-o", plain)
        pqtest.run_pq("dequantize", plain, "-o", d / "plain-dequantized")
        ours = pqtest.load_checkpoint(out)
        _built[model] = dict(src=src, out=out, deq=deq, plain=plain,
                             plain_deq=d / "plain-dequantized", ours=ours,
                             dense=pqtest.load_checkpoint(deq),
                             source=pqtest.load_checkpoint(src),
                             qconfig=QuantizationConfig.model_validate(
                                 ours.config["quantization_config"]))
    return _built[model]


@pytest.fixture(params=MODELS)
def hy(request, work_dir) -> dict:
    return _get(request.param, work_dir)


def _modules(ckpt: pqtest.Checkpoint) -> set[str]:
    """Modules holding a Linear weight (dense or compressed)."""
    out = set()
    for k in ckpt.tensors:
        m = re.match(r"(.*)\.(weight|weight_packed)$", k)
        if m and ckpt.tensors[k].dim() == 2 and not k.endswith("embed_tokens.weight") \
                and "pos_embed" not in k and not k.endswith("norm.weight"):
            out.add(m.group(1))
    return out


def _group(hy: dict, name: str):
    q = hy["qconfig"]
    groups = [g for g in q.config_groups.values()
              if is_match(name, _LINEAR, g.targets, q.ignore or [])]
    assert len(groups) <= 1, f"{name} matches {len(groups)} groups"
    return groups[0] if groups else None


def _format_of(hy: dict, module: str) -> str:
    g = _group(hy, module)
    if g is None:
        return "BF16"
    hits = [f for f in ("NVFP4A16", "MXFP8") if g.format == ref.CT_FORMAT[f]]
    assert len(hits) == 1, (module, g.format)
    return hits[0]


def test_layout_and_names(hy):
    ours, src = hy["ours"], hy["source"]
    names = set(ours.tensors)
    assert not [n for n in names if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]
    cfg = json.loads((hy["src"] / "config.json").read_text())["text_config"]
    moe = "num_experts" in cfg
    layers = cfg["num_hidden_layers"]
    for prefix in [f"model.language_model.layers.{i}." for i in range(layers)] + ["mtp.layers.0."]:
        if moe:
            for e in range(cfg["num_experts"]):
                for p in ("gate_proj", "up_proj", "down_proj"):
                    assert f"{prefix}mlp.experts.{e}.{p}.weight_packed" in names, (prefix, e, p)
            for r in ("mlp.gate.weight", "mlp.shared_expert_gate.weight"):
                assert ours.dtypes[prefix + r] == "BF16", prefix + r
                assert prefix + r[:-len(".weight")] in hy["qconfig"].ignore
    assert "mtp.fc.weight_packed" in names
    # Everything that is not a Linear passes through with its name (conv1d, A_log, norms...).
    for n in src.tensors:
        if re.search(r"(conv1d\.weight|A_log|dt_bias|norm\.weight|embed_tokens\.weight)$", n):
            assert n in names, n


def test_every_linear_resolves_and_units_share(hy):
    ours = hy["ours"]
    fmt = {m: _format_of(hy, m) for m in _modules(ours)}
    # routers stay BF16
    assert all(fmt[m] == "BF16" for m in fmt if m.endswith(("mlp.gate", "shared_expert_gate")))
    units: dict[str, list[str]] = {}
    for m in fmt:
        for pat, key in [(r"(.*)\.self_attn\.[qkv]_proj$", "qkv"),
                         (r"(.*)\.linear_attn\.in_proj_(qkv|z)$", "qkvz"),
                         (r"(.*)\.linear_attn\.in_proj_[ab]$", "ba"),
                         (r"(.*)\.shared_expert\.(gate|up)_proj$", "shared"),
                         (r"(.*)\.mlp\.experts\.\d+\.\w+$", "experts")]:
            mm = re.match(pat, m)
            if mm:
                units.setdefault(mm.group(1) + "/" + key, []).append(m)
    assert any(k.endswith("/qkvz") for k in units) and any(k.endswith("/ba") for k in units)
    for u, ms in units.items():
        assert len({fmt[m] for m in ms}) == 1, (u, {m: fmt[m] for m in ms})
        if u.endswith("/experts"):
            continue
        gs = {ours.tensors[m + ".weight_global_scale"].item() for m in ms
              if m + ".weight_global_scale" in ours.tensors}
        assert len(gs) <= 1, (u, gs)
    visual = [m for m in fmt if m.startswith("model.visual.")]
    assert visual, "the vision tower's Linears were not exported"
    for m in visual:
        cols = hy["source"].tensors[m + ".weight"].shape[1]
        assert fmt[m] == ("MXFP8" if cols % 32 == 0 else "BF16"), (m, cols, fmt[m])
    assert any(fmt[m] == "MXFP8" for m in visual)
    assert pqtest.run_pq("inspect", hy["out"]).returncode == 0


def test_ct_decompress_equals_our_dequantize(hy):
    probs, n = [], 0
    for m in _modules(hy["ours"]):
        g = _group(hy, m)
        if g is None:
            continue
        local = {k[len(m) + 1:]: v for k, v in hy["ours"].tensors.items()
                 if k.startswith(m + ".") and "." not in k[len(m) + 1:] and not k.endswith("bias")}
        theirs = ref.ct_decompress(local, g)
        mine = hy["dense"].tensors[m + ".weight"].to(torch.bfloat16)
        n += 1
        if not torch.equal(theirs.view(torch.int16), mine.view(torch.int16)):
            probs.append(f"{m}: {int((theirs != mine).sum())} values differ")
    assert n >= 5 and not probs, probs[:8]


def _load(path: Path, quantized: bool):
    import transformers
    from transformers.utils.quantization_config import CompressedTensorsConfig
    cfg = json.loads((path / "config.json").read_text())
    cls = getattr(transformers, cfg["architectures"][0])
    kw = {"quantization_config": CompressedTensorsConfig(dequantize=True)} if quantized else {}
    return cls.from_pretrained(str(path), dtype=torch.bfloat16, **kw).eval()


def test_transformers_loads_export(hy):
    q = _load(hy["plain"], True)
    d = _load(hy["plain_deq"], False)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, q.config.text_config.vocab_size, (2, 11), generator=g)
    with torch.no_grad():
        lq = q(input_ids=ids).logits.float()
        ld = d(input_ids=ids).logits.float()
    assert torch.isfinite(lq).all()
    torch.testing.assert_close(lq, ld, rtol=0.0, atol=1e-5)
    # and the export is not the source (quantization changed the weights)
    s = _load(hy["src"], False)
    with torch.no_grad():
        ls = s(input_ids=ids).logits.float()
    assert (ls - lq).abs().max() > 1e-3


def _refuses(ckpt: Path, *needles: str):
    p = pqtest.run_pq("inspect", ckpt, check=False)
    assert p.returncode == 2, (p.returncode, p.stdout[-500:], p.stderr[-500:])
    for s in needles:
        assert s in p.stderr, (s, p.stderr[-800:])


def test_bad_input(work_dir):
    if pqtest.pq_bin() is None:
        pytest.skip("PQ_BIN not set")
    src = _golden("qwen3_5_moe")
    d = work_dir / "hybrid-bad"
    shutil.rmtree(d, ignore_errors=True)
    # Part of the MTP head missing.
    partial = pqtest.copy_checkpoint(src, d / "partial-mtp")
    pqtest.rewrite_checkpoint(partial, lambda t: {k: v for k, v in t.items() if k != "mtp.fc.weight"})
    _refuses(partial, "mtp.fc")
    # A layer type we do not know.
    odd = pqtest.copy_checkpoint(src, d / "odd-type")
    cfg = json.loads((odd / "config.json").read_text())
    cfg["text_config"]["layer_types"][1] = "sliding_attention"
    (odd / "config.json").write_text(json.dumps(cfg))
    _refuses(odd, "sliding_attention")
    # Packed and per-expert experts in one layer.
    mixed = pqtest.copy_checkpoint(src, d / "mixed-experts")

    def add_expert(t):
        t = dict(t)
        t["model.language_model.layers.0.mlp.experts.0.gate_proj.weight"] = \
            t["model.language_model.layers.0.mlp.experts.gate_up_proj"][0, :16].clone()
        return t
    pqtest.rewrite_checkpoint(mixed, add_expert)
    _refuses(mixed, "mixed")
