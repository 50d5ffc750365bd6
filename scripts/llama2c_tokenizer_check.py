#!/usr/bin/env python3
"""Checks that the HF tokenizer.json written by `prismaquant import-llama2c` encodes exactly
like llama2.c's run.c `encode` (without BOS/EOS).

For every line (and every blank-line-separated paragraph, which contains newlines) of the
corpora it compares:
  (a) an independent pure-Python re-implementation of run.c's encode, reading the llama2.c
      tokenizer.bin directly: prepend " ", look up each UTF-8 character (else one byte token
      per byte, id = byte + 3), then repeatedly merge the adjacent pair whose concatenation
      is the best-scoring vocab piece (strictly greater than the previous best, so the
      leftmost pair wins ties; scores must exceed run.c's initial -1e10);
  (b) tokenizers.Tokenizer.from_file(DIR/tokenizer.json).encode(text, add_special_tokens=False).
Mismatches are printed (first few) and counted; the exit status is 1 if any remain.

HF tokenizers splits the input on added (special) tokens such as a literal "<unk>" in the
text, which run.c does not; those lines are reported separately ("special-token text"), and
compared again with `encode_special_tokens = True`, which must then match too.

Usage: scripts/llama2c_tokenizer_check.py DIR [--tokenizer-bin TOK] [--corpus FILE ...]
       [--naive-check N]   (also cross-check the heap encoder against the literal O(n^2)
                            run.c loop on the first N inputs of each set)
Run with the test virtualenv's python (it needs `tokenizers`; `transformers` optional).
"""

import argparse
import glob
import heapq
import os
import struct
import sys

DEFAULT_CORPORA = "corpus-*/*"


def read_llama2c_tokenizer(path):
    data = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    off = 4
    pieces, scores = [], []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append(data[off:off + n])
        scores.append(score)
        off += n
    return max_len, pieces, scores


class RunCEncoder:
    """run.c encode(text, bos=0, eos=0), operating on byte strings like the C code."""

    def __init__(self, pieces, scores):
        self.pieces = pieces
        self.scores = scores
        # run.c uses bsearch over the sorted vocab; with unique pieces this is a dict lookup.
        self.lookup = {}
        for i, p in enumerate(pieces):
            self.lookup.setdefault(p, i)
        assert len(self.lookup) == len(pieces), "duplicate pieces: run.c lookup is ambiguous"

    def initial(self, text):
        raw = text.encode("utf-8")
        tokens = []
        if raw:
            tokens.append(self.lookup[b" "])  # run.c: dummy prefix
        i = 0
        while i < len(raw):
            # a leading byte plus up to 3 continuation bytes
            j = i + 1
            while j < len(raw) and (raw[j] & 0xC0) == 0x80 and j - i < 4:
                j += 1
            ch = raw[i:j]
            if ch in self.lookup:
                tokens.append(self.lookup[ch])
            else:
                tokens.extend(b + 3 for b in ch)
            i = j
        return tokens

    def pair(self, a, b):
        """Id of the merged piece of tokens a, b, or None (run.c: score must beat -1e10)."""
        t = self.lookup.get(self.pieces[a] + self.pieces[b])
        if t is None or not self.scores[t] > -1e10:
            return None
        return t

    def encode_naive(self, text):
        """The literal run.c loop: O(n^2)."""
        tokens = self.initial(text)
        while True:
            best_score, best_id, best_idx = -1e10, -1, -1
            for i in range(len(tokens) - 1):
                t = self.lookup.get(self.pieces[tokens[i]] + self.pieces[tokens[i + 1]])
                if t is not None and self.scores[t] > best_score:
                    best_score, best_id, best_idx = self.scores[t], t, i
            if best_idx == -1:
                return tokens
            tokens[best_idx] = best_id
            del tokens[best_idx + 1]

    def encode(self, text):
        """Same result as encode_naive: a heap ordered by (-score, position) picks the
        highest score and, among equal scores, the leftmost pair, exactly as run.c does
        (positions keep their relative order in the linked list)."""
        tokens = self.initial(text)
        n = len(tokens)
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        alive = [True] * n
        heap = []

        def push(i):
            j = nxt[i]
            if j < n:
                t = self.pair(tokens[i], tokens[j])
                if t is not None:
                    heapq.heappush(heap, (-self.scores[t], i, tokens[i], tokens[j], t))

        for i in range(n - 1):
            push(i)
        while heap:
            _, i, a, b, t = heapq.heappop(heap)
            j = nxt[i] if alive[i] else n
            if j >= n or tokens[i] != a or tokens[j] != b:
                continue  # stale entry
            tokens[i] = t
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            if prv[i] >= 0:
                push(prv[i])
            push(i)
        return [tokens[i] for i in range(n) if alive[i]]


def corpus_inputs(path):
    text = open(path, encoding="utf-8").read()
    lines = text.split("\n")
    paragraphs = [p for p in text.split("\n\n") if "\n" in p.strip("\n")]
    return lines, paragraphs


