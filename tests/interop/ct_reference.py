"""The reference: what compressed-tensors (ct) itself writes and reads, driven the way
llm-compressor's data-free path drives it.

Only compressed-tensors, torch and safetensors are used here (llm-compressor is not a
dependency). The few lines of llm-compressor that matter are mirrored, with their source:

* llmcompressor/entrypoints/model_free/{converter,lifecycle}.py: every weight becomes a
  bias-free torch.nn.Linear in the weight's own dtype (bf16 here);
  ct.initialize_module_for_quantization(module, scheme, force_zero_point=False); a weight
  observer; update_qparams; freeze; ct.compress_module(module). Fused siblings (q/k/v,
  gate/up) of a TENSOR_GROUP (NVFP4) scheme share one global scale (FusionHandler).
* llmcompressor/observers/min_max.py + helpers.py: the weight observer is always
  "memoryless_minmax": amin/amax over the group axis of flatten_for_calibration(weight),
  in the weight dtype.
* llmcompressor/observers/base.py Observer.get_qparams / get_global_scale:
  global_absmax = max over fused siblings of max(max_vals.max(), -min_vals.min());
  global_scale = ct.generate_gparam(-absmax, absmax); then
  ct.calculate_qparams(min_vals, max_vals, args, global_scale).
* llmcompressor/modifiers/quantization/calibration.py update_qparams: the results are
  copied (update_offload_parameter -> param.copy_) into the parameters that ct's
  initialize created: weight_scale in the weight dtype (bf16), weight_global_scale f32.

See CT_NOTES.md for the arithmetic this amounts to, format by format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from compressed_tensors.compressors import BaseCompressor, compress_module
from compressed_tensors.compressors.mx_utils import decompress_mx_scale
from compressed_tensors.compressors.nvfp4.helpers import unpack_fp4_from_uint8
from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
from compressed_tensors.offload import update_offload_parameter
from compressed_tensors.quantization import (
    QuantizationArgs,
    QuantizationScheme,
    QuantizationStatus,
    QuantizationStrategy,
    QuantizationType,
    initialize_module_for_quantization,
    preset_name_to_scheme,
)
from compressed_tensors.quantization.lifecycle.forward import dequantize
from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam

# Our CLI format ids -> (ct preset, ct format string). INT8 is per channel (W8A16
# per-channel), which no ct preset names, so it is built by hand below.
FORMATS = ("NVFP4A16", "MXFP8", "MXFP4", "FP8", "INT4", "INT8")
CT_FORMAT = {
    "NVFP4": "nvfp4-pack-quantized",
    "NVFP4A16": "nvfp4-pack-quantized",
    "MXFP8": "mxfp8-quantized",
    "MXFP4": "mxfp4-pack-quantized",
    "FP8": "float-quantized",
    "INT4": "pack-quantized",
    "INT8": "pack-quantized",
}
PRESET = {
    "NVFP4": "NVFP4",
    "NVFP4A16": "NVFP4A16",
    "MXFP8": "MXFP8",
    "MXFP4": "MXFP4",
    "FP8": "FP8_DYNAMIC",
    "INT4": "W4A16",
}
# Group size along K a Linear must be divisible by (None: any K).
K_MULTIPLE = {"NVFP4A16": 16, "MXFP8": 32, "MXFP4": 32, "FP8": None, "INT4": 128, "INT8": None}
# Tensors a quantized Linear M holds, per format: local name -> safetensors dtype.
TENSORS = {
    "NVFP4A16": {"weight_packed": "U8", "weight_scale": "F8_E4M3", "weight_global_scale": "F32"},
    "MXFP8": {"weight": "F8_E4M3", "weight_scale": "U8"},
    "MXFP4": {"weight_packed": "U8", "weight_scale": "U8"},
    "FP8": {"weight": "F8_E4M3", "weight_scale": "BF16"},
    "INT4": {"weight_packed": "I32", "weight_scale": "BF16", "weight_shape": "I64"},
    "INT8": {"weight_packed": "I32", "weight_scale": "BF16", "weight_shape": "I64"},
}


def expected_scheme(fmt: str) -> QuantizationScheme:
    """The scheme ct's own preset describes for our format id (targets are a dummy)."""
    if fmt == "INT8":
        scheme = QuantizationScheme(
            targets=["Linear"],
            weights=QuantizationArgs(
                num_bits=8,
                type=QuantizationType.INT,
                strategy=QuantizationStrategy.CHANNEL,
                symmetric=True,
                dynamic=False,
            ),
        )
    else:
        scheme = preset_name_to_scheme(PRESET[fmt], ["Linear"])
    scheme.format = CT_FORMAT[fmt]
    return scheme


