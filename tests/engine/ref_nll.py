#!/usr/bin/env python3
"""Independent reference for `prismaquant eval`: mean next-token NLL of a Hugging Face model
(transformers, float32, eager attention) on paragraphs of a text file.

Documents (the definition `prismaquant eval --split paragraphs` must share):
  * read the file as UTF-8, split it into lines on "\\n";
  * a paragraph is a maximal run of consecutive lines that are non-empty after stripping
    whitespace (so blank and whitespace-only lines separate paragraphs);
  * its text is those lines joined with "\\n" and then stripped of leading/trailing
    whitespace (Python str.strip); empty paragraphs cannot occur;
  * the first --max-docs paragraphs are used (400 by default).
  --split lines: every line, stripped, non-empty ones only. --split none: the whole file,
  stripped, as one document.
  For the TinyStories slice the first 400 paragraphs are exactly its first 400 non-blank
  lines (no paragraph there spans two lines); the strip matters: 967 lines of the file
  end in a space, and not stripping gives 38,748 scored tokens instead of 38,675.

Encoding: tokenizers.Tokenizer.from_file(MODEL/tokenizer.json).encode(text,
add_special_tokens=False).ids, prefixed with BOS (config bos_token_id, 1 for stories260K).
With --check-llama2c (default when MODEL/tokenizer.bin exists) every document is also encoded
with a re-implementation of llama2.c run.c's encode (scripts/llama2c_tokenizer_check.py) and
must give the same ids.

Scoring: a document of n tokens [BOS, t1, .., t_{n-1}] is scored in one forward pass (n <= ctx);
every token after BOS is scored once: NLL_i = -log softmax(logits[i-1])[t_i], in float32 from
the model, accumulated in float64. A document longer than --ctx (default
max_position_embeddings) is truncated to its first ctx tokens and reported ("truncated").
mean_nll = sum NLL / tokens; ppl = exp(mean_nll).

--reference REF additionally scores REF on the same documents and reports
mean_kl = mean over scored positions of KL(P_ref || P_model) (and mean_kl_model_ref, the
other direction) in nats.

--act-quant EXPORT: run-time activation quantization by compressed-tensors itself. MODEL must
be a dense copy of the compressed-tensors checkpoint EXPORT (tests/engine/ct_dense.py --dtype f32:
ct's decompression graph in float32, equal to `prismaquant dequantize` bit for bit). The model is
loaded as usual (float32, eager); then EXPORT's quantization_config goes through the same calls
transformers' CompressedTensorsHfQuantizer makes (CompressedTensorsConfig.from_dict ->
ModelCompressor.from_compression_config(..).quantization_config -> ct's
apply_quantization_config(model, config, run_compressed=False)), which gives every targeted
Linear its QuantizationScheme, status "compressed" (so its weights, already dense, are not
fake-quantized again) and ct's own `set_forward_quantized` forward, unmodified: it calls
`forward_quantize(self, input, "input", scheme.input_activations)` and then the class's forward.
Two adapters give the arithmetic of the runtime and of `prismaquant eval`:
  * a forward pre-hook rounds the Linear's float32 input to bf16 (torch .to(bfloat16), nearest
    even) -- the runtime's activations are bf16, so ct's fake quantization runs on bf16 values
    exactly as in a bf16 model (it would use float32 intermediates on a float32 input);
  * the module's class becomes a torch.nn.Linear subclass whose forward is
    F.linear(input.float(), weight, bias): the bf16 fake-quantized input, widened exactly, times
    the float32 weights in float32 (a bf16 model would do this matmul in bf16).
So the reference is: float32 model, and at every quantized Linear
y = x_q @ W^T (+ b) in float32 with x_q = float(ct.forward_quantize(bf16(x))) -- what `prismaquant
eval` computes (src/pq/formats/act_quant.h rounds to bf16, then ct's arithmetic). ct's module
input is [1, tokens, K] (batch 1), so FP8's TOKEN strategy gives one scale per token.
Only fully dynamic input_activations (dynamic: true -- MXFP8, MXFP4, FP8) are supported; static
or global input scales (NVFP4 W4A4's input_global_scale) are refused rather than guessed.
--check-native (with --act-quant): also load EXPORT itself with transformers (bf16, its default
CompressedTensorsConfig: ct's route, weights decompressed by ct on the first forward) and require
that exactly the same modules carry a QuantizationScheme with the same input_activations args,
and that on the first document switching their `quantization_enabled` off changes the logits,
i.e. transformers' own inference of EXPORT quantizes these inputs. (transformers cannot run
EXPORT in float32: ct decompresses the weights to bf16 and F.linear then sees float32 x bf16.)

Output: one JSON line {"tokens", "mean_nll", "ppl", "docs", "truncated", "max_doc_tokens",
...}; with --act-quant also "act_quant": {"export", "modules", "input_activations",
"forward_passes"} (+ "native_modules", "native_max_logit_change_without_act_quant" with
--check-native). --per-doc PATH writes one JSON line per document {"doc", "tokens", "sum_nll",
"mean_nll"} (tokens = scored tokens of that document).

  $venv/bin/python tests/engine/ref_nll.py [MODEL] [--text FILE] [--max-docs 400]
Defaults: MODEL = $PQ_SOURCE_DIR/models/stories260K,
          FILE = $PQ_SOURCE_DIR/../shared/assets/corpus-tinystories-valid-slice/tinystories_val.txt
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SRC = Path(os.environ.get("PQ_SOURCE_DIR", Path(__file__).resolve().parents[2])).resolve()
DEFAULT_MODEL = SRC / "models" / "stories260K"
DEFAULT_TEXT = SRC.parent / "shared" / "assets" / "corpus-tinystories-valid-slice" / "tinystories_val.txt"


def split_documents(text: str, split: str) -> list[str]:
    if split == "none":
        t = text.strip()
        return [t] if t else []
    lines = text.split("\n")
    if split == "lines":
        return [ln.strip() for ln in lines if ln.strip()]
    if split != "paragraphs":
        raise ValueError(split)
    paras, cur = [], []
    for ln in lines:
        if ln.strip():
            cur.append(ln)
        elif cur:
            paras.append("\n".join(cur).strip())
            cur = []
    if cur:
        paras.append("\n".join(cur).strip())
    return [p for p in paras if p]


def encode_all(model_dir: Path, docs: list[str], bos: int, check_llama2c: bool | None):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = [[bos] + tok.encode(d, add_special_tokens=False).ids for d in docs]
    checked = False
    tb = model_dir / "tokenizer.bin"
    if check_llama2c is None:
        check_llama2c = tb.exists()
    if check_llama2c:
        sys.path.insert(0, str(SRC / "scripts"))
        import llama2c_tokenizer_check as l2c
        _, pieces, scores = l2c.read_llama2c_tokenizer(str(tb))
        ref = l2c.RunCEncoder(pieces, scores)
        for i, d in enumerate(docs):
            want = ref.encode(d)
            if want != ids[i][1:]:
                raise SystemExit(f"ref_nll: doc {i}: HF tokenizer.json and llama2.c encode differ "
                                 f"({len(ids[i]) - 1} vs {len(want)} tokens)")
        checked = True
    return ids, checked


def load_model(path: Path):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    m = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32,
                                             attn_implementation="eager")
    return m.eval()


def ct_quant_config(export_dir: Path):
    """EXPORT's quantization_config as compressed-tensors sees it when transformers loads EXPORT."""
    from compressed_tensors.compressors import ModelCompressor
    from transformers.utils.quantization_config import CompressedTensorsConfig
    qc = json.loads((export_dir / "config.json").read_text()).get("quantization_config")
    if not qc:
        raise SystemExit(f"ref_nll: {export_dir}/config.json has no quantization_config")
    return ModelCompressor.from_compression_config(CompressedTensorsConfig.from_dict(qc)).quantization_config


