#!/usr/bin/env python3
"""Reference for `prismaquant generate` (greedy): transformers' own `model.generate`.

  $venv/bin/python tests/engine/generate_ref.py MODEL OURS.json [OURS.json ...]

Each OURS.json is the `--json` output of `prismaquant generate MODEL --prompt P -n N`
(greedy, the default). For each one, from its "prompt":

  * the prompt is encoded with `tokenizers` (MODEL/tokenizer.json, add_special_tokens=False)
    and prefixed with BOS (config.json bos_token_id), which must equal our "prompt_tokens";
  * transformers (float32, eager attention) runs
    model.generate(ids, do_sample=False, num_beams=1, max_new_tokens=N,
                   eos_token_id=config eos_token_id)
    with N = --max-new-tokens (default 64; our run must use the same -n), and its new tokens
    must equal our "tokens" (same length: both stop at EOS or after N).
  * A divergence is tolerated only when it is float noise: at the first differing step k,
    transformers' logits (one forward pass over prompt + our first k tokens, no cache) of the
    two candidates, its choice and ours, must be within GAP_TOL = 1e-4 of each other. The gap is
    reported either way; past such a step the sequences are not compared further.
  * The mean NLL of our new tokens under transformers' model (same forward pass over prompt +
    all our tokens) must equal our "mean_nll" within NLL_TOL = 1e-4 nats.

Prints one JSON line per prompt {"prompt", "ok", "match", "first_diff", "gap", "ref_tokens",
"mean_nll_ref", "mean_nll_ours", "min_top2_gap", ...} and exits 1 if any prompt fails.
min_top2_gap: the smallest margin between transformers' best and second-best logit over the
steps that produced our tokens (how close a float-noise flip could have come).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GAP_TOL = 1e-4
NLL_TOL = 1e-4


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("ours", nargs="+", help="`prismaquant generate --json` outputs")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    torch.set_num_threads(a.threads)

    model_dir = Path(a.model)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    cfg = model.config
    bos = 1 if cfg.bos_token_id is None else int(cfg.bos_token_id)
    eos = cfg.eos_token_id

    failed = 0
    for path in a.ours:
        ours = json.loads(Path(path).read_text())
        prompt = ours["prompt"]
        ids = [bos] + tok.encode(prompt, add_special_tokens=False).ids
        out = {"model": str(model_dir), "prompt": prompt, "ok": True}
        if ids != ours["prompt_tokens"]:
            out.update(ok=False, error=f"prompt tokens differ: ref {ids} vs ours {ours['prompt_tokens']}")
            print(json.dumps(out))
            failed += 1
            continue
        mine = list(ours["tokens"])
        x = torch.tensor([ids])
        with torch.no_grad():
            gen = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, num_beams=1,
                                 max_new_tokens=a.max_new_tokens, eos_token_id=eos,
                                 pad_token_id=eos if eos is not None else 0)
            ref = gen[0, len(ids):].tolist()
            full = torch.tensor([ids + mine])
            logits = model(input_ids=full, use_cache=False).logits[0].float()
        k = next((i for i in range(min(len(ref), len(mine))) if ref[i] != mine[i]), None)
        out.update(ref_tokens=ref, ours_tokens=mine, first_diff=k, gap=None)
        if k is None:
            out["match"] = len(ref) == len(mine)
            if not out["match"]:
                out.update(ok=False, error=f"lengths differ: ref {len(ref)} vs ours {len(mine)} "
                                            f"(ours stopped: {ours.get('stop')})")
        else:
            out["match"] = False
            row = logits[len(ids) + k - 1].double()
            gap = float(row[ref[k]] - row[mine[k]])
            top2 = torch.topk(row, 2).values
            out.update(gap=gap, ref_top2_gap=float(top2[0] - top2[1]))
            if abs(gap) >= GAP_TOL:
                out.update(ok=False, error=f"step {k}: ref chose {ref[k]}, we chose {mine[k]}; logit gap "
                                            f"{gap:.3g} >= {GAP_TOL:g} (not float noise)")
        if mine:
            lp = torch.log_softmax(logits.double(), -1)
            pos = torch.arange(len(ids) - 1, len(ids) - 1 + len(mine))
            nll = -lp[pos, torch.tensor(mine)]
            out["mean_nll_ref"] = float(nll.mean())
            out["mean_nll_ours"] = ours["mean_nll"]
            d = abs(out["mean_nll_ref"] - ours["mean_nll"])
            out["mean_nll_diff"] = d
            top2 = torch.topk(logits[pos].double(), 2, dim=-1).values
            out["min_top2_gap"] = float((top2[:, 0] - top2[:, 1]).min())
            if d > NLL_TOL:
                out.update(ok=False, error=(out.get("error", "") + f"; mean NLL differs by {d:.3g}").lstrip("; "))
        print(json.dumps(out))
        failed += 0 if out["ok"] else 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
