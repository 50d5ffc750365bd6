#!/usr/bin/env python3
"""Writes the golden fixtures the C++ forward/backward engine must match (tests/golden/).

For each fixture NAME (see FIXTURES) this makes a tiny random-init model with transformers
(float32, deterministic seed) and writes

  tests/golden/NAME/model/              save_pretrained output (config.json, model.safetensors F32,
                                        generation_config.json) -- exactly what transformers writes
  tests/golden/NAME/model_packed/       Qwen3-MoE only: the same weights with experts packed 3-D
                                        (mlp.experts.gate_up_proj [E, 2I, H], mlp.experts.down_proj
                                        [E, H, I]); transformers 5.23 loads it too
  tests/golden/NAME/config_legacy.json  llama / qwen3_moe only: the same config in the pre-v5 key
                                        style (top-level rope_theta / rope_scaling, num_experts)
  tests/golden/NAME/golden.safetensors  input_ids, logits, loss, grad.*, hidden.*, grad_hidden.*, ...
  tests/golden/NAME/golden.json         config summary, exact definitions, implementation details

The definitions are in DEFINITIONS below (also copied into every golden.json and
tests/golden/README.md). Every reference tensor is computed from the model as re-loaded from
model/ with attn_implementation="eager", experts_implementation="eager", in float32, eval mode.
The same loss/gradients are also computed in float64 (same weights) and the worst float32
error is recorded in golden.json ("f32_vs_f64"), as a guide to tolerances.

Usage (from the repository root, with the test venv):
  venv=$(bash scripts/setup_venv.sh)
  $venv/bin/python scripts/make_golden.py [--out tests/golden] [--only NAME ...] [--check]
--check regenerates into a temp dir and compares bytes with --out (exit 1 on a difference).
"""

from __future__ import annotations

import argparse
import copy
import filecmp
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

S, T = 2, 13          # sequences, tokens per sequence
VOCAB = 97
INIT_STD = 0.2        # every Linear / embedding / router / bias: N(0, 0.2^2)
NORM_LO, NORM_HI = 0.6, 1.4   # every RMSNorm weight: U(0.6, 1.4)

COMMON = dict(vocab_size=VOCAB, rms_norm_eps=1e-6, rope_theta=10000.0,
              initializer_range=INIT_STD, max_position_embeddings=256,
              bos_token_id=1, eos_token_id=2, pad_token_id=None)

# rope_scaling llama3: original_max_position_embeddings is 128, not 16, so that with
# head_dim 8 and theta 1e4 (inv_freq 1, 0.1, 0.01, 0.001; wavelengths 6.28, 62.8, 628, 6283)
# all three branches of the llama3 rule occur: wavelength 6.28 < 128/4 keeps f, 62.8 is in
# the smoothed band (alpha = (128/62.83 - 1)/3 = 0.346), 628 and 6283 > 128/1 give f/8.
# With 16 the "keep" branch can never occur (it needs wavelength < 4 < 2*pi).
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 128}