def input_args_by_module(model) -> dict:
    """name -> input_activations args (as a dict) of every module carrying a QuantizationScheme."""
    out = {}
    for name, mod in model.named_modules():
        scheme = getattr(mod, "quantization_scheme", None)
        if scheme is not None:
            ia = scheme.input_activations
            out[name] = None if ia is None else ia.model_dump(mode="json")
    return out


def install_ct_act_quant(model, export_dir: Path) -> dict:
    """ct's run-time input quantization on every Linear EXPORT quantizes (see --act-quant)."""
    import torch
    import torch.nn.functional as F
    from compressed_tensors.quantization import QuantizationStatus, apply_quantization_config

    class F32Linear(torch.nn.Linear):
        # ct's quantized forward ends in `self.__class__.forward(self, input)`.
        def forward(self, input):
            return F.linear(input.float(), self.weight, self.bias)

    calls = {}

    def to_bf16(mod, args):
        calls[mod] = calls.get(mod, 0) + 1
        return (args[0].to(torch.bfloat16),) + tuple(args[1:])

    apply_quantization_config(model, ct_quant_config(export_dir), run_compressed=False, show_progress=False)
    args = input_args_by_module(model)
    if not args:
        raise SystemExit(f"ref_nll: {export_dir}'s quantization_config matches no module of the model")
    mods = {}
    for name, ia in args.items():
        mod = model.get_submodule(name)
        if type(mod) is not torch.nn.Linear:
            raise SystemExit(f"ref_nll: --act-quant: {name} is a {type(mod).__name__}, not a Linear")
        if ia is None:
            raise SystemExit(f"ref_nll: --act-quant: {name} has no input_activations (weight-only format)")
        if ia.get("dynamic") is not True:
            raise SystemExit(f"ref_nll: --act-quant: {name}: input_activations dynamic={ia.get('dynamic')!r} "
                             "needs static/global input scales, not supported")
        if mod.quantization_status != QuantizationStatus.COMPRESSED:
            # below "compressed", ct's forward would fake-quantize the (already dequantized) weights again
            raise SystemExit(f"ref_nll: --act-quant: {name}: status {mod.quantization_status}, want compressed")
        if mod.weight.dtype != torch.float32:
            raise SystemExit(f"ref_nll: --act-quant: {name}.weight is {mod.weight.dtype}; MODEL must be the "
                             "float32 dense copy (ct_dense.py --dtype f32)")
        mod.__class__ = F32Linear
        mod.register_forward_pre_hook(to_bf16)
        mods[name] = mod
    return {"modules": mods, "args": args, "calls": calls}


