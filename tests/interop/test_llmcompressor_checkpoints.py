"""Checkpoints written by llm-compressor itself (tests/data/llmcompressor, README.md there:
llm-compressor 0.14.0.1 in its own venv, made once and committed) read by our tools:

* `inspect` accepts each (the vLLM loader rules), reporting per Linear the format the config
  gives it; the exceptions are llm-compressor's own defects, reported as such: model_free_ptq
  quantizing the embedding when not told to ignore it (an error naming the tensor and the
  fix), and per-expert gate/up NVFP4 global scales left unshared (vLLM would dequantize up
  with gate's scale);
* our `dequantize` of every quantized Linear equals compressed-tensors' decompression bit for
  bit (ct's decompress() in bf16, and its decode graph evaluated in f32);
* our `eval` mean NLL equals transformers' on the same checkpoint (loaded through
  CompressedTensorsConfig(dequantize=True), float32) once our weights are rounded to bf16 as
  compressed-tensors' decompression rounds them, and plain `eval` (activations quantized where
  the scheme says so) runs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from compressed_tensors.quantization import QuantizationScheme
from safetensors.torch import load_file
from compressed_tensors.utils.match import is_match

import ct_reference as ref
import pqtest

sys.path.insert(0, str(pqtest.source_dir() / "scripts"))
import eval_fixture_torch as ev  # noqa: E402

DATA = pqtest.source_dir() / "tests" / "data" / "llmcompressor"
_LINEAR = torch.nn.Linear(1, 1)
MAX_DOCS, CTX = 24, 256

# Checkpoint -> the format each non-head Linear must have (regex on the module -> format; the
# first that matches wins), as its recipe says.
EXPECT = {
    "llama-nvfp4a16-modelfree": [(".*", "NVFP4A16")],
    "qwen2-fp8dynamic-modelfree": [(".*", "FP8")],
    "qwen3-nvfp4-oneshot": [(".*", "NVFP4")],
    "qwen3-nvfp4a16-gptq": [(".*", "NVFP4A16")],
    "qwen3-w4a16-gptq-down": [(r".*mlp\.down_proj$", "INT4"), (".*", "BF16")],
    "qwen3moe-fp8attn-nvfp4a16experts-modelfree": [(r".*self_attn\.", "FP8"),
                                                   (r".*mlp\.experts\.", "NVFP4A16")],
    "qwen3_5_moe-nvfp4a16-modelfree": [(r"(.*\.linear_attn\.|model\.visual\.|mtp\.)", "BF16"),
                                       (".*", "NVFP4A16")],
}
# MoE checkpoints: per-expert compressed experts, which transformers 5.23 does not load.
MOE = {"qwen3moe-fp8attn-nvfp4a16experts-modelfree", "qwen3_5_moe-nvfp4a16-modelfree"}
SOURCE = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen3moe": "qwen3_moe",
          "qwen3_5_moe": "qwen3_5_moe"}
READABLE = sorted(EXPECT)
# What llm-compressor 0.14's model_free_ptq leaves unshared on the MoE fixtures: each
# expert's (and the shared expert's) gate/up weight_global_scale; vLLM would use gate's for
# both. Count of such pairs per checkpoint (Qwen3.5: 4 layers x (8 experts + the shared
# one), less layer 0's expert 4, whose gate and up happen to get the same bf16 scale).
UNSHARED = re.compile(r"model\.(language_model\.)?layers\.(\d+)\.mlp\.(experts\.\d+|shared_expert)"
                      r"\.up_proj\.weight_global_scale differs from model\.(language_model\.)?"
                      r"layers\.\2\.mlp\.\3\.gate_proj's")
UNSHARED_PAIRS = {"qwen3moe-fp8attn-nvfp4a16experts-modelfree": 3 * 4,
                  "qwen3_5_moe-nvfp4a16-modelfree": 4 * 9 - 1}


def _want(name: str, module: str) -> str:
    if module == "lm_head":
        return "BF16"
    return next(f for pat, f in EXPECT[name] if re.match(pat, module))


def _inspect(path: Path) -> dict:
    p = pqtest.run_pq("inspect", path, "--json", check=False)
    return json.loads(p.stdout)


@pytest.mark.parametrize("name", READABLE)
def test_inspect_reads_the_recipe(name):
    rep = _inspect(DATA / name)
    if name in UNSHARED_PAIRS:
        v = rep["violations"]
        assert len(v) == UNSHARED_PAIRS[name] and all(UNSHARED.search(x) for x in v), v[:4]
    else:
        assert rep["violations"] == [], rep["violations"]
    got = {li["module"]: li["format"] for li in rep["linears"]}
    bad = [(m, f, _want(name, m)) for m, f in got.items() if f != _want(name, m)]
    assert got and not bad, bad[:8]


def test_quantized_embedding_is_named_with_the_fix():
    """model_free_ptq with only lm_head ignored quantizes the embedding (it sees tensors, not
    modules); vLLM cannot load that, and we say which tensor and what to ignore."""
    text = pqtest.source_dir() / "models" / "trained" / "heldout.txt"
    for cmd in (("inspect",), ("eval", "--text", text), ("dequantize", "-o", "/dev/null/x")):
        p = pqtest.run_pq(cmd[0], DATA / "llama-nvfp4a16-modelfree-embed-quantized", *cmd[1:],
                          check=False)
        assert p.returncode != 0
        assert 'tensor "model.embed_tokens.weight" is stored compressed' in p.stderr, p.stderr
        assert 'add "model.embed_tokens" to ignore' in p.stderr, p.stderr


class Ckpt:
    """An llm-compressor checkpoint, its config groups, and our dense dequantized copy."""

    def __init__(self, name: str, work: Path):
        self.name, self.path = name, DATA / name
        self.tensors = pqtest.load_checkpoint(self.path).tensors
        qc = json.loads((self.path / "config.json").read_text())["quantization_config"]
        self.ignore = qc.get("ignore", [])
        self.groups = {g: QuantizationScheme.model_validate(v)
                       for g, v in qc["config_groups"].items()}
        self.deq = work / f"lc-{name}-dequantized"
        if not (self.deq / "config.json").exists():
            pqtest.run_pq("dequantize", self.path, "-o", self.deq)
        self.dense = pqtest.load_checkpoint(self.deq)

    def quantized(self) -> list[str]:
        return sorted({k.rsplit(".", 1)[0] for k in self.tensors
                       if k.endswith((".weight_scale", ".weight_packed"))})

    def scheme(self, module: str) -> QuantizationScheme:
        assert not any(is_match(module, _LINEAR, t) for t in self.ignore), module
        hits = [s for s in self.groups.values() if any(is_match(module, _LINEAR, t)
                                                        for t in s.targets)]
        assert hits, module
        return hits[-1]

    def local(self, module: str) -> dict[str, torch.Tensor]:
        p = module + "."
        return {k[len(p):]: v for k, v in self.tensors.items()
                if k.startswith(p) and "." not in k[len(p):] and k[len(p):] != "input_global_scale"}


@pytest.fixture(scope="module")
def ckpts(work_dir):
    cache: dict[str, Ckpt] = {}

    def get(name: str) -> Ckpt:
        if name not in cache:
            cache[name] = Ckpt(name, work_dir)
        return cache[name]
    return get


@pytest.mark.parametrize("name", READABLE)
def test_dequantize_equals_ct_decompress(name, ckpts):
    ck = ckpts(name)
    probs, n = [], 0
    for m in ck.quantized():
        fmt = _want(name, m)
        scheme, local = ck.scheme(m), ck.local(m)
        ours = ck.dense.tensors[f"{m}.weight"]
        assert ours.dtype == torch.float32, (m, ours.dtype)
        theirs = ref.ct_decompress(local, scheme)
        d = theirs.view(torch.int16) != ours.to(torch.bfloat16).view(torch.int16)
        f32 = ref.ct_decompress_f32(local, scheme, fmt)
        d32 = f32.view(torch.int32) != ours.view(torch.int32)
        if d.any() or d32.any():
            probs.append(f"{m} ({fmt}): {int(d.sum())} bf16 / {int(d32.sum())} f32 of "
                         f"{d.numel()} differ")
        n += 1
    assert n >= 4 and not probs, probs[:8]


def _ours(path: Path, *flags) -> float:
    p = pqtest.run_pq("eval", path, "--text", pqtest.source_dir() / "models" / "trained" /
                      "heldout.txt", "--split", "paragraphs", "--max-docs", MAX_DOCS,
                      "--ctx", CTX, "--json", *flags)
    return json.loads(p.stdout)["mean_nll"]


def _transformers(path: Path, compressed: bool = True) -> float:
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import CompressedTensorsConfig
    kw = {"quantization_config": CompressedTensorsConfig(dequantize=True)} if compressed else {}
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, attn_implementation="eager", **kw).eval()
    docs = ev.load_documents(str(path), str(pqtest.source_dir() / "models" / "trained" /
                                            "heldout.txt"), "paragraphs", MAX_DOCS)
    return ev.evaluate(model, docs, CTX)[0]


_SOURCE_NLL: dict[str, float] = {}


def _source_nll(fixture: str) -> float:
    if fixture not in _SOURCE_NLL:
        _SOURCE_NLL[fixture] = _ours(pqtest.source_dir() / "models" / "trained" / fixture)
    return _SOURCE_NLL[fixture]


def _bf16_copy(deq: Path) -> Path:
    """Our dense copy with its F32 weights rounded to bf16: the weights transformers computes
    with after compressed-tensors' decompression (bf16 dense dtype)."""
    out = deq.with_name(deq.name + "-bf16")
    if not (out / "config.json").exists():
        pqtest.copy_checkpoint(deq, out)
        for f in pqtest.shard_files(out):
            sd = {k: (v.to(torch.bfloat16) if v.dtype == torch.float32 else v)
                  for k, v in load_file(str(f)).items()}
            pqtest.write_safetensors_file(f, sd)
    return out


