#!/usr/bin/env python3
"""Trains the small fixture models in models/trained/ (one per supported architecture).

    venv=$(bash scripts/setup_venv.sh)
    $venv/bin/python scripts/train_fixtures.py                 # all five, ~25 min on 1 CPU thread
    $venv/bin/python scripts/train_fixtures.py --arch qwen3    # just one

Produces, from the repository root:
  models/trained/heldout.txt          the held-out text (an exact byte slice of the corpus;
                                      rewritten only if its bytes differ)
  models/trained/<arch>/              arch in llama, qwen2, qwen3, qwen3_moe, qwen3_5_moe:
      config.json, generation_config.json, model.safetensors (bfloat16, save_pretrained),
      tokenizer.json, tokenizer_config.json, special_tokens_map.json (copied from
      models/stories260K: the llama2.c 512-token byte-fallback BPE), SOURCE.md

qwen3_5_moe is a Qwen3.5 / Qwen3.6-style hybrid MoE (Qwen3_5MoeForConditionalGeneration:
3 Gated DeltaNet layers + 1 gated full-attention layer, 8 routed experts top-2 + a shared expert
in every layer; ~0.36 M text parameters) with a tiny, untrained vision tower (only so that the
checkpoint carries model.visual.*) and an MTP head (mtp.*, one full-attention MoE layer,
architectures.md section 4) that transformers does not implement: the PyTorch module is
make_qwen35_mtp below, trained jointly with the body (body hidden states detached) and evaluated
on the held-out text too. Its model.safetensors is written with safetensors' save_file, not
save_pretrained, so that the routed experts stay packed (mlp.experts.gate_up_proj [E, 2I, H],
mlp.experts.down_proj [E, H, I]) in the body and the MTP layer, as in the real Qwen3.5/3.6 BF16
checkpoints; transformers still loads it (ignoring mtp.*). It takes ~10 min (800 steps).

These are real (trained) language models, so that single-Linear quantization changes the NLL
in a meaningful way; they are not meant to be good. Needs torch + transformers (the test venv
pins: torch 2.15, transformers 5.23). Deterministic: fixed seeds, one CPU thread,
torch.use_deterministic_algorithms; re-running on the same software gives the same weights.

Data: ../shared/assets/corpus-tinystories-valid-slice/tinystories_val.txt (TinyStories
validation split, first 794,375 bytes; see that directory's SOURCE.md: HF roneneldan/TinyStories,
CDLA-Sharing-1.0, carried by the MIT repo yuninxia/moe-routing-bench).

Train / held-out split (exact):
  * Paragraphs are defined as `prismaquant eval --split paragraphs` defines them
    (src/pq/pipeline/eval_text.cc SplitDocuments): maximal runs of non-blank lines (blank =
    only " \\t\\r\\n\\v\\f"), joined with "\\n" and trimmed. The corpus has N = 4302 of them.
  * Training: paragraphs [0, 3441) (3441 = floor(0.8 * N)). Held-out: paragraphs [3441, 4302)
    (861 paragraphs), i.e. corpus bytes [619211, 794375): from the start of the line that
    begins paragraph 3441 to the end (recomputed and checked at every run). That slice is
    written, byte for byte, to models/trained/heldout.txt; its --split paragraphs documents are
    exactly the 861 held-out paragraphs (checked here).
  * Held-out NLL = `prismaquant eval MODEL --text models/trained/heldout.txt --split paragraphs
    --ctx 256` (each paragraph = BOS + its tokens, scored on its own; the few longer than 256
    tokens in windows of 256 advancing by 128), equal to scripts/eval_fixture_torch.py with the
    same flags.

Training: each training paragraph becomes BOS + its tokens; these are concatenated into one
stream (in corpus order), and each step takes BATCH random 256-token crops of it (causal LM
loss on all positions, attention across paragraph boundaries is not masked). AdamW
(betas 0.9/0.95, weight decay 0.1 on matrices), linear warm-up then cosine decay to 10 %, grad
clipping at 1.0, float32; saved in bfloat16. The MoE models add transformers' load-balancing
auxiliary loss (coefficient 0.01) during training (output_router_logits is saved false).
qwen3_5_moe: loss = body LM CE + 0.01 x aux + 0.3 x (MTP CE over positions 0..T-3, target
x_{t+2}, + 0.01 x the MTP layer's aux); see its SOURCE.md.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import eval_fixture_torch as ev  # noqa: E402

CORPUS = os.path.join(ROOT, "..", "shared", "assets", "corpus-tinystories-valid-slice",
                      "tinystories_val.txt")
if not os.path.exists(CORPUS):
    CORPUS = "/work/shared/assets/corpus-tinystories-valid-slice/tinystories_val.txt"
CORPUS_SHA256 = "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6"
TOKENIZER_DIR = os.path.join(ROOT, "models", "stories260K")
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
OUT = os.path.join(ROOT, "models", "trained")

TRAIN_FRACTION = 0.8
SEQ = 256
BATCH = 16
WARMUP = 100
LR = 3e-3
MIN_LR_FRACTION = 0.1
WEIGHT_DECAY = 0.1
CLIP = 1.0
MOE_AUX_COEF = 0.01

COMMON = dict(vocab_size=512, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, max_position_embeddings=512, rope_theta=10000.0, rms_norm_eps=1e-5,
              hidden_act="silu", bos_token_id=1, eos_token_id=2, pad_token_id=None,
              initializer_range=0.02)

# Qwen3.5 / Qwen3.6 hybrid MoE (model_type qwen3_5_moe): 3 Gated DeltaNet layers + 1 gated
# full-attention layer, every layer a routed MoE with a shared expert; text config only, the
# vision tower is tiny and untrained (random init) so the checkpoint carries model.visual.*.
# Every Linear's in_features is a multiple of 32 (64, 32, 128 or 96 for the patch embed).
QWEN35_TEXT = dict(
    vocab_size=512, hidden_size=64, num_hidden_layers=4,
    layer_types=["linear_attention"] * 3 + ["full_attention"], full_attention_interval=4,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, attn_output_gate=True,
    # rotary dim = 16 * 0.25 = 4 -> 2 frequencies; mrope_section sums to 2 (text-only input:
    # all three MRoPE axes carry the same position, so this is plain partial RoPE)
    rope_parameters=dict(rope_type="default", rope_theta=10000.0, partial_rotary_factor=0.25,
                         mrope_section=[1, 1, 0], mrope_interleaved=True),
    linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
    linear_value_head_dim=16, linear_conv_kernel_dim=4, mamba_ssm_dtype="float32",
    num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
    shared_expert_intermediate_size=32, hidden_act="silu", rms_norm_eps=1e-6,
    max_position_embeddings=512, tie_word_embeddings=False, initializer_range=0.02,
    bos_token_id=1, eos_token_id=2, pad_token_id=None, output_router_logits=False,
    router_aux_loss_coef=MOE_AUX_COEF, mtp_num_hidden_layers=1, mtp_use_dedicated_embeddings=False)
QWEN35_VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, in_channels=3,
                     patch_size=4, temporal_patch_size=2, spatial_merge_size=2,
                     out_hidden_size=64, num_position_embeddings=16,
                     hidden_act="gelu_pytorch_tanh", initializer_range=0.02)
QWEN35_STEPS = 800  # ~0.7 s/step on 1 thread (3x the others): fewer steps
# loss = body LM CE + MOE_AUX_COEF * aux + MTP_COEF * (MTP CE + MOE_AUX_COEF * MTP-layer aux)
MTP_COEF = 0.3

# arch -> (config class, model class, extra config, steps, seed)
ARCHS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM",
              dict(num_hidden_layers=4, intermediate_size=128, tie_word_embeddings=True,
                   attention_bias=False, mlp_bias=False), 1200, 1),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM",
              dict(num_hidden_layers=4, intermediate_size=128, tie_word_embeddings=False,
                   use_sliding_window=False), 1200, 2),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM",
              dict(num_hidden_layers=4, intermediate_size=128, tie_word_embeddings=False,
                   attention_bias=False, use_sliding_window=False), 1200, 3),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  dict(num_hidden_layers=3, intermediate_size=128, moe_intermediate_size=64,
                       num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
                       decoder_sparse_step=1, mlp_only_layers=[], tie_word_embeddings=False,
                       attention_bias=False, use_sliding_window=False,
                       output_router_logits=False, router_aux_loss_coef=MOE_AUX_COEF),
                  1200, 4),
    # Not built from COMMON: a composite (text + vision) config, see QWEN35_* and train_qwen35.
    "qwen3_5_moe": ("Qwen3_5MoeConfig", "Qwen3_5MoeForConditionalGeneration", None,
                    QWEN35_STEPS, 5),
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def paragraph_starts(raw):
    """Byte offsets of the line starting each paragraph (SplitDocuments' paragraphs)."""
    starts, in_para, pos = [], False, 0
    for line in raw.split(b"\n"):
        blank = line.strip(b" \t\r\n\v\f") == b""
        if not blank and not in_para:
            starts.append(pos)
        in_para = not blank
        pos += len(line) + 1
    return starts


def split_corpus():
    with open(CORPUS, "rb") as f:
        raw = f.read()
    assert hashlib.sha256(raw).hexdigest() == CORPUS_SHA256, "corpus changed"
    text = raw.decode("utf-8")
    paras = ev.split_documents(text, "paragraphs")
    starts = paragraph_starts(raw)
    assert len(starts) == len(paras)
    n_train = int(math.floor(TRAIN_FRACTION * len(paras)))
    offset = starts[n_train]
    heldout = raw[offset:]
    assert ev.split_documents(heldout.decode("utf-8"), "paragraphs") == paras[n_train:]
    assert ev.split_documents(raw[:offset].decode("utf-8"), "paragraphs") == paras[:n_train]
    return dict(paras=paras, n_train=n_train, offset=offset, heldout=heldout, total=len(raw))


def token_stream(paras, tok):
    ids = []
    for p in paras:
        ids.append(tok.bos_token_id)
        ids.extend(tok.encode(p))
    return torch.tensor(ids, dtype=torch.long)


def lr_at(step, steps):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    t = (step - WARMUP) / max(1, steps - WARMUP)
    return LR * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * t)))


