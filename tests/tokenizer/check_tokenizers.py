#!/usr/bin/env python3
"""Checks that our tokenizers (src/pq/tokenizer) produce exactly the ids of the reference
implementations, on every line of the shared corpora and on synthetic edge cases.

References:
  * HF tokenizer.json files: the real `tokenizers` library,
    Tokenizer.encode_batch(texts, add_special_tokens=False) and decode(ids, False);
  * llama2.c tokenizer.bin: RunCEncoder from scripts/llama2c_tokenizer_check.py (a Python
    reimplementation of run.c's encode, itself checked against HF there).

Fixtures are built into --work (never into the repo or ../shared):
  gpt2         tokenizers BPE from the shared GPT-2 vocab.json + merges.txt, ByteLevel
  qwen2        transformers AutoTokenizer on the shared Qwen2.5 files (NFC, Split regex)
  qwen3        the same vocabulary with Qwen3's tokenizer_config (4 more added tokens)
  llama3       tokenizers BPE from ollama's encoder.json + vocab.bpe, Llama-3 regex,
               ignore_merges, 256 special tokens (files stay in ../shared; Meta license)
  phi3.5       the shared Phi-3.5-mini tokenizer.json as is (SentencePiece-style BPE)
  stories260K  models/stories260K (tokenizer.json written by prismaquant import-llama2c)
  bl-trained   byte-level BPE trained here on tinyshakespeare (vocab 2000), NFC normalizer,
               added tokens with lstrip / rstrip / single_word / normalized flags
  bl-splits    bl-trained's model under Split behaviors (merged_with_previous/next,
               contiguous, removed, invert) and a NFD + Replace(regex) + Strip normalizer
  spm-trained  SentencePiece-style BPE trained here (Metaspace prepend_scheme=first, byte
               fallback, <0xHH> tokens), plus spm-unk (no byte fallback: <unk>, fuse_unk)
               and spm-always (Metaspace prepend_scheme=always, split=false)
  tok512.bin, llama2-32k.bin   llama2.c tokenizers vs RunCEncoder
Input sets: every line of each corpus (LF split, CR kept), 20-line chunks of the first 2000
lines (multi-line text),
and synthetic strings (special tokens in context, NFD text, unusual whitespace, long runs).
NFC itself is also compared with Python's unicodedata on every code point and on random
combining sequences.

Usage: check_tokenizers.py --work DIR [--bin build/release/src/pq/pq_tokenizer_test]
                           [--only NAME[,NAME]] [--max-lines N] [--show N]
Exit status 1 on any mismatch. Prints "N passed, N failed" per tokenizer and input set.
"""

