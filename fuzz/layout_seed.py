#!/usr/bin/env python3
"""Writes a fuzz_layout seed for a checkpoint directory: its config.json, a NUL byte, then
its tensors as JSON {"name": ["DTYPE", [dims]]} (read from the safetensors headers).

    python3 fuzz/layout_seed.py MODEL_DIR OUT_FILE
"""
import glob
import json
import struct
import sys


def tensors(model_dir):
    out = {}
    for path in sorted(glob.glob(f"{model_dir}/*.safetensors")):
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for name, t in header.items():
            if name != "__metadata__":
                out[name] = [t["dtype"], t["shape"]]
    return out


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    with open(f"{model_dir}/config.json", "rb") as f:
        config = f.read()
    with open(out, "wb") as f:
        f.write(config + b"\0" + json.dumps(tensors(model_dir), sort_keys=True).encode())


if __name__ == "__main__":
    main()
