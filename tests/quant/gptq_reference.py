"""An independent PyTorch GPTQ + per-group scale search, and its comparison with pq_gptq_tool.

    python gptq_reference.py compare --tool PQ_GPTQ_TOOL --work DIR   (tests/quant/run.sh)
    python gptq_reference.py bench PROBLEM.safetensors --format F [--ours OUT.safetensors]
        [--threads T] [--repeats R] [--out DIR]                       (bench/run_gptq_bench.sh)

Textbook GPTQ (Frantar et al. 2022; the llm-compressor loop) in float64, with the same rules
as src/pq/quant/gptq.h: H symmetrised; dead inputs (H_ii == 0) get H_ii = 1 and W[:, i] = 0;
H_ii += damp * mean(diag H), damp x10 up to 3 times if Cholesky fails; U = chol(H^-1) upper
via torch's cholesky -> cholesky_inverse -> cholesky(upper) (not our reversal trick); blocks
of `block` columns with in-block propagation and one matmul per block; a group's scale is
RTN's rule on the group's CURRENT values when the sweep reaches its first column; per-channel
formats (FP8, INT8) and act_order use RTN's scales of the original W ("static"); act_order
sweeps columns by descending diag(H) (stable). Elements: the current float64 value is
rounded to float32 and quantized with compressed-tensors' arithmetic, re-written here with
torch ops (E2M1 as nearest-with-ties-to-even over the grid, E4M3 through torch's float8 cast,
bf16 through torch's bfloat16 cast, INT through torch.round).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file, save_file

F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16
E2M1_GRID = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=F64)
GROUP = {"NVFP4": 16, "NVFP4A16": 16, "MXFP4": 32, "MXFP8": 32, "INT4": 128}


def bf16(x):
    return x.to(BF16).to(F32)


def e4m3(x):
    return x.clamp(-448.0, 448.0).to(torch.float8_e4m3fn).to(F32)


def e2m1(y):
    """Nearest E2M1 value to float32 y (magnitude clamped to 6), ties to the even code."""
    a = y.abs().clamp(max=6.0).to(F64)
    dist = (a.unsqueeze(-1) - E2M1_GRID).abs()
    i = dist.argmin(-1)  # the first (lower) of two equally near codes
    nxt = (i + 1).clamp(max=7)
    tie = (dist.gather(-1, nxt.unsqueeze(-1)).squeeze(-1) == dist.gather(-1, i.unsqueeze(-1)).squeeze(-1)) & (nxt != i)
    i = torch.where(tie & (i % 2 == 1), nxt, i)
    v = E2M1_GRID[i].to(F32)
    return torch.where(y < 0, -v, v)


def nvfp4_global_scale(w):
    """compressed-tensors' bf16 reciprocal-then-multiply 2688 / amax; 1.0 if not finite."""
    amax = w.abs().max().to(F32)
    r = bf16((1.0 / amax).reshape(1))
    gs = bf16(r * 2688.0)[0]
    return gs if torch.isfinite(gs) and gs > 0 else torch.tensor(1.0, dtype=F32)


