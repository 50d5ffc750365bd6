#!/usr/bin/env python3
"""Writes the llm-compressor checkpoints beside this file (README.md there): our trained
fixtures quantized by llm-compressor itself, in its own virtualenv, so that CI can check our
readers on what the ecosystem writes without installing llm-compressor.

    venv=$(bash scripts/setup_peer_venv.sh llmcompressor tests/data/llmcompressor/requirements.txt)
    $venv/bin/python tests/data/llmcompressor/make_checkpoints.py [NAME ...]

Runs on CPU, one thread, seeded; about 20 s in all, byte-identical on a rerun. Each checkpoint directory is replaced
whole. Calibration (NVFP4 W4A4's input global scales, GPTQ's Hessians) uses the first 16
paragraphs of the TinyStories slice the fixtures were trained on (never models/trained/
heldout.txt, which the tests evaluate on), each cut to 128 tokens with a BOS.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CORPUS = ROOT.parent / "shared" / "assets" / "corpus-tinystories-valid-slice" / "tinystories_val.txt"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# name -> how it is made. "model_free": llmcompressor.model_free_ptq (data-free, on the
# safetensors files); "oneshot": transformers model + recipe (+ calibration when needed).
CASES = {
    # Data-free NVFP4A16 of a tied-embedding Llama: targets Linear, ignore lm_head and the
    # embedding (model_free_ptq sees tensors, not modules: "Linear" takes every 2-D weight,
    # the embedding included, unless ignored, as llm-compressor's own examples do).
    "llama-nvfp4a16-modelfree": dict(src="llama", how="model_free", scheme="NVFP4A16"),
    # The same with only lm_head ignored: the embedding comes out NVFP4 (weight_packed), which
    # neither vLLM nor we can load; kept to check that our error says so.
    "llama-nvfp4a16-modelfree-embed-quantized": dict(src="llama", how="model_free",
                                                     scheme="NVFP4A16", ignore=["lm_head"]),
    # FP8 W8A8 (per-channel weights, dynamic per-token inputs) of Qwen2 (q/k/v biases).
    "qwen2-fp8dynamic-modelfree": dict(src="qwen2", how="model_free", scheme="FP8_DYNAMIC"),
    # NVFP4 W4A4: input global scales calibrated on 16 samples.
    "qwen3-nvfp4-oneshot": dict(src="qwen3", how="oneshot", modifier="quant", scheme="NVFP4"),
    # GPTQ to NVFP4A16 (the peer row), 16 samples.
    "qwen3-nvfp4a16-gptq": dict(src="qwen3", how="oneshot", modifier="gptq", scheme="NVFP4A16"),
    # GPTQ W4A16 int4 group 128: only down_proj has in_features 128 here, so it is the only
    # target; the other Linears are left dense.
    "qwen3-w4a16-gptq-down": dict(src="qwen3", how="oneshot", modifier="gptq", scheme="W4A16",
                                  targets=["re:.*mlp\\.down_proj$"]),
    # Two config groups on the MoE fixture: FP8_DYNAMIC attention, NVFP4A16 experts; the
    # routers ignored by a re: pattern.
    "qwen3moe-fp8attn-nvfp4a16experts-modelfree": dict(
        src="qwen3_moe", how="model_free",
        groups={"attention": ("FP8_DYNAMIC", ["re:.*self_attn\\.(q|k|v|o)_proj$"]),
                "experts": ("NVFP4A16", ["re:.*mlp\\.experts\\.\\d+\\.(gate|up|down)_proj$"])},
        ignore=["lm_head", "model.embed_tokens", "re:.*mlp\\.gate$"]),
    # Qwen3.5-MoE (hybrid DeltaNet, gated attention, packed 3-D experts, shared expert, MTP
    # head, vision tower): model_free_ptq writes the packed experts per expert; DeltaNet, the
    # routers, the vision tower and the MTP head are ignored.
    "qwen3_5_moe-nvfp4a16-modelfree": dict(
        src="qwen3_5_moe", how="model_free", scheme="NVFP4A16",
        ignore=["lm_head", "re:.*embed_tokens$", "re:.*visual.*", "re:^mtp.*",
                "re:.*mlp\\.gate$", "re:.*shared_expert_gate$", "re:.*linear_attn.*"]),
}


def calibration(src: Path, n: int = 16, seq: int = 128):
    from datasets import Dataset
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    bos = json.loads((src / "tokenizer_config.json").read_text()).get("bos_token")
    bos_id = tok.token_to_id(bos if isinstance(bos, str) else bos["content"])
    paras = [p.strip() for p in CORPUS.read_text().split("\n\n") if p.strip()][:n]
    ids = [([bos_id] + tok.encode(p, add_special_tokens=False).ids)[:seq] for p in paras]
    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]})


def make_model_free(case: dict, src: Path, out: Path):
    from compressed_tensors.quantization import (QuantizationConfig, QuantizationScheme,
                                                 preset_name_to_scheme)
    from llmcompressor import model_free_ptq

    if "groups" in case:
        groups = {}
        for name, (preset, targets) in case["groups"].items():
            s = preset_name_to_scheme(preset, targets)
            groups[name] = QuantizationScheme(**{**s.model_dump(), "targets": targets})
        config = QuantizationConfig(config_groups=groups, ignore=case["ignore"])
        model_free_ptq(str(src), str(out), config=config, device="cpu")
    else:
        ignore = case.get("ignore", ["lm_head", "model.embed_tokens"])
        model_free_ptq(str(src), str(out), scheme=case["scheme"], ignore=ignore, device="cpu")


def make_oneshot(case: dict, src: Path, out: Path):
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.bfloat16)
    cls = GPTQModifier if case["modifier"] == "gptq" else QuantizationModifier
    recipe = cls(targets=case.get("targets", "Linear"), scheme=case["scheme"], ignore=["lm_head"])
    oneshot(model=model, recipe=recipe, dataset=calibration(src), num_calibration_samples=16,
            max_seq_length=128, shuffle_calibration_samples=False, pipeline="basic")
    model.save_pretrained(str(out), save_compressed=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"default: all of {', '.join(CASES)}")
    a = ap.parse_args()
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    for name in a.names or CASES:
        case = CASES[name]
        src = ROOT / "models" / "trained" / case["src"]
        out = HERE / name
        tmp = HERE / (name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (make_model_free if case["how"] == "model_free" else make_oneshot)(case, src, tmp)
        (tmp / "SOURCE.md").unlink(missing_ok=True)  # the fixture's, copied by model_free_ptq
        for f in TOKENIZER_FILES:  # what `prismaquant eval` needs beside the weights
            if (src / f).exists() and not (tmp / f).exists():
                shutil.copy(src / f, tmp / f)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"{name}: {size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