FIXTURES = {
    "llama": dict(
        cls="LlamaForCausalLM", cfg_cls="LlamaConfig", seed=101,
        cfg=dict(hidden_size=48, intermediate_size=72, num_hidden_layers=2,
                 num_attention_heads=6, num_key_value_heads=2, head_dim=8,
                 tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                 rope_scaling=dict(LLAMA3_SCALING)),
        note="Llama, llama3 rope scaling, untied lm_head, GQA 6/2, head_dim 8 = H/n_q"),
    "qwen2": dict(
        cls="Qwen2ForCausalLM", cfg_cls="Qwen2Config", seed=202,
        cfg=dict(hidden_size=48, intermediate_size=53, num_hidden_layers=2,
                 num_attention_heads=6, num_key_value_heads=2,
                 tie_word_embeddings=True, use_sliding_window=False),
        note="Qwen2: q/k/v biases (random), o_proj no bias, tied embeddings, intermediate 53"),
    "qwen3": dict(
        cls="Qwen3ForCausalLM", cfg_cls="Qwen3Config", seed=303,
        cfg=dict(hidden_size=40, intermediate_size=52, num_hidden_layers=2,
                 num_attention_heads=6, num_key_value_heads=2, head_dim=10,
                 attention_bias=False, tie_word_embeddings=True, use_sliding_window=False),
        note="Qwen3 dense: per-head q_norm/k_norm before RoPE, n_q*head_dim = 60 != H = 40, tied"),
    "qwen3_moe": dict(
        cls="Qwen3MoeForCausalLM", cfg_cls="Qwen3MoeConfig", seed=404,
        cfg=dict(hidden_size=40, intermediate_size=52, moe_intermediate_size=20,
                 num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2, head_dim=10,
                 num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
                 decoder_sparse_step=1, mlp_only_layers=[], attention_bias=False,
                 tie_word_embeddings=False, use_sliding_window=False),
        packed=True,
        note="Qwen3-MoE: 4 experts top-2, norm_topk_prob true, moe_intermediate 20, untied"),
    "qwen3_moe_nonorm": dict(
        cls="Qwen3MoeForCausalLM", cfg_cls="Qwen3MoeConfig", seed=505,
        cfg=dict(hidden_size=40, intermediate_size=52, moe_intermediate_size=20,
                 num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2, head_dim=10,
                 num_experts=4, num_experts_per_tok=2, norm_topk_prob=False,
                 decoder_sparse_step=1, mlp_only_layers=[], attention_bias=False,
                 tie_word_embeddings=False, use_sliding_window=False),
        note="Qwen3-MoE: as qwen3_moe but norm_topk_prob false (weights = full-softmax probs)"),
}

DEFINITIONS = {
    "input_ids": "I32 [S, T]: random token ids in [0, vocab), torch.Generator seeded per fixture. "
                 "Each row is an independent sequence: no padding, no attention mask, "
                 "position ids 0..T-1 in every row.",
    "logits": "F32 [S, T, V]: model(input_ids).logits, float32, eval mode, attn eager, experts eager.",
    "loss": "F32 [1]: mean next-token cross-entropy over all S*(T-1) predictions: position t "
            "(0..T-2) of row s predicts input_ids[s, t+1]; "
            "F.cross_entropy(logits[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1)) "
            "(reduction mean, no ignore index hit).",
    "grad.<module>": "F32 [N, K] = d loss / d weight of every Linear, named as the module in "
                     "the per-expert checkpoint (model/): e.g. grad.model.layers.0.self_attn.q_proj. "
                     "Experts: grad.model.layers.L.mlp.experts.E.{gate_proj,up_proj,down_proj}, "
                     "split from the packed parameter gradient (gate = rows [0, I) of "
                     "gate_up_proj[E], up = rows [I, 2I)); an expert no token selected has an "
                     "all-zero gradient. Router: grad.model.layers.L.mlp.gate [E, H].",
    "grad.lm_head": "F32 [V, H] = (d loss / d logits)^T . final_normed_hidden, summed over all "
                    "S*T positions (the last position's d loss/d logits is 0): the output "
                    "projection's own gradient. For tied models this EXCLUDES the embedding "
                    "lookup's contribution (it is not the gradient of embed_tokens.weight). For "
                    "untied models it equals lm_head.weight.grad (checked).",
    "hidden.<l>": "F32 [S, T, H] for l = 0..L: residual-stream input of decoder layer l "
                  "(hidden.0 = embedding output); hidden.L = output of the last decoder layer, "
                  "BEFORE the final norm.",
    "grad_hidden.<l>": "F32 [S, T, H] = d loss / d hidden.<l> (total derivative through "
                       "everything downstream, including the residual path).",
    "final_normed": "F32 [S, T, H]: output of model.norm (the input of lm_head).",
    "rope.inv_freq": "F32 [head_dim/2]: the rotary inverse frequencies exactly as transformers "
                     "computes them in float32 (after llama3 scaling where configured).",
    "router.logits.<L>": "MoE only. F32 [S*T, E]: router logits of layer L (rows in s-major order).",
    "router.topk_index.<L>": "MoE only. I32 [S*T, k]: selected experts, as torch.topk returns them "
                             "(descending probability).",
    "router.topk_weight.<L>": "MoE only. F32 [S*T, k]: routing weights applied to those experts' "
                              "outputs (renormalised iff norm_topk_prob).",
}