ARG_FIELDS = ("num_bits", "type", "symmetric", "strategy", "group_size",
              "block_structure", "dynamic", "actorder", "scale_dtype")


def args_diff(a: QuantizationArgs | None, b: QuantizationArgs | None) -> list[str]:
    """Fields (that decide the math or the loader's scheme) on which a and b differ."""
    if a is None or b is None:
        return [] if a is b else [f"{a!r} vs {b!r}"]
    out = []
    for f in ARG_FIELDS:
        va, vb = getattr(a, f), getattr(b, f)
        if str(va) != str(vb):
            out.append(f"{f}: {va!r} != {vb!r}")
    return out


# ---------------------------------------------------------------- fused siblings

# llmcompressor/entrypoints/model_free/microscale.py DEFAULT_FUSED_MAPPINGS (module names).
_FUSED = [
    (re.compile(r"^(?P<p>.+?)\.(?P<a>attn|attention|self_attn|self_attention)\.q_proj$"),
     ["{p}.{a}.q_proj", "{p}.{a}.k_proj", "{p}.{a}.v_proj"]),
    (re.compile(r"^(?P<p>.+?)\.(?P<a>attn|attention|self_attn)\.wq_a$"),
     ["{p}.{a}.wq_a", "{p}.{a}.wkv_a_with_mqa"]),
    (re.compile(r"^(?P<p>.+?)\.(?P<m>mlp|feed_forward)\.gate_proj$"),
     ["{p}.{m}.gate_proj", "{p}.{m}.up_proj"]),
    (re.compile(r"^(?P<p>.+?)\.w1$"), ["{p}.w1", "{p}.w3"]),
]


def fused_sets(names) -> list[list[str]]:
    """Partition module names into sets that share an NVFP4 global scale (llmc's rule:
    only complete sets fuse)."""
    names = set(names)
    done, out = set(), []
    for n in sorted(names):
        for pat, members in _FUSED:
            m = pat.match(n)
            if not m:
                continue
            group = [t.format(p=m.group("p"), a=m.groupdict().get("a"),
                              m=m.groupdict().get("m")) for t in members]
            if all(g in names for g in group):
                out.append(group)
                done.update(group)
    out.extend([n] for n in sorted(names - done))
    return out


# ---------------------------------------------------------------- compress

def _observe_minmax(weight: torch.Tensor, args: QuantizationArgs):
    """llmc memoryless_minmax on a weight: flatten_for_calibration then amin/amax over
    dims (0, -1), in the weight dtype."""
    s = args.strategy
    if s == QuantizationStrategy.TENSOR:
        v = weight.reshape((1, 1, -1))
    elif s == QuantizationStrategy.CHANNEL:
        v = weight.unsqueeze(-2).unsqueeze(0)
    elif s in (QuantizationStrategy.GROUP, QuantizationStrategy.TENSOR_GROUP):
        v = weight.unflatten(-1, (-1, args.group_size)).unsqueeze(0)
    else:
        raise NotImplementedError(f"strategy {s}")
    return torch.amin(v, dim=(0, -1)), torch.amax(v, dim=(0, -1))


