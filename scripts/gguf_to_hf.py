#!/usr/bin/env python3
"""Test-only: a GGUF file -> an ordinary Hugging Face checkpoint (BF16 safetensors + tokenizer),
with transformers' own GGUF loader (packages `gguf` and `accelerate`, pinned in
tests/interop/requirements.txt). Used by scripts/fetch_smollm2.sh; runs in the test virtualenv.

  $venv/bin/python scripts/gguf_to_hf.py convert FILE.gguf OUT_DIR
  $venv/bin/python scripts/gguf_to_hf.py digest CKPT_DIR

convert: the GGUF's quantized tensors are dequantized to float32 by transformers / gguf-py
(GgufConfig(dequantize=True); without it they would stay packed), the model is cast to
bfloat16 (round to nearest even) and saved with save_pretrained(safe_serialization=True),
without any quantization_config; the tokenizer transformers builds from the GGUF's vocabulary
and merges is saved beside it (tokenizer.json). The result's values are the GGUF's
dequantized values rounded to bf16 (for a Q4_1 file: d * q + m per block of 32, q in 0..15).

digest: one JSON line {"tensors", "tokenizer", "config", "tensor_count", "parameters"}:
  tensors   sha256 over every tensor sorted by name: name, dtype, shape, raw little-endian bytes
            (independent of the safetensors header's order and metadata);
  tokenizer sha256 of tokenizer.json parsed and re-serialised with sorted keys;
  config    sha256 of config.json the same way, without "transformers_version".
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")   # transformers' GGUF progress bar


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()

    d, f = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(
        d, gguf_file=f, dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=f, dequantize=True)).to(torch.bfloat16)
    # The dequantized model is a plain one: no quantizer, no quantization_config.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    bad = [n for n, p in model.state_dict().items() if p.dtype != torch.bfloat16]
    if bad:
        raise SystemExit(f"gguf_to_hf: not bfloat16 after the cast: {bad[:5]}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    cfg = json.loads((out / "config.json").read_text())
    if "quantization_config" in cfg:
        raise SystemExit("gguf_to_hf: config.json still has a quantization_config")
    if not (out / "tokenizer.json").exists():
        raise SystemExit("gguf_to_hf: no tokenizer.json written")


def _canonical_json(path: Path, drop: tuple[str, ...] = ()) -> str:
    data = json.loads(path.read_text(encoding="utf-8"))
    for k in drop:
        data.pop(k, None)
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def digest(ckpt: Path) -> dict:
    files = sorted(ckpt.glob("*.safetensors"))
    if not files:
        raise SystemExit(f"gguf_to_hf: no .safetensors in {ckpt}")
    entries = []   # (name, dtype, shape, file, begin, end)
    for fp in files:
        with open(fp, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, v in header.items():
            if name != "__metadata__":
                a, b = v["data_offsets"]
                entries.append((name, v["dtype"], v["shape"], fp, 8 + n + a, 8 + n + b))
    entries.sort(key=lambda e: e[0])
    h = hashlib.sha256()
    params = 0
    for name, dtype, shape, fp, a, b in entries:
        h.update(f"{name}\0{dtype}\0{shape}\0".encode())
        with open(fp, "rb") as fh:
            fh.seek(a)
            h.update(fh.read(b - a))
        count = 1
        for s in shape:
            count *= s
        params += count
    return {"tensors": h.hexdigest(),
            "tokenizer": _canonical_json(ckpt / "tokenizer.json"),
            "config": _canonical_json(ckpt / "config.json", drop=("transformers_version",)),
            "tensor_count": len(entries), "parameters": params}


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "convert":
        convert(Path(argv[1]).resolve(), Path(argv[2]))
        return 0
    if len(argv) == 2 and argv[0] == "digest":
        print(json.dumps(digest(Path(argv[1])), sort_keys=True))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
