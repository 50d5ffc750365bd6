#!/usr/bin/env python3
"""PyTorch-autograd reference for `prismaquant probe` (tests/probe/run.sh).

  probe_reference.py check MANIFEST [--perturb QUANTITY=FACTOR ...]
      MANIFEST: tab-separated lines, checked in order (one Python process for all: importing
      torch + transformers costs several seconds)
        fixture    NAME  MODEL_DIR  WORK_DIR
        candidate  NAME  FMT  EXPORT_JSON  DENSE_DIR  [HEAD_EXPORT_DIR]
      FMT in BF16, NVFP4A16, INT4, INT8. EXPORT_JSON: `export --uniform FMT --lm-head FMT --json`;
      DENSE_DIR: `prismaquant dequantize` of that export (F32). HEAD_EXPORT_DIR (fallback while
      `dequantize` rejects an export whose lm_head is quantized): DENSE_DIR is the dequantized
      export with lm_head in BF16 and lm_head's W^ is decompressed from HEAD_EXPORT_DIR by
      compressed-tensors' decompression graph in float32 (tests/interop/ct_reference
      .ct_decompress_f32, equal to `dequantize` bit for bit per tests/interop).
  probe_reference.py make-moe OUT     a small random Qwen3-MoE (hidden = moe_intermediate = 128)
                                      whose shapes allow NVFP4A16 and INT4 everywhere, which the
                                      K=40 fixtures in tests/golden cannot hold (numpy only)
  probe_reference.py tokens OUT --vocab V [--docs N] [--seed S]
                                      a --calib-tokens file of random ids < V (no torch)

`check` reads the calibration samples the probe chose (W/probe/calibration/model.safetensors:
I32 ids/targets [S, T]) and recomputes, with transformers (float32, eager attention, eager
experts) and autograd, one backward per sample of the SUMMED next-token cross-entropy:

  fisher_trace = sum_s ||Gamma_s||_F^2 / T_total, Gamma_s = the Linear's weight gradient of that
                 sample from autograd (param.grad; packed 3-D expert parameters sliced per expert;
                 for a tied lm_head, whose parameter is the embedding, G_s^T X_s from hooks);
  g2_out[o] = sum_t G[t,o]^2 / T_total, x2_in[i] = sum_t X[t,i]^2 / T_total   (hooks),
  H = sum_t X^T X, input_amax = max |X|, samples (samples with >= 1 row), tokens (rows),
  where X / G are a Linear's input rows and output gradients: for nn.Linear modules forward hooks
  and tensor hooks; for the experts (transformers 5.23 keeps them packed 3-D, not nn.Linear) the
  experts module's forward is replaced by a copy of transformers' eager per-expert loop that
  records the routed rows (checked bit for bit against the stock forward's logits). The routed
  token counts are also counted independently from the router's top-k indices.

  Costs of the weight-only candidates (no activation quantization: BF16, NVFP4A16, INT4, INT8),
  with W the model's float weight, W^ = the export's weight made dense (FMT's DENSE_DIR:
  `prismaquant dequantize` of `prismaquant export --uniform FMT`, F32), dW = W - W^, g = g2_out,
  x = x2_in (both already / T):
    trace   = 1/2 * fisher_trace * mean(dW^2)
    channel = 1/2 * sum_o sum_i g[o] x[i] dW[o,i]^2
    hessian = 1/2 * sum_o g[o] * (dW_o H dW_o^T) / T_total
    output  = hessian (weight-only), and also checked equal to the probe's own hessian.
  Also: the probe's weight_mse = mean(dW^2), and that the probe prices FMT for exactly the
  Linears the export put in FMT (EXPORT_JSON: `export --json`, its "kept_bf16" list).

Everything is accumulated in float64 from the float32 tensors autograd gives. Differences come
only from float32 summation order in the two forward/backward passes (C++ vs torch).
--perturb QUANTITY=FACTOR scales an expected value (nll, fisher_trace, g2_out, x2_in, input_amax,
cost) to prove the check fails (used once by hand, not by run.sh).
Exit status 1 on any failure; the last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import struct
import sys
import types
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SRC = Path(os.environ.get("PQ_SOURCE_DIR", Path(__file__).resolve().parents[2])).resolve()

# ---------------------------------------------------------------------------------------------
# Tolerances (relative), each ~10x the maximum measured over the five fixtures of run.sh
# (stories260K 6x64; golden qwen3_moe, per-expert and packed layouts, 4x32; golden qwen3 4x32;
# the generated moe128 4x32), float32 C++ engine vs float32 torch, one thread each:
#   quantity       measured  where
#   nll            4.4e-8    qwen3            (mean NLL over the calibration tokens)
#   fisher_trace   2.9e-6    qwen3_moe expert 0 up_proj
#   g2_out         7.4e-6    qwen3_moe expert 0 up_proj
#   x2_in          9.4e-7    stories260K o_proj
#   input_amax     6.7e-7    qwen3_moe expert down_proj
#   cost           4.7e-6    moe128 INT8 hessian (all estimators of NVFP4A16/INT4/INT8, and
#                            BF16's trace/channel)
#   BF16 hessian   3.4e-6    (the probe forms X·(W − Ŵ)ᵀ before squaring; when it formed
#                            Y − X·Ŵᵀ from two products this was 3.0e-5 — BF16's ΔW ≈ 2⁻⁹ W
#                            lost ~9 bits — so it stays reported on its own)
#   weight_mse     6.2e-14   (same W and W^ on both sides: the probe's RTN == export's)
#   self_grad      3.2e-7    (the reference against itself: hooks vs autograd)
# The differences are float32 rounding of the forward/backward in two summation orders. A 1 %
# error in any quantity, a missing sample (1/6 = 17 %), a wrong T normalisation, or G from the
# mean instead of the SUMMED loss (factor T) all fail by orders of magnitude; --perturb shows
# 1 % (fisher_trace, cost) and 0.1 % (g2_out, x2_in, input_amax) failing.
TOL = {
    "nll": 1e-6,
    "fisher_trace": 3e-5,
    "g2_out": 7e-5,      # max_o |a - b| / max_o |b|, per Linear
    "x2_in": 1e-5,       # max_i |a - b| / max_i |b|, per Linear
    "input_amax": 1e-5,
    "cost": 5e-5,        # every estimator of every weight-only candidate, except ...
    "cost_bf16_hessian": 5e-5,  # BF16's hessian and output, reported apart (see above)
    "weight_mse": 1e-9,
    "self_grad": 3e-6,   # reference self-check: sum_s G_s^T X_s from hooks vs autograd grads
}
WEIGHT_ONLY = ("BF16", "NVFP4A16", "INT4", "INT8")
ESTIMATORS = ("trace", "channel", "hessian", "output")


# ---------------------------------------------------------------------------------------------
# model

def load_model(model_dir: Path):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    m = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32,
                                             attn_implementation="eager")
    if hasattr(m.config, "_experts_implementation"):
        try:
            m.set_experts_implementation("eager")
        except Exception:
            m.config._experts_implementation = "eager"
    return m.eval()


class Recorder:
    """Per-sample X / G of every Linear (dense nn.Linear and per-expert)."""

    def __init__(self):
        self.x: dict[str, torch.Tensor] = {}
        self.g: dict[str, torch.Tensor] = {}
        self.routed: dict[str, int] = {}   # experts: routed tokens this sample, from the router

    def reset(self):
        self.x.clear()
        self.g.clear()
        self.routed.clear()

    def record(self, name: str, x: torch.Tensor, y: torch.Tensor):
        assert name not in self.x, f"{name} called twice in one sample"
        self.x[name] = x.detach().reshape(-1, x.shape[-1])

        def hook(grad, name=name):
            assert name not in self.g, f"{name}: two gradients"
            self.g[name] = grad.detach().reshape(-1, grad.shape[-1]).clone()
        y.register_hook(hook)


def expert_forward_recording(rec: Recorder, prefix: str):
    """transformers 5.23 Qwen3MoeExperts.forward (eager loop), verbatim but for the records."""
    def forward(self, hidden_states, top_k_index, top_k_weights):
        final_hidden_states = torch.zeros_like(hidden_states)
        with torch.no_grad():
            expert_mask = torch.nn.functional.one_hot(top_k_index, num_classes=self.num_experts + 1)
            expert_mask = expert_mask.permute(2, 1, 0)
            expert_hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()
        for expert_idx in expert_hit:
            expert_idx = expert_idx[0]
            if expert_idx == self.num_experts:
                continue
            e = int(expert_idx)
            top_k_pos, token_idx = torch.where(expert_mask[expert_idx])
            current_state = hidden_states[token_idx]
            gate_up = torch.nn.functional.linear(current_state, self.gate_up_proj[expert_idx])
            rec.record(f"{prefix}.{e}.gate_up", current_state, gate_up)
            gate, up = gate_up.chunk(2, dim=-1)
            down_in = self.act_fn(gate) * up
            current_hidden_states = torch.nn.functional.linear(down_in, self.down_proj[expert_idx])
            rec.record(f"{prefix}.{e}.down_proj", down_in, current_hidden_states)
            current_hidden_states = current_hidden_states * top_k_weights[token_idx, top_k_pos, None]
            final_hidden_states.index_add_(0, token_idx, current_hidden_states.to(final_hidden_states.dtype))
        return final_hidden_states
    return forward


def instrument(model, rec: Recorder):
    """Forward + output-gradient hooks on every nn.Linear (lm_head included; the Qwen3-MoE
    router is not an nn.Linear), the experts' forward replaced by the recording copy, a hook on
    each router counting routed tokens per expert. Returns ({name: nn.Linear}, tied)."""
    linears = {}
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            mod.register_forward_hook(lambda m, inp, out, name=name: rec.record(name, inp[0], out))
            linears[name] = mod
        cls = type(mod).__name__
        if cls.endswith("Experts") and hasattr(mod, "gate_up_proj"):
            mod.forward = types.MethodType(expert_forward_recording(rec, name), mod)
        if cls.endswith("TopKRouter"):
            def router_hook(m, inp, out, name=name):
                idx = out[2]
                prefix = name.rsplit(".", 1)[0] + ".experts"
                for e in range(m.num_experts):
                    rec.routed[f"{prefix}.{e}"] = int((idx == e).any(dim=-1).sum())
            mod.register_forward_hook(router_hook)
    return linears, tied


def expert_modules(model):
    out = {}
    for name, mod in model.named_modules():
        if type(mod).__name__.endswith("Experts") and hasattr(mod, "gate_up_proj"):
            out[name] = mod
    return out


# ---------------------------------------------------------------------------------------------
# reference statistics

class Stats:
    def __init__(self, n, k):
        self.n, self.k = n, k
        self.samples = 0
        self.tokens = 0
        self.fisher = 0.0
        self.g2 = torch.zeros(n, dtype=torch.float64)
        self.x2 = torch.zeros(k, dtype=torch.float64)
        self.h = torch.zeros(k, k, dtype=torch.float64)
        self.amax = 0.0
        self.gx = torch.zeros(n, k, dtype=torch.float64)     # sum_s G_s^T X_s (hooks)
        self.grad = torch.zeros(n, k, dtype=torch.float64)   # sum_s Gamma_s (autograd)
        self.routed = 0                                      # experts: from the router's top-k

    def add(self, x: torch.Tensor, g: torch.Tensor, gamma: torch.Tensor):
        assert x.shape[0] == g.shape[0] and x.shape[1] == self.k and g.shape[1] == self.n
        if x.shape[0] == 0:
            return
        self.samples += 1
        self.tokens += x.shape[0]
        xd, gd = x.double(), g.double()
        self.fisher += float((gamma.double() ** 2).sum())
        self.g2 += (gd ** 2).sum(0)
        self.x2 += (xd ** 2).sum(0)
        self.h += xd.T @ xd
        self.amax = max(self.amax, float(x.abs().max()))
        self.gx += gd.T @ xd
        self.grad += gamma.double()


def reference(model_dir: Path, ids: torch.Tensor, targets: torch.Tensor, check_stock: bool):
    torch.manual_seed(0)
    model = load_model(model_dir)
    experts = expert_modules(model)
    # the unmodified model, to show the recording experts forward computes the same logits
    stock = load_model(model_dir) if check_stock and experts else None
    rec = Recorder()
    linears, tied = instrument(model, rec)
    for p in model.parameters():
        p.requires_grad_(True)
    weights: dict[str, torch.Tensor] = {}
    for name, mod in linears.items():
        if name.endswith(".mlp.gate"):
            continue
        weights[name] = mod.weight.detach().clone()
    inter = {}
    for name, mod in experts.items():
        inter[name] = mod.gate_up_proj.shape[1] // 2
        for e in range(mod.gate_up_proj.shape[0]):
            gu = mod.gate_up_proj.detach()[e]
            i = inter[name]
            weights[f"{name}.{e}.gate_proj"] = gu[:i].clone()
            weights[f"{name}.{e}.up_proj"] = gu[i:].clone()
            weights[f"{name}.{e}.down_proj"] = mod.down_proj.detach()[e].clone()
    stats = {m: Stats(*w.shape) for m, w in weights.items()}
    nll_sum = 0.0
    stock_equal = None
    S, T = ids.shape
    for s in range(S):
        rec.reset()
        model.zero_grad(set_to_none=True)
        inp = ids[s:s + 1].long()
        logits = model(input_ids=inp).logits[0]
        loss = F.cross_entropy(logits, targets[s].long(), reduction="sum")
        if stock is not None and s == 0:
            with torch.no_grad():
                stock_equal = bool(torch.equal(stock(input_ids=inp).logits[0], logits.detach()))
        loss.backward()
        nll_sum += float(loss.detach().double())
        # per-sample weight gradients Gamma_s from autograd
        gamma = {}
        for name, mod in linears.items():
            if name in stats:
                if name == "lm_head" and tied:
                    continue   # its parameter is the embedding; Gamma = G^T X (below)
                gamma[name] = mod.weight.grad.detach().clone() if mod.weight.grad is not None \
                    else torch.zeros_like(mod.weight)
        for name, mod in experts.items():
            i = inter[name]
            gu, dn = mod.gate_up_proj.grad, mod.down_proj.grad
            for e in range(mod.gate_up_proj.shape[0]):
                gamma[f"{name}.{e}.gate_proj"] = gu[e][:i].detach().clone()
                gamma[f"{name}.{e}.up_proj"] = gu[e][i:].detach().clone()
                gamma[f"{name}.{e}.down_proj"] = dn[e].detach().clone()
        # split the experts' fused gate_up records into gate_proj / up_proj rows
        for key in [k for k in rec.x if k.endswith(".gate_up")]:
            base = key[: -len(".gate_up")]
            prefix = base.rsplit(".", 1)[0]
            i = inter[prefix]
            x, g = rec.x.pop(key), rec.g.pop(key)
            rec.x[base + ".gate_proj"], rec.g[base + ".gate_proj"] = x, g[:, :i]
            rec.x[base + ".up_proj"], rec.g[base + ".up_proj"] = x, g[:, i:]
        for m, st in stats.items():
            x = rec.x.get(m)
            if x is None:   # an expert no token of this sample chose
                continue
            g = rec.g[m]
            gm = gamma.get(m)
            if gm is None:
                gm = g.T @ x   # tied lm_head: the output projection's own gradient
            st.add(x, g, gm)
            if ".experts." in m:
                st.routed += rec.routed[m.rsplit(".", 1)[0]]
    return {"stats": stats, "weights": weights, "nll": nll_sum / (S * T), "tied": tied,
            "stock_equal": stock_equal, "experts": bool(experts)}


# ---------------------------------------------------------------------------------------------
# probe outputs

def read_probe(work: Path):
    from safetensors.torch import load_file
    pj = json.loads((work / "probe.json").read_text())
    vec = {}
    for d in sorted((work / "probe").iterdir()):
        if d.is_dir() and (d.name.startswith("layer_") or d.name == "head"):
            vec.update(load_file(str(d / "model.safetensors")))
    cal = load_file(str(work / "probe" / "calibration" / "model.safetensors"))
    return pj, vec, cal


def load_dense(d: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open
    out = {}
    for f in sorted(d.glob("*.safetensors")):
        with safe_open(str(f), "pt") as sf:
            for k in sf.keys():
                out[k] = sf.get_tensor(k)
    return out


def quantized_modules(export_dir: Path) -> set[str]:
    """Modules the export wrote quantized (a weight_packed or weight_scale tensor)."""
    out = set()
    for f in sorted(export_dir.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            for k in json.loads(fh.read(n)):
                if k.endswith((".weight_packed", ".weight_scale")):
                    out.add(k.rsplit(".", 1)[0])
    return out


def ct_head_weight(export_dir: Path) -> torch.Tensor:
    """lm_head's W^ from a compressed-tensors export, by ct's decompression graph in float32."""
    sys.path.insert(0, str(SRC / "tests" / "engine"))
    sys.path.insert(0, str(SRC / "tests" / "interop"))
    import ct_dense  # noqa: E402  (tests/engine: schemes_by_module, our_fmt)
    import ct_reference  # noqa: E402
    import pqtest  # noqa: E402
    ck = pqtest.load_checkpoint(export_dir)
    scheme = ct_dense.schemes_by_module(ck.qconfig, ["lm_head"]).get("lm_head")
    if scheme is None:
        raise RuntimeError(f"{export_dir}: lm_head is not quantized")
    fmt = ct_dense.our_fmt(scheme.format, scheme.weights.num_bits)
    return ct_reference.ct_decompress_f32(ck.module("lm_head"), scheme, fmt).float()


def dense_weight(dense, head_w, module, tied):
    if module == "lm_head" and head_w is not None:
        return head_w
    w = dense.get(module + ".weight")
    if w is None and module == "lm_head" and tied:
        w = dense.get("model.embed_tokens.weight")
    return None if w is None else w.float()


# ---------------------------------------------------------------------------------------------
# check

class Report:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.max_err: dict[str, tuple[float, str]] = {}

    def ok(self, msg):
        self.passed += 1
        print(f"ok   {self.name}: {msg}", flush=True)

    def bad(self, msg):
        self.failed += 1
        print(f"FAIL {self.name}: {msg}", flush=True)

    def err(self, quantity, value, where):
        cur = self.max_err.get(quantity)
        if cur is None or not value <= cur[0]:   # NaN counts as the worst
            self.max_err[quantity] = (value, where)

    def summarize(self, quantity, tol, count, what=""):
        v, where = self.max_err.get(quantity, (0.0, "-"))
        msg = f"{quantity}: max rel err {v:.3g} at {where} (tol {tol:g}, {count} compared){what}"
        if v <= tol:
            self.ok(msg)
        else:
            self.bad(msg)


def rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    d = abs(a - b)
    return d / abs(b) if b != 0 else math.inf


def vec_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (a relative error that tiny entries cannot blow up)."""
    a, b = a.double(), b.double()
    if a.shape != b.shape:
        return math.inf
    d = float((a - b).abs().max()) if a.numel() else 0.0
    scale = float(b.abs().max()) if b.numel() else 0.0
    if d == 0:
        return 0.0
    return d / scale if scale > 0 else math.inf


