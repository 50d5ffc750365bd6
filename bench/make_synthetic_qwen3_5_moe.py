#!/usr/bin/env python3
"""A random checkpoint with Qwen3.6-35B-A3B's real tensor names, shapes and dtypes, cut in depth,
for the depth/cost benchmarks (bench/run_qwen3_5_bench.sh).

  make_synthetic_qwen3_5_moe.py OUT_DIR --layers N [--pattern lin,lin,full] [--vision-depth 1]
      [--no-mtp] [--seed 0] [--calib-docs 64 --calib-doc-len 1024] [--check-only]

config.json is the real one (../shared/assets/qwen3.6-35b-a3b-config/config.json) with
text_config.num_hidden_layers / layer_types cut to N layers and vision_config.depth cut to
--vision-depth. The default pattern is the real one's first N entries with the last one made
full_attention when none is (N=2: lin,full; N=3: lin,lin,full; N=4: lin,lin,lin,full); --pattern
chooses any other (`lin`/`full` or the config's spelling). Every tensor's name, shape and dtype
(BF16) is taken from the real tensor_shapes.csv: body layer i gets the tensors of a real layer of
its kind (layer 0 for linear_attention, layer 3 for full_attention) renamed to index i; the
routed experts are the packed 3-D tensors as on disk (gate_up_proj [256,1024,2048],
down_proj [256,2048,512]); plus embed_tokens, the final norm, lm_head (untied), the MTP head
(mtp.*, packed experts) and the vision tower (patch_embed, pos_embed, blocks 0..depth-1, merger).

Weights are random (seeded per tensor name, so two checkpoints of different depth share the
tensors they both have), scaled so activations stay O(1): Linears/embeddings/routers N(0, 0.02);
(1+w) RMSNorms w ~ N(0, 0.01); the DeltaNet gated norm (plain w) 1 + N(0, 0.01); vision
LayerNorms weight 1 + N(0, 0.01), bias N(0, 0.01); Linear biases N(0, 0.02);
A_log = log(U(1, 16)); dt_bias ~ N(0, 0.1); conv1d ~ N(0, 0.3).

Tensors are streamed to disk in chunks (a safetensors file is an 8-byte header length, a JSON
header, then the raw little-endian data), one shard per body layer plus shards for
embeddings+head, vision and MTP, with model.safetensors.index.json. Memory stays at a few
hundred MB whatever the depth (~1.7 GB of BF16 per body layer is written; ~10 s per layer).

The real Qwen3.6 tokenizer is not available, so no tokenizer is written; instead
OUT_DIR/calib_tokens.txt holds --calib-docs documents of --calib-doc-len ids (one document per
line, ids separated by spaces: `prismaquant probe --calib-tokens`), drawn uniformly from
[0, 248320) except the four vision special ids (image/video/vision start/end), which are
redrawn. Use --no-bos with it (config.json has no top-level bos_token_id).

Afterwards every shard is re-opened with the safetensors library and each tensor's name, shape
and dtype is compared with the csv (and value statistics of every tensor are checked on a
slice); --check-only runs just this check on an existing OUT_DIR.
"""
import argparse
import json
import os
import re
import shutil
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "assets",
                                       "qwen3.6-35b-a3b-config"))
LM = "model.language_model."
LAYER_RE = re.compile(r"^model\.language_model\.layers\.(\d+)\.(.*)$")
BLOCK_RE = re.compile(r"^model\.visual\.blocks\.(\d+)\.(.*)$")
CHUNK = 1 << 23  # elements generated at a time (32 MiB of float32)
KINDS = {"lin": "linear_attention", "linear": "linear_attention",
         "linear_attention": "linear_attention", "full": "full_attention",
         "full_attention": "full_attention"}
VOCAB_SPECIAL = ("image_token_id", "video_token_id", "vision_start_token_id",
                 "vision_end_token_id")


def read_csv(path):
    """{name: (shape tuple, dtype)} in file order; lm_head's blank row is filled in."""
    out = {}
    with open(path, encoding="utf-8") as f:
        header = f.readline()
        assert header.strip() == "Tensor,Shape,Precision", header
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            m = re.match(r'^([^,]+),(?:"([^"]*)"|([^,]*)),(.*)$', line)
            assert m, line
            name, shape_s, dtype = m.group(1), m.group(2) or m.group(3) or "", m.group(4).strip()
            dims = [int(re.sub(r"\D", "", d)) for d in shape_s.strip("[]").split(",")
                    if re.sub(r"\D", "", d)]
            out[name] = (tuple(dims), dtype)
    return out


