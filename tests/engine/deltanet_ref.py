#!/usr/bin/env python3
"""Golden numbers for the C++ reference Gated DeltaNet op (src/pq/compute/deltanet.h).

Runs transformers' own `torch_recurrent_gated_delta_rule` (Qwen3-Next; Qwen3.5/3.6 use the
same recurrence) with use_qk_l2norm_in_kernel=True on a small deterministic problem and
prints the output and final state as C++ initialisers. The numbers are pasted into
DeltaNetRef.MatchesTransformers in src/pq/compute/deltanet_test.cc, whose inputs use the
same formulas; that test does the caller's part (l2norm, q / sqrt(Dk)) before the op.

Not registered in CI: run by hand with the test venv's python to regenerate/verify:
  ~/.cache/prismaquant/venv/bin/python tests/engine/deltanet_ref.py
"""
import math
import sys

import torch
from transformers.models.qwen3_next.modeling_qwen3_next import (
    torch_recurrent_gated_delta_rule,
)

T, H, DK, DV = 4, 2, 3, 2


def fill(n, f):
    return [f(i) for i in range(n)]


def inputs():
    q = fill(T * H * DK, lambda i: math.sin(0.37 * i + 0.1))
    k = fill(T * H * DK, lambda i: math.cos(0.53 * i + 0.2))
    v = fill(T * H * DV, lambda i: 1.5 * math.sin(0.29 * i + 0.3))
    g = fill(T * H, lambda i: -0.05 - 0.2 * (1.0 + math.sin(0.71 * i)))
    beta = fill(T * H, lambda i: 0.5 + 0.4 * math.sin(0.61 * i + 0.4))
    return q, k, v, g, beta


def main():
    q, k, v, g, beta = inputs()
    t = lambda x, *shape: torch.tensor(x, dtype=torch.float64).reshape(1, *shape)
    out, state = torch_recurrent_gated_delta_rule(
        t(q, T, H, DK), t(k, T, H, DK), t(v, T, H, DV), t(g, T, H), t(beta, T, H),
        output_final_state=True, use_qk_l2norm_in_kernel=True)
    fmt = lambda x: ", ".join(f"{float(e):.9g}" for e in x.reshape(-1))
    print(f"// out[T={T},H={H},Dv={DV}]\nconst Vec want_out = {{{fmt(out)}}};")
    print(f"// state[H,Dk,Dv]\nconst Vec want_state = {{{fmt(state)}}};")
    return 0


if __name__ == "__main__":
    sys.exit(main())
