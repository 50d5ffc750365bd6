#!/usr/bin/env python3
"""compressed-tensors RTN quantize+pack throughput: the work our C++ RTN does.

For each format: scale computation (llm-compressor's min-max observer + ct's
generate_gparam / calculate_qparams), quantize, and pack into the on-disk tensors
(the format's compressor.compress), on one random N x K bf16 matrix, with torch limited
to 1 thread and to all threads. Prints one JSON line per (format, threads):
    {"format": "NVFP4A16", "threads": 1, "median_s": 0.123}
Details (min, all repetitions, sizes) go to stderr.

Run with the test venv:  $(bash scripts/setup_venv.sh)/bin/python bench/ct_rtn_bench.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "interop"))
import ct_reference as ref  # noqa: E402
from compressed_tensors.compressors import BaseCompressor  # noqa: E402
from compressed_tensors.quantization import QuantizationStrategy  # noqa: E402
from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam  # noqa: E402

# NVFP4 (W4A4) writes the same weight tensors as NVFP4A16 (+ a calibrated input scale).
LABELS = {"NVFP4A16": "NVFP4A16", "MXFP8": "MXFP8", "MXFP4": "MXFP4", "FP8": "FP8",
          "INT4": "INT4", "INT8": "INT8"}


def quantize_and_pack(w: torch.Tensor, scheme) -> dict[str, torch.Tensor]:
    """Scales + quantize + pack for one Linear, the llm-compressor/ct way (see
    tests/interop/CT_NOTES.md), without the nn.Module bookkeeping around it."""
    args = scheme.weights
    mn, mx = ref._observe_minmax(w, args)
    gs = None
    if args.strategy == QuantizationStrategy.TENSOR_GROUP:
        absmax = torch.max(mx.max(), -mn.min())
        gs = generate_gparam(-absmax.reshape(1), absmax.reshape(1))
    scale, _ = calculate_qparams(mn, mx, args, global_scale=gs)
    sd = {"weight": w, "weight_scale": scale.to(w.dtype)}  # ct keeps scales in weight dtype
    if gs is not None:
        sd["weight_global_scale"] = gs
    return BaseCompressor.get_value_from_registry(scheme.format).compress(sd, scheme)


def bench(fmt: str, w: torch.Tensor, threads: int, reps: int) -> list[float]:
    torch.set_num_threads(threads)
    scheme = ref.expected_scheme(fmt)
    out = quantize_and_pack(w, scheme)  # warm-up (and a shape check)
    assert all(t.numel() > 0 for t in out.values()), fmt
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        quantize_and_pack(w, scheme)
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--formats", default=",".join(LABELS))
    ap.add_argument("--threads", default=f"1,{os.cpu_count() or 1}",
                    help="comma-separated torch thread counts (default: 1 and all cores)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    g = torch.Generator().manual_seed(a.seed)
    w = (torch.randn(a.rows, a.cols, generator=g) * 0.02).to(torch.bfloat16)
    thread_counts = sorted({int(t) for t in a.threads.split(",")})
    print(f"# compressed-tensors RTN bench: {a.rows}x{a.cols} bf16, reps={a.reps}, "
          f"torch {torch.__version__}, cpus {os.cpu_count()}", file=sys.stderr)
    for fmt in a.formats.split(","):
        for th in thread_counts:
            times = bench(fmt, w, th, a.reps)
            print(json.dumps({"format": LABELS.get(fmt, fmt), "threads": th,
                              "median_s": statistics.median(times)}), flush=True)
            print(f"#   {fmt:9s} threads={th:<3d} min {min(times):.4f}s  all "
                  f"{' '.join(f'{t:.4f}' for t in times)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
