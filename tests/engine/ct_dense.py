#!/usr/bin/env python3
"""Dense copy of a compressed-tensors checkpoint, decompressed by compressed-tensors' own code
(not by prismaquant), for `prismaquant eval` comparisons (tests/engine/run.sh).

  ct_dense.py EXPORT -o OUT [--dtype f32|bf16] [--check-transformers]

Every quantized Linear M (a config group targets it and M.weight_packed / M.weight +
M.weight_scale are present) becomes a dense M.weight:
  --dtype bf16  ct's decompress() (BaseCompressor.get_value_from_registry(format).decompress),
                the exact call transformers' CompressedTensorsConfig(dequantize=True) makes:
                bf16 values, stored BF16.
  --dtype f32   the same ct decompression graph evaluated with float32 as the dense dtype
                (tests/interop/ct_reference.ct_decompress_f32; for NVFP4 code * f32(s/gs),
                without ct's final rounding to bf16), stored F32. tests/interop checks that
                this equals `prismaquant dequantize` bit for bit.
All other tensors are copied unchanged (same dtype); config.json loses quantization_config;
the other files (tokenizer etc.) are copied.

--check-transformers (bf16 only): also load EXPORT with transformers
(CompressedTensorsConfig(dequantize=True), dtype bf16) and require every written weight to
equal the loaded parameter bit for bit.
Prints one JSON line: {"out", "dtype", "decompressed": N, "copied": N, "formats": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SRC = Path(os.environ.get("PQ_SOURCE_DIR", Path(__file__).resolve().parents[2])).resolve()
sys.path.insert(0, str(SRC / "tests" / "interop"))

import torch  # noqa: E402

import ct_reference as ref  # noqa: E402
import pqtest  # noqa: E402

# ct format string (+ bits) -> our format id as used by ct_reference
def our_fmt(fmt: str, bits: int) -> str:
    return {
        "nvfp4-pack-quantized": "NVFP4A16",
        "mxfp8-quantized": "MXFP8",
        "mxfp4-pack-quantized": "MXFP4",
        "float-quantized": "FP8",
    }.get(fmt) or ({4: "INT4", 8: "INT8"}[bits] if fmt == "pack-quantized" else None)


def schemes_by_module(qc: dict, modules: list[str]) -> dict:
    from compressed_tensors.quantization import QuantizationScheme
    ignore = qc.get("ignore") or []

    def ignored(m):
        return any((t[3:] and re.fullmatch(t[3:], m)) if t.startswith("re:") else t == m for t in ignore)

    out = {}
    for gname, g in (qc.get("config_groups") or {}).items():
        fmt = g.get("format") or qc.get("format")
        scheme = QuantizationScheme(targets=g["targets"], weights=g.get("weights"),
                                    input_activations=g.get("input_activations"),
                                    output_activations=g.get("output_activations"), format=fmt)
        for m in modules:
            hit = False
            for t in g["targets"]:
                if t.startswith("re:"):
                    hit = re.fullmatch(t[3:], m) is not None
                elif t == "Linear":
                    hit = not ignored(m)
                else:
                    hit = t == m
                if hit:
                    break
            if hit:
                if m in out:
                    raise SystemExit(f"ct_dense: {m} targeted by two config groups")
                out[m] = scheme
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    ap.add_argument("--check-transformers", action="store_true")
    a = ap.parse_args()

    src = Path(a.export)
    out = Path(a.out)
    ck = pqtest.load_checkpoint(src)
    qc = ck.qconfig
    if not qc:
        raise SystemExit(f"ct_dense: {src} has no quantization_config")
    modules = sorted({k.rsplit(".", 1)[0] for k in ck.tensors
                      if k.endswith((".weight_packed", ".weight_scale"))})
    schemes = schemes_by_module(qc, modules)
    missing = [m for m in modules if m not in schemes]
    if missing:
        raise SystemExit(f"ct_dense: quantized tensors without a config group: {missing[:5]}")

    dense = {}
    consumed = set()
    formats = set()
    for m, scheme in schemes.items():
        local = ck.module(m)
        for k in local:
            consumed.add(f"{m}.{k}")
        fmt = our_fmt(scheme.format, scheme.weights.num_bits)
        if fmt is None:
            raise SystemExit(f"ct_dense: {m}: unsupported format {scheme.format}")
        formats.add(fmt)
        if a.dtype == "bf16":
            w = ref.ct_decompress(local, scheme)
            assert w.dtype == torch.bfloat16, (m, w.dtype)
        else:
            w = ref.ct_decompress_f32(local, scheme, fmt)
            assert w.dtype == torch.float32, (m, w.dtype)
        dense[f"{m}.weight"] = w.contiguous()
    copied = 0
    for k, v in ck.tensors.items():
        if k in consumed:
            continue
        assert k not in dense, k
        dense[k] = v
        copied += 1

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name not in (
                "config.json", "model.safetensors.index.json", "recipe.yaml"):
            shutil.copy(f, out / f.name)
    cfg = dict(ck.config)
    cfg.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    pqtest.write_safetensors_file(out / "model.safetensors", dict(sorted(dense.items())))

    result = {"out": str(out), "dtype": a.dtype, "decompressed": len(schemes), "copied": copied,
              "formats": sorted(formats)}
    if a.check_transformers:
        if a.dtype != "bf16":
            raise SystemExit("ct_dense: --check-transformers needs --dtype bf16")
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging
        from transformers.utils.quantization_config import CompressedTensorsConfig
        hf_logging.disable_progress_bar()
        import warnings
        warnings.filterwarnings("ignore", message=".*quantization_config.*")
        mdl = AutoModelForCausalLM.from_pretrained(
            str(src), dtype=torch.bfloat16, quantization_config=CompressedTensorsConfig(dequantize=True))
        params = dict(mdl.named_parameters())
        bad = []
        for m in schemes:
            got = params.get(f"{m}.weight")
            want = dense[f"{m}.weight"]
            if got is None or got.dtype != torch.bfloat16 or not torch.equal(
                    got.detach().view(torch.int16), want.view(torch.int16)):
                bad.append(m)
        if bad:
            raise SystemExit(f"ct_dense: transformers' dequantized weights differ from ct decompress(): {bad[:5]}")
        result["transformers_equal"] = True
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
