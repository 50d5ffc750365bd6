#!/usr/bin/env python3
"""Quantizes a model with a peer tool (llm-compressor or AutoRound) on exactly the calibration
tokens our probe chose, and writes a compressed-tensors checkpoint (bench/peers/README.md).

    PYTHON peers.py CASE MODEL CALIB_IDS OUT

CASE: one of CASES below; PYTHON: the peer's own virtualenv (scripts/setup_peer_venv.sh).
CALIB_IDS: our probe's W/probe/calibration/model.safetensors (I32 "ids" [samples, seqlen], no
BOS): each row becomes one pre-tokenized sample (input_ids + attention_mask of ones), in order,
unshuffled. Runs on CPU. Never run by CI.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "generation_config.json")

# name -> (tool, how, options). llm-compressor: "gptq" (GPTQModifier, its default sequential
# pipeline), "model_free" (model_free_ptq: data-free, on the safetensors files), "oneshot_nodata"
# (QuantizationModifier without a dataset), "oneshot" (QuantizationModifier with the tokens).
# AutoRound: its AutoRound class, written with
# format "llm_compressor" (compressed-tensors).
CASES = {
    "llmc-gptq-nvfp4a16": ("llmcompressor", "gptq", dict(scheme="NVFP4A16")),
    "llmc-gptq-nvfp4": ("llmcompressor", "gptq", dict(scheme="NVFP4")),
    # llm-compressor's own NVFP4 example: QuantizationModifier (RTN weights), the input global
    # scales calibrated on the tokens in one pass ("basic" pipeline: its default sequential
    # pipeline took ~1 min per layer here under load, and only matters for the input scales).
    "llmc-oneshot-nvfp4": ("llmcompressor", "oneshot", dict(scheme="NVFP4", pipeline="basic")),
    "llmc-modelfree-nvfp4a16": ("llmcompressor", "model_free", dict(scheme="NVFP4A16")),
    "llmc-oneshot-nodata-nvfp4a16": ("llmcompressor", "oneshot_nodata", dict(scheme="NVFP4A16")),
    "autoround-nvfp4": ("autoround", "autoround", dict(scheme="NVFP4")),
    "autoround-mxfp4": ("autoround", "autoround", dict(scheme="MXFP4")),
    # iters=0: AutoRound's RTN mode; by default its "optimized RTN" (per-group scale search
    # weighted by an importance matrix), plain RTN with disable_opt_rtn.
    "autoround-nvfp4-optrtn": ("autoround", "autoround", dict(scheme="NVFP4", iters=0)),
    "autoround-nvfp4-rtn": ("autoround", "autoround", dict(scheme="NVFP4", iters=0,
                                                          disable_opt_rtn=True)),
    "autoround-mxfp4-rtn": ("autoround", "autoround", dict(scheme="MXFP4", iters=0,
                                                          disable_opt_rtn=True)),
    "autoround-autoscheme": ("autoround", "autoscheme", dict(schemes=["NVFP4", "MXFP8"],
                                                            avg_bits=4.75)),
    # The same choice of formats (delta-loss scores on the first 8 of the samples, to fit the
    # CPU time here), then plain RTN (iters=0) for the chosen formats.
    "autoround-autoscheme-rtn": ("autoround", "autoscheme",
                                 dict(schemes=["NVFP4", "MXFP8"], avg_bits=4.75, iters=0,
                                      disable_opt_rtn=True, scheme_nsamples=8)),
}


# Computed in float32: this CPU (AVX2, no AVX512-BF16) runs BF16 matmuls ~60x slower than FP32.
# What is not quantized (embedding, norms) is cast back to the source's BF16 before saving, so
# the checkpoints' bytes compare with ours; the quantized Linears are written from their FP32
# weights by the tool's own packing.
COMPUTE_DTYPE = "float32"


def to_source_dtype(model):
    import torch

    for module in model.modules():
        if getattr(module, "quantization_scheme", None) is None:
            for p in module.parameters(recurse=False):
                p.data = p.data.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def calib_ids(path: Path) -> list[list[int]]:
    from safetensors.numpy import load_file

    ids = load_file(str(path))["ids"]
    return [[int(t) for t in row] for row in ids]


def llmc_dataset(ids):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(r) for r in ids]})


def run_llmcompressor(how: str, opts: dict, model_dir: Path, ids, out: Path):
    import torch

    if how == "model_free":
        from llmcompressor import model_free_ptq

        # model_free_ptq sees tensors, not modules: the tied embedding must be ignored too.
        model_free_ptq(str(model_dir), str(out), scheme=opts["scheme"],
                       ignore=["lm_head", "model.embed_tokens"], device="cpu")
        return
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=COMPUTE_DTYPE)
    if how == "oneshot_nodata":
        recipe = QuantizationModifier(targets="Linear", scheme=opts["scheme"], ignore=["lm_head"])
        oneshot(model=model, recipe=recipe)
    else:
        cls = GPTQModifier if how == "gptq" else QuantizationModifier
        recipe = cls(targets="Linear", scheme=opts["scheme"], ignore=["lm_head"])
        oneshot(model=model, recipe=recipe, dataset=llmc_dataset(ids),
                num_calibration_samples=len(ids), max_seq_length=len(ids[0]),
                shuffle_calibration_samples=False,
                **({"pipeline": opts["pipeline"]} if "pipeline" in opts else {}))
    to_source_dtype(model)
    model.save_pretrained(str(out), save_compressed=True)


def run_autoround(how: str, opts: dict, model_dir: Path, ids, out: Path):
    import torch
    from auto_round import AutoRound
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=COMPUTE_DTYPE)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    # AutoRound takes a list of pre-tokenized samples as its dataset.
    data = [{"input_ids": torch.tensor([r]), "attention_mask": torch.ones(1, len(r),
                                                                          dtype=torch.long)}
            for r in ids]
    common = dict(dataset=data, nsamples=len(ids), seqlen=len(ids[0]), device_map="cpu",
                  seed=0, batch_size=env_int("PQ_AR_BATCH", 8))
    if how == "autoscheme":
        from auto_round import AutoScheme

        # AutoScheme takes only a dataset name or a local json/jsonl file of texts ("`dataset`
        # must be a string"): our samples, decoded; AutoRound re-tokenizes (and shuffles) them.
        texts = out.with_name(out.name + ".calib.jsonl")
        texts.write_text("".join(json.dumps({"text": tok.decode(r)}) + "\n" for r in ids))
        common["dataset"] = str(texts)

        scheme = AutoScheme(avg_bits=opts["avg_bits"], options=opts["schemes"],
                            nsamples=opts.get("scheme_nsamples"))
        extra = {k: v for k, v in opts.items() if k == "disable_opt_rtn"}
        ar = AutoRound(model, tok, scheme=scheme,
                       iters=opts.get("iters", env_int("PQ_AR_ITERS", 200)), **common, **extra)
    else:
        extra = {k: v for k, v in opts.items() if k not in ("scheme", "iters")}
        ar = AutoRound(model, tok, scheme=opts["scheme"],
                       iters=opts.get("iters", env_int("PQ_AR_ITERS", 200)), **common, **extra)
    ar.quantize_and_save(str(out), format="llm_compressor")
    # AutoRound writes into OUT/<model>-<scheme>/ when given an existing model object: lift it.
    inner = [d for d in out.iterdir() if (d / "config.json").exists()] if out.is_dir() else []
    if not (out / "config.json").exists() and len(inner) == 1:
        for f in inner[0].iterdir():
            f.rename(out / f.name)
        inner[0].rmdir()


def main() -> int:
    if len(sys.argv) != 5 or sys.argv[1] not in CASES:
        print(__doc__, f"cases: {', '.join(CASES)}", sep="\n", file=sys.stderr)
        return 2
    case, model_dir, calib, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    tool, how, opts = CASES[case]
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(env_int("PQ_PEER_THREADS", 2))
    ids = calib_ids(calib)
    print(f"{case}: {len(ids)} samples x {len(ids[0])} tokens", file=sys.stderr)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (run_llmcompressor if tool == "llmcompressor" else run_autoround)(how, opts, model_dir, ids, tmp)
    for f in TOKENIZER_FILES:  # what `prismaquant eval` needs beside the weights
        if (model_dir / f).exists() and not (tmp / f).exists():
            shutil.copy(model_dir / f, tmp / f)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    cfg = json.loads((out / "config.json").read_text()).get("quantization_config", {})
    print(f"{case}: wrote {out} (quant_method {cfg.get('quant_method')})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    sys.exit(main())