def check_native(export_dir: Path, args_ours: dict, first_doc: list[int]) -> dict:
    """--check-native: transformers' own load of EXPORT applies the same activation quantization."""
    import torch
    from transformers import AutoModelForCausalLM
    native = AutoModelForCausalLM.from_pretrained(str(export_dir), dtype=torch.bfloat16,
                                                  attn_implementation="eager").eval()
    args_native = input_args_by_module(native)
    if args_native != args_ours:
        diff = sorted(k for k in set(args_native) | set(args_ours) if args_native.get(k) != args_ours.get(k))
        raise SystemExit(f"ref_nll: --check-native: transformers' load of {export_dir} quantizes "
                         f"other modules/args than --act-quant: {diff[:5]}")
    x = torch.tensor([first_doc])
    with torch.no_grad():
        on = native(input_ids=x, use_cache=False).logits
        for name in args_native:
            native.get_submodule(name).quantization_enabled = False
        off = native(input_ids=x, use_cache=False).logits
    d = float((on.float() - off.float()).abs().max())
    if not d > 0:
        raise SystemExit("ref_nll: --check-native: disabling ct's quantization in transformers' model "
                         "of the export does not change its logits")
    return {"native_modules": len(args_native), "native_max_logit_change_without_act_quant": d}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    ap.add_argument("--text", default=str(DEFAULT_TEXT))
    ap.add_argument("--split", choices=("paragraphs", "lines", "none"), default="paragraphs")
    ap.add_argument("--max-docs", type=int, default=400)
    ap.add_argument("--ctx", type=int, default=None, help="max tokens per document incl. BOS "
                    "(default: the model's max_position_embeddings)")
    ap.add_argument("--reference", default=None, help="also report mean KL against this model")
    ap.add_argument("--per-doc", default=None, help="write per-document JSON lines here")
    ap.add_argument("--act-quant", default=None, metavar="EXPORT",
                    help="quantize Linear inputs with compressed-tensors' forward as EXPORT's config says "
                         "(MODEL = ct_dense.py --dtype f32 copy of EXPORT)")
    ap.add_argument("--check-native", action="store_true",
                    help="with --act-quant: check transformers' own load of EXPORT quantizes the same inputs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the models here are tiny)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--check-llama2c", dest="check", action="store_true", default=None)
    g.add_argument("--no-check-llama2c", dest="check", action="store_false")
    a = ap.parse_args()

    import torch
    torch.set_num_threads(a.threads or max(1, min(8, os.cpu_count() or 1)))

    model_dir = Path(a.model)
    text = Path(a.text).read_text(encoding="utf-8")
    docs = split_documents(text, a.split)
    if a.max_docs and a.max_docs > 0:
        docs = docs[:a.max_docs]
    if a.check_native and not a.act_quant:
        ap.error("--check-native needs --act-quant")
    model = load_model(model_dir)
    aq = install_ct_act_quant(model, Path(a.act_quant)) if a.act_quant else None
    ref = load_model(Path(a.reference)) if a.reference else None
    bos = model.config.bos_token_id
    bos = 1 if bos is None else int(bos)
    ctx = a.ctx or int(model.config.max_position_embeddings)
    tok_dir = model_dir if (model_dir / "tokenizer.json").exists() else DEFAULT_MODEL
    ids, checked = encode_all(tok_dir, docs, bos, a.check)

    total_nll = 0.0
    total_kl = 0.0
    total_kl_rev = 0.0
    tokens = 0
    truncated = 0
    longest = 0
    per_doc = []
    with torch.no_grad():
        for i, seq in enumerate(ids):
            longest = max(longest, len(seq))
            if len(seq) > ctx:
                truncated += 1
                seq = seq[:ctx]
            if len(seq) < 2:
                per_doc.append({"doc": i, "tokens": 0, "sum_nll": 0.0, "mean_nll": None})
                continue
            x = torch.tensor([seq])
            logits = model(input_ids=x, use_cache=False).logits[0, :-1].float()
            lp = torch.log_softmax(logits, -1)
            tgt = x[0, 1:]
            nll = -lp.gather(1, tgt[:, None])[:, 0]
            s = float(nll.double().sum())
            n = int(tgt.numel())
            total_nll += s
            tokens += n
            per_doc.append({"doc": i, "tokens": n, "sum_nll": s, "mean_nll": s / n})
            if ref is not None:
                lr = torch.log_softmax(ref(input_ids=x, use_cache=False).logits[0, :-1].float(), -1)
                pr, pm = lr.exp().double(), lp.exp().double()
                total_kl += float((pr * (lr.double() - lp.double())).sum())
                total_kl_rev += float((pm * (lp.double() - lr.double())).sum())

    mean = total_nll / tokens if tokens else float("nan")
    out = {"tokens": tokens, "mean_nll": mean, "ppl": math.exp(mean) if tokens else float("nan"),
           "docs": len(ids), "split": a.split, "truncated": truncated,
           "max_doc_tokens": longest, "ctx": ctx, "encode_checked_against_llama2c": checked,
           "model": str(model_dir), "text": str(a.text)}
    if aq is not None:
        passes = sum(1 for p in per_doc if p["tokens"])
        uncalled = sorted(n for n, m in aq["modules"].items() if aq["calls"].get(m, 0) != passes)
        if uncalled:
            raise SystemExit(f"ref_nll: --act-quant: not called once per forward pass: {uncalled[:5]}")
        out["act_quant"] = {"export": str(a.act_quant), "modules": len(aq["modules"]),
                            "input_activations": sorted({json.dumps(v, sort_keys=True)
                                                         for v in aq["args"].values()}),
                            "forward_passes": passes}
        if a.check_native:
            out["act_quant"].update(check_native(Path(a.act_quant), aq["args"], ids[0][:ctx]))
    if ref is not None:
        out["mean_kl"] = total_kl / tokens if tokens else float("nan")
        out["mean_kl_model_ref"] = total_kl_rev / tokens if tokens else float("nan")
        out["reference"] = str(a.reference)
    if truncated:
        print(f"ref_nll: {truncated} document(s) longer than ctx={ctx} tokens were truncated",
              file=sys.stderr)
    if a.per_doc:
        with open(a.per_doc, "w") as f:
            for r in per_doc:
                f.write(json.dumps(r) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