def train_one(arch, split, train_ids, heldout_docs, tok, steps_override=None):
    import transformers

    if arch == "qwen3_5_moe":
        return train_qwen35(split, train_ids, heldout_docs, steps_override)
    cfg_name, model_name, extra, steps, seed = ARCHS[arch]
    steps = steps_override or steps
    cfg = getattr(transformers, cfg_name)(**COMMON, **extra)
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(cfg)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(1000 + seed)
    moe = arch == "qwen3_moe"
    print(f"[{arch}] {n_params} parameters, {steps} steps of {BATCH}x{SEQ} tokens", flush=True)
    t0 = time.time()
    ema = None
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps)
        starts = torch.randint(0, len(train_ids) - SEQ, (BATCH,), generator=gen)
        x = torch.stack([train_ids[s:s + SEQ] for s in starts.tolist()])
        out = model(input_ids=x, labels=x, output_router_logits=True) if moe else \
            model(input_ids=x, labels=x)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        lm = out.loss.item() - (MOE_AUX_COEF * out.aux_loss.item() if moe else 0.0)
        ema = lm if ema is None else 0.98 * ema + 0.02 * lm
        if (step + 1) % 100 == 0 or step == 0:
            print(f"[{arch}] step {step + 1:5d}  train loss {lm:.4f} (ema {ema:.4f})  "
                  f"{time.time() - t0:6.1f}s", flush=True)
    train_s = time.time() - t0

    out_dir = os.path.join(OUT, arch)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    model.eval()
    if moe:
        model.config.output_router_logits = False
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(out_dir, safe_serialization=True)
    os.chmod(os.path.join(out_dir, "model.safetensors"), 0o644)
    for f in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(TOKENIZER_DIR, f), os.path.join(out_dir, f))

    # Held-out NLL of the saved (bf16) weights, run in float32.
    t1 = time.time()
    nll, scored, windows = ev.evaluate(ev.load_model_f32(out_dir), heldout_docs, SEQ)
    print(f"[{arch}] held-out NLL {nll:.4f} over {scored} tokens ({windows} windows), "
          f"train {train_s:.0f}s, eval {time.time() - t1:.0f}s", flush=True)
    write_source(arch, out_dir, split, dict(params=n_params, steps=steps, seed=seed,
                                            train_s=train_s, nll=nll, scored=scored,
                                            windows=windows, cfg_extra=extra,
                                            train_tokens=len(train_ids)))
    return nll


