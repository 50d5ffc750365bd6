#!/usr/bin/env python3
"""Trains the small fixture models in models/trained/ (one per supported architecture).

    venv=$(bash scripts/setup_venv.sh)
    $venv/bin/python scripts/train_fixtures.py                 # all four, ~13-15 min on 1 CPU thread
    $venv/bin/python scripts/train_fixtures.py --arch qwen3    # just one

Produces, from the repository root:
  models/trained/heldout.txt          the held-out text (an exact byte slice of the corpus)
  models/trained/<arch>/              arch in llama, qwen2, qwen3, qwen3_moe:
      config.json, generation_config.json, model.safetensors (bfloat16, save_pretrained),
      tokenizer.json, tokenizer_config.json, special_tokens_map.json (copied from
      models/stories260K: the llama2.c 512-token byte-fallback BPE), SOURCE.md

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
clipping at 1.0, float32; saved in bfloat16. The MoE model adds transformers' load-balancing
auxiliary loss (coefficient 0.01) during training (output_router_logits is saved false).
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
    with open(os.path.join(OUT, "heldout.txt"), "wb") as f:
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