def ct_compress(weights: dict[str, torch.Tensor], scheme: QuantizationScheme,
                fuse: bool = True) -> dict[str, dict[str, torch.Tensor]]:
    """Quantize + compress each Linear weight (bf16 [N, K]) the way llm-compressor's
    data-free path does with compressed-tensors. Returns name -> {local name: tensor}."""
    args = scheme.weights
    modules, stats = {}, {}
    for name, w in weights.items():
        assert w.dtype == torch.bfloat16 and w.ndim == 2, (name, w.dtype, w.shape)
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=w.dtype)
        lin.weight.data.copy_(w)
        sch = scheme.model_copy(deep=True)
        initialize_module_for_quantization(lin, sch, force_zero_point=False)
        modules[name] = lin
        stats[name] = _observe_minmax(lin.weight.data, args)

    groups = fused_sets(weights) if fuse else [[n] for n in weights]
    for group in groups:
        global_scale = None
        if args.strategy == QuantizationStrategy.TENSOR_GROUP:
            absmax = stats[group[0]][1].max()
            for n in group:
                absmax = torch.max(absmax, -stats[n][0].min())
                absmax = torch.max(absmax, stats[n][1].max())
            global_scale = generate_gparam(-absmax.reshape(1), absmax.reshape(1))
        for n in group:
            lin = modules[n]
            scale, zp = calculate_qparams(stats[n][0], stats[n][1], args,
                                          global_scale=global_scale)
            update_offload_parameter(lin, "weight_scale", scale)
            if hasattr(lin, "weight_zero_point"):
                update_offload_parameter(lin, "weight_zero_point", zp)
            if global_scale is not None:
                update_offload_parameter(lin, "weight_global_scale", global_scale)
            lin.quantization_status = QuantizationStatus.FROZEN

    out = {}
    for name, lin in modules.items():
        compress_module(lin, format=scheme.format)
        out[name] = {k: v.detach().clone() for k, v in lin.state_dict().items()}
    return out


# ---------------------------------------------------------------- decompress

def ct_decompress(local: dict[str, torch.Tensor], scheme: QuantizationScheme) -> torch.Tensor:
    """ct's own decompression (the call transformers makes when dequantizing)."""
    comp = BaseCompressor.get_value_from_registry(scheme.format)
    return comp.decompress(dict(local), scheme)["weight"]


def ct_decompress_f32(local: dict[str, torch.Tensor], scheme: QuantizationScheme,
                      fmt: str) -> torch.Tensor:
    """ct's decompression graph (same functions, same order of operations) evaluated
    with float32 as the dense dtype instead of ct's bfloat16."""
    args = scheme.weights
    f32 = torch.float32
    if fmt in ("NVFP4A16", "NVFP4", "MXFP4"):
        packed = local["weight_packed"]
        m, n = packed.shape
        q = unpack_fp4_from_uint8(packed, m, n * 2, dtype=f32)
        if fmt == "MXFP4":
            scale = decompress_mx_scale(local["weight_scale"]).to(f32)
            return dequantize(x_q=q, scale=scale, args=args, dtype=f32)
        return dequantize(x_q=q, scale=local["weight_scale"].to(f32), args=args,
                          global_scale=local["weight_global_scale"], dtype=f32)
    if fmt == "MXFP8":
        scale = decompress_mx_scale(local["weight_scale"]).to(f32)
        return dequantize(x_q=local["weight"], scale=scale, args=args, dtype=f32)
    if fmt == "FP8":
        return dequantize(x_q=local["weight"], scale=local["weight_scale"].to(f32),
                          args=args, dtype=f32)
    if fmt in ("INT4", "INT8"):
        q = unpack_from_int32(local["weight_packed"], args.num_bits, local["weight_shape"])
        return dequantize(x_q=q, scale=local["weight_scale"].to(f32), args=args, dtype=f32)
    raise ValueError(fmt)


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)