def real_config(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def fill_lm_head(csv, cfg):
    tc = cfg["text_config"]
    shape, dtype = csv["lm_head.weight"]
    if not shape:
        assert not tc["tie_word_embeddings"]
        csv["lm_head.weight"] = ((tc["vocab_size"], tc["hidden_size"]), dtype or "BF16")
    return csv


def layer_templates(csv, real_types):
    """{kind: (real layer index, [suffix...])} from the first real layer of each kind."""
    out = {}
    for kind in ("linear_attention", "full_attention"):
        i = real_types.index(kind)
        suffixes = [m.group(2) for n in csv for m in [LAYER_RE.match(n)]
                    if m and int(m.group(1)) == i]
        assert suffixes, kind
        out[kind] = (i, suffixes)
    return out


def plan(csv, cfg, pattern, vision_depth, mtp):
    """[(shard file stem, [(name, shape, dtype, csv name it must equal)])]."""
    real_types = cfg["text_config"]["layer_types"]
    tmpl = layer_templates(csv, real_types)
    globals_, vision, mtp_t, head = [], [], [], []
    for name, (shape, dtype) in csv.items():
        if LAYER_RE.match(name):
            continue
        b = BLOCK_RE.match(name)
        if b:
            if int(b.group(1)) < vision_depth:
                vision.append((name, shape, dtype, name))
        elif name.startswith("model.visual."):
            if vision_depth > 0:
                vision.append((name, shape, dtype, name))
        elif name.startswith("mtp."):
            if mtp:
                mtp_t.append((name, shape, dtype, name))
        elif name == "lm_head.weight":
            head.append((name, shape, dtype, name))
        else:
            globals_.append((name, shape, dtype, name))
    shards = [("embed_head", globals_ + head)]
    for i, kind in enumerate(pattern):
        real_i, suffixes = tmpl[kind]
        src = real_i if real_types[i] != kind else i  # the csv row this tensor must equal
        ts = []
        for s in suffixes:
            ref = f"{LM}layers.{src}.{s}"
            shape, dtype = csv[ref]
            ts.append((f"{LM}layers.{i}.{s}", shape, dtype, ref))
        shards.append((f"layer{i}", ts))
    if vision:
        shards.append(("vision", vision))
    if mtp_t:
        shards.append(("mtp", mtp_t))
    return shards


# --- initialisation -----------------------------------------------------------------------------

def init_kind(name, ndim):
    """(kind, params) of the random distribution for one tensor name."""
    leaf = name.split(".")[-1]
    parent = name.split(".")[-2] if "." in name else ""
    if name.endswith("linear_attn.A_log"):
        return ("log_uniform", (1.0, 16.0))
    if name.endswith("linear_attn.dt_bias"):
        return ("normal", (0.0, 0.1))
    if name.endswith("linear_attn.conv1d.weight"):
        return ("normal", (0.0, 0.3))
    if name.endswith("linear_attn.norm.weight"):
        return ("normal", (1.0, 0.01))  # plain-w gated RMSNorm
    if name.startswith("model.visual."):
        if re.search(r"(norm\d?|\.norm)\.weight$", name):
            return ("normal", (1.0, 0.01))  # LayerNorm
        if re.search(r"norm\d?\.bias$", name):
            return ("normal", (0.0, 0.01))
        if leaf == "bias":
            return ("normal", (0.0, 0.02))
        return ("normal", (0.0, 0.02))  # Linears, Conv3d patch embedding, pos_embed
    if "norm" in parent or "norm" in leaf:
        assert ndim == 1, name
        return ("normal", (0.0, 0.01))  # (1+w) RMSNorm
    assert leaf in ("weight", "gate_up_proj", "down_proj") and ndim >= 2, name
    return ("normal", (0.0, 0.02))


def rng_for(seed, name):
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def to_bf16_bytes(x):
    """float32 array -> BF16 bytes, round to nearest even (x is consumed)."""
    u = x.view(np.uint32)
    u += np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
    return (u >> np.uint32(16)).astype("<u2").tobytes()


def tensor_chunks(name, shape, seed):
    """The tensor's BF16 bytes, in chunks. Normal tensors draw each element from a per-tensor
    table of 65536 N(a, b) samples (uniform 16-bit indices: ~5x faster than drawing every
    normal, statistically the same at these sizes); A_log draws every element."""
    kind, (a, b) = init_kind(name, len(shape))
    rng = rng_for(seed, name)
    n = int(np.prod(shape)) if shape else 1
    if kind == "normal":
        table = np.frombuffer(to_bf16_bytes(
            (rng.standard_normal(1 << 16) * b + a).astype(np.float32)), dtype="<u2")
    done = 0
    while done < n:
        m = min(CHUNK, n - done)
        if kind == "normal":
            yield table[rng.integers(0, 1 << 16, m, dtype=np.uint16)].tobytes()
        else:  # log_uniform
            yield to_bf16_bytes(np.log(rng.uniform(a, b, m)).astype(np.float32))
        done += m


def write_shard(path, tensors, seed):
    header, off = {}, 0
    for name, shape, dtype, _ in tensors:
        assert dtype == "BF16", (name, dtype)
        nbytes = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + nbytes]}
        off += nbytes
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".partial"
    with open(tmp, "wb", buffering=1 << 22) as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for name, shape, _, _ in tensors:
            for chunk in tensor_chunks(name, shape, seed):
                f.write(chunk)
        assert f.tell() == 8 + len(h) + off
    os.replace(tmp, path)
    return off