@pytest.mark.parametrize("name", READABLE)
def test_eval_matches_transformers(name, ckpts):
    """transformers on the llm-compressor checkpoint == our eval on the same weights rounded as
    transformers rounds them (bf16), to 2e-5; our eval of the checkpoint == our eval of its
    dense dequantized copy exactly; the two differ only by that rounding (< 1e-3 here, 2e-4
    measured, while a mis-read Linear moves the NLL by > 1e-2)."""
    ck = ckpts(name)
    ours = _ours(ck.path, "--weights-only")
    assert abs(ours - _ours(ck.deq)) < 1e-9
    bf16 = _bf16_copy(ck.deq)
    # transformers 5.23 does not load per-expert compressed experts into its fused MoE
    # (they keep their random init); for the MoE checkpoint it reads the bf16 copy of our
    # dense dequantization, which test_dequantize_equals_ct_decompress ties to ct's.
    moe = name in MOE
    theirs = _transformers(bf16, compressed=False) if moe else _transformers(ck.path)
    ours_bf16 = _ours(bf16)
    assert abs(ours_bf16 - theirs) < 2e-5, (ours_bf16, theirs)
    assert abs(ours - theirs) < 1e-3, (ours, theirs)
    full = _ours(ck.path)
    base = _source_nll(SOURCE[name.split("-")[0]])
    assert ours > base, (ours, base)  # quantization costs something on trained weights
    acts = any(_want(name, m) in ("NVFP4", "FP8") for m in ck.quantized())
    assert (full != ours) == acts, (full, ours)