# ----------------------------------------------------------------------------- helpers

def _cls(name):
    import transformers
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    return getattr(transformers, name)


def make_config(spec):
    cfg = dict(COMMON)
    cfg.update(copy.deepcopy(spec["cfg"]))
    return _cls(spec["cfg_cls"])(**cfg)


def init_weights(model, seed):
    """Deterministic init independent of transformers' _init_weights order: parameters in
    sorted-name order from one generator. Norm weights U(0.6, 1.4); everything else
    N(0, INIT_STD^2)."""
    g = torch.Generator().manual_seed(seed)
    seen = set()
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(remove_duplicate=False)):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if "norm" in name.split(".")[-2] or name.endswith("norm.weight"):
                p.copy_(NORM_LO + (NORM_HI - NORM_LO) * torch.rand(p.shape, generator=g, dtype=torch.float64))
            else:
                p.copy_(INIT_STD * torch.randn(p.shape, generator=g, dtype=torch.float64))


def load(model_dir, dtype=torch.float32):
    from transformers import AutoModelForCausalLM
    kw = dict(dtype=dtype, attn_implementation="eager")
    m = AutoModelForCausalLM.from_pretrained(str(model_dir), **kw)
    if hasattr(m.config, "_experts_implementation"):
        try:
            m.set_experts_implementation("eager")
        except Exception:
            m.config._experts_implementation = "eager"
    return m.eval()


def is_moe(model):
    return getattr(model.config, "model_type", "") == "qwen3_moe"


def decoder_layers(model):
    return model.model.layers