import argparse
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SHARED = os.environ.get("PQ_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
ASSETS = os.path.join(SHARED, "assets")
TOKS = os.path.join(ASSETS, "tokenizers")
CORPORA = [
    ("tinystories", "corpus-tinystories-valid-slice/tinystories_val.txt"),
    ("wikitext2", "corpus-wikitext2-test/wiki.test.raw"),
    ("shakespeare", "corpus-tinyshakespeare/input.txt"),
]
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------------------------- fixtures

def build_gpt2(work):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    d = os.path.join(TOKS, "gpt2")
    tok = Tokenizer(models.BPE.from_file(os.path.join(d, "vocab.json"),
                                         os.path.join(d, "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    path = os.path.join(work, "gpt2.json")
    tok.save(path)
    return path, {"bos": None, "eos": None}


def build_qwen(work, name, config):
    from transformers import AutoTokenizer
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    src = os.path.join(TOKS, "qwen2")
    shutil.copyfile(os.path.join(src, "vocab.json"), os.path.join(d, "vocab.json"))
    merges = open(os.path.join(src, "merges.txt"), encoding="utf-8").read()
    if name == "qwen3":
        merges = "#version: 0.2\n" + merges  # Qwen3's merges.txt (see qwen2/SOURCE.md)
    open(os.path.join(d, "merges.txt"), "w", encoding="utf-8").write(merges)
    shutil.copyfile(os.path.join(src, config), os.path.join(d, "tokenizer_config.json"))
    t = AutoTokenizer.from_pretrained(d)
    t.backend_tokenizer.save(os.path.join(d, "tokenizer.json"))
    for f in ("vocab.json", "merges.txt"):
        os.remove(os.path.join(d, f))  # our loader must use tokenizer.json only
    eos = t.convert_tokens_to_ids(t.eos_token) if t.eos_token else None
    return d, {"bos": None, "eos": eos}


def build_llama3(work):
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers,
                            processors)
    d = os.path.join(TOKS, "llama3")
    vocab = json.load(open(os.path.join(d, "ollama-hf-bpe", "encoder.json"), encoding="utf-8"))
    merges = [tuple(line.split(" ")) for line in
              open(os.path.join(d, "ollama-hf-bpe", "vocab.bpe"), encoding="utf-8")
              .read().split("\n") if line]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    rows = [line.split("\t") for line in
            open(os.path.join(d, "special_tokens.tsv"), encoding="utf-8").read().splitlines()[1:]]
    names = [r[3] for r in sorted(rows, key=lambda r: int(r[0]))]  # HF Llama-3 naming
    tok.add_special_tokens([AddedToken(n, special=True, normalized=False) for n in names])
    assert tok.token_to_id(names[0]) == 128000 and tok.token_to_id(names[-1]) == 128255
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", 128000)])])
    path = os.path.join(work, "llama3.json")
    tok.save(path)
    return path, {"bos": 128000, "eos": None}


def corpus_text(rel):
    with open(os.path.join(ASSETS, rel), encoding="utf-8", newline="") as f:
        return f.read()


def build_bl_trained(work):
    from tokenizers import (AddedToken, Tokenizer, decoders, models, normalizers,
                            pre_tokenizers, trainers)
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus_text(CORPORA[2][1]).split("\n"), trainer)
    tok.add_tokens([
        AddedToken("<mask>", lstrip=True, special=True, normalized=False),
        AddedToken("</end>", rstrip=True, special=True, normalized=False),
        AddedToken("[SW]", single_word=True, special=True, normalized=False),
        AddedToken("<both>", lstrip=True, rstrip=True, special=False, normalized=False),
        AddedToken("hello world", special=False, normalized=True),
        AddedToken("Caf\u00e9", special=False, normalized=True),
        AddedToken("word", single_word=True, special=False, normalized=True),
    ])
    path = os.path.join(work, "bl-trained.json")
    tok.save(path)
    return path, {"bos": None, "eos": None}


def variant(work, base, name, edit):
    j = json.load(open(base, encoding="utf-8"))
    edit(j)
    path = os.path.join(work, name + ".json")
    json.dump(j, open(path, "w", encoding="utf-8"), ensure_ascii=False)
    from tokenizers import Tokenizer
    Tokenizer.from_file(path)  # must load in HF too
    return path


def build_bl_splits(work, base):
    def edit(j):
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "NFD"},
            {"type": "Replace", "pattern": {"Regex": r"\s{2,}"}, "content": " "},
            {"type": "Strip", "strip_left": True, "strip_right": True}]}
        split = lambda pat, kind, beh, inv=False: {  # noqa: E731
            "type": "Split", "pattern": {kind: pat}, "behavior": beh, "invert": inv}
        j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            split(r"\d+", "Regex", "MergedWithPrevious"),
            split(",", "String", "MergedWithNext"),
            split(r"[aeiou]", "Regex", "Contiguous"),
            split(r"[^\s]+", "Regex", "MergedWithNext", True),
            split(";", "String", "Removed"),
            split(r"\p{Lu}", "Regex", "Isolated", True),
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]}
    return variant(work, base, "bl-splits", edit), {"bos": None, "eos": None}


def build_spm_trained(work):
    from tokenizers import (AddedToken, Tokenizer, decoders, models, pre_tokenizers,
                            processors, trainers)
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first",
                                                 split=True)
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=70, show_progress=False)
    tok.train_from_iterator(corpus_text(CORPORA[0][1]).split("\n"), trainer)
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    for b in range(256):  # SentencePiece byte pieces, as ordinary vocabulary entries
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    tok = Tokenizer.from_str(json.dumps(j))
    tok.decoder = decoders.Sequence([decoders.ByteFallback(),
                                     decoders.Metaspace(replacement="\u2581",
                                                        prepend_scheme="first")])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B:1", special_tokens=[("<s>", 1)])
    tok.add_tokens([AddedToken("Lily", normalized=True, special=False),
                    AddedToken("<|user|>", rstrip=True, special=True, normalized=False)])
    path = os.path.join(work, "spm-trained.json")
    tok.save(path)
    return path, {"bos": 1, "eos": None}


def build_spm_variants(work, base):
    def no_fallback(j):
        j["model"]["byte_fallback"] = False
    def always(j):
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                              "prepend_scheme": "always", "split": False}
        j["decoder"] = {"type": "Metaspace", "replacement": "\u2581",
                        "prepend_scheme": "always", "split": False}
    return [("spm-unk", variant(work, base, "spm-unk", no_fallback), {"bos": 1, "eos": None}),
            ("spm-always", variant(work, base, "spm-always", always), {"bos": 1, "eos": None})]