def check_fixture(name, model_dir: Path, work: Path, candidates, perturb) -> Report:
    rep = Report(name)
    pj, vec, cal = read_probe(work)
    ids, targets = cal["ids"], cal["targets"]
    S, T = ids.shape
    TT = S * T
    if not torch.equal(ids[:, 1:], targets[:, :-1]):
        rep.bad("calibration: targets are not ids shifted by one")
    c = pj["calibration"]
    if (c["samples"], c["seqlen"], c["tokens"]) == (S, T, TT):
        rep.ok(f"calibration: {S} samples x {T} tokens = {TT} scored tokens")
    else:
        rep.bad(f"calibration: probe.json {c['samples']}x{c['seqlen']}={c['tokens']} vs file {S}x{T}")

    ref = reference(model_dir, ids, targets, check_stock=True)
    stats, weights, tied = ref["stats"], ref["weights"], ref["tied"]
    if ref["experts"]:
        if ref["stock_equal"]:
            rep.ok("the recording experts forward gives the stock eager forward's logits bit for bit")
        else:
            rep.bad("the recording experts forward changes the logits (reference invalid)")
    e = rel(c["nll"], ref["nll"] * perturb.get("nll", 1.0))
    rep.err("nll", e, "calibration")
    msg = (f"calibration mean NLL {c['nll']:.8f} vs torch {ref['nll']:.8f}: rel err {e:.3g} "
           f"(tol {TOL['nll']:g})")
    rep.ok(msg) if e <= TOL["nll"] else rep.bad(msg)

    probe = {l["module"]: l for l in pj["linears"]}
    missing = sorted(set(stats) - set(probe))
    extra = sorted(set(probe) - set(stats))
    if missing or extra:
        rep.bad(f"Linear sets differ: not in probe {missing[:6]}, not in reference {extra[:6]}")
    else:
        rep.ok(f"probe reports exactly the {len(stats)} Linears of the model "
               f"({sum('.experts.' in m for m in stats)} per-expert, lm_head{' tied' if tied else ''})")

    # reference self-check: hooks' sum_s G_s^T X_s equals autograd's sum_s Gamma_s
    for m, st in stats.items():
        rep.err("self_grad", vec_rel(st.gx, st.grad), m)
    rep.summarize("self_grad", TOL["self_grad"], len(stats),
                  " [reference self-check: hooks' G^T X vs autograd weight grads]")

    both = sorted(set(stats) & set(probe))
    n_exact = n_exact_bad = 0
    routed_bad = []
    for m in both:
        st, p = stats[m], probe[m]
        for key, want in (("rows", st.n), ("cols", st.k), ("samples", st.samples), ("tokens", st.tokens)):
            n_exact += 1
            if p.get(key) != want:
                n_exact_bad += 1
                rep.bad(f"{m}: {key} {p.get(key)} vs reference {want}")
        if ".experts." in m and st.routed != st.tokens:
            routed_bad.append(m)
        rep.err("fisher_trace", rel(p["fisher_trace"], st.fisher / TT * perturb.get("fisher_trace", 1.0)), m)
        rep.err("input_amax", rel(p["input_amax"], st.amax * perturb.get("input_amax", 1.0)), m)
        for q, ref_v in (("g2_out", st.g2), ("x2_in", st.x2)):
            got = vec.get(f"{m}.{q}")
            if got is None:
                rep.bad(f"{m}: no {q} in the work dir")
                continue
            rep.err(q, vec_rel(got, ref_v / TT * perturb.get(q, 1.0)), m)
    if n_exact_bad == 0:
        rep.ok(f"rows/cols/samples/tokens equal for every Linear ({n_exact} exact comparisons)")
    if ref["experts"]:
        if routed_bad:
            rep.bad(f"reference: recorded expert rows differ from the router's top-k counts: {routed_bad[:4]}")
        else:
            ntok = [f"L{m.split('.')[2]}E{m.split('.')[5]}:{stats[m].tokens}" for m in both
                    if ".experts." in m and m.endswith(".gate_proj")]
            rep.ok("expert tokens = routed tokens counted from the router's top-k (" + " ".join(ntok) + ")")
    for q in ("fisher_trace", "g2_out", "x2_in", "input_amax"):
        rep.summarize(q, TOL[q], len(both))

    # costs of the weight-only candidates
    units: dict[str, set] = {}
    for m, p in probe.items():
        units.setdefault(p["unit"], set()).add(m)
    n_cost = n_cand = n_bf16 = 0
    tested = []
    for fmt, export_json, dense_dir, head_export in candidates:
        exp = json.loads(Path(export_json).read_text())
        kept = {k["module"]: k.get("reason", "") for k in exp.get("kept_bf16", [])}
        exported = quantized_modules(Path(export_json).with_suffix("")) if fmt != "BF16" else set(stats)
        dense = load_dense(Path(dense_dir))
        head_w = None
        if head_export and "lm_head" in exported:
            try:
                head_w = ct_head_weight(Path(head_export))
            except Exception as ex:
                rep.bad(f"{fmt}: lm_head W^ from {head_export}: {ex}")
        tested.append(fmt)
        priced = {m for m, p in probe.items() if any(cd["format"] == fmt for cd in p["candidates"])}
        # Every Linear the export writes in FMT must be priced; a priced one the export keeps
        # BF16 only because a sibling of its decision unit cannot hold FMT (export --uniform
        # keeps whole units; the probe lists each Linear's own feasible formats).
        unpriced = sorted(exported - priced)
        if unpriced:
            rep.bad(f"{fmt}: export writes it for {len(unpriced)} Linears the probe does not price: {unpriced[:6]}")
        unexplained = [m for m in sorted(priced - exported)
                       if not (m in kept and kept[m].split(":")[0] != m
                               and kept[m].split(":")[0] in units.get(probe[m]["unit"], ()))]
        if unexplained:
            rep.bad(f"{fmt}: probe prices it for {len(unexplained)} Linears the export cannot write "
                    f"in it: {[(m, kept.get(m, 'not in kept_bf16')) for m in unexplained[:4]]}")
        if fmt != "BF16" and not unpriced and not unexplained:
            rep.ok(f"{fmt}: priced for {len(priced)} Linears, written by export for {len(exported)}"
                   + (f" (the other {len(priced - exported)}: a unit sibling cannot hold {fmt})"
                      if priced - exported else ""))
        for m in sorted(priced & exported):
            w = weights[m]
            w_hat = dense_weight(dense, head_w, m, tied)
            if w_hat is None or w_hat.shape != w.shape:
                rep.bad(f"{fmt}: {m}: no dense weight of shape {tuple(w.shape)} in {dense_dir}")
                continue
            st = stats[m]
            cand = next(cd for cd in probe[m]["candidates"] if cd["format"] == fmt)
            dw = w.double() - w_hat.double()
            g = st.g2 / TT
            x = st.x2 / TT
            want = {
                "trace": 0.5 * (st.fisher / TT) * float((dw ** 2).mean()),
                "channel": 0.5 * float((g[:, None] * x[None, :] * dw ** 2).sum()),
                "hessian": 0.5 * float((g * ((dw @ st.h) * dw).sum(1)).sum()) / TT,
            }
            want["output"] = want["hessian"]
            for est in ESTIMATORS:
                got = cand["cost"][est]
                ref_v = want[est] * perturb.get("cost", 1.0)
                e = rel(got, ref_v)
                if fmt == "BF16" and est in ("hessian", "output"):
                    rep.err("cost_bf16_hessian", e, f"{m} {est}")
                    n_bf16 += 1
                else:
                    rep.err("cost", e, f"{m} {fmt} {est}")
                rep.err(f"cost.{est}", e, f"{m} {fmt}")
                rep.err(f"cost[{fmt}]", e, f"{m} {est}")
                n_cost += 1
            n_cand += 1
            if cand["cost"]["output"] != cand["cost"]["hessian"]:
                rep.bad(f"{fmt}: {m}: output cost {cand['cost']['output']!r} != hessian "
                        f"{cand['cost']['hessian']!r} for a weight-only format")
            rep.err("weight_mse", rel(cand["weight_mse"], float((dw ** 2).mean())), f"{m} {fmt}")
    if n_cand:
        for key in [f"cost.{e}" for e in ESTIMATORS] + [f"cost[{f}]" for f in tested]:
            if key in rep.max_err:
                v, where = rep.max_err[key]
                print(f"     {name}: {key}: max rel err {v:.3g} at {where}")
        rep.summarize("cost", TOL["cost"], n_cost - n_bf16, f" [{', '.join(tested)}; {n_cand} candidates]")
        if "BF16" in tested:
            rep.summarize("cost_bf16_hessian", TOL["cost_bf16_hessian"], n_bf16,
                          " [BF16 hessian/output: float32 cancellation in the probe, see TOL]")
        rep.summarize("weight_mse", TOL["weight_mse"], n_cand, " [probe's W^ == export's W^]")
        rep.ok(f"output cost == hessian cost exactly for all {n_cand} weight-only candidates")
    elif candidates:
        rep.bad("no weight-only candidate compared")
    return rep