def run_forward_backward(model, ids):
    """Returns dict of reference tensors (float32 or float64 as the model)."""
    layers = decoder_layers(model)
    L = len(layers)
    hidden = [None] * (L + 1)
    router = {}
    final = {}
    hooks = []

    def pre_hook(idx):
        def f(mod, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            h.retain_grad()
            hidden[idx] = h
        return f

    def post_hook(mod, args, kwargs, out):
        h = out[0] if isinstance(out, tuple) else out
        h.retain_grad()
        hidden[L] = h

    for i, layer in enumerate(layers):
        hooks.append(layer.register_forward_pre_hook(pre_hook(i), with_kwargs=True))
    hooks.append(layers[-1].register_forward_hook(post_hook, with_kwargs=True))

    def norm_hook(mod, args, out):
        out.retain_grad()
        final["normed"] = out
    hooks.append(model.model.norm.register_forward_hook(norm_hook))

    if is_moe(model):
        for i, layer in enumerate(layers):
            def gate_hook(mod, args, out, i=i):
                logits, scores, idx = out
                router[i] = (logits.detach().clone(), scores.detach().clone(), idx.detach().clone())
            hooks.append(layer.mlp.gate.register_forward_hook(gate_hook))

    model.zero_grad(set_to_none=True)
    pos = torch.arange(T).unsqueeze(0).expand(S, T)
    out = model(input_ids=ids, position_ids=pos, use_cache=False)
    logits = out.logits
    logits.retain_grad()
    V = logits.shape[-1]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    loss.backward()
    for h in hooks:
        h.remove()

    res = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
    for l in range(L + 1):
        res[f"hidden.{l}"] = hidden[l].detach()
        res[f"grad_hidden.{l}"] = hidden[l].grad.detach()
    normed = final["normed"]
    res["final_normed"] = normed.detach()
    dlogits = logits.grad.reshape(-1, V)
    res["grad.lm_head"] = dlogits.T @ normed.detach().reshape(-1, normed.shape[-1])
    if not model.config.tie_word_embeddings:
        res["_lm_head_param_grad"] = model.lm_head.weight.grad.detach()

    for name, mod in model.named_modules():
        if name == "lm_head":
            continue
        if isinstance(mod, torch.nn.Linear):
            res[f"grad.{name}"] = mod.weight.grad.detach()
        elif type(mod).__name__.endswith("TopKRouter"):
            res[f"grad.{name}"] = mod.weight.grad.detach()
        elif type(mod).__name__.endswith("Experts") and hasattr(mod, "gate_up_proj"):
            gu = mod.gate_up_proj.grad
            dn = mod.down_proj.grad
            E, twoI, _ = mod.gate_up_proj.shape
            I = twoI // 2
            for e in range(E):
                res[f"grad.{name}.{e}.gate_proj"] = gu[e, :I].detach()
                res[f"grad.{name}.{e}.up_proj"] = gu[e, I:].detach()
                res[f"grad.{name}.{e}.down_proj"] = dn[e].detach()
    for i, (lg, sc, idx) in router.items():
        res[f"router.logits.{i}"] = lg
        res[f"router.topk_weight.{i}"] = sc
        res[f"router.topk_index.{i}"] = idx
    return res


MIN_ROUTER_GAP = 1e-3


def router_margins(res, model):
    """Per layer: min over tokens of p_(k) - p_(k+1) (sorted router probabilities)."""
    k = model.config.num_experts_per_tok
    out = []
    for L in range(model.config.num_hidden_layers):
        p = torch.softmax(res[f"router.logits.{L}"].double(), -1)
        srt = p.sort(-1, descending=True).values
        out.append((srt[:, k - 1] - srt[:, k]).min().item())
    return out


def inv_freq_recipe_f32(cfg):
    """The float32 recipe documented in golden.json, written out op by op (checked bit-equal
    to transformers' inv_freq)."""
    rp = cfg.rope_parameters
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    theta = float(rp["rope_theta"])
    e = torch.arange(0, d, 2, dtype=torch.int64).float() / d          # f32 division
    f = torch.pow(torch.tensor(theta, dtype=torch.float32), e).reciprocal()   # 1.0 / theta**e
    if rp.get("rope_type", "default") == "default":
        return f
    assert rp["rope_type"] == "llama3"
    s, lo, hi, L0 = (float(rp["factor"]), float(rp["low_freq_factor"]),
                     float(rp["high_freq_factor"]), float(rp["original_max_position_embeddings"]))
    wl = f.reciprocal() * (2 * math.pi)                               # 2*pi / f
    f1 = torch.where(wl > L0 / lo, f / s, f)
    sm = (wl.reciprocal() * L0 - lo) / (hi - lo)                      # (L0 / wl - lo) / (hi - lo)
    smoothed = (1 - sm) * f1 / s + sm * f1
    medium = ~(wl < L0 / hi) * ~(wl > L0 / lo)
    return torch.where(medium, smoothed, f1)


def rope_inv_freq(model):
    return model.model.rotary_emb.inv_freq.detach().clone()


def llama3_inv_freq_f64(cfg):
    """The llama3 rule evaluated in float64 (for the record: how far float32 transformers is)."""
    rp = cfg.rope_parameters
    d = cfg.head_dim
    base = rp["rope_theta"]
    f = [base ** (-(2 * i) / d) for i in range(d // 2)]
    s, lo, hi, L0 = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
    out = []
    for fi in f:
        lam = 2 * math.pi / fi
        if lam < L0 / hi:
            out.append(fi)
        elif lam > L0 / lo:
            out.append(fi / s)
        else:
            a = (L0 / lam - lo) / (hi - lo)
            out.append((1 - a) * fi / s + a * fi)
    return out


def pack_experts(sd, n_layers, E):
    out = {}
    for k, v in sd.items():
        if ".mlp.experts." not in k:
            out[k] = v
    for L in range(n_layers):
        pre = f"model.layers.{L}.mlp.experts."
        if pre + "0.gate_proj.weight" not in sd:
            continue
        out[pre + "gate_up_proj"] = torch.stack(
            [torch.cat([sd[f"{pre}{e}.gate_proj.weight"], sd[f"{pre}{e}.up_proj.weight"]], 0)
             for e in range(E)]).contiguous()
        out[pre + "down_proj"] = torch.stack(
            [sd[f"{pre}{e}.down_proj.weight"] for e in range(E)]).contiguous()
    return dict(sorted(out.items()))


def legacy_config(cfg_json):
    """Pre-v5 hub key style: top-level rope_theta (+ rope_scaling), num_experts."""
    c = dict(cfg_json)
    rp = dict(c.pop("rope_parameters"))
    c["rope_theta"] = rp.pop("rope_theta")
    if rp.get("rope_type", "default") != "default":
        c["rope_scaling"] = rp
    if "num_local_experts" in c:
        c["num_experts"] = c.pop("num_local_experts")
    c.pop("transformers_version", None)
    return c


def rel_err(a, b):
    a = a.double()
    b = b.double()
    den = b.abs().max().item()
    return (a - b).abs().max().item() / (den if den > 0 else 1.0)


def f32_hex(x):
    return [float(v) for v in x.tolist()], [hex(v) for v in x.view(torch.int32).tolist()]


# ----------------------------------------------------------------------------- one fixture

def make_fixture(name, spec, out_root: Path):
    import transformers
    from transformers import AutoConfig

    d = out_root / name
    if d.exists():
        shutil.rmtree(d)
    (d / "model").mkdir(parents=True)

    torch.manual_seed(spec["seed"])
    cfg = make_config(spec)
    model = _cls(spec["cls"])(cfg)
    init_weights(model, spec["seed"])
    model.save_pretrained(str(d / "model"))
    cfg_json = json.loads((d / "model" / "config.json").read_text())

    # Reference model: re-loaded from disk (so the fixture is what is on disk).
    m32 = load(d / "model", torch.float32)
    n_layers = m32.config.num_hidden_layers
    # Input ids: for MoE, the first draw whose routing is unambiguous (every token's k-th and
    # (k+1)-th router probabilities differ by >= MIN_ROUTER_GAP), so a float32 engine selects
    # the same experts despite rounding.
    moe = is_moe(m32)
    for attempt in range(100):
        g = torch.Generator().manual_seed(spec["seed"] + 7 + 1000 * attempt)
        ids = torch.randint(0, VOCAB, (S, T), generator=g)
        res = run_forward_backward(m32, ids)
        if not moe or min(router_margins(res, m32)) >= MIN_ROUTER_GAP:
            break
    else:
        raise RuntimeError(f"{name}: no input draw with router gap >= {MIN_ROUTER_GAP}")
    checks = {"input_ids draw (attempt)": attempt}

    # The untied lm_head: our formula equals the parameter gradient.
    if "_lm_head_param_grad" in res:
        pg = res.pop("_lm_head_param_grad")
        checks["grad.lm_head == lm_head.weight.grad (untied)"] = rel_err(res["grad.lm_head"], pg)
        assert checks["grad.lm_head == lm_head.weight.grad (untied)"] < 1e-6

    # Loss equals transformers' own loss (labels=input_ids).
    with torch.no_grad():
        out = m32(input_ids=ids, labels=ids, use_cache=False)
    checks["loss vs transformers labels= loss (abs diff)"] = abs(out.loss.item() - res["loss"].item())
    assert checks["loss vs transformers labels= loss (abs diff)"] < 1e-6

    # float64 twin: tolerance guide.
    m64 = load(d / "model", torch.float64)
    r64 = run_forward_backward(m64, ids)
    r64.pop("_lm_head_param_grad", None)
    worst = {"logits": rel_err(res["logits"], r64["logits"]),
             "loss": rel_err(res["loss"], r64["loss"])}
    for pref in ("grad.", "grad_hidden.", "hidden."):
        keys = [k for k in res if k.startswith(pref)]
        worst[pref + "*"] = max(rel_err(res[k], r64[k]) for k in keys)
    f32_vs_f64 = {k: float(f"{v:.3g}") for k, v in worst.items()}

    # Packed-experts copy + its logits must be identical.
    layouts = {"model": "as transformers 5.23 save_pretrained writes it"
                        + (" (experts per expert, 2-D: model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight)"
                           if moe else "")}
    router_info = {}
    if moe:
        E = m32.config.num_experts
        sd = load_file(str(d / "model" / "model.safetensors"))
        assert any(".mlp.experts.0.gate_proj.weight" in k for k in sd), "expected per-expert layout"
    if moe and spec.get("packed"):
        packed = pack_experts(sd, n_layers, E)
        (d / "model_packed").mkdir()
        shutil.copy(d / "model" / "config.json", d / "model_packed" / "config.json")
        save_file(packed, str(d / "model_packed" / "model.safetensors"), metadata={"format": "pt"})
        mp = load(d / "model_packed", torch.float32)
        with torch.no_grad():
            lp = mp(input_ids=ids, use_cache=False).logits
        checks["model_packed logits == model logits (max abs diff)"] = (lp - res["logits"]).abs().max().item()
        assert torch.equal(lp, res["logits"]), "packed layout gives different logits"
        layouts["model_packed"] = ("same weights, experts packed 3-D: model.layers.L.mlp.experts.gate_up_proj "
                                   "[E, 2I, H] (per expert: gate rows 0..I-1 then up rows I..2I-1) and "
                                   "model.layers.L.mlp.experts.down_proj [E, H, I]; no .weight suffix")
    if moe:
        margins = router_margins(res, m32)
        usage = {}
        for L in range(n_layers):
            cnt = torch.bincount(res[f"router.topk_index.{L}"].reshape(-1), minlength=E)
            usage[str(L)] = cnt.tolist()
        router_info = {"min_gap_between_kth_and_k+1th_prob_per_layer": [float(f"{m:.4g}") for m in margins],
                       "tokens_per_expert_per_layer": usage}
        # experts implementation used by default and its difference from eager
        mg = load(d / "model", torch.float32)
        try:
            mg.set_experts_implementation("grouped_mm")
            with torch.no_grad():
                lg = mg(input_ids=ids, use_cache=False).logits
            checks["default experts_implementation grouped_mm vs eager logits (max abs diff)"] = \
                (lg - res["logits"]).abs().max().item()
        except Exception as e:  # pragma: no cover
            checks["grouped_mm"] = f"not available: {e}"

    # Legacy (pre-v5 key style) config: transformers must read it to the same model.
    if "rope_scaling" in spec["cfg"] or moe:
        leg = legacy_config(cfg_json)
        (d / "config_legacy.json").write_text(json.dumps(leg, indent=2, sort_keys=True) + "\n")
        tmp = Path(tempfile.mkdtemp())
        try:
            shutil.copy(d / "model" / "model.safetensors", tmp / "model.safetensors")
            (tmp / "config.json").write_text(json.dumps(leg))
            ml = load(tmp, torch.float32)
            with torch.no_grad():
                ll = ml(input_ids=ids, use_cache=False).logits
            assert torch.equal(ll, res["logits"]), "legacy config gives different logits"
            assert torch.equal(rope_inv_freq(ml), rope_inv_freq(m32))
            checks["config_legacy.json logits identical"] = True
        finally:
            shutil.rmtree(tmp)
        layouts["config_legacy.json"] = ("the same config in pre-v5 hub key style (top-level rope_theta and "
                                         "rope_scaling; num_experts instead of num_local_experts); "
                                         "copy it over model/config.json to test the legacy keys")

    inv = rope_inv_freq(m32)
    mine = inv_freq_recipe_f32(m32.config)
    assert torch.equal(mine.view(torch.int32), inv.float().view(torch.int32)), (mine, inv)
    checks["rope.inv_freq == documented float32 recipe (bitwise)"] = True
    tensors = {"input_ids": ids.to(torch.int32), "rope.inv_freq": inv.float()}
    for k, v in res.items():
        if k.startswith("router.topk_index"):
            tensors[k] = v.to(torch.int32)
        else:
            tensors[k] = v.float()
    tensors = {k: v.contiguous() for k, v in sorted(tensors.items())}
    save_file(tensors, str(d / "golden.safetensors"), metadata={"format": "pt"})

    # ---- implementation details observed
    rp = m32.config.rope_parameters
    inv_vals, inv_hex = f32_hex(inv)
    details = {
        "rmsnorm": "x is float32 already; r = torch.rsqrt(mean(x^2) + eps); y = weight * (x * r) "
                   "(cast of x*r back to the input dtype happens before the weight multiply; a no-op in f32). "
                   "Plain w (not 1+w) for every norm incl. q_norm/k_norm.",
        "rope": "inv_freq[i] = 1.0 / (theta ** (float32(2i) / head_dim)) evaluated in float32 torch ops "
                "(pow(scalar, f32 tensor), then reciprocal; the recipe inv_freq_recipe_f32 in scripts/make_golden.py is checked bit-equal); freqs = float32(pos) * inv_freq; "
                "emb = cat(freqs, freqs); cos/sin in float32; rotate_half: pairs (i, i + head_dim/2). "
                "Exact float32 values: rope.inv_freq in golden.safetensors and below.",
        "rope.inv_freq": inv_vals,
        "rope.inv_freq_f32_bits": inv_hex,
        "attention": "scores = (q @ k^T) * head_dim**-0.5 (scale applied AFTER the matmul); causal mask "
                     "added as finfo(float32).min (not -inf); softmax in float32; repeat_kv "
                     "(kv head of query head h is h // (n_q/n_kv)).",
        "embedding": "plain lookup, no scaling",
    }
    if rp.get("rope_type") == "llama3":
        ref64 = llama3_inv_freq_f64(m32.config)
        details["llama3_inv_freq"] = (
            "transformers 5.23 _compute_llama3_parameters, all float32 tensors: "
            "f = 1.0 / (theta ** (arange(0, d, 2).float() / d)); "
            "wavelen = 2*pi / f  [Python float / tensor = f.reciprocal() * (2*pi), in float32]; "
            "low_wl = L0 / low_freq_factor; high_wl = L0 / high_freq_factor (Python floats); "
            "f1 = where(wavelen > low_wl, f / factor, f); "
            "smooth = (L0 / wavelen - low) / (high - low)  [L0 / wavelen = wavelen.reciprocal() * L0]; "
            "smoothed = (1 - smooth) * f1 / factor + smooth * f1; "
            "medium = !(wavelen < high_wl) && !(wavelen > low_wl); f_final = where(medium, smoothed, f1). "
            "Boundaries: wavelen == high_wl or == low_wl counts as medium.")
        details["llama3_inv_freq_float64_formula"] = ref64
        details["llama3_inv_freq_f32_vs_f64_max_rel"] = max(
            abs(a - b) / abs(b) for a, b in zip(inv_vals, ref64))
        details["llama3_branches"] = "f[0] kept (wavelen 6.28 < 32), f[1] smoothed (62.8), f[2], f[3] divided by 8"
    if moe:
        details["router"] = (
            "Qwen3MoeTopKRouter: logits = x @ W_gate^T (float32 here); probs = softmax(logits, dtype=float32) over ALL "
            "experts; (top_p, idx) = torch.topk(probs, k) (descending; ties: torch.topk CPU order, not "
            "exercised here -- see router.min_gap); if norm_topk_prob: top_p /= top_p.sum(-1) (float32); "
            "top_p cast to the logits dtype. Expert e output = down(silu(gate x) * up x) multiplied by its "
            "routing weight AFTER down_proj, accumulated with index_add_ over experts in ascending id order.")
        details["router_softmax_dtype"] = "float32"
        details["experts"] = ("In memory, transformers 5.23 holds experts packed: gate_up_proj [E, 2I, H] "
                              "(gate rows first), down_proj [E, H, I]; gate, up = linear(x, gate_up_proj[e]).chunk(2). "
                              "save_pretrained REVERTS this (conversion_mapping 'qwen2_moe' recipe) and writes "
                              "per-expert 2-D tensors model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight. "
                              "from_pretrained accepts both layouts (model/ and model_packed/ give identical logits).")
        details["experts_implementation"] = ("transformers 5.23 default for this model is 'grouped_mm' "
                                             "(torch._grouped_mm); the references use 'eager' (per-expert loop).")
        details["config_keys"] = ("transformers 5.23 writes 'num_local_experts' (attribute_map num_experts -> "
                                  "num_local_experts) and 'rope_parameters': {rope_theta, rope_type}; hub "
                                  "Qwen3-MoE configs use 'num_experts' and top-level 'rope_theta'. Accept both.")

    mcfg = m32.config
    summary = {
        "model_type": mcfg.model_type,
        "architectures": cfg_json.get("architectures"),
        "hidden_size": mcfg.hidden_size,
        "intermediate_size": mcfg.intermediate_size,
        "num_hidden_layers": n_layers,
        "num_attention_heads": mcfg.num_attention_heads,
        "num_key_value_heads": mcfg.num_key_value_heads,
        "head_dim": getattr(mcfg, "head_dim", None) or mcfg.hidden_size // mcfg.num_attention_heads,
        "vocab_size": mcfg.vocab_size,
        "rms_norm_eps": mcfg.rms_norm_eps,
        "rope_parameters": dict(rp),
        "tie_word_embeddings": mcfg.tie_word_embeddings,
        "attention_bias": getattr(mcfg, "attention_bias", None),
        "qkv_bias": mcfg.model_type == "qwen2",
    }
    if moe:
        summary.update(num_experts=mcfg.num_experts, num_experts_per_tok=mcfg.num_experts_per_tok,
                       moe_intermediate_size=mcfg.moe_intermediate_size,
                       norm_topk_prob=mcfg.norm_topk_prob,
                       decoder_sparse_step=mcfg.decoder_sparse_step,
                       mlp_only_layers=list(mcfg.mlp_only_layers))

    meta = {
        "name": name,
        "description": spec["note"],
        "generator": "scripts/make_golden.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "seed": spec["seed"],
        "init": f"all Linear/embedding/router/bias weights N(0, {INIT_STD}^2); all RMSNorm weights "
                f"U({NORM_LO}, {NORM_HI}); sorted parameter names, one torch.Generator (see init_weights)",
        "S": S, "T": T,
        "config": summary,
        "layouts": layouts,
        "definitions": DEFINITIONS,
        "loss": res["loss"].item(),
        "loss_uniform_baseline_log_V": math.log(VOCAB),
        "f32_vs_f64_max_rel_err": f32_vs_f64,
        "f32_vs_f64_note": "max |f32 - f64| / max |f64| over each group (same weights, float64 model): "
                           "the float32 noise floor. Suggested C++ tolerances: logits/hidden rel 1e-4, "
                           "grads rel 1e-3 of the tensor's max |value|.",
        "checks": checks,
        "implementation_details": details,
        "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                    for k, v in tensors.items()},
    }
    if router_info:
        meta["router"] = router_info
    (d / "golden.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def dir_size(p: Path):
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--out", default=str(root / "tests" / "golden"))
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare byte for byte with --out")
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)   # bit-reproducible float32 reductions
    names = a.only or list(FIXTURES)
    out = Path(a.out)
    if a.check:
        tmp = Path(tempfile.mkdtemp())
        try:
            bad = 0
            for n in names:
                make_fixture(n, FIXTURES[n], tmp)
                for f in sorted((tmp / n).rglob("*")):
                    if f.is_file():
                        rel = f.relative_to(tmp)
                        g = out / rel
                        if not g.exists() or not filecmp.cmp(f, g, shallow=False):
                            print(f"DIFF {rel}")
                            bad += 1
            print("check:", "OK" if not bad else f"{bad} files differ")
            return 1 if bad else 0
        finally:
            shutil.rmtree(tmp)
    total = 0
    for n in names:
        meta = make_fixture(n, FIXTURES[n], out)
        sz = dir_size(out / n)
        total += sz
        print(f"{n}: {sz} bytes, loss {meta['loss']:.6f}, f32_vs_f64 {meta['f32_vs_f64_max_rel_err']}")
    print(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
