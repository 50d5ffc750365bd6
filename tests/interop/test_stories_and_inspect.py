"""(c) stories260K shape rules; (d) NVFP4 W4A4 is refused, `inspect` passes every export
and fails deliberately broken copies."""

from __future__ import annotations

import json
import re

import pytest
import torch
from compressed_tensors.quantization import QuantizationConfig
from compressed_tensors.utils.match import is_match

import ct_reference as ref
import pqtest

_LINEAR = torch.nn.Linear(1, 1)


def _targeted(qc: QuantizationConfig, name: str) -> bool:
    return any(is_match(name, _LINEAR, g.targets, qc.ignore or [])
               for g in qc.config_groups.values())


def _ignored(qc: QuantizationConfig, name: str) -> bool:
    return is_match(name, _LINEAR, qc.ignore or [])


# ---------------------------------------------------------------- (c) stories260K

def test_stories_nvfp4a16_keeps_down_proj_bf16(exports, sources):
    out, _ = exports.get("stories260K", "NVFP4A16")
    ck = pqtest.load_checkpoint(out)
    qc = QuantizationConfig.model_validate(ck.qconfig)
    layers = {int(m.group(1)) for k in sources("stories260K").tensors
              if (m := re.match(r"model\.layers\.(\d+)\.", k))}
    assert layers == set(range(5))
    for i in sorted(layers):
        down = f"model.layers.{i}.mlp.down_proj"
        assert ck.dtypes.get(f"{down}.weight") == "BF16", down
        assert f"{down}.weight_packed" not in ck.tensors
        assert _ignored(qc, down) and not _targeted(qc, down), down
        for leaf in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                     "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj"):
            m = f"model.layers.{i}.{leaf}"
            assert ck.dtypes.get(f"{m}.weight_packed") == "U8", m
            assert _targeted(qc, m) and not _ignored(qc, m), m
    assert "lm_head.weight" not in ck.tensors          # tied to the embeddings
    assert ck.dtypes["model.embed_tokens.weight"] == "BF16"


def test_stories_int4_leaves_every_linear_bf16(exports, sources):
    out, _ = exports.get("stories260K", "INT4")
    ck = pqtest.load_checkpoint(out)
    qc = QuantizationConfig.model_validate(ck.qconfig)
    lin = pqtest.source_linears(sources("stories260K"))
    assert len(lin) == 35
    for m, w in lin.items():
        assert w.shape[1] in (64, 172)
        assert ck.dtypes.get(f"{m}.weight") == "BF16", m
        assert not any(k.startswith(m + ".weight_") for k in ck.tensors), m
        assert _ignored(qc, m) and not _targeted(qc, m), m
    assert not any(ck.dtypes[k] == "I32" for k in ck.tensors)


# ---------------------------------------------------------------- (d) refusal, inspect

def test_nvfp4_w4a4_is_refused(model_dirs, work_dir):
    if pqtest.pq_bin() is None:
        pytest.skip("PQ_BIN not set")
    out = work_dir / "refused-nvfp4"
    p = pqtest.run_pq("export", model_dirs["llama"], "--uniform", "NVFP4", "-o", out,
                      check=False)
    assert p.returncode != 0, "NVFP4 (W4A4) export was accepted"
    assert "NVFP4A16" in (p.stderr + p.stdout), p.stderr
    assert not out.exists() or not any(out.iterdir()), "refused export left files behind"


INSPECT_CASES = [(m, f) for m in pqtest.MODELS for f in ref.FORMATS]


@pytest.mark.parametrize("model,fmt", INSPECT_CASES, ids=[f"{m}-{f}" for m, f in INSPECT_CASES])
def test_inspect_passes_export(model, fmt, exports):
    out, _ = exports.get(model, fmt)
    p = pqtest.run_pq("inspect", out, check=False)
    assert p.returncode == 0, f"inspect rc {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    pj = pqtest.run_pq("inspect", out, "--json", check=False)
    assert pj.returncode == 0, pj.stderr[-2000:]
    json.loads(pj.stdout)


def _broken_copies(out, work_dir, fmt):
    """(label, path) of deliberately broken copies of an export."""
    ck = pqtest.load_checkpoint(out)
    qmods = sorted({k.rsplit(".", 1)[0] for k in ck.tensors if k.endswith(".weight_scale")})
    assert qmods, "nothing quantized"
    victim = next((m for m in qmods if m.endswith("k_proj")), qmods[0])
    cases = []

    def make(label, edit=None, cfg_edit=None):
        dst = pqtest.copy_checkpoint(out, work_dir / "broken" / f"{out.name}-{label}")
        if edit:
            pqtest.rewrite_checkpoint(dst, edit)
        if cfg_edit:
            cfg = json.loads((dst / "config.json").read_text())
            cfg_edit(cfg)
            (dst / "config.json").write_text(json.dumps(cfg, indent=2))
        cases.append((label, dst))

    def drop(name):
        return lambda t: {k: v for k, v in t.items() if k != name}

    def replace(name, fn):
        return lambda t: {k: (fn(v) if k == name else v) for k, v in t.items()}

    make("no-weight_scale", drop(f"{victim}.weight_scale"))
    if fmt == "NVFP4A16":
        make("sibling-global-scale",
             replace(f"{victim}.weight_global_scale", lambda v: v * 2))
        # siblings still agree, but the value is unusable (vLLM divides by it)
        for label, value in (("global-scale-inf", float("inf")), ("global-scale-zero", 0.0),
                             ("global-scale-nan", float("nan"))):
            make(label, lambda t, value=value: {
                k: (torch.full_like(v, value) if k.endswith(".weight_global_scale") else v)
                for k, v in t.items()})
    if "weight_packed" in ref.TENSORS[fmt]:
        make("scale-dtype-f32", replace(f"{victim}.weight_scale", lambda v: v.to(torch.float32)))
        make("packed-shape", replace(f"{victim}.weight_packed", lambda v: v[:, :-1].contiguous()))
    else:
        make("weight-as-bf16", replace(f"{victim}.weight", lambda v: v.to(torch.bfloat16)))

    def unignore(cfg):
        cfg["quantization_config"]["ignore"] = []
        for g in cfg["quantization_config"]["config_groups"].values():
            g["targets"] = ["Linear"]
    make("lm_head-targeted", cfg_edit=unignore)
    make("no-quant-config", cfg_edit=lambda c: c.pop("quantization_config"))
    return cases


@pytest.mark.parametrize("fmt", ref.FORMATS)
def test_inspect_fails_broken_copies(fmt, exports, work_dir):
    out, _ = exports.get("llama", fmt)
    passed = []
    for label, path in _broken_copies(out, work_dir, fmt):
        p = pqtest.run_pq("inspect", path, check=False)
        if p.returncode == 0:
            passed.append(label)
    assert not passed, f"inspect accepted broken {fmt} copies: {passed}"
