"""Helpers shared by the interop tests: reading checkpoints (raw safetensors headers
included), running the prismaquant CLI, and naming what a checkpoint should hold."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

MODELS = ("llama", "llama-awkward", "qwen2", "qwen3", "stories260K")
LINEAR_RE = re.compile(r"^(?P<m>.*\.(q|k|v|o|gate|up|down)_proj)\.weight$")
LINEAR_LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ---------------------------------------------------------------- safetensors

def shard_files(ckpt: Path) -> list[Path]:
    index = ckpt / "model.safetensors.index.json"
    if index.exists():
        wm = json.loads(index.read_text())["weight_map"]
        return [ckpt / f for f in sorted(set(wm.values()))]
    files = sorted(ckpt.glob("*.safetensors"))
    assert files, f"no .safetensors in {ckpt}"
    return files


def read_header(path: Path) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)   # safetensors dtype strings
    config: dict = field(default_factory=dict)

    @property
    def qconfig(self) -> dict | None:
        return self.config.get("quantization_config")

    def module(self, m: str) -> dict[str, torch.Tensor]:
        """Local-name tensors of module m (weight_packed, weight_scale, ...)."""
        p = m + "."
        return {k[len(p):]: v for k, v in self.tensors.items()
                if k.startswith(p) and "." not in k[len(p):]}


def load_checkpoint(ckpt: Path) -> Checkpoint:
    ckpt = Path(ckpt)
    out = Checkpoint(ckpt, config=json.loads((ckpt / "config.json").read_text()))
    for f in shard_files(ckpt):
        hdr = read_header(f)
        with safe_open(str(f), "pt") as sf:
            for k in sf.keys():
                assert k not in out.tensors, f"{k} in two shards"
                out.tensors[k] = sf.get_tensor(k)
                out.dtypes[k] = hdr[k]["dtype"]
    return out


def source_linears(src: Checkpoint) -> dict[str, torch.Tensor]:
    """Module name -> source weight of every decoder Linear (q/k/v/o/gate/up/down)."""
    out = {}
    for k, v in src.tensors.items():
        m = LINEAR_RE.match(k)
        if m:
            out[m.group("m")] = v
    return out


def to_bf16(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.bfloat16 else t.to(torch.bfloat16)


# ---------------------------------------------------------------- the CLI

def pq_bin() -> Path | None:
    b = os.environ.get("PQ_BIN")
    return Path(b) if b else None


def source_dir() -> Path:
    return Path(os.environ.get("PQ_SOURCE_DIR", Path(__file__).resolve().parents[2]))


def stories_dir() -> Path:
    """The bundled stories260K (models/stories260K) when present, else the shared copy."""
    bundled = source_dir() / "models" / "stories260K"
    if (bundled / "config.json").exists():
        return bundled
    return source_dir().parent / "shared" / "assets" / "stories260K-hf-derived"


def run_pq(*args, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    b = pq_bin()
    assert b is not None, "PQ_BIN is not set"
    cmd = [str(b), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(
            f"`{' '.join(cmd)}` exited {p.returncode}\n--- stdout\n{p.stdout[-4000:]}"
            f"\n--- stderr\n{p.stderr[-4000:]}")
    return p


def copy_checkpoint(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def write_safetensors_file(path: Path, tensors: dict[str, torch.Tensor]):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
              metadata={"format": "pt"})


def rewrite_checkpoint(ckpt: Path, edit) -> None:
    """Apply edit(name -> tensor dict) shard by shard, keeping the index consistent."""
    index = ckpt / "model.safetensors.index.json"
    wm = json.loads(index.read_text())["weight_map"] if index.exists() else None
    for f in shard_files(ckpt):
        with safe_open(str(f), "pt") as sf:
            t = {k: sf.get_tensor(k) for k in sf.keys()}
        t = edit(t)
        write_safetensors_file(f, t)
        if wm is not None:
            for k in [k for k, v in wm.items() if v == f.name and k not in t]:
                del wm[k]
    if wm is not None:
        data = json.loads(index.read_text())
        data["weight_map"] = wm
        index.write_text(json.dumps(data, indent=2))
