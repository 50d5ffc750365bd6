"""GPTQ against llm-compressor's own GPTQ on the problem of bench/gptq_bench.cc (bench only).

    python gptq_peer.py llmcompressor PROBLEM.safetensors OUT_DIR [--threads 1,2] [--repeats 3]
                                      [--actorder none,static] [--rtn-out DIR]
        (in llm-compressor's virtualenv, scripts/setup_peer_venv.sh llmcompressor ...)
    python gptq_peer.py table PROBLEM.safetensors NAME=DIR ...
        (in the test virtualenv: the summary table of bench/run_gptq_bench.sh)

`llmcompressor` calls llm-compressor's code, unmodified, the way its GPTQModifier does for one
Linear: compressed-tensors' NVFP4A16 preset on a BF16 nn.Linear holding W, llm-compressor's
weight observer (memoryless min-max: group scales and the global scale from the original W),
its prepare_batch (H / num_samples; GPTQ is invariant to H's scale, so num_samples = 1) and
its quantize_weight (float32, block 128, dampening 0.01 of mean(diag H)). Each timed run is
observer + prepare_batch + quantize_weight; repeats, thread counts and actorders interleave.
For each actorder A, writes OUT_DIR/A/model.safetensors (F32 "w_hat", the stored "scales" as
float32, F32 "global_scale") and appends one JSON line per run to OUT_DIR/A/runs.jsonl (and
stdout); --rtn-out DIR also writes compressed-tensors' RTN (fake_quantize with the observer's
scales) as a baseline.

`table`: for each NAME=DIR (DIR/model.safetensors with "w_hat", "scales", "global_scale";
DIR/runs.jsonl with one JSON object per timed run, other lines ignored), the median seconds
per thread count, tr(dW H dW^T) in float64 and the MSE of w_hat vs W, and the fraction of E2M1 codes, group scales and reconstructed values that differ
from the first NAME's (codes also from each --peer NAME's).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
from safetensors.torch import load_file, save_file

F32, F64 = torch.float32, torch.float64


def cmd_llmcompressor(args):
    from compressed_tensors.quantization import (
        ActivationOrdering,
        fake_quantize,
        preset_name_to_scheme,
    )
    from compressed_tensors.quantization.lifecycle.initialize import (
        initialize_module_for_quantization,
    )
    from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight
    from llmcompressor.modifiers.gptq.helpers import prepare_batch
    from llmcompressor.modifiers.quantization.calibration import initialize_observer, observe

    import llmcompressor

    p = load_file(args.problem)
    w, h = p["w"], p["h"]
    n, k = w.shape

    def make_linear(actorder):
        scheme = preset_name_to_scheme("NVFP4A16", ["Linear"])
        # GPTQModifier's actorder (its default "static" applies to NVFP4's TENSOR_GROUP).
        scheme.weights.actorder = None if actorder == "none" else ActivationOrdering(actorder)
        lin = torch.nn.Linear(k, n, bias=False, dtype=torch.bfloat16)
        with torch.no_grad():
            lin.weight.copy_(w.to(torch.bfloat16))  # W is bf16-representable: exact
        initialize_module_for_quantization(lin, scheme)
        initialize_observer(lin, "weight")
        return lin, scheme.weights

    linears = {a: make_linear(a) for a in args.actorder.split(",")}
    if args.rtn_out:  # compressed-tensors' RTN with the same observer scales, as a baseline
        lin, quant_args = next(iter(linears.values()))
        with torch.no_grad():
            observe(lin, "weight")
            qp = lin.weight_observer.get_qparams()
            rtn = fake_quantize(w, qp["scale"], qp["zero_point"], quant_args,
                                global_scale=qp["global_scale"])
        save_out(args.rtn_out, rtn, qp["scale"], qp["global_scale"])
    for rep in range(args.repeats):
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            for actorder, (lin, quant_args) in linears.items():
                hess = {lin: h.clone()}
                count = {lin: torch.tensor(1.0)}
                t0 = time.perf_counter()
                with torch.no_grad():
                    observe(lin, "weight")
                    qparams = lin.weight_observer.get_qparams()
                    weights, hessians, scales, zps, gscales = prepare_batch(
                        [lin], [qparams], hess, count)
                    q, _, rtn_fallback = quantize_weight(
                        weights=weights, hessians=hessians, scale=scales, zero_point=zps,
                        global_scale=gscales, quant_args=quant_args, blocksize=args.block,
                        percdamp=args.damp)
                sec = time.perf_counter() - t0
                line = json.dumps({
                    "impl": f"llm-compressor {llmcompressor.__version__}", "actorder": actorder,
                    "format": "NVFP4A16", "shape": [n, k], "threads": torch.get_num_threads(),
                    "rep": rep, "seconds": sec, "rtn_fallback": bool(rtn_fallback[0]),
                    "block": args.block, "damp": args.damp})
                print(line, flush=True)
                out = os.path.join(args.out, actorder)
                save_out(out, q[0], scales[0], gscales)
                with open(os.path.join(out, "runs.jsonl"), "a") as f:
                    f.write(line + "\n")
    return 0


def save_out(path, w_hat, scales, global_scale):
    os.makedirs(path, exist_ok=True)
    save_file({"w_hat": w_hat.to(F32).contiguous(), "scales": scales.to(F32).contiguous(),
               "global_scale": global_scale.to(F32).reshape(1).contiguous()},
              os.path.join(path, "model.safetensors"))


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=F64)


def e2m1_codes(w_hat, scales, gs):
    """Signed E2M1 value each element was written with: w_hat / (scale / gs), nearest grid point
    (the grid's spacing is >= 0.5, the float rounding of the division far below it)."""
    n, k = w_hat.shape
    eff = (scales.to(F64) / float(gs)).repeat_interleave(k // scales.shape[1], dim=1)
    y = torch.where(eff > 0, w_hat.to(F64) / eff, torch.zeros_like(eff))
    mag = E2M1[torch.bucketize(y.abs(), (E2M1[1:] + E2M1[:-1]) / 2)]
    off = float(((y.abs() - mag).abs() > 1e-3).double().mean())  # not storable as written
    return torch.where(y < 0, -mag, mag), off


def cmd_table(args):
    p = load_file(args.problem)
    w, h = p["w"].to(F64), p["h"].to(F64)
    h = (h + h.T) / 2
    rows = []
    for spec in args.impls:
        name, path = spec.split("=", 1)
        o = load_file(f"{path}/model.safetensors")
        d = w - o["w_hat"].to(F64)
        secs = {}
        runs = f"{path}/runs.jsonl"
        for line in open(runs) if os.path.exists(runs) else []:
            if line.strip().startswith("{"):
                r = json.loads(line)
                secs.setdefault(r["threads"], []).append(r["seconds"])
        codes, off_grid = e2m1_codes(o["w_hat"], o["scales"], o["global_scale"][0])
        rows.append({"name": name, "out": o, "codes": codes, "off_grid": off_grid,
                     "seconds": {t: statistics.median(v) for t, v in secs.items()},
                     "runs": secs,
                     "h_error": float(((d @ h) * d).sum()), "mse": float((d * d).mean()),
                     "global_scale": float(o["global_scale"][0])})
    by_name = {r["name"]: r for r in rows}
    refs = [rows[0]["name"]] + (args.peer.split(",") if args.peer else [])
    for r in rows:
        for ref in refs:
            b = by_name[ref]
            r[f"h_error_vs_{ref}"] = r["h_error"] / b["h_error"]
            r[f"codes_differ_vs_{ref}"] = float((r["codes"] != b["codes"]).double().mean())
            r[f"scales_differ_vs_{ref}"] = float((r["out"]["scales"] != b["out"]["scales"])
                                                 .double().mean())
            r[f"values_differ_vs_{ref}"] = float((r["out"]["w_hat"] != b["out"]["w_hat"])
                                                 .double().mean())
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k not in ("out", "codes")}), flush=True)
        if r["off_grid"] > 0:
            print(f"warning: {r['name']}: {r['off_grid']:.2%} of w_hat is not code * scale / gs",
                  flush=True)
    threads = sorted({t for r in rows for t in r["seconds"]})
    base = rows[0]["seconds"]
    hdr = (["impl"] + [f"s, {t} thr" for t in threads] + [f"/ {refs[0]}, {t} thr" for t in threads]
           + ["tr(dW H dW^T)", f"/ {refs[0]}", "MSE"]
           + [f"codes != {ref}" for ref in refs] + [f"scales != {refs[0]}"])
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in rows:
        cells = [r["name"]]
        cells += [f"{r['seconds'][t]:.2f}" if t in r["seconds"] else "-" for t in threads]
        cells += [f"{r['seconds'][t] / base[t]:.2f}x" if t in r["seconds"] and t in base else "-"
                  for t in threads]
        cells += [f"{r['h_error']:.4g}", f"{r[f'h_error_vs_{refs[0]}']:.4f}", f"{r['mse']:.4g}"]
        cells += [f"{r[f'codes_differ_vs_{ref}']:.2%}" for ref in refs]
        cells += [f"{r[f'scales_differ_vs_{refs[0]}']:.2%}"]
        print("| " + " | ".join(cells) + " |")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("llmcompressor")
    a.add_argument("problem")
    a.add_argument("out")
    a.add_argument("--threads", default="1,2")
    a.add_argument("--repeats", type=int, default=3)
    a.add_argument("--actorder", default="none",
                   help="comma-separated list of none, static (= weight), weight")
    a.add_argument("--block", type=int, default=128)
    a.add_argument("--damp", type=float, default=0.01)
    a.add_argument("--rtn-out", help="also write compressed-tensors' RTN (same scales) here")
    t = sub.add_parser("table")
    t.add_argument("problem")
    t.add_argument("impls", nargs="+")
    t.add_argument("--peer", help="NAME[,NAME...] to compare codes with as well")
    args = ap.parse_args()
    return cmd_llmcompressor(args) if args.cmd == "llmcompressor" else cmd_table(args)


if __name__ == "__main__":
    sys.exit(main())
