#!/usr/bin/env python3
"""Checks tests/golden against an independent re-implementation (plain torch ops in float64,
no transformers), written from /work/shared/reference/architectures.md §1-2 and
tests/golden/README.md only: if this passes, the README's description is enough to reproduce
every reference tensor, which is what the C++ engine has to do.

For every fixture and every weight layout it holds (model/ = per-expert, model_packed/), and
also with config_legacy.json in place of model/config.json: reads config.json +
model.safetensors, runs forward + autograd backward in float64 and compares with
golden.safetensors: logits, loss, hidden.*, grad_hidden.*, final_normed, every grad.*,
rope.inv_freq and the MoE routing. Fixtures of architectures not implemented here (Qwen3.5/3.6,
Qwen3-Next: model_type not in IMPLEMENTED) are skipped with a printed note; scripts/make_golden.py
checks those against its own float64 re-implementation when it writes them.
Tolerances: max|ours - golden| <= 2e-5 * max|golden| (+1e-7) for values, 1e-4 for gradients
(golden is float32, ours float64).

  $venv/bin/python tests/engine/golden_independent.py [--golden tests/golden] [NAME ...]
Prints one line per check and "N passed, N failed"; exit 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

D = torch.float64
IMPLEMENTED = {"llama", "qwen2", "qwen3", "qwen3_moe"}   # model_type values this file re-implements


def read_config(c: dict) -> dict:
    """Accepts transformers-5 keys (rope_parameters, num_local_experts) and hub keys
    (rope_theta / rope_scaling top level, num_experts)."""
    rp = dict(c.get("rope_parameters") or {})
    if "rope_theta" not in rp:
        rp["rope_theta"] = c.get("rope_theta", 10000.0)
    sc = c.get("rope_scaling") or {}
    for k, v in sc.items():
        rp.setdefault(k, v)
    if "type" in rp and "rope_type" not in rp:
        rp["rope_type"] = rp["type"]
    rp.setdefault("rope_type", "default")
    n_q = c["num_attention_heads"]
    return dict(
        model_type=c["model_type"], H=c["hidden_size"], L=c["num_hidden_layers"], n_q=n_q,
        n_kv=c.get("num_key_value_heads", n_q), hd=c.get("head_dim") or c["hidden_size"] // n_q,
        eps=c["rms_norm_eps"], rope=rp, tied=c.get("tie_word_embeddings", False),
        E=c.get("num_experts", c.get("num_local_experts")), k=c.get("num_experts_per_tok"),
        norm_topk=c.get("norm_topk_prob"), sparse_step=c.get("decoder_sparse_step", 1),
        mlp_only=c.get("mlp_only_layers", []))


def inv_freq(cfg) -> torch.Tensor:
    """architectures.md §1.2, in float64."""
    d, rp = cfg["hd"], cfg["rope"]
    f = [rp["rope_theta"] ** (-(2 * i) / d) for i in range(d // 2)]
    if rp["rope_type"] == "llama3":
        s, lo, hi, L0 = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], \
            rp["original_max_position_embeddings"]
        g = []
        for fi in f:
            lam = 2 * math.pi / fi
            if lam < L0 / hi:
                g.append(fi)
            elif lam > L0 / lo:
                g.append(fi / s)
            else:
                a = (L0 / lam - lo) / (hi - lo)
                g.append((1 - a) * fi / s + a * fi)
        f = g
    else:
        assert rp["rope_type"] == "default", rp
    return torch.tensor(f, dtype=D)


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope(x, cos, sin):          # x [S, T, h, d]; rotate-half pairs (i, i + d/2)
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def load_weights(model_dir: Path, cfg) -> dict:
    """Name -> float64 leaf. Packed experts are split into per-expert 2-D tensors so both
    layouts end up with the same names."""
    sd = load_file(str(model_dir / "model.safetensors"))
    w = {}
    for k, v in sd.items():
        if k.endswith(".mlp.experts.gate_up_proj"):
            pre = k[: -len("gate_up_proj")]
            I = v.shape[1] // 2
            for e in range(v.shape[0]):
                w[f"{pre}{e}.gate_proj.weight"] = v[e, :I]
                w[f"{pre}{e}.up_proj.weight"] = v[e, I:]
        elif k.endswith(".mlp.experts.down_proj"):
            pre = k[: -len("down_proj")]
            for e in range(v.shape[0]):
                w[f"{pre}{e}.down_proj.weight"] = v[e]
        else:
            w[k] = v
    out = {k: v.to(D).clone().requires_grad_(True) for k, v in w.items()}
    # The output projection as its own leaf, so its gradient is the lm_head matmul part only.
    src = "lm_head.weight" if "lm_head.weight" in out else "model.embed_tokens.weight"
    assert cfg["tied"] == (src != "lm_head.weight"), "tie_word_embeddings vs tensors"
    out["lm_head.weight"] = w[src].to(D).clone().requires_grad_(True)
    return out


def forward(W, cfg, ids):
    S, T = ids.shape
    H, nq, nkv, hd, eps = cfg["H"], cfg["n_q"], cfg["n_kv"], cfg["hd"], cfg["eps"]
    f = inv_freq(cfg)
    ang = torch.arange(T, dtype=D)[:, None] * f[None, :]          # [T, hd/2]
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    mask = torch.full((T, T), float("-inf"), dtype=D).triu(1)
    h = W["model.embed_tokens.weight"][ids]
    hidden, routing = [], {}

    def lin(x, name):
        y = x @ W[name + ".weight"].T
        b = W.get(name + ".bias")
        return y + b if b is not None else y

    for l in range(cfg["L"]):
        h.retain_grad()
        hidden.append(h)
        p = f"model.layers.{l}."
        x = rms(h, W[p + "input_layernorm.weight"], eps)
        q = lin(x, p + "self_attn.q_proj").view(S, T, nq, hd)
        k = lin(x, p + "self_attn.k_proj").view(S, T, nkv, hd)
        v = lin(x, p + "self_attn.v_proj").view(S, T, nkv, hd)
        if p + "self_attn.q_norm.weight" in W:
            q = rms(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rms(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        G = nq // nkv
        k = k.repeat_interleave(G, dim=2)
        v = v.repeat_interleave(G, dim=2)
        sc = torch.einsum("sihd,sjhd->shij", q, k) / math.sqrt(hd) + mask
        o = torch.einsum("shij,sjhd->sihd", torch.softmax(sc, -1), v).reshape(S, T, nq * hd)
        h = h + lin(o, p + "self_attn.o_proj")
        x = rms(h, W[p + "post_attention_layernorm.weight"], eps)
        moe = cfg["E"] and l not in cfg["mlp_only"] and (l + 1) % cfg["sparse_step"] == 0
        if moe:
            xt = x.reshape(S * T, H)
            logits = xt @ W[p + "mlp.gate.weight"].T
            prob = torch.softmax(logits, -1)
            top, idx = torch.topk(prob, cfg["k"], -1)
            if cfg["norm_topk"]:
                top = top / top.sum(-1, keepdim=True)
            routing[l] = (logits.detach(), idx, top.detach())
            y = torch.zeros_like(xt)
            for e in range(cfg["E"]):
                rows, slot = (idx == e).nonzero(as_tuple=True)
                if rows.numel() == 0:
                    continue
                xe = xt[rows]
                pe = f"{p}mlp.experts.{e}."
                ye = lin(torch.nn.functional.silu(lin(xe, pe + "gate_proj")) * lin(xe, pe + "up_proj"),
                         pe + "down_proj")
                y = y.index_add(0, rows, ye * top[rows, slot, None])
            h = h + y.view(S, T, H)
        else:
            h = h + lin(torch.nn.functional.silu(lin(x, p + "mlp.gate_proj")) * lin(x, p + "mlp.up_proj"),
                        p + "mlp.down_proj")
    h.retain_grad()
    hidden.append(h)
    normed = rms(h, W["model.norm.weight"], eps)
    logits = normed @ W["lm_head.weight"].T
    return logits, hidden, normed, routing


def compare(name, ours, gold, rel):
    ours = ours.detach().to(D)
    gold = gold.to(D)
    if tuple(ours.shape) != tuple(gold.shape):
        return f"{name}: shape {list(ours.shape)} vs golden {list(gold.shape)}"
    scale = gold.abs().max().item()
    err = (ours - gold).abs().max().item()
    if err > rel * scale + 1e-7:
        return f"{name}: max|diff| {err:.3g} > {rel:g} * max|golden| {scale:.3g}"
    return None


def check(fixture: Path, model_dir: Path, cfg_json: dict):
    g = load_file(str(fixture / "golden.safetensors"))
    cfg = read_config(cfg_json)
    W = load_weights(model_dir, cfg)
    ids = g["input_ids"].long()
    logits, hidden, normed, routing = forward(W, cfg, ids)
    V = logits.shape[-1]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    loss.backward()
    probs = []

    def cmp(n, a, b, rel):
        m = compare(n, a, b, rel)
        if m:
            probs.append(m)

    cmp("rope.inv_freq", inv_freq(cfg), g["rope.inv_freq"], 1e-6)
    cmp("logits", logits, g["logits"], 2e-5)
    cmp("loss", loss.reshape(1), g["loss"], 2e-6)
    cmp("final_normed", normed, g["final_normed"], 2e-5)
    for l, h in enumerate(hidden):
        cmp(f"hidden.{l}", h, g[f"hidden.{l}"], 2e-5)
        cmp(f"grad_hidden.{l}", h.grad, g[f"grad_hidden.{l}"], 1e-4)
    want = {k for k in g if k.startswith("grad.")}
    have = set()
    for k, p in W.items():
        if k.endswith(".weight") and p.ndim == 2 and k != "model.embed_tokens.weight":
            gk = "grad." + k[: -len(".weight")]
            have.add(gk)
            if gk not in g:
                probs.append(f"{gk}: missing in golden")
                continue
            cmp(gk, p.grad if p.grad is not None else torch.zeros_like(p), g[gk], 1e-4)
    if want - have:
        probs.append(f"golden has grads for unknown modules: {sorted(want - have)[:5]}")
    for l, (lg, idx, top) in routing.items():
        cmp(f"router.logits.{l}", lg, g[f"router.logits.{l}"], 2e-5)
        if not torch.equal(idx.to(torch.int32), g[f"router.topk_index.{l}"]):
            probs.append(f"router.topk_index.{l}: different expert selection")
        cmp(f"router.topk_weight.{l}", top, g[f"router.topk_weight.{l}"], 2e-5)
    return probs


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*")
    ap.add_argument("--golden", default=str(root / "tests" / "golden"))
    a = ap.parse_args()
    gdir = Path(a.golden)
    names = a.names or sorted(p.name for p in gdir.iterdir() if (p / "golden.safetensors").exists())
    passed = failed = skipped = 0
    for n in names:
        fx = gdir / n
        mt = json.loads((fx / "model" / "config.json").read_text()).get("model_type")
        if mt not in IMPLEMENTED:
            skipped += 1
            print(f"skip {n}: model_type {mt!r} is not implemented here (hybrid Gated DeltaNet families "
                  f"are checked against the float64 re-implementation inside scripts/make_golden.py)")
            continue
        cases = [("model", fx / "model", json.loads((fx / "model" / "config.json").read_text()))]
        if (fx / "model_packed").exists():
            cases.append(("model_packed", fx / "model_packed",
                          json.loads((fx / "model_packed" / "config.json").read_text())))
        if (fx / "config_legacy.json").exists():
            cases.append(("model+config_legacy", fx / "model",
                          json.loads((fx / "config_legacy.json").read_text())))
        for label, md, cj in cases:
            probs = check(fx, md, cj)
            if probs:
                failed += 1
                print(f"FAIL {n}/{label}:")
                for p in probs[:12]:
                    print("     " + p)
            else:
                passed += 1
                print(f"ok   {n}/{label}: logits, loss, hidden, grads, routing match")
    print(f"{passed} passed, {failed} failed" + (f", {skipped} fixtures skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
