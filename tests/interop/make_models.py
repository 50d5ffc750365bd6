"""Tiny test checkpoints made by transformers itself (random init, bf16, save_pretrained).

Every K (in_features) is a multiple of 128, so every format (INT4 g128 included) can hold
every Linear. Some weights are overwritten with awkward values before saving:

* "llama": mild awkwardness that keeps the forward pass finite (zero rows and groups,
  -0.0, exact rounding ties for FP4/FP8/INT, MX amax mantissas at the 0.75 bump edge,
  a 30x outlier).
* "llama-awkward": extremes, for byte/decode checks only: 1e-30 and bf16-subnormal values,
  a 1e30 outlier (FP8 group scales pushed into E4M3 subnormals / to 0 -> eps), a whole
  Linear of zeros and one with amax 1e-37 (NVFP4 global scale overflows -> ct uses 1.0),
  tiny MX groups (E8M0 exponent clamped at 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

BF16 = torch.bfloat16
SMALL = dict(vocab_size=320, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
             rms_norm_eps=1e-5, tie_word_embeddings=False)


def _randomize_non_linear(model, gen):
    """Norm weights 1 + noise and biases random, so that dropping or mixing them shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))


def _ties_row(k: int) -> torch.Tensor:
    """A row built from exact ties of every rounding rule in play, repeated along K.

    Per 32 elements: FP4 ties under an MX scale of 1 (group amax 4 -> E=127): 0.25, 0.75,
    1.25, 1.75, 2.5, 3.5, 5 and negatives; -0.0 and +0.0. Per 128 (INT4 g128, amax 7.5 ->
    scale exactly 1): half-integers 0.5 .. 6.5 also appear.
    """
    base = [4.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -0.75, -1.25, -1.75,
            -2.5, -3.5, -5.0, -0.0, 0.0, 0.5, 1.5, 3.0, -0.5, -1.5, -3.0, 6.5, -6.5,
            5.5, -4.5, 0.1, -0.1, 1.0625, -1.0625, 2.0]
    row = torch.tensor(base * (k // 32), dtype=torch.float32)
    row[0::128] = 7.5  # INT4 group amax 7.5 -> scale bf16(7.5/7.5) = 1
    return row


def _mild_awkward(sd: dict, prefix: str = "model.layers.0."):
    q = sd[prefix + "self_attn.q_proj.weight"]
    q[0] = 0.0                                   # a zero row (zero scale -> eps)
    q[1, :16] = 0.0                              # one zero NVFP4 group
    q[1, 32:64] = 0.0                            # one zero MX group
    q[2, ::3] = -0.0                             # negative zeros
    q[3, 5] = 30 * q.abs().max()                 # an outlier (moves the fused global scale)
    g = sd[prefix + "mlp.gate_proj.weight"]
    g[0] = _ties_row(g.shape[1]).to(BF16) * 0.01
    g[1] = _ties_row(g.shape[1]).to(BF16)
    # MX amax at the rounding edges: mantissa fraction 0.5, 0.70, 0.75 (bump), 0.99.
    for i, a in enumerate([1.5, 1.7, 1.75, 1.99]):
        g[2 + i, 7] = a * 2.0 ** -5
        g[2 + i, 40] = -a * 2.0 ** -6
    # FP8 per-channel ties: amax 448 -> scale bf16(448/448) = 1; 17 lies between 16, 18.
    d = sd[prefix + "mlp.down_proj.weight"]
    d[0] = 0.0
    d[0, :6] = torch.tensor([448.0, 17.0, -17.0, 1.0625, 0.0009765625, -300.0])
    d[0] *= 0.001


def _extreme_awkward(sd: dict):
    p = "model.layers.0."
    q = sd[p + "self_attn.q_proj.weight"]
    q[0] *= 1e-30                                # tiny, still normal in bf16
    q[1] = q[1] * 1e-38                          # bf16 subnormals
    q[2, 3] = 1e30                               # huge outlier: global scale ~2.7e-27
    k = sd[p + "self_attn.k_proj.weight"]
    k[0, :32] = torch.tensor([2.0 ** -133] * 32)  # smallest bf16 subnormal, MX E clamps to 0
    sd[p + "self_attn.o_proj.weight"] *= 1e-37 / sd[p + "self_attn.o_proj.weight"].abs().max()
    sd["model.layers.1.self_attn.o_proj.weight"].zero_()  # all zeros: ct global scale 1.0
    u = sd[p + "mlp.up_proj.weight"]
    u[::7] *= 1e4                                # rows spanning a wide dynamic range
    u[1::7] *= 1e-4
    d = sd["model.layers.1.mlp.down_proj.weight"]
    d[:, 0] = 65504.0                            # a column of large values (f16 max)
    d[5] = -0.0


def _save(model, path: Path, extra=None):
    sd = {k: v.detach().clone().to(BF16) for k, v in model.state_dict().items()}
    if extra:
        extra(sd)
    with torch.no_grad():
        model.load_state_dict(sd, strict=True)
    model.to(BF16).save_pretrained(str(path))
    return path


def make_llama(path: Path, awkward: str = "mild", seed: int = 1) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**SMALL, dtype="bfloat16")).to(BF16)
    _randomize_non_linear(model, gen)
    fix = {"mild": _mild_awkward, "extreme": _extreme_awkward}[awkward]
    return _save(model, path, fix)


def make_qwen2(path: Path, seed: int = 2) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**SMALL, dtype="bfloat16",
                                         use_sliding_window=False)).to(BF16)
    _randomize_non_linear(model, gen)
    return _save(model, path, lambda sd: _mild_awkward(sd, "model.layers.1."))


def make_qwen3(path: Path, seed: int = 3) -> Path:
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Qwen3ForCausalLM(Qwen3Config(**SMALL, head_dim=64, dtype="bfloat16",
                                         use_sliding_window=False)).to(BF16)
    _randomize_non_linear(model, gen)
    return _save(model, path)


def make_all(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = {
        "llama": make_llama(root / "llama"),
        "llama-awkward": make_llama(root / "llama-awkward", awkward="extreme", seed=4),
        "qwen2": make_qwen2(root / "qwen2"),
        "qwen3": make_qwen3(root / "qwen3"),
    }
    for p in out.values():
        cfg = json.loads((p / "config.json").read_text())
        assert cfg.get("dtype", cfg.get("torch_dtype")) == "bfloat16", cfg
    return out


if __name__ == "__main__":
    import sys
    for name, p in make_all(Path(sys.argv[1])).items():
        print(name, p)