def calib_tokens(path, cfg, docs, length, seed):
    vocab = cfg["text_config"]["vocab_size"]
    special = np.array([cfg[k] for k in VOCAB_SPECIAL if k in cfg], dtype=np.int64)
    rng = np.random.default_rng([seed, 0xCA11B])
    with open(path, "w", encoding="ascii") as f:
        for _ in range(docs):
            ids = rng.integers(0, vocab, length)
            bad = np.isin(ids, special)
            while bad.any():
                ids[bad] = rng.integers(0, vocab, int(bad.sum()))
                bad = np.isin(ids, special)
            f.write(" ".join(map(str, ids.tolist())) + "\n")


# --- verification -------------------------------------------------------------------------------

def check(out, csv, shards, seed):
    """Every tensor's name/shape/dtype equals the csv; value statistics sane. Returns a summary."""
    from safetensors import safe_open
    import torch

    with open(os.path.join(out, "model.safetensors.index.json"), encoding="utf-8") as f:
        index = json.load(f)["weight_map"]
    want = {name: (shape, dtype, ref) for _, ts in shards for name, shape, dtype, ref in ts}
    problems, seen, direct, stats_checked = [], {}, 0, 0
    files = sorted(set(index.values()))
    for fn in files:
        with safe_open(os.path.join(out, fn), framework="pt") as f:
            for name in f.keys():
                seen[name] = fn
                if index.get(name) != fn:
                    problems.append(f"{name}: in {fn} but the index says {index.get(name)}")
                if name not in want:
                    problems.append(f"{name}: not expected")
                    continue
                shape, dtype, ref = want[name]
                sl = f.get_slice(name)
                got_shape, got_dtype = tuple(sl.get_shape()), sl.get_dtype()
                exp_shape, exp_dtype = csv[ref]
                if ref == name:
                    direct += 1
                if (got_shape, got_dtype) != (exp_shape, exp_dtype):
                    problems.append(f"{name}: {got_dtype}{list(got_shape)} != csv {ref} "
                                    f"{exp_dtype}{list(exp_shape)}")
                    continue
                # Value statistics on (a slice of) the tensor.
                inner = int(np.prod(got_shape[1:])) if len(got_shape) >= 2 else 1
                rows = max(1, -(-4096 // inner)) if len(got_shape) >= 2 else got_shape[0]
                x = sl[0:min(rows, got_shape[0])].float()  # at least 4096 values (or all)
                kind, (a, b) = init_kind(name, len(got_shape))
                if not torch.isfinite(x).all():
                    problems.append(f"{name}: non-finite values")
                elif kind == "log_uniform":
                    if x.min() < np.log(a) - 0.01 or x.max() > np.log(b) + 0.02:
                        problems.append(f"{name}: A_log outside [log {a}, log {b}]")
                elif x.numel() >= 256:
                    m, s = x.mean().item(), x.std().item()
                    if abs(m - a) > 0.2 * b + 1e-3 or not (0.8 * b < s < 1.2 * b):
                        problems.append(f"{name}: mean {m:.4g} std {s:.4g}, want ~N({a}, {b})")
                stats_checked += 1
    for name, fn in index.items():
        if name not in seen:
            problems.append(f"{name}: in the index ({fn}) but not in the shard")
    missing = sorted(set(want) - set(seen))
    problems += [f"{n}: missing" for n in missing]
    # Determinism: small tensors regenerate bit-identically from (seed, name).
    for name in [n for n in want if n.endswith(("input_layernorm.weight", "A_log"))][:4]:
        with safe_open(os.path.join(out, index[name]), framework="pt") as f:
            got = f.get_tensor(name).view(torch.int16).numpy().astype("<u2").tobytes()
        if b"".join(tensor_chunks(name, want[name][0], seed)) != got:
            problems.append(f"{name}: bytes differ from a regeneration with seed {seed}")
    total = sum(int(np.prod(s)) for s, _, _ in want.values())
    return {"tensors": len(seen), "expected": len(want), "same_name_in_csv": direct,
            "renamed_from_template": len(want) - direct, "params": total,
            "stats_checked": stats_checked, "files": len(files), "problems": problems}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=None, help="body layers N (default: pattern)")
    ap.add_argument("--pattern", default=None,
                    help="comma-separated layer kinds, e.g. lin,lin,full (default: see above)")
    ap.add_argument("--vision-depth", type=int, default=1)
    ap.add_argument("--no-mtp", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib-docs", type=int, default=64)
    ap.add_argument("--calib-doc-len", type=int, default=1024)
    ap.add_argument("--assets", default=ASSETS, help="dir with config.json + tensor_shapes.csv")
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args()

    cfg = real_config(os.path.join(a.assets, "config.json"))
    csv = fill_lm_head(read_csv(os.path.join(a.assets, "tensor_shapes.csv")), cfg)
    real_types = cfg["text_config"]["layer_types"]
    if a.pattern:
        pattern = [KINDS[k.strip()] for k in a.pattern.split(",")]
        if a.layers is not None and a.layers != len(pattern):
            ap.error("--layers and --pattern disagree")
    else:
        if a.layers is None or a.layers < 2:
            ap.error("--layers N >= 2 (or --pattern) is needed")
        if a.layers > len(real_types):
            ap.error(f"at most {len(real_types)} layers")
        pattern = list(real_types[:a.layers])
        if "full_attention" not in pattern:
            pattern[-1] = "full_attention"
    if not 0 <= a.vision_depth <= cfg["vision_config"]["depth"]:
        ap.error("--vision-depth out of range")
    shards = plan(csv, cfg, pattern, a.vision_depth, not a.no_mtp)

    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    if not a.check_only:
        if os.path.exists(a.out):
            if not a.overwrite and os.listdir(a.out):
                sys.exit(f"{a.out} exists and is not empty (--overwrite)")
            shutil.rmtree(a.out)
        os.makedirs(a.out)
        c = json.loads(json.dumps(cfg))
        c["text_config"]["num_hidden_layers"] = len(pattern)
        c["text_config"]["layer_types"] = pattern
        if a.no_mtp:
            c["text_config"]["mtp_num_hidden_layers"] = 0
        c["vision_config"]["depth"] = a.vision_depth
        with open(os.path.join(a.out, "config.json"), "w", encoding="utf-8") as f:
            json.dump(c, f, indent=2)
            f.write("\n")
        t0, total, weight_map = time.time(), 0, {}
        for fn, (stem, ts) in zip(names, shards):
            t = time.time()
            nbytes = write_shard(os.path.join(a.out, fn), ts, a.seed)
            total += nbytes
            for name, _, _, _ in ts:
                weight_map[name] = fn
            print(f"  {fn} ({stem}): {len(ts)} tensors, {nbytes / 1e9:.3f} GB, "
                  f"{time.time() - t:.1f} s", file=sys.stderr)
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w",
                  encoding="utf-8") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            f.write("\n")
        calib_tokens(os.path.join(a.out, "calib_tokens.txt"), cfg, a.calib_docs,
                     a.calib_doc_len, a.seed)
        print(f"wrote {a.out}: layers {','.join('lin' if k[0] == 'l' else 'full' for k in pattern)}"
              f", vision depth {a.vision_depth}, mtp {not a.no_mtp}, {total / 1e9:.2f} GB in "
              f"{time.time() - t0:.0f} s", file=sys.stderr)

    r = check(a.out, csv, shards, a.seed)
    print(json.dumps({k: v for k, v in r.items() if k != "problems"}))
    for p in r["problems"][:50]:
        print("PROBLEM:", p, file=sys.stderr)
    if r["problems"] or r["tensors"] != r["expected"]:
        sys.exit(f"check failed: {len(r['problems'])} problems")
    print(f"check ok: {r['tensors']} tensors, names/shapes/dtypes equal the csv "
          f"({r['same_name_in_csv']} by name, {r['renamed_from_template']} from the template "
          f"layer of their kind)", file=sys.stderr)


if __name__ == "__main__":
    main()