def pure_math_f32(local: dict[str, torch.Tensor], fmt: str) -> torch.Tensor:
    """code * scale [/ global_scale] computed exactly (float64) and rounded once to f32."""
    f64 = torch.float64
    if fmt in ("NVFP4A16", "NVFP4", "MXFP4"):
        p = local["weight_packed"]
        nib = torch.stack((p & 0xF, p >> 4), dim=-1).reshape(p.shape[0], -1).long()
        q = E2M1[nib & 7] * torch.where((nib & 8) != 0, -1.0, 1.0).to(f64)
        if fmt == "MXFP4":
            s = torch.pow(2.0, local["weight_scale"].to(f64) - 127)
            return (q * s.repeat_interleave(32, dim=1)).to(torch.float32)
        s = local["weight_scale"].to(f64).repeat_interleave(16, dim=1)
        return (q * s / local["weight_global_scale"].to(f64)).to(torch.float32)
    if fmt == "MXFP8":
        s = torch.pow(2.0, local["weight_scale"].to(f64) - 127)
        return (local["weight"].to(f64) * s.repeat_interleave(32, dim=1)).to(torch.float32)
    if fmt == "FP8":
        return (local["weight"].to(f64) * local["weight_scale"].to(f64)).to(torch.float32)
    if fmt in ("INT4", "INT8"):
        bits = 4 if fmt == "INT4" else 8
        q = unpack_from_int32(local["weight_packed"], bits, local["weight_shape"]).to(f64)
        s = local["weight_scale"].to(f64)
        s = s.repeat_interleave(q.shape[1] // s.shape[1], dim=1)
        return (q * s).to(torch.float32)
    raise ValueError(fmt)


# ---------------------------------------------------------------- byte comparison

ST_DTYPE = {
    torch.uint8: "U8", torch.int8: "I8", torch.int32: "I32", torch.int64: "I64",
    torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}


def raw_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


@dataclass
class Mismatch:
    name: str
    what: str

    def __str__(self):
        return f"{self.name}: {self.what}"


def compare_tensor(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> Mismatch | None:
    """Byte-for-byte comparison; on a difference, say where and what the values are."""
    do, dt = ST_DTYPE.get(ours.dtype, str(ours.dtype)), ST_DTYPE.get(theirs.dtype, str(theirs.dtype))
    if do != dt:
        return Mismatch(name, f"dtype ours {do} vs ct {dt}")
    if tuple(ours.shape) != tuple(theirs.shape):
        return Mismatch(name, f"shape ours {list(ours.shape)} vs ct {list(theirs.shape)}")
    bo, bt = raw_bytes(ours), raw_bytes(theirs)
    if bo == bt:
        return None
    import numpy as np
    a = np.frombuffer(bo, dtype=np.uint8)
    b = np.frombuffer(bt, dtype=np.uint8)
    diff = np.nonzero(a != b)[0]
    first = int(diff[0])
    esize = ours.element_size()
    elem = first // esize
    idx = np.unravel_index(elem, tuple(ours.shape)) if ours.ndim else ()
    vo = ours.reshape(-1)[elem]
    vt = theirs.reshape(-1)[elem]

    def show(v):
        if v.dtype in (torch.float8_e4m3fn, torch.float8_e5m2, torch.bfloat16):
            return f"{float(v.float())!r}"
        return f"{v.item()!r}"
    return Mismatch(
        name,
        f"{len(diff)} of {len(a)} bytes differ; first at byte {first} = element "
        f"{tuple(int(i) for i in idx)}: ours 0x{a[first]:02x} ({show(vo)}) vs ct "
        f"0x{b[first]:02x} ({show(vt)})")


# ---------------------------------------------------------------- a Python-made export

def ct_export(src_dir, fmt: str, out_dir) -> None:
    """What our `export --uniform FMT` should write, made with ct alone (no prismaquant):
    used to develop/diagnose the transformers checks without the C++ binary."""
    import json
    import shutil
    from pathlib import Path

    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus
    from safetensors.torch import save_file

    import pqtest
    src = pqtest.load_checkpoint(Path(src_dir))
    lin = pqtest.source_linears(src)
    kmul = K_MULTIPLE[fmt]
    q = {m: pqtest.to_bf16(w) for m, w in lin.items() if kmul is None or w.shape[1] % kmul == 0}
    scheme = expected_scheme(fmt)
    scheme.targets = [r"re:.*\.(q|k|v|o|gate|up|down)_proj$"]
    comp = ct_compress(q, scheme)
    tensors = {}
    for k, v in src.tensors.items():
        m = pqtest.LINEAR_RE.match(k)
        if m and m.group("m") in comp:
            continue
        tensors[k] = pqtest.to_bf16(v)
    for m, d in comp.items():
        tensors.update({f"{m}.{k}": v for k, v in d.items()})
    ignore = sorted(set(lin) - set(q)) + ["lm_head"]
    qc = QuantizationConfig(config_groups={"group_0": scheme}, ignore=ignore,
                            quantization_status=QuantizationStatus.COMPRESSED, format=CT_FORMAT[fmt])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    cfg = dict(src.config)
    cfg["quantization_config"] = qc.model_dump(mode="json")
    cfg["quantization_config"]["quant_method"] = "compressed-tensors"
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    for extra in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (Path(src_dir) / extra).exists():
            shutil.copy(Path(src_dir) / extra, out / extra)
