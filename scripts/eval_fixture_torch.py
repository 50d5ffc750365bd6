#!/usr/bin/env python3
"""Mean NLL per token of a Hugging Face checkpoint with PyTorch `transformers`, windowed exactly
like `prismaquant eval` (the reference for checking our engine on the trained fixtures).

    venv=$(bash scripts/setup_venv.sh)
    $venv/bin/python scripts/eval_fixture_torch.py models/trained/llama \\
        --text models/trained/heldout.txt --split paragraphs --ctx 256 [--stride 128] [--json]

compares with

    build/release/tools/prismaquant/prismaquant eval models/trained/llama \\
        --text models/trained/heldout.txt --split paragraphs --ctx 256

Same documents and windows as src/pq/pipeline/eval_text.cc (SplitDocuments, BOS prepended) and
src/pq/engine/eval.cc (MakeWindows): a document of at most ctx tokens is one window scoring every
token after the first; a longer one is split into windows of ctx tokens advancing by stride
(default ctx // 2), the first scoring all its tokens, each later one only its last `stride`
tokens, so every token after the first is scored exactly once. The model runs in float32
(bf16 weights are widened exactly, as our engine does), eager attention, one window at a time.

models/trained/qwen3_5_moe (a Qwen3_5MoeForConditionalGeneration checkpoint) needs nothing
special: AutoModelForCausalLM loads its text body as Qwen3_5MoeForCausalLM (transformers maps
model.language_model.* to model.* and ignores model.visual.* and mtp.*), so this scores the
body LM only; its MTP head's held-out loss comes from scripts/train_fixtures.py
(qwen35_mtp_evaluate).
"""
import argparse
import json
import math
import os
import sys

WS = " \t\r\n\v\f"  # the whitespace set of eval_text.cc's IsBlank/Trim


def split_documents(text, split):
    """SplitDocuments of src/pq/pipeline/eval_text.cc."""
    if split == "none":
        return [text] if text.strip(WS) else []
    docs, para = [], None
    lines = text.split("\n")
    if lines and lines[-1] == "":  # std::getline yields no final empty line after a trailing \n
        lines.pop()
    for line in lines:
        blank = line.strip(WS) == ""
        if split == "lines":
            if not blank:
                docs.append(line)
            continue
        if blank:
            if para is not None and para.strip(WS):
                docs.append(para.strip(WS))
            para = None
        else:
            para = line if para is None else para + "\n" + line
    if split == "paragraphs" and para is not None and para.strip(WS):
        docs.append(para.strip(WS))
    return docs


def make_windows(doc, ctx, stride):
    """MakeWindows of src/pq/engine/eval.cc for one document: [(ids, targets)], -1 = unscored."""
    out = []
    n = len(doc)
    begin, scored_from = 0, 1
    while scored_from < n:
        end = min(begin + ctx, n)
        ids = doc[begin:end]
        targets = [-1] * len(ids)
        for j in range(max(scored_from, begin + 1), end):
            targets[j - 1 - begin] = doc[j]
        scored_from = end
        out.append((ids, targets))
        if end == n:
            break
        begin = end - (ctx - stride)
    return out


class Tokenizer:
    """The model directory's tokenizer.json through Hugging Face `tokenizers` (what our
    tokenizer equals). Not AutoTokenizer: transformers 5 ignores tokenizer_config.json's class
    for model_type qwen2 and builds a Qwen2Tokenizer (a ByteLevel BPE) from the vocab instead,
    which encodes this llama2.c tokenizer's text wrongly."""

    def __init__(self, model_dir):
        from tokenizers import Tokenizer as HfTokenizer

        self.tok = HfTokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        bos = None
        cfg = os.path.join(model_dir, "tokenizer_config.json")
        if os.path.exists(cfg):
            with open(cfg) as f:
                bos = json.load(f).get("bos_token")
            if isinstance(bos, dict):
                bos = bos.get("content")
        self.bos_token_id = self.tok.token_to_id(bos) if bos else None

    def encode(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids


def load_documents(model_dir, text_file, split, max_docs=0, add_bos=True):
    """Token documents (BOS + the tokenizer's ids of each document), as LoadEvalDocuments."""
    tok = Tokenizer(model_dir)
    with open(text_file, "rb") as f:
        text = f.read().decode("utf-8")
    docs = []
    for d in split_documents(text, split):
        if max_docs and len(docs) >= max_docs:
            break
        docs.append(([tok.bos_token_id] if add_bos else []) + tok.encode(d))
    return docs


def evaluate(model, docs, ctx, stride=0):
    """(mean NLL per scored token, scored tokens, windows) of a float32 causal LM."""
    import torch

    stride = stride or max(ctx // 2, 1)
    nll, scored, windows = 0.0, 0, 0
    with torch.no_grad():
        for doc in docs:
            for ids, targets in make_windows(doc, ctx, stride):
                windows += 1
                logits = model(input_ids=torch.tensor([ids])).logits[0].double()
                lp = torch.log_softmax(logits, dim=-1)
                t = torch.tensor(targets)
                m = t >= 0
                nll -= lp[m].gather(1, t[m].unsqueeze(1)).sum().item()
                scored += int(m.sum())
    return nll / scored, scored, windows


def load_model_f32(model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--text", required=True)
    ap.add_argument("--split", default="none", choices=["none", "lines", "paragraphs"])
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--stride", type=int, default=0)
    ap.add_argument("--max-docs", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    docs = load_documents(a.model, a.text, a.split, a.max_docs)
    model = load_model_f32(a.model)
    nll, scored, windows = evaluate(model, docs, a.ctx, a.stride)
    res = {"docs": len(docs), "windows": windows, "tokens": scored, "ctx": a.ctx,
           "stride": a.stride or max(a.ctx // 2, 1), "mean_nll": nll, "ppl": math.exp(nll)}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"docs {res['docs']}  windows {windows}  tokens {scored}  ctx {a.ctx}  "
              f"stride {res['stride']}\nmean NLL {nll:.6f}  ppl {res['ppl']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