class Format:
    """RTN's scale rule and the element quantizer of one format, in float32 torch ops."""

    def __init__(self, name, k, gs=None):
        self.name = name
        self.group = GROUP.get(name, k)
        self.static = name in ("FP8", "INT8")  # per channel: scales from the original W
        self.gs = gs

    def scale(self, x):
        """Stored scale RTN picks for each row of x [..., group] (float32)."""
        amax = x.abs().amax(-1)
        n = self.name
        if n.startswith("NVFP4"):
            sf = e4m3(torch.clamp(self.gs * bf16(amax / 6.0), max=448.0))
            return torch.where(sf == 0, torch.tensor(0.125), sf)
        if n.startswith("MX"):
            m, e = torch.frexp(amax)  # amax = m 2^e, m in [0.5, 1)
            ex = (e - 1) + (2 * m >= 1.75).to(e.dtype)  # power of two, mantissa >= .75 rounds up
            ex = torch.where(amax == 0, torch.full_like(ex, -127), ex)
            ex = (ex - (2 if n == "MXFP4" else 8)).clamp(-127, 127)
            return torch.ldexp(torch.ones_like(amax), ex)
        half = {"INT4": 7.5, "INT8": 127.5, "FP8": 448.0}[n]
        s = bf16(amax / half)
        return torch.where(s == 0, torch.tensor(2.0**-7), s)

    def qdq(self, x, s):
        """Reconstructed value of float32 x under stored scale s (broadcast)."""
        n = self.name
        if n.startswith("NVFP4"):
            eff = s / self.gs
            return e2m1(x / eff) * eff
        if n == "MXFP4":
            return e2m1(x * (1.0 / s)) * s
        if n == "MXFP8":
            return e4m3(x * (1.0 / s)) * s
        if n == "FP8":
            return e4m3(bf16(x / s)) * s
        lo, hi = (-8.0, 7.0) if n == "INT4" else (-128.0, 127.0)
        return torch.round(bf16(x / s).clamp(lo, hi)) * s

    def round_scale(self, s):
        """Nearest storable stored scale (0: unusable)."""
        if self.name.startswith("NVFP4"):
            return e4m3(s)
        if self.name.startswith("MX"):
            ex = torch.round(torch.log2(s.to(F64))).clamp(-127, 127).to(torch.int32)
            return torch.where(s > 0, torch.ldexp(torch.ones_like(s), ex), torch.zeros_like(s))
        return bf16(s)

    def rtn_scales(self, w):
        n, k = w.shape
        return self.scale(w.reshape(n, k // self.group, self.group))


def inverse_cholesky_upper(h, damp):
    mean = torch.diag(h).mean()
    for _ in range(4):
        hd = h.clone()
        hd.diagonal().add_(damp * mean)
        low, info = torch.linalg.cholesky_ex(hd)
        if info == 0:
            u, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(low), upper=True)
            if info == 0:
                return u, damp
        damp *= 10.0
    return None, damp


def gptq(w32, h32, fmt, block=128, damp=0.01, act_order=False, trace=None, scales=None):
    """Returns (w_hat [N, K] float32, stored scales [N, groups] float32, damp used).
    `scales`: given stored scales, used as static scales for every group."""
    n, k = w32.shape
    g = fmt.group
    h = h32.to(F64)
    h = (h + h.T) / 2
    perm = torch.arange(k)
    if act_order:
        perm = torch.sort(torch.diag(h), descending=True, stable=True).indices
    static = act_order or fmt.static or scales is not None
    if scales is not None:
        scales = scales.clone()
    else:
        scales = fmt.rtn_scales(w32) if static else torch.zeros(n, k // g, dtype=F32)
    w = w32.to(F64)[:, perm].clone()
    h = h[perm][:, perm]
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    u, damp = inverse_cholesky_upper(h, damp)
    if u is None:
        raise RuntimeError("H not factorable")
    q = torch.zeros(n, k, dtype=F32)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[:, i1:i2].clone()
        err = torch.zeros(n, i2 - i1, dtype=F64)
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            gi = col // g
            if not static and col % g == 0:
                cur = w1[:, i:i + g].to(F32)
                scales[:, gi] = fmt.scale(cur)
                if trace is not None:
                    trace["group_vals"][:, col:col + g] = cur
            x = w1[:, i].to(F32)
            if trace is not None:
                trace["x"][:, col] = x
            qv = fmt.qdq(x, scales[:, gi])
            q[:, i1 + i] = qv
            e = (w1[:, i] - qv.to(F64)) / u[i1 + i, i1 + i]
            w1[:, i + 1:] -= e.unsqueeze(1) * u[i1 + i, i1 + i + 1:i2].unsqueeze(0)
            err[:, i] = e
        w[:, i2:] -= err @ u[i1:i2, i2:]
    w_hat = torch.empty_like(q)
    w_hat[:, perm] = q
    return w_hat, scales, damp


def seq_weighted_error(w, w_hat, hd):
    """sum_i hd[i] (w - w_hat)^2 over the last axis, summed in order (as the C++ does)."""
    e = torch.zeros(w.shape[:-1], dtype=F64)
    for i in range(w.shape[-1]):
        d = w[..., i].to(F64) - w_hat[..., i].to(F64)
        e = e + hd[..., i].to(F64) * d * d
    return e


def scale_search(fmt, w32, w_hat_in, scales_in, hdiag, candidates=32, lo=0.5, hi=1.5):
    """Per-group improve-or-keep search (scale_search.h) on a given input quantization."""
    n, k = w32.shape
    g = fmt.group
    wg = w32.reshape(n, k // g, g)
    hd = hdiag.reshape(1, k // g, g)
    e_in = seq_weighted_error(wg, w_hat_in.reshape(n, k // g, g), hd)
    best_e = torch.full_like(e_in, float("inf"))
    best_s = torch.zeros_like(scales_in)
    prev = torch.zeros_like(scales_in)
    for c in range(candidates):
        f = lo + (hi - lo) * c / (candidates - 1) if candidates > 1 else lo
        s = fmt.round_scale((f * scales_in.to(F64)).to(F32))
        valid = (s > 0) & (s != prev)
        prev = torch.where(s > 0, s, prev)
        e = seq_weighted_error(wg, fmt.qdq(wg, s.unsqueeze(-1)), hd)
        e = torch.where(valid, e, torch.full_like(e, float("inf")))
        better = e < best_e
        best_e = torch.where(better, e, best_e)
        best_s = torch.where(better, s, best_s)
    keep = ~(best_e < e_in)
    s_out = torch.where(keep, scales_in, best_s)
    new = fmt.qdq(wg, best_s.unsqueeze(-1)).reshape(n, k)
    w_out = torch.where(keep.repeat_interleave(g, dim=1), w_hat_in, new)
    return w_out, s_out


# ------------------------------------------------------------------ comparison with the tool
def make_problem(n, k, t, seed, dead=()):
    """bf16 W [n, k] (a few outliers) and H = X^T X for X [t, k] with correlated inputs."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen) * 0.02
    w = bf16(torch.where(torch.rand(n, k, generator=gen) < 0.005, 8 * w, w))
    scale = torch.exp(1.2 * torch.randn(k, generator=gen, dtype=F64))
    z = torch.randn(t, k, generator=gen, dtype=F64)
    x = torch.empty_like(z)
    prev = torch.zeros(t, dtype=F64)
    for i in range(k):
        prev = 0.7 * prev + z[:, i]
        x[:, i] = prev
    x = (x + torch.randn(t, 3, generator=gen, dtype=F64) @ torch.randn(3, k, generator=gen, dtype=F64)) * scale
    x[:, list(dead)] = 0.0
    return w, (x.T @ x).to(F32)


def ulp_neighbours(x, steps=2):
    out, up, down = [], x.clone(), x.clone()
    for _ in range(steps):
        up = torch.nextafter(up, torch.tensor(float("inf")))
        down = torch.nextafter(down, torch.tensor(float("-inf")))
        out += [up, down]
    return out


def explain(fmt, r, col, tool_scales, ref_scales, trace):
    """Whether the first difference of row r (at original column col) is a rounding tie:
    the reference's decision flips within 2 float32 ulps of its input."""
    gi = col // fmt.group
    if tool_scales[r, gi] != ref_scales[r, gi]:  # the group's scale decision
        vals = trace["group_vals"][r, gi * fmt.group:(gi + 1) * fmt.group]
        base = fmt.scale(vals.unsqueeze(0))
        return any(bool(fmt.scale(v.unsqueeze(0)) != base) for v in ulp_neighbours(vals))
    x = trace["x"][r, col:col + 1]
    s = ref_scales[r, gi:gi + 1]
    base = fmt.qdq(x, s)
    return any(bool(fmt.qdq(v, s) != base) for v in ulp_neighbours(x))


def output_error(w, w_hat, h):
    d = (w.to(F64) - w_hat.to(F64))
    return float(((d @ h.to(F64)) * d).sum())


def compare_one(tool, work, name, fmt_name, n, k, t, seed, act_order=False, block=128, dead=(),
                search_first=False):
    w, h = make_problem(n, k, t, seed, dead)
    inp = os.path.join(work, f"{name}.in.safetensors")
    out = os.path.join(work, f"{name}.out")
    save_file({"w": w.contiguous(), "h": h.contiguous()}, inp)
    cmd = [tool, fmt_name, inp, out, "--block", str(block), "--scale-search", "--threads", "2"]
    if act_order:
        cmd.append("--act-order")
    if search_first:
        cmd.append("--search-first")
    if fmt_name == "NVFP4":
        cmd += ["--input-global-scale", "100"]
    subprocess.run(cmd, check=True)
    ours = load_file(os.path.join(out, "model.safetensors"))
    gs = nvfp4_global_scale(w) if fmt_name.startswith("NVFP4") else None
    fmt = Format(fmt_name, k, gs)
    trace = {"x": torch.zeros(n, k), "group_vals": torch.zeros(n, k)}
    rtn_scales = fmt.rtn_scales(w)
    rtn = fmt.qdq(w.reshape(n, k // fmt.group, fmt.group), rtn_scales.unsqueeze(-1)).reshape(n, k)
    ss_rtn, ss_rtn_scales = scale_search(fmt, w, rtn, rtn_scales, torch.diag(h))
    w_hat, scales, damp = gptq(w, h, fmt, block=block, act_order=act_order, trace=trace,
                               scales=ss_rtn_scales if search_first else None)
    diff = ours["w_hat"] != w_hat
    perm = torch.sort(torch.diag(h.to(F64)), descending=True, stable=True).indices if act_order else torch.arange(k)
    ties = unexplained = 0
    for r in torch.nonzero(diff.any(1)).flatten().tolist():
        first = int(perm[int(torch.nonzero(diff[r, perm])[0])])
        if explain(fmt, r, first, ours["scales"], scales, trace):
            ties += 1
        else:
            unexplained += 1
    # Scale search: the reference search on the tool's own GPTQ output (decoupled from GPTQ).
    ss_w, ss_s = scale_search(fmt, w, ours["w_hat"], ours["scales"], torch.diag(h))
    ss_diff = float((ours["w_hat_ss"] != ss_w).float().mean())
    res = {
        "case": name, "format": fmt_name, "shape": [n, k], "tokens": t, "act_order": act_order,
        "block": block, "dead": len(dead), "search_first": search_first,
        "frac_elements_differ": float(diff.float().mean()),
        "rows_differ": int(diff.any(1).sum()), "rows_tie": ties, "rows_unexplained": unexplained,
        "scales_differ": int((ours["scales"] != scales).sum()),
        "damp_ours": float(ours["damp_used"][0]), "damp_ref": damp,
        "scale_search_frac_differ": ss_diff,
        "scale_search_scales_differ": int((ours["scales_ss"] != ss_s).sum()),
        "gptq_over_rtn_output_error": output_error(w, ours["w_hat"], h) / output_error(w, rtn, h),
        "ss_over_gptq_output_error": output_error(w, ours["w_hat_ss"], h) / output_error(w, ours["w_hat"], h),
        "ss_rtn_over_rtn_output_error": output_error(w, ss_rtn, h) / output_error(w, rtn, h),
    }
    res["ok"] = (unexplained == 0 and res["frac_elements_differ"] <= 0.01 and ss_diff == 0.0
                 and res["gptq_over_rtn_output_error"] <= 1.0)
    return res


CASES = [  # name, format, n, k, tokens, seed, act_order, block, dead inputs[, search_first]
    ("nvfp4a16", "NVFP4A16", 64, 512, 768, 1, False, 128, ()),
    ("nvfp4a16_act", "NVFP4A16", 64, 512, 768, 2, True, 128, ()),
    ("nvfp4a16_b32_dead", "NVFP4A16", 48, 512, 768, 3, False, 32, (5, 100, 511)),
    ("nvfp4a16_lowrank", "NVFP4A16", 64, 512, 200, 4, False, 128, ()),
    ("nvfp4_w4a4", "NVFP4", 32, 256, 512, 5, False, 128, ()),
    ("mxfp4", "MXFP4", 64, 512, 768, 6, False, 128, ()),
    ("mxfp4_act", "MXFP4", 64, 512, 768, 7, True, 128, ()),
    ("mxfp8", "MXFP8", 32, 256, 512, 8, False, 64, ()),
    ("int4", "INT4", 64, 512, 768, 9, False, 128, ()),
    ("int4_act_dead", "INT4", 64, 512, 768, 10, True, 256, (0, 7)),
    ("int8", "INT8", 64, 512, 768, 11, False, 128, ()),
    ("int8_act", "INT8", 64, 512, 768, 12, True, 128, ()),
    ("fp8", "FP8", 32, 256, 512, 13, False, 128, ()),
    # scale search on RTN first, then GPTQ with those scales (same problems as above)
    ("nvfp4a16_ssfirst", "NVFP4A16", 64, 512, 768, 1, False, 128, (), True),
    ("mxfp4_ssfirst_act", "MXFP4", 64, 512, 768, 7, True, 128, (), True),
    ("int4_ssfirst", "INT4", 64, 512, 768, 9, False, 128, (), True),
    ("int8_ssfirst", "INT8", 64, 512, 768, 11, False, 128, (), True),
]


def cmd_compare(args):
    os.makedirs(args.work, exist_ok=True)
    failed = 0
    for case in CASES:
        r = compare_one(args.tool, args.work, *case)
        print(json.dumps(r), flush=True)
        failed += not r["ok"]
    print(f"gptq_reference: {len(CASES) - failed}/{len(CASES)} cases agree", flush=True)
    return 1 if failed else 0


def cmd_bench(args):
    p = load_file(args.problem)
    w, h = p["w"], p["h"]
    k = w.shape[1]
    fmt = Format(args.format, k, nvfp4_global_scale(w) if args.format.startswith("NVFP4") else None)
    if args.threads:
        torch.set_num_threads(args.threads)
    ours = load_file(args.ours)["w_hat"] if args.ours else None
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        w_hat, scales, _ = gptq(w, h, fmt)
        sec = time.perf_counter() - t0
        res = {"impl": "torch", "format": args.format, "shape": list(w.shape), "seconds": sec,
               "threads": torch.get_num_threads(), "rep": rep}
        if ours is not None:
            res["frac_elements_differ_vs_ours"] = float((ours != w_hat).float().mean())
        print(json.dumps(res), flush=True)
    if args.out:  # w_hat, the stored scales and the global scale, for bench/gptq_peer.py table
        os.makedirs(args.out, exist_ok=True)
        gs = torch.tensor([float(fmt.gs) if fmt.gs is not None else 1.0], dtype=F32)
        save_file({"w_hat": w_hat.contiguous(), "scales": scales.contiguous(), "global_scale": gs},
                  os.path.join(args.out, "model.safetensors"))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--tool", required=True)
    c.add_argument("--work", required=True)
    b = sub.add_parser("bench")
    b.add_argument("problem")
    b.add_argument("--format", default="NVFP4A16")
    b.add_argument("--ours")
    b.add_argument("--threads", type=int, default=0)
    b.add_argument("--repeats", type=int, default=1)
    b.add_argument("--out", help="directory to write model.safetensors with w_hat and scales")
    args = ap.parse_args()
    torch.manual_seed(0)
    return cmd_compare(args) if args.cmd == "compare" else cmd_bench(args)


if __name__ == "__main__":
    sys.exit(main())