TRICKY = ["", " ", "  ", "a", " a", "a ", "  two  spaces  ", "tab\there", "new\nline\n",
          "\n", "caf\u00e9 na\u00efve \u00fcber", "\u65e5\u672c\u8a9e\u306e\u6587",
          "emoji \U0001F600\U0001F389!", "\u200a hair space", "<0x41> literal byte name",
          "Once upon a time", "ONCE UPON A TIME", "1234567890 3.14159", "a" * 300,
          " " * 17 + "x", "\r\n windows", "\u00a0nbsp", "zero\u200bwidth",
          "an <unk> in text", "<s>bos and eos</s>"]
# Literal U+2581 is SentencePiece's space: HF treats it as ' ', run.c as 3 byte tokens.
KNOWN_DIFFERENT = ["literal \u2581 lower one eighth block"]


def fuzz_inputs(pieces, n, seed):
    import random
    rng = random.Random(seed)
    words = [p.decode("utf-8") for p in pieces[259:] if p]
    extra = [" ", "  ", "\n", "\t", "\u00e9", "\U0001F600", "x", "<", ">"]
    out = []
    for _ in range(n):
        k = rng.randint(1, 12)
        out.append("".join(rng.choice(words) if rng.random() < 0.8 else rng.choice(extra)
                           for _ in range(k)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="output directory of prismaquant import-llama2c")
    ap.add_argument("--tokenizer-bin", help="llama2.c tokenizer.bin (default DIR/tokenizer.bin)")
    ap.add_argument("--corpus", nargs="*", help="text files (default: all shared corpora)")
    ap.add_argument("--naive-check", type=int, default=2000,
                    help="cross-check the heap encoder with run.c's literal loop on N inputs per set")
    ap.add_argument("--show", type=int, default=5, help="mismatches to print")
    ap.add_argument("--fuzz", type=int, default=20000,
                    help="random concatenations of vocab pieces to compare as well")
    args = ap.parse_args()

    from tokenizers import Tokenizer

    tok_bin = args.tokenizer_bin or os.path.join(args.dir, "tokenizer.bin")
    _, pieces, scores = read_llama2c_tokenizer(tok_bin)
    ref = RunCEncoder(pieces, scores)
    hf = Tokenizer.from_file(os.path.join(args.dir, "tokenizer.json"))
    hf_raw = Tokenizer.from_file(os.path.join(args.dir, "tokenizer.json"))
    hf_raw.encode_special_tokens = True
    specials = ["<unk>", "<s>", "</s>"]

    corpora = args.corpus
    if not corpora:
        here = os.path.dirname(os.path.abspath(__file__))
        assets = os.path.join(here, "..", "..", "shared", "assets")
        corpora = sorted(p for p in glob.glob(os.path.join(assets, DEFAULT_CORPORA))
                         if not p.endswith("SOURCE.md"))
    if not corpora:
        print("no corpora found", file=sys.stderr)
        return 2

    total_bad = 0
    sets = [(path, kind, inputs) for path in corpora
            for kind, inputs in zip(("lines", "paragraphs"), corpus_inputs(path))]
    sets.append(("synthetic", "tricky", TRICKY))
    sets.append(("synthetic", "fuzz", fuzz_inputs(pieces, args.fuzz, 0)))
    for path, kind, inputs in sets:
        n = tokens = bad = special_lines = special_bad = decode_bad = 0
        naive_left = args.naive_check
        for text in inputs:
            want = ref.encode(text)
            if naive_left > 0 and len(text) < 2000:
                naive_left -= 1
                assert ref.encode_naive(text) == want, f"heap != naive on {text!r}"
            has_special = any(s in text for s in specials)
            got = (hf_raw if has_special else hf).encode(text, add_special_tokens=False).ids
            n += 1
            tokens += len(want)
            if has_special:
                special_lines += 1
                if hf.encode(text, add_special_tokens=False).ids != want:
                    special_bad += 1
            if got != want:
                bad += 1
                if bad <= args.show:
                    print(f"  MISMATCH {os.path.basename(path)} {text[:80]!r}\n"
                          f"    run.c: {want[:40]}\n    hf:    {got[:40]}")
            if hf.decode(got, skip_special_tokens=False) != text:
                decode_bad += 1
        total_bad += bad
        print(f"{os.path.basename(path)} {kind}: {n} inputs, {tokens} tokens, "
              f"{bad} mismatches; {special_lines} contain special-token text "
              f"(default HF encode differs on {special_bad}; compared with "
              f"encode_special_tokens=True); decode(encode(x)) != x on {decode_bad}")

    for text in KNOWN_DIFFERENT:
        same = hf.encode(text, add_special_tokens=False).ids == ref.encode(text)
        print(f"known difference (not counted), {text!r}: {'same' if same else 'differs'}")

    # transformers, when available: AutoTokenizer loads DIR and adds only BOS.
    try:
        from transformers import AutoTokenizer
        t = AutoTokenizer.from_pretrained(args.dir)
        sample = "Once upon a time, there was a little girl named Lily."
        ids = t(sample)["input_ids"]
        ok = ids == [1] + ref.encode(sample)
        print(f"transformers AutoTokenizer ({type(t).__name__}): BOS + run.c ids: {ok}")
        total_bad += 0 if ok else 1
    except ImportError:
        print("transformers not installed; skipped AutoTokenizer check")

    print(f"TOTAL mismatches: {total_bad}")
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