# ------------------------------------------------------------------------------- inputs

def corpus_sets(max_lines):
    sets = {}
    for name, rel in CORPORA:
        lines = corpus_text(rel).split("\n")
        if max_lines:
            lines = lines[:max_lines]
        sets[name] = lines
        # Multi-line inputs: 20-line chunks of the first 2000 lines.
        sets[name + "-chunks"] = ["\n".join(lines[i:i + 20]) for i in range(0, 2000, 20)
                                  if i < len(lines)]
    return sets


def synthetic(specials):
    base = ["", " ", "  ", "\n", "\r\n", "\t", "a", " a", "a ", "  two  spaces  ", "tab\there",
            "new\nline\n", "\n\n\nx", "x\r\n\r\ny", "caf\u00e9 na\u00efve \u00fcber",
            "cafe\u0301 nai\u0308ve u\u0308ber", "\u1100\u1161\u11a8 \ud55c\uad6d\uc5b4",
            "A\u030a \u212b \u2126 \u00c5", "e\u0301\u0323 q\u0307\u0323", "\u0301leading mark",
            "\u65e5\u672c\u8a9e\u306e\u6587", "emoji \U0001F600\U0001F389!", "\u00a0nbsp\u00a0",
            "\u2000\u2001\u2002 spaces \u3000 ideographic", "\u0085nel\u2028ls\u2029ps",
            "zero\u200bwidth", "\u180emongolian", "I'm you're he'd we'll they've it's",
            "I'M YOU'RE HE'D WE'LL THEY'VE IT'S", "it\u017fs 'S 'ſ \u212a", "1234567890 3.14159",
            "\u0661\u0662\u0663 \u0967\u0968 \u2460\u2461 \u00bd", "a" * 300, " " * 17 + "x",
            "x" + " " * 17, "\u2581literal lower eighth \u2581\u2581", "<0x41> byte name",
            "Once upon a time", "ONCE UPON A TIME", "!!!???...,,,;;;", "  !!  ", "a\u0000b",
            "\ufeffbom", "\U00010400\U0001D400", "word words sword word.", "hello world",
            "hello worldwide", "Cafe\u0301 Caf\u00e9", "12,345,678 and 1;2;3", "x" * 5000,
            " \n " * 200, "\t" * 100 + "y", "The\u00adsoft\u00adhyphen"]
    out = list(base)
    for s in specials:
        out += [s, s + s, "a" + s + "b", " " + s + " ", "  " + s + "  x", "x " + s + "\n",
                "word" + s, s + "word", "\u00e9" + s + "\u00e9", s[:-1], "<" + s + ">"]
    return out


def nfc_inputs():
    out = []
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for i in range(0, len(cps), 64):
        out.append("".join(chr(c) for c in cps[i:i + 64]))
    marks = [c for c in range(0x300, 0x3000) if unicodedata.combining(chr(c))] + \
            [0x1161, 0x1175, 0x11A8, 0x11C2, 0x3099, 0x309A, 0x0CD5, 0x0DCF, 0x0B3E]
    starters = [c for c in range(0x41, 0x3100)
                if unicodedata.decomposition(chr(c)) and not unicodedata.combining(chr(c))]
    starters += [0x1100, 0x1112, 0xAC00, 0xD7A3, 0x41, 0x65, 0x3B1, 0x415]
    rng = random.Random(0)
    for _ in range(30000):
        s = []
        for _ in range(rng.randint(1, 8)):
            s.append(chr(rng.choice(marks) if rng.random() < 0.6 else rng.choice(starters)))
        out.append("".join(s))
    return out


# ------------------------------------------------------------------------------- running