def check(a) -> int:
    _import_torch()
    torch.set_num_threads(1)
    perturb = {}
    for p in a.perturb or []:
        q, f = p.split("=")
        perturb[q] = float(f)
        print(f"note: --perturb {q} x {f} (self-test of this test: it must FAIL)")
    fixtures, cands = [], {}
    for line in Path(a.manifest).read_text().splitlines():
        if not line.strip():
            continue
        f = line.split("\t")
        if f[0] == "fixture" and len(f) == 4:
            fixtures.append((f[1], Path(f[2]), Path(f[3])))
        elif f[0] == "candidate" and len(f) in (5, 6):
            if f[2] not in WEIGHT_ONLY:
                raise SystemExit(f"probe_reference: {f[2]} is not a weight-only format {WEIGHT_ONLY}")
            cands.setdefault(f[1], []).append((f[2], f[3], f[4], f[5] if len(f) == 6 else None))
        else:
            raise SystemExit(f"probe_reference: bad manifest line: {line!r}")
    reps = []
    for name, model_dir, work in fixtures:
        try:
            reps.append(check_fixture(name, model_dir, work, cands.get(name, []), perturb))
        except Exception as ex:  # a crash is a failure of this fixture, not of the others
            import traceback
            traceback.print_exc()
            r = Report(name)
            r.bad(f"reference crashed: {type(ex).__name__}: {ex}")
            reps.append(r)
    qs = ["nll", "fisher_trace", "g2_out", "x2_in", "input_amax", "cost", "cost_bf16_hessian", "cost.trace",
          "cost.channel", "cost.hessian", "cost.output", "weight_mse", "self_grad"]
    print("summary: max rel err per quantity (tol)")
    print("  " + f"{'':18s}" + "".join(f"{r.name[:16]:>17s}" for r in reps))
    for q in qs:
        tol = f"({TOL[q]:g})" if q in TOL else "(info)"
        row = "".join(f"{r.max_err[q][0]:17.3g}" if q in r.max_err else f"{'-':>17s}" for r in reps)
        print(f"  {q:18s}{row}   {tol}")
    passed = sum(r.passed for r in reps)
    failed = sum(r.failed for r in reps)
    main_q = ("nll", "fisher_trace", "g2_out", "x2_in", "input_amax", "cost", "cost_bf16_hessian",
              "weight_mse")
    print(json.dumps({"passed": passed, "failed": failed,
                      "max_rel_err": {q: max((r.max_err[q][0] for r in reps if q in r.max_err),
                                             default=None) for q in main_q}}))
    return 0 if failed == 0 and reps else 1


