#!/usr/bin/env python3
"""PyTorch CPU baseline for the C++ forward+backward engine: tokens/second of one training-style
step (forward, mean next-token cross-entropy, backward computing every weight gradient) of a
Hugging Face causal LM in float32.

  venv=$(bash scripts/setup_venv.sh)
  $venv/bin/python bench/engine_torch_bench.py                     # stories260K + synthetic Llama
  $venv/bin/python bench/engine_torch_bench.py --model DIR [--model DIR2 ...]
  $venv/bin/python bench/engine_torch_bench.py --make-synthetic DIR   # only write the synthetic model

Models: by default models/stories260K and a synthetic random-init Llama (hidden 512, 8 layers,
8 heads / 4 kv heads, head_dim 64, intermediate 1376, vocab 32000, untied, float32, seed 0)
written with save_pretrained to a temp dir (or --synthetic-dir) whose path is printed on stderr
and in each JSON line ("path"), so the C++ bench can load the very same checkpoint.

Per model and thread count N in --threads (default: 1 and all cores): torch.set_num_threads(N);
inputs = --batch sequences of --seq tokens (random ids, seed 0), position ids 0..T-1, no
padding; one warm-up step, then --reps timed steps (default 5), each
  zero grads -> logits = model(ids) -> loss = CE(logits[:, :-1], ids[:, 1:]) (mean)
  -> loss.backward()
Prints one JSON line per (model, threads):
  {"model", "path", "threads", "batch", "seq", "tokens", "attn", "median_s", "min_s",
   "tokens_per_s" (= batch*seq / median_s), "loss"}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SYNTH = dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
             head_dim=64, intermediate_size=1376, vocab_size=32000, max_position_embeddings=2048,
             rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
             bos_token_id=1, eos_token_id=2, initializer_range=0.02)


def make_synthetic(out: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    cfg = LlamaConfig(**SYNTH)
    model = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():   # deterministic, independent of transformers' init order
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    return out


def load(path: Path, attn: str):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32,
                                                attn_implementation=attn).eval()


def step(model, ids, pos):
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits
    V = logits.shape[-1]
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    loss.backward()
    return float(loss.detach())


def bench(name, path, threads, a):
    torch.set_num_threads(threads)
    model = load(path, a.attn)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (a.batch, a.seq), generator=g)
    pos = torch.arange(a.seq).unsqueeze(0).expand(a.batch, a.seq)
    loss = step(model, ids, pos)   # warm-up
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        loss = step(model, ids, pos)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    tok = a.batch * a.seq
    return {"model": name, "path": str(path), "threads": threads, "batch": a.batch, "seq": a.seq,
            "tokens": tok, "attn": a.attn, "median_s": med, "min_s": min(times),
            "tokens_per_s": tok / med, "loss": loss}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=None,
                    help="model directory (repeatable); default: stories260K and the synthetic Llama")
    ap.add_argument("--no-synthetic", action="store_true", help="default models without the synthetic one")
    ap.add_argument("--synthetic-dir", default=None, help="where to write/reuse the synthetic model")
    ap.add_argument("--make-synthetic", metavar="DIR", default=None,
                    help="only write the synthetic Llama to DIR and print its path")
    ap.add_argument("--threads", type=int, nargs="*", default=None,
                    help="thread counts (default: 1 and all cores)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--attn", choices=("eager", "sdpa"), default="sdpa",
                    help="transformers attention implementation (default sdpa, the faster one)")
    a = ap.parse_args()

    if a.make_synthetic:
        print(make_synthetic(Path(a.make_synthetic)))
        return 0

    models = []
    if a.model:
        models = [(Path(m).name, Path(m)) for m in a.model]
    else:
        models.append(("stories260K", ROOT / "models" / "stories260K"))
        if not a.no_synthetic:
            sd = Path(a.synthetic_dir) if a.synthetic_dir else Path(tempfile.mkdtemp(prefix="pq-synth-llama-"))
            if not (sd / "config.json").exists():
                make_synthetic(sd)
            print(f"synthetic Llama (hidden 512, 8 layers, vocab 32000): {sd}", file=sys.stderr)
            models.append(("synthetic-llama-512x8", sd))
    threads = a.threads or sorted({1, os.cpu_count() or 1})
    for name, path in models:
        for n in threads:
            print(json.dumps(bench(name, path, n, a)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