def write_jsonl(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t, ensure_ascii=True) + "\n")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def load_runc():
    spec = importlib.util.spec_from_file_location(
        "llama2c_check", os.path.join(ROOT, "scripts", "llama2c_tokenizer_check.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True, help="scratch directory (fixtures, inputs, outputs)")
    ap.add_argument("--bin", default=os.environ.get(
        "PQ_TOKENIZER_TEST_BIN", os.path.join(ROOT, "build/release/src/pq/pq_tokenizer_test")))
    ap.add_argument("--only", default="", help="comma-separated fixture names")
    ap.add_argument("--max-lines", type=int, default=0, help="limit corpus lines (0 = all)")
    ap.add_argument("--show", type=int, default=3, help="mismatches to print per set")
    args = ap.parse_args()
    if not os.path.isfile(args.bin):
        log(f"test binary not found: {args.bin} (build pq_tokenizer_test or set "
            "PQ_TOKENIZER_TEST_BIN)")
        return 2
    if not os.path.isdir(ASSETS):
        log(f"shared assets not found at {ASSETS} (set PQ_SHARED_DIR)")
        return 2
    only = set(filter(None, args.only.split(",")))
    want = lambda name: not only or name in only  # noqa: E731
    work = os.path.abspath(args.work)
    fix_dir = os.path.join(work, "fixtures")
    io_dir = os.path.join(work, "io")
    os.makedirs(fix_dir, exist_ok=True)
    os.makedirs(io_dir, exist_ok=True)

    t0 = time.time()
    fixtures = []  # (name, path, expected info, kind)
    if want("gpt2"):
        fixtures.append(("gpt2", *build_gpt2(fix_dir), "hf"))
    if want("qwen2"):
        fixtures.append(("qwen2", *build_qwen(fix_dir, "qwen2", "tokenizer_config.json"), "hf"))
    if want("qwen3"):
        fixtures.append(("qwen3", *build_qwen(fix_dir, "qwen3", "tokenizer_config.qwen3.json"),
                         "hf"))
    if want("llama3"):
        fixtures.append(("llama3", *build_llama3(fix_dir), "hf"))
    if want("phi3.5"):
        fixtures.append(("phi3.5", os.path.join(TOKS, "phi3.5-mini-spm-bpe", "tokenizer.json"),
                         {"bos": None, "eos": None}, "hf"))
    if want("stories260K"):
        fixtures.append(("stories260K", os.path.join(ROOT, "models", "stories260K"),
                         {"bos": 1, "eos": 2}, "hf"))
    if want("bl-trained") or want("bl-splits"):
        bl_path, bl_info = build_bl_trained(fix_dir)
        if want("bl-trained"):
            fixtures.append(("bl-trained", bl_path, bl_info, "hf"))
        if want("bl-splits"):
            fixtures.append(("bl-splits", *build_bl_splits(fix_dir, bl_path), "hf"))
    if any(want(n) for n in ("spm-trained", "spm-unk", "spm-always")):
        spm_path, spm_info = build_spm_trained(fix_dir)
        if want("spm-trained"):
            fixtures.append(("spm-trained", spm_path, spm_info, "hf"))
        for name, path, info in build_spm_variants(fix_dir, spm_path):
            if want(name):
                fixtures.append((name, path, info, "hf"))
    if want("tok512.bin"):
        fixtures.append(("tok512.bin", os.path.join(ASSETS, "llama2c-stories260K", "tok512.bin"),
                         {"bos": 1, "eos": 2}, "llama2c"))
    if want("llama2-32k.bin"):
        fixtures.append(("llama2-32k.bin",
                         os.path.join(ASSETS, "llama2c-tokenizer-llama2-32k", "tokenizer.bin"),
                         {"bos": 1, "eos": 2}, "llama2c"))
    log(f"fixtures built in {time.time() - t0:.1f} s: {', '.join(f[0] for f in fixtures)}")

    # Input sets, shared by all tokenizers (synthetic ones per tokenizer: their specials).
    sets = corpus_sets(args.max_lines)
    for name, texts in sets.items():
        write_jsonl(os.path.join(io_dir, f"in-{name}.jsonl"), texts)
    cases, jobs = [], []
    from tokenizers import Tokenizer
    for name, path, info, kind in fixtures:
        hf = None
        specials = []
        if kind == "hf":
            json_path = path if path.endswith(".json") else os.path.join(path, "tokenizer.json")
            hf = Tokenizer.from_file(json_path)
            specials = [t.content for t in hf.get_added_tokens_decoder().values()][:40]
        syn = synthetic(specials)
        write_jsonl(os.path.join(io_dir, f"in-{name}-synthetic.jsonl"), syn)
        all_sets = list(sets.items()) + [("synthetic", syn)]
        if kind == "llama2c" and name != "tok512.bin":
            # The Python run.c encoder is slow on a 32k vocab: every 4th line there.
            all_sets = [(s, t[::4]) for s, t in sets.items()] + [("synthetic", syn)]
            for s, t in all_sets[:-1]:
                write_jsonl(os.path.join(io_dir, f"in-{name}-{s}.jsonl"), t)
        for set_name, texts in all_sets:
            in_path = os.path.join(io_dir, f"in-{set_name}.jsonl")
            if set_name == "synthetic" or (kind == "llama2c" and name != "tok512.bin"):
                in_path = os.path.join(io_dir, f"in-{name}-{set_name}.jsonl")
            out_path = os.path.join(io_dir, f"out-{name}-{set_name}.jsonl")
            cases.append({"kind": "encode", "tokenizer": path, "input": in_path,
                          "output": out_path})
            jobs.append((name, kind, hf, path, set_name, texts, out_path))
        info_path = os.path.join(io_dir, f"info-{name}.json")
        cases.append({"kind": "info", "tokenizer": path, "output": info_path})
        jobs.append((name, "info", hf, path, "info", info, info_path))
    nfc_texts = nfc_inputs() if not only or "nfc" in only else []
    if nfc_texts:
        write_jsonl(os.path.join(io_dir, "in-nfc.jsonl"), nfc_texts)
        cases.append({"kind": "nfc", "input": os.path.join(io_dir, "in-nfc.jsonl"),
                      "output": os.path.join(io_dir, "out-nfc.jsonl")})
    cases_path = os.path.join(work, "cases.json")
    json.dump({"cases": cases}, open(cases_path, "w"))

    t1 = time.time()
    env = dict(os.environ, PQ_TOKENIZER_CASES=cases_path)
    r = subprocess.run([args.bin, "--gtest_filter=TokenizerInterop.RunCases", "--gtest_brief=1"],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        log(r.stdout[-4000:] + r.stderr[-4000:])
        log("FAILED: the C++ driver failed")
        return 1
    log(f"C++ driver: {time.time() - t1:.1f} s")

    runc = None
    failed_total = 0
    rows = []
    for name, kind, hf, path, set_name, texts, out_path in jobs:
        if kind == "info":
            got = json.load(open(out_path))
            bad = [k for k in ("bos", "eos") if got[k] != texts[k]]
            if hf is not None and got["vocab_size"] != hf.get_vocab_size(with_added_tokens=True):
                bad.append(f"vocab_size {got['vocab_size']} != "
                           f"{hf.get_vocab_size(with_added_tokens=True)}")
            status = "ok" if not bad else f"MISMATCH {bad} (want {texts})"
            log(f"  {name:14s} info: {got['describe']}; bos={got['bos']} eos={got['eos']}: {status}")
            failed_total += bool(bad)
            continue
        t_set = time.time()
        ours = read_jsonl(out_path)
        if kind == "hf":
            want_ids = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
            want_text = hf.decode_batch(want_ids, skip_special_tokens=False)
        else:
            if runc is None:
                runc = {}
            if path not in runc:
                mod = load_runc()
                _, pieces, scores = mod.read_llama2c_tokenizer(path)
                runc[path] = mod.RunCEncoder(pieces, scores)
            enc = runc[path]
            want_ids = [enc.encode(t) for t in texts]
            want_text = texts  # llama2.c: decode(encode(x)) == x
        passed = failed = dec_bad = shown = 0
        for text, o, w_ids, w_text in zip(texts, ours, want_ids, want_text):
            ok = "ids" in o and o["ids"] == w_ids
            if ok:
                passed += 1
                if o["text"] != w_text:
                    dec_bad += 1
                    if shown < args.show:
                        shown += 1
                        log(f"  DECODE {name} {set_name} {text[:60]!r}: ours {o['text'][:60]!r} "
                            f"want {w_text[:60]!r}")
                continue
            failed += 1
            if shown < args.show:
                shown += 1
                if "error" in o:
                    log(f"  ERROR {name} {set_name} {text[:80]!r}: {o['error']}")
                else:
                    k = first_diff(o["ids"], w_ids)
                    log(f"  MISMATCH {name} {set_name} {text[:80]!r}\n"
                        f"    at {k}: ours {o['ids'][max(0, k - 3):k + 8]}\n"
                        f"           ref  {w_ids[max(0, k - 3):k + 8]}")
        failed_total += failed + dec_bad
        rows.append((name, set_name, len(texts), failed, dec_bad))
        log(f"{name:14s} {set_name:20s} {passed} passed, {failed} failed"
            f"{f', {dec_bad} decode mismatches' if dec_bad else ''} ({time.time() - t_set:.1f} s)")

    if nfc_texts:
        ours = read_jsonl(os.path.join(io_dir, "out-nfc.jsonl"))
        bad = [t for t, o in zip(nfc_texts, ours) if o != unicodedata.normalize("NFC", t)]
        failed_total += len(bad)
        log(f"{'nfc':14s} {'unicodedata':20s} {len(nfc_texts) - len(bad)} passed, "
            f"{len(bad)} failed (Unicode {unicodedata.unidata_version})")
        for t in bad[:args.show]:
            log(f"  NFC MISMATCH {t!r}")

    log(f"TOTAL: {failed_total} failures; {time.time() - t0:.1f} s")
    return 1 if failed_total else 0


if __name__ == "__main__":
    sys.exit(main())