def _import_torch():
    global torch, F
    import torch  # noqa: F811
    import torch.nn.functional as F  # noqa: F811


# ---------------------------------------------------------------------------------------------
# fixtures (numpy only: no torch import)

def make_moe(a) -> int:
    """Qwen3-MoE, 2 layers, hidden 128, 4 heads x 32, moe_intermediate 128: every Linear has
    K = 128 (NVFP4A16, INT4, INT8 all fit; experts' gate/up share the NVFP4 global scale),
    4 experts top-2, vocab 97, untied, q/k norms. Written as transformers' save_pretrained
    writes Qwen3-MoE (per-expert 2-D tensors, F32, tests/golden/README.md). Init like
    scripts/make_golden.py: N(0, s^2) (s = 0.1, embedding 0.5), norms U(0.6, 1.4)."""
    import numpy as np
    from safetensors.numpy import save_file
    V, H, I, E, L, nq, nkv, hd = 97, 128, 128, 4, 2, 4, 2, 32
    cfg = {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "decoder_sparse_step": 1,
        "dtype": "float32", "head_dim": hd, "hidden_act": "silu", "hidden_size": H,
        "initializer_range": 0.1, "intermediate_size": 64, "max_position_embeddings": 256,
        "mlp_only_layers": [], "moe_intermediate_size": I, "norm_topk_prob": True,
        "num_attention_heads": nq, "num_experts_per_tok": 2, "num_hidden_layers": L,
        "num_key_value_heads": nkv, "num_local_experts": E, "output_router_logits": False,
        "pad_token_id": None, "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "router_aux_loss_coef": 0.001, "sliding_window": None, "tie_word_embeddings": False,
        "use_cache": True, "use_sliding_window": False, "vocab_size": V,
    }
    shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,), "lm_head.weight": (V, H)}
    for l in range(L):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
                       p + "self_attn.q_proj.weight": (nq * hd, H), p + "self_attn.k_proj.weight": (nkv * hd, H),
                       p + "self_attn.v_proj.weight": (nkv * hd, H), p + "self_attn.o_proj.weight": (H, nq * hd),
                       p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,),
                       p + "mlp.gate.weight": (E, H)})
        for e in range(E):
            shapes.update({p + f"mlp.experts.{e}.gate_proj.weight": (I, H),
                           p + f"mlp.experts.{e}.up_proj.weight": (I, H),
                           p + f"mlp.experts.{e}.down_proj.weight": (H, I)})
    rng = np.random.default_rng(a.seed)
    t = {}
    for k in sorted(shapes):
        if k.endswith("norm.weight"):
            t[k] = rng.uniform(0.6, 1.4, shapes[k]).astype(np.float32)
        else:
            t[k] = ((0.5 if "embed" in k else 0.1) * rng.standard_normal(shapes[k])).astype(np.float32)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "eos_token_id": 2}, indent=2) + "\n")
    save_file(t, str(out / "model.safetensors"), metadata={"format": "pt"})
    return 0


def make_tokens(a) -> int:
    r = random.Random(a.seed)
    with open(a.out, "w") as f:
        for _ in range(a.docs):
            n = r.randrange(a.min_len, a.max_len + 1)
            f.write(" ".join(str(r.randrange(a.vocab)) for _ in range(n)) + "\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("manifest")
    c.add_argument("--perturb", action="append", help="QUANTITY=FACTOR (self-test: must fail)")
    mm = sub.add_parser("make-moe")
    mm.add_argument("out")
    mm.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("tokens")
    t.add_argument("out")
    t.add_argument("--vocab", type=int, required=True)
    t.add_argument("--docs", type=int, default=12)
    t.add_argument("--min-len", type=int, default=20)
    t.add_argument("--max-len", type=int, default=60)
    t.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    return {"check": check, "make-moe": make_moe, "tokens": make_tokens}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