# ---------------------------------------------------------------------------------------------
# qwen3_5_moe: Qwen3_5MoeForConditionalGeneration body + our own MTP head (transformers has none)


def qwen35_modeling():
    import transformers.models.qwen3_5_moe.modeling_qwen3_5_moe as qm
    return qm


def make_qwen35_mtp(text_cfg_dict, attn_implementation="sdpa",
                    experts_implementation="grouped_mm"):
    """The Qwen3.5/3.6 MTP head (architectures.md section 4; vLLM Qwen3_5MultiTokenPredictor),
    written here in PyTorch from transformers' own Qwen3.5-MoE building blocks:

        e = RMSNorm_{1+w}(embed(x_{t+1}); pre_fc_norm_embedding)
        h = RMSNorm_{1+w}(h_t; pre_fc_norm_hidden)      h_t = body hidden after the final norm
        u = fc(concat(e, h))                            fc [H, 2H], embedding first, no bias
        u = layers[0](u)                                a full-attention MoE decoder layer, causal,
                                                        its own RoPE over positions 0..L-1
        return RMSNorm_{1+w}(u; norm)                   -> body lm_head -> predicts x_{t+2}

    state_dict() names are the checkpoint's without the `mtp.` prefix."""
    import transformers
    qm = qwen35_modeling()
    n_layers = text_cfg_dict["mtp_num_hidden_layers"]
    cfg = transformers.Qwen3_5MoeTextConfig(**dict(
        text_cfg_dict, num_hidden_layers=n_layers, layer_types=["full_attention"] * n_layers))
    cfg._attn_implementation = attn_implementation  # what the body gets by default (CPU)
    cfg._experts_implementation = experts_implementation  # likewise
    H, eps = cfg.hidden_size, cfg.rms_norm_eps

    class Qwen35MTP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pre_fc_norm_embedding = qm.Qwen3_5MoeRMSNorm(H, eps=eps)
            self.pre_fc_norm_hidden = qm.Qwen3_5MoeRMSNorm(H, eps=eps)
            self.fc = torch.nn.Linear(2 * H, H, bias=False)
            self.layers = torch.nn.ModuleList(
                [qm.Qwen3_5MoeDecoderLayer(cfg, i) for i in range(n_layers)])
            self.norm = qm.Qwen3_5MoeRMSNorm(H, eps=eps)
            self.rotary_emb = qm.Qwen3_5MoeTextRotaryEmbedding(cfg)  # non-persistent buffers

        def init_weights(self, std):
            # as Qwen3_5MoePreTrainedModel._init_weights: matrices N(0, std), (1+w) norms 0
            norms = {id(m.weight) for m in self.modules() if isinstance(m, qm.Qwen3_5MoeRMSNorm)}
            with torch.no_grad():
                for name, p in self.named_parameters():
                    if p.dim() >= 2:
                        p.normal_(0.0, std)
                    else:
                        assert id(p) in norms, name
                        p.zero_()

        def forward(self, emb_next, hidden):
            """emb_next = embed(x_{t+1}), hidden = body h_t (post final norm): [B, L, H] each."""
            e = self.pre_fc_norm_embedding(emb_next)
            h = self.pre_fc_norm_hidden(hidden)
            u = self.fc(torch.cat([e, h], dim=-1))
            B, L, _ = u.shape
            pos = torch.arange(L, device=u.device).unsqueeze(0).expand(B, -1)
            pe = self.rotary_emb(u, pos)
            mask = torch.full((L, L), torch.finfo(u.dtype).min, dtype=u.dtype,
                              device=u.device).triu(1)[None, None]
            for layer in self.layers:
                u = layer(u, position_embeddings=pe, attention_mask=mask)
            return self.norm(u)

    return Qwen35MTP()


QWEN35_MTP_NAMES = (
    ["mtp.pre_fc_norm_embedding.weight", "mtp.pre_fc_norm_hidden.weight", "mtp.fc.weight",
     "mtp.norm.weight"]
    + ["mtp.layers.0." + n for n in [
        "input_layernorm.weight", "post_attention_layernorm.weight",
        "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
        "self_attn.o_proj.weight", "self_attn.q_norm.weight", "self_attn.k_norm.weight",
        "mlp.gate.weight", "mlp.experts.gate_up_proj", "mlp.experts.down_proj",
        "mlp.shared_expert.gate_proj.weight", "mlp.shared_expert.up_proj.weight",
        "mlp.shared_expert.down_proj.weight", "mlp.shared_expert_gate.weight"]])


def qwen35_mtp_logits(model, mtp, ids, hidden):
    """MTP logits for positions t = 0..T-3 of ids [B, T] (row t predicts ids[:, t + 2]), from the
    body's final-normed hidden states `hidden` [B, T, H], detached."""
    emb = model.get_input_embeddings()(ids[:, 1:-1])
    return model.lm_head(mtp(emb, hidden[:, :-2].detach()))


def qwen35_mtp_evaluate(model, mtp, docs, ctx, stride=0):
    """(mean MTP NLL, scored, windows) over the held-out windows of ev.make_windows: in a window
    of L tokens the MTP row t (t = 0..L-3) predicts window token t+2 and is scored iff the body
    eval scores that token in this window, so every document token from index 2 on is scored
    exactly once (index 1 cannot be an MTP target)."""
    stride = stride or max(ctx // 2, 1)
    nll, scored, windows = 0.0, 0, 0
    with torch.no_grad():
        for doc in docs:
            for ids, targets in ev.make_windows(doc, ctx, stride):
                if len(ids) < 3:
                    continue
                x = torch.tensor([ids])
                hidden = model.model(input_ids=x).last_hidden_state
                lp = torch.log_softmax(qwen35_mtp_logits(model, mtp, x, hidden)[0].double(), -1)
                t = torch.tensor(targets[1:-1])
                m = t >= 0
                if not bool(m.any()):
                    continue
                windows += 1
                nll -= lp[m].gather(1, t[m].unsqueeze(1)).sum().item()
                scored += int(m.sum())
    return nll / scored, scored, windows


def linear_report(model, mtp):
    """[(name, out_features, in_features)] of every nn.Linear and packed expert matrix."""
    rows = []
    for prefix, mod in (("", model), ("mtp.", mtp)):
        for name, m in mod.named_modules():
            if isinstance(m, torch.nn.Linear):
                rows.append((prefix + name + ".weight", m.out_features, m.in_features))
        for name, p in mod.named_parameters():
            if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
                rows.append((prefix + name + "[e]", p.shape[1], p.shape[2]))
    return rows


def train_qwen35(split, train_ids, heldout_docs, steps_override=None):
    import transformers
    from safetensors import safe_open
    from safetensors.torch import save_file
    qm = qwen35_modeling()
    arch = "qwen3_5_moe"
    steps, seed = ARCHS[arch][3:]
    steps = steps_override or steps
    cfg = transformers.Qwen3_5MoeConfig(text_config=dict(QWEN35_TEXT),
                                        vision_config=dict(QWEN35_VISION),
                                        tie_word_embeddings=False)
    tc = cfg.text_config
    E, K, V = tc.num_experts, tc.num_experts_per_tok, tc.vocab_size
    torch.manual_seed(seed)
    model = transformers.Qwen3_5MoeForConditionalGeneration(cfg)
    mtp = make_qwen35_mtp(QWEN35_TEXT)
    mtp.init_weights(tc.initializer_range)
    model.train()
    mtp.train()
    n_vision = sum(p.numel() for p in model.model.visual.parameters())
    n_text = sum(p.numel() for p in model.parameters()) - n_vision
    n_mtp = sum(p.numel() for p in mtp.parameters())
    linears = linear_report(model, mtp)
    odd = [r for r in linears if r[2] % 32]
    print(f"[{arch}] text {n_text}, MTP {n_mtp}, vision {n_vision} (untrained) parameters; "
          f"{len(linears)} Linear matrices, in_features not a multiple of 32: {odd or 'none'}",
          flush=True)
    # The vision tower gets no data: keep it out of the optimizer (stays at its random init).
    params = [p for n, p in model.named_parameters() if not n.startswith("model.visual.")]
    params += list(mtp.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    router_logits = []
    mtp.layers[0].mlp.gate.register_forward_hook(lambda m, i, o: router_logits.append(o[0]))
    gen = torch.Generator().manual_seed(1000 + seed)
    ce = torch.nn.functional.cross_entropy
    print(f"[{arch}] {steps} steps of {BATCH}x{SEQ} tokens (body LM + {MTP_COEF} x MTP)",
          flush=True)
    t0 = time.time()
    ema = ema_mtp = None
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps)
        starts = torch.randint(0, len(train_ids) - SEQ, (BATCH,), generator=gen)
        x = torch.stack([train_ids[s:s + SEQ] for s in starts.tolist()])
        out = model.model(input_ids=x, output_router_logits=True)
        hidden = out.last_hidden_state  # after model.language_model.norm
        logits = model.lm_head(hidden)
        lm = ce(logits[:, :-1].reshape(-1, V).float(), x[:, 1:].reshape(-1))
        aux = qm.load_balancing_loss_func(out.router_logits, E, K)
        router_logits.clear()
        mtp_lm = ce(qwen35_mtp_logits(model, mtp, x, hidden).reshape(-1, V).float(),
                    x[:, 2:].reshape(-1))
        mtp_aux = qm.load_balancing_loss_func(tuple(router_logits), E, K)
        loss = lm + MOE_AUX_COEF * aux + MTP_COEF * (mtp_lm + MOE_AUX_COEF * mtp_aux)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema = lm.item() if ema is None else 0.98 * ema + 0.02 * lm.item()
        ema_mtp = mtp_lm.item() if ema_mtp is None else 0.98 * ema_mtp + 0.02 * mtp_lm.item()
        if (step + 1) % 100 == 0 or step == 0:
            print(f"[{arch}] step {step + 1:5d}  train loss {lm.item():.4f} (ema {ema:.4f})  "
                  f"MTP {mtp_lm.item():.4f} (ema {ema_mtp:.4f})  aux {aux.item():.3f}/"
                  f"{mtp_aux.item():.3f}  {time.time() - t0:6.1f}s", flush=True)
    train_s = time.time() - t0

    out_dir = os.path.join(OUT, arch)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    model.eval()
    mtp.eval()
    model = model.to(torch.bfloat16)
    mtp = mtp.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.config.text_config.dtype = torch.bfloat16
    model.config.vision_config.dtype = torch.bfloat16
    model.save_pretrained(out_dir, safe_serialization=True)  # config.json, generation_config.json
    # The weights are written by us, not by save_pretrained: transformers 5 saves the packed
    # experts split per expert (its qwen2_moe reverse conversion), whereas the real Qwen3.5/3.6
    # BF16 checkpoints (and the MTP names we need) keep them packed: mlp.experts.gate_up_proj
    # [E, 2I, H], mlp.experts.down_proj [E, H, I]. All other names are the model's own.
    st = os.path.join(out_dir, "model.safetensors")
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    mtp_tensors = {"mtp." + k: v.detach().contiguous() for k, v in mtp.state_dict().items()}
    assert sorted(mtp_tensors) == sorted(QWEN35_MTP_NAMES), sorted(mtp_tensors)
    tensors.update(mtp_tensors)
    assert all(v.dtype == torch.bfloat16 for v in tensors.values())
    for f in os.listdir(out_dir):
        if f.startswith("model") and f.endswith((".safetensors", ".json")):
            os.remove(os.path.join(out_dir, f))
    save_file(tensors, st, metadata={"format": "pt"})
    os.chmod(st, 0o644)
    for f in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(TOKENIZER_DIR, f), os.path.join(out_dir, f))

    # Reload checks: transformers loads the body (dropping mtp.*) with nothing missing and every
    # loaded tensor equal to the saved one; both entry points (the composite model and
    # AutoModelForCausalLM -> Qwen3_5MoeForCausalLM, which eval_fixture_torch.py uses) agree.
    saved = {}
    with safe_open(st, "pt") as f:
        for k in f.keys():
            saved[k] = f.get_tensor(k)
    cg, info = transformers.Qwen3_5MoeForConditionalGeneration.from_pretrained(
        out_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    cg.eval()
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    for k, v in cg.state_dict().items():
        assert torch.equal(v, saved[k].float()), k
    assert set(saved) - set(cg.state_dict()) == set(QWEN35_MTP_NAMES)
    body = ev.load_model_f32(out_dir)
    assert type(body).__name__ == "Qwen3_5MoeForCausalLM", type(body).__name__
    probe = torch.tensor([heldout_docs[0][:SEQ]])
    with torch.no_grad():
        d = (cg(input_ids=probe).logits - body(input_ids=probe).logits).abs().max().item()
    assert d < 1e-4, d
    mtp_f32 = make_qwen35_mtp(QWEN35_TEXT, attn_implementation="eager",
                              experts_implementation=cg.config.text_config._experts_implementation)
    mtp_f32.load_state_dict({k[4:]: saved[k].float() for k in QWEN35_MTP_NAMES})
    mtp_f32.eval()

    # Held-out NLL of the saved (bf16) weights, run in float32; then the MTP held-out loss.
    t1 = time.time()
    nll, scored, windows = ev.evaluate(body, heldout_docs, SEQ)
    mtp_nll, mtp_scored, mtp_windows = qwen35_mtp_evaluate(cg, mtp_f32, heldout_docs, SEQ)
    print(f"[{arch}] held-out NLL {nll:.4f} over {scored} tokens ({windows} windows); MTP "
          f"held-out NLL {mtp_nll:.4f} over {mtp_scored} tokens ({mtp_windows} windows); "
          f"train {train_s:.0f}s, eval {time.time() - t1:.0f}s", flush=True)
    write_source_qwen35(out_dir, split, dict(
        n_text=n_text, n_mtp=n_mtp, n_vision=n_vision, steps=steps, seed=seed, train_s=train_s,
        nll=nll, scored=scored, windows=windows, mtp_nll=mtp_nll, mtp_scored=mtp_scored,
        mtp_windows=mtp_windows, train_tokens=len(train_ids), linears=linears, odd=odd,
        ema=ema, ema_mtp=ema_mtp, config=cfg.to_dict(),
        shapes={k: list(v.shape) for k, v in saved.items()}))
    return nll


def write_source(arch, out_dir, split, info):
    files = sorted(f for f in os.listdir(out_dir) if f != "SOURCE.md")
    rows = "\n".join(f"| {f} | {os.path.getsize(os.path.join(out_dir, f))} | "
                     f"{sha256(os.path.join(out_dir, f))} |" for f in files)
    with open(os.path.join(out_dir, "config.json")) as f:
        mt = json.load(f)["architectures"][0]
    n_para = len(split["paras"])
    n_train = split["n_train"]
    tok_note = ("\n\nNote: transformers 5 `AutoTokenizer` ignores tokenizer_config.json's class for "
                "model_type qwen2 and builds a `Qwen2Tokenizer` (ByteLevel BPE) from the vocab, which "
                "tokenizes this text differently (wrongly); load `tokenizer.json` with `tokenizers` "
                "(or `PreTrainedTokenizerFast(tokenizer_file=...)`) instead, as "
                "scripts/eval_fixture_torch.py does." if arch == "qwen2" else "")
    moe_note = (" The MoE load-balancing auxiliary loss (coefficient "
                f"{MOE_AUX_COEF}) was added during training." if arch == "qwen3_moe" else "")
    text = f"""# Trained {arch} fixture ({mt}), {info['params']:,} parameters, bfloat16

A tiny language model trained by us on TinyStories text so that the quantization estimator
experiments (one Linear quantized at a time, ΔNLL measured) see real, learned weights. Not a
good model: held-out NLL **{info['nll']:.4f}** nats/token (uniform over the 512-token vocab
would be {math.log(512):.3f}; the bundled stories260K gets 1.679 in the same held-out eval).

## Data
- `tinystories_val.txt` from `../shared/assets/corpus-tinystories-valid-slice/` (794,375 bytes,
  sha256 `{CORPUS_SHA256}`): the first ~0.8 MB of the TinyStories validation split
  (Hugging Face `roneneldan/TinyStories`), as exported by GitHub repo `yuninxia/moe-routing-bench`
  (`data/tinystories_val.txt`, commit 6877be50c1c389c73047d7f27104bee6a995efd6).
- Licenses: TinyStories dataset card: CDLA-Sharing-1.0; the carrying repo is MIT.
- Tokenizer files are copies of `models/stories260K/` (llama2.c tok512, 512-token byte-fallback
  BPE; MIT upstream, see models/stories260K/SOURCE.md).{tok_note}

## Train / held-out split
Paragraphs as `prismaquant eval --split paragraphs` defines them (maximal runs of non-blank
lines, joined by "\\n", trimmed): {n_para} in the corpus. Trained on paragraphs [0, {n_train})
(= floor(0.8 x {n_para})); held-out = paragraphs [{n_train}, {n_para}) ({n_para - n_train}
paragraphs) = corpus bytes [{split['offset']}, {split['total']}), written byte for byte to
`models/trained/heldout.txt` ({len(split['heldout'])} bytes, sha256
`{hashlib.sha256(split['heldout']).hexdigest()}`).

## How it was made
`scripts/train_fixtures.py --arch {arch}` (deterministic; one CPU thread; torch
{torch.__version__}, transformers {__import__('transformers').__version__}); seed {info['seed']}.
Each training paragraph -> BOS + tokens, concatenated ({info['train_tokens']:,} tokens); {info['steps']}
AdamW steps of {BATCH} random {SEQ}-token crops (peak lr {LR}, {WARMUP} warm-up steps, cosine to
{MIN_LR_FRACTION:g}x, weight decay {WEIGHT_DECAY} on matrices, clip {CLIP}), float32, about
{info['train_s'] / 60:.1f} min; saved with `save_pretrained` in bfloat16.{moe_note}

Shape: hidden 64, 4 heads x head_dim 16, 2 KV heads, vocab 512, max_position_embeddings 512,
rope_theta 10000, rms_norm_eps 1e-5; {json.dumps(info['cfg_extra'])}.

## Held-out NLL
`prismaquant eval models/trained/{arch} --text models/trained/heldout.txt --split paragraphs --ctx 256`
(each paragraph = BOS + tokens, scored alone; paragraphs over 256 tokens in windows of 256
advancing by 128): {info['scored']} scored tokens in {info['windows']} windows. transformers in
float32 on these bf16 weights (`scripts/eval_fixture_torch.py`, same flags): **{info['nll']:.4f}**.

| file | bytes | sha256 |
| --- | --- | --- |
{rows}
"""
    with open(os.path.join(out_dir, "SOURCE.md"), "w") as f:
        f.write(text)


def write_source_qwen35(out_dir, split, info):
    arch = "qwen3_5_moe"
    files = sorted(f for f in os.listdir(out_dir) if f != "SOURCE.md")
    rows = "\n".join(f"| {f} | {os.path.getsize(os.path.join(out_dir, f))} | "
                     f"{sha256(os.path.join(out_dir, f))} |" for f in files)
    n_para = len(split["paras"])
    n_train = split["n_train"]
    tc = {k: v for k, v in info["config"]["text_config"].items() if k in QWEN35_TEXT}
    vc = {k: v for k, v in info["config"]["vision_config"].items() if k in QWEN35_VISION}
    shapes = info["shapes"]

    def listing(pred):
        return "\n".join(f"    {k:<58} {shapes[k]}" for k in sorted(shapes) if pred(k))

    body_l0 = listing(lambda k: k.startswith("model.language_model.layers.0.")
                      or (k.startswith("model.language_model.layers.3.self_attn.")))
    other = listing(lambda k: k.startswith("model.language_model.")
                    and ".layers." not in k or k == "lm_head.weight")
    mtp_l = listing(lambda k: k.startswith("mtp."))
    vis_l = listing(lambda k: k.startswith("model.visual."))
    odd = ("none" if not info["odd"] else
           ", ".join(f"{n} [{o}, {i}]" for n, o, i in info["odd"]))
    text = f"""# Trained qwen3_5_moe fixture (Qwen3_5MoeForConditionalGeneration + MTP head), bfloat16

A tiny Qwen3.5 / Qwen3.6-style hybrid MoE language model (3 Gated DeltaNet layers + 1 gated
full-attention layer, routed MoE with a shared expert in every layer) with a trained MTP head,
trained by us on TinyStories text. Parameters: text (body + lm_head) {info['n_text']:,},
MTP head {info['n_mtp']:,}, vision tower {info['n_vision']:,} (random init, never trained: it
is there only so that the checkpoint carries `model.visual.*` tensors). Not a good model:
held-out NLL **{info['nll']:.4f}** nats/token (uniform over the 512-token vocab would be
{math.log(512):.3f}; the bundled stories260K gets 1.679 in the same held-out eval); the MTP head
(predicting token t+2) gets **{info['mtp_nll']:.4f}** on the same held-out text.

## Data
- `tinystories_val.txt` from `../shared/assets/corpus-tinystories-valid-slice/` (794,375 bytes,
  sha256 `{CORPUS_SHA256}`): the first ~0.8 MB of the TinyStories validation split
  (Hugging Face `roneneldan/TinyStories`), as exported by GitHub repo `yuninxia/moe-routing-bench`
  (`data/tinystories_val.txt`, commit 6877be50c1c389c73047d7f27104bee6a995efd6).
- Licenses: TinyStories dataset card: CDLA-Sharing-1.0; the carrying repo is MIT.
- Tokenizer files are copies of `models/stories260K/` (llama2.c tok512, 512-token byte-fallback
  BPE; MIT upstream, see models/stories260K/SOURCE.md). The config keeps transformers' default
  image/video/vision token ids (248053..248057), which lie outside this 512-token vocab: the
  fixture is text-only.

## Train / held-out split
Paragraphs as `prismaquant eval --split paragraphs` defines them (maximal runs of non-blank
lines, joined by "\\n", trimmed): {n_para} in the corpus. Trained on paragraphs [0, {n_train})
(= floor(0.8 x {n_para})); held-out = paragraphs [{n_train}, {n_para}) ({n_para - n_train}
paragraphs) = corpus bytes [{split['offset']}, {split['total']}), written byte for byte to
`models/trained/heldout.txt` ({len(split['heldout'])} bytes, sha256
`{hashlib.sha256(split['heldout']).hexdigest()}`); the same split as the other fixtures.

## Model
`Qwen3_5MoeConfig` (transformers {__import__('transformers').__version__}), text_config:

    {json.dumps(tc, sort_keys=True)}

vision_config:

    {json.dumps(vc, sort_keys=True)}

The `attn_output_gate`, `full_attention_interval`, `mamba_ssm_dtype`, `mtp_num_hidden_layers`
and `mtp_use_dedicated_embeddings` fields are not read by transformers (it always gates the
attention output and has no MTP module); they are stored as the published Qwen3.5/3.6 configs
store them. Head dim 16 x partial_rotary_factor 0.25 = rotary dim 4 (2 frequencies), hence
`mrope_section` [1, 1, 0] (sums to 2; text-only input makes MRoPE plain partial RoPE).

MTP head (`mtp.*`; transformers drops these on load, so the PyTorch module is
`make_qwen35_mtp` in scripts/train_fixtures.py, following architectures.md section 4 / vLLM
`Qwen3_5MultiTokenPredictor`): for positions t = 0..T-3,
`e = RMSNorm_(1+w)(embed(x_(t+1)); mtp.pre_fc_norm_embedding)`,
`h = RMSNorm_(1+w)(h_t; mtp.pre_fc_norm_hidden)` with `h_t` the body's hidden state after
`model.language_model.norm`, `u = mtp.fc(concat(e, h))` (embedding first, [64, 128], no bias),
`u = mtp.layers.0(u)` (transformers' `Qwen3_5MoeDecoderLayer` built as a full_attention layer:
gated attention + the same MoE block; causal, RoPE over positions 0..T-3),
`logits = lm_head(RMSNorm_(1+w)(u; mtp.norm))` (the body's embed_tokens and lm_head, no
dedicated ones), target x_(t+2).

## Checkpoint layout
`model.safetensors` holds every tensor in bfloat16 under the real Qwen3.5/3.6 names
(`model.language_model.*`, `lm_head.weight`, `model.visual.*`, `mtp.*`). Routed experts are
stored **packed** in the body and in the MTP layer, as the published BF16 Qwen3.5/3.6
checkpoints do: `mlp.experts.gate_up_proj` [E, 2I, H] (rows 0..I-1 gate, I..2I-1 up) and
`mlp.experts.down_proj` [E, H, I], no `.weight` suffix. (The file is written with
`safetensors.torch.save_file` from the modules' state_dicts, not by `save_pretrained`, which in
transformers 5 would split the experts into `experts.<e>.<gate|up|down>_proj.weight`.)
transformers loads it (`Qwen3_5MoeForConditionalGeneration`, and `AutoModelForCausalLM` ->
`Qwen3_5MoeForCausalLM`), ignoring `mtp.*` (and `model.visual.*` for the latter); checked at
each run: nothing missing, every loaded tensor equal to the saved one, both give the same
logits.

Body layer 0 (Gated DeltaNet; layers 1, 2 alike) and the attention of layer 3:

{body_l0}

Other body tensors:

{other}

MTP head:

{mtp_l}

Vision tower (untrained):

{vis_l}

Every Linear's in_features (including each packed expert matrix, the vision Linears and the
MTP fc) is a multiple of 32; those that are not: {odd}. ({len(info['linears'])} nn.Linear
modules and packed expert tensors. Out-features below 32: `in_proj_a`/`in_proj_b` [4, 64],
`shared_expert_gate` [1, 64], the routers `mlp.gate` [8, 64]. The vision patch embed, a Conv3d,
is a Linear over 3 x 2 x 4 x 4 = 96 inputs.)

## How it was made
`scripts/train_fixtures.py --arch {arch}` (deterministic; one CPU thread; torch
{torch.__version__}, transformers {__import__('transformers').__version__}); seed {info['seed']}.
Each training paragraph -> BOS + tokens, concatenated ({info['train_tokens']:,} tokens);
{info['steps']} AdamW steps of {BATCH} random {SEQ}-token crops (peak lr {LR}, {WARMUP} warm-up
steps, cosine to {MIN_LR_FRACTION:g}x, weight decay {WEIGHT_DECAY} on matrices, clip {CLIP} over
body + MTP), float32, about {info['train_s'] / 60:.1f} min (the DeltaNet layers use transformers'
reference PyTorch chunked gated-delta-rule and causal-conv1d fallbacks). Loss per step:

    body LM CE (all positions) + {MOE_AUX_COEF} x body load-balancing aux
      + {MTP_COEF} x (MTP CE over t = 0..T-3 + {MOE_AUX_COEF} x MTP-layer load-balancing aux)

(transformers' `load_balancing_loss_func`). The body hidden states fed to the MTP are
detached, so the MTP loss trains only the MTP head and the shared `embed_tokens` / `lm_head`.
The vision tower is not in the optimizer. Final training-loss EMAs: body {info['ema']:.4f},
MTP {info['ema_mtp']:.4f}. Weights cast to bfloat16 for saving.

## Held-out NLL
`prismaquant eval models/trained/{arch} --text models/trained/heldout.txt --split paragraphs --ctx 256`
(each paragraph = BOS + tokens, scored alone; paragraphs over 256 tokens in windows of 256
advancing by 128): {info['scored']} scored tokens in {info['windows']} windows. transformers in
float32 on these bf16 weights (`scripts/eval_fixture_torch.py`, same flags; body LM only):
**{info['nll']:.4f}**.

MTP held-out NLL (`qwen35_mtp_evaluate` in scripts/train_fixtures.py, float32 on the bf16
weights): same documents and windows; in a window of L tokens MTP row t = 0..L-3 predicts
window token t+2 and counts iff the body eval scores that token in this window, so every
document token from index 2 on is scored once: {info['mtp_scored']} tokens in
{info['mtp_windows']} windows, **{info['mtp_nll']:.4f}**.

| file | bytes | sha256 |
| --- | --- | --- |
{rows}
"""
    with open(os.path.join(out_dir, "SOURCE.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description="Train the models/trained fixtures.")
    ap.add_argument("--arch", action="append", choices=list(ARCHS),
                    help="architecture(s) to train (default: all)")
    ap.add_argument("--steps", type=int, default=0, help="override the step count (testing)")
    ap.add_argument("--out", default="", help="output root (default models/trained)")
    a = ap.parse_args()
    if a.out:
        global OUT
        OUT = os.path.abspath(a.out)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    tok = ev.Tokenizer(TOKENIZER_DIR)
    assert tok.bos_token_id == 1
    split = split_corpus()
    os.makedirs(OUT, exist_ok=True)
    heldout_path = os.path.join(OUT, "heldout.txt")
    if not (os.path.exists(heldout_path) and open(heldout_path, "rb").read() == split["heldout"]):
        with open(heldout_path, "wb") as f:
            f.write(split["heldout"])
    print(f"{len(split['paras'])} paragraphs; train [0, {split['n_train']}), held-out from byte "
          f"{split['offset']} ({len(split['heldout'])} bytes)", flush=True)
    train_ids = token_stream(split["paras"][:split["n_train"]], tok)
    heldout_docs = [[tok.bos_token_id] + tok.encode(p) for p in split["paras"][split["n_train"]:]]
    results = {}
    for arch in a.arch or list(ARCHS):
        results[arch] = train_one(arch, split, train_ids, heldout_docs, tok, a.steps or None)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
