"""prismaquant export --uniform FORMAT, checked against compressed-tensors itself.

(i)  their compressor, run on the same bf16 weights the way llm-compressor runs it,
     produces our bytes (every tensor of every quantized Linear: dtype, shape, bytes);
(ii) their decompression of our tensors equals our `dequantize` output bit for bit;
plus the config (parsed and resolved by ct) and the tensors that must pass through.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from compressed_tensors.quantization import QuantizationConfig
from compressed_tensors.utils.match import is_match

import ct_reference as ref
import pqtest

CASES = [(m, f) for m in pqtest.MODELS for f in ref.FORMATS]
IDS = [f"{m}-{f}" for m, f in CASES]
_LINEAR = torch.nn.Linear(1, 1)
MAX_LINES = 12


def _fail(title: str, lines: list[str]):
    extra = f"\n  ... {len(lines) - MAX_LINES} more" if len(lines) > MAX_LINES else ""
    pytest.fail(f"{title}: {len(lines)} problem(s)\n  " + "\n  ".join(lines[:MAX_LINES]) + extra,
                pytrace=False)


class Case:
    def __init__(self, model, fmt, exports, sources):
        self.model, self.fmt = model, fmt
        out, deq = exports.get(model, fmt)
        self.src = sources(model)
        self.ours = pqtest.load_checkpoint(out)
        self.deq = pqtest.load_checkpoint(deq)
        qc = self.ours.qconfig
        assert qc is not None, f"{out}/config.json has no quantization_config"
        self.qconfig = QuantizationConfig.model_validate(qc)
        self.linears = pqtest.source_linears(self.src)
        kmul = ref.K_MULTIPLE[fmt]
        self.expect_q = sorted(m for m, w in self.linears.items()
                               if kmul is None or w.shape[1] % kmul == 0)
        self.expect_bf16 = sorted(set(self.linears) - set(self.expect_q))

    def scheme_for(self, name: str):
        """The config group ct resolves for module `name` (None when ignored/untargeted)."""
        groups = [g for g in self.qconfig.config_groups.values()
                  if is_match(name, _LINEAR, g.targets, self.qconfig.ignore or [])]
        assert len(groups) <= 1, f"{name} matches {len(groups)} config groups"
        return groups[0] if groups else None


_cache = {}


@pytest.fixture
def case(request, exports, sources):
    model, fmt = request.param
    key = (model, fmt)
    if key not in _cache:
        _cache[key] = Case(model, fmt, exports, sources)
    return _cache[key]


def _params(fn):
    return pytest.mark.parametrize("case", CASES, ids=IDS, indirect=True)(fn)


# ---------------------------------------------------------------- config

@_params
def test_config(case: Case):
    """quantization_config: ct parses it; each group is ct's preset for the format, with the
    right per-group `format`; ct's resolver targets exactly the Linears the format can hold,
    and every other Linear (lm_head too) is ignored."""
    qc, fmt, raw = case.qconfig, case.fmt, case.ours.qconfig
    probs = []
    if raw.get("quant_method") != "compressed-tensors":
        probs.append(f"quant_method {raw.get('quant_method')!r}")
    if raw.get("quantization_status") != "compressed":
        probs.append(f"quantization_status {raw.get('quantization_status')!r}")
    want = ref.expected_scheme(fmt)
    for gname, g in qc.config_groups.items():
        graw = raw["config_groups"][gname]
        if graw.get("format") != ref.CT_FORMAT[fmt]:
            probs.append(f"group {gname}: format {graw.get('format')!r}, want {ref.CT_FORMAT[fmt]!r}")
        for d in ref.args_diff(g.weights, want.weights):
            probs.append(f"group {gname} weights {d}")
        for d in ref.args_diff(g.input_activations, want.input_activations):
            probs.append(f"group {gname} input_activations {d}")
        if g.output_activations is not None:
            probs.append(f"group {gname}: output_activations not null")
    if case.expect_q and raw.get("format") not in (ref.CT_FORMAT[fmt], "mixed-precision"):
        probs.append(f"top-level format {raw.get('format')!r}")
    ignore = qc.ignore or []
    for m in case.expect_q:
        if case.scheme_for(m) is None:
            probs.append(f"{m}: quantizable but not targeted by any group (or ignored)")
    for m in case.expect_bf16 + ["lm_head"]:
        if case.scheme_for(m) is not None:
            probs.append(f"{m}: stays BF16 but a config group targets it")
        elif m != "lm_head" or "lm_head.weight" in case.src.tensors:
            if not is_match(m, _LINEAR, ignore):
                probs.append(f"{m}: BF16 Linear not listed in ignore")
    if probs:
        _fail(f"{case.model} {fmt} config", probs)


# ---------------------------------------------------------------- tensor set

@_params
def test_tensor_set_and_passthrough(case: Case):
    """Quantized Linears hold exactly the format's tensors with the right dtype strings;
    everything else is the source tensor as BF16, bit for bit; nothing else is written."""
    probs = []
    want = ref.TENSORS[case.fmt]
    expected_names = set()
    for m in case.expect_q:
        for local, dt in want.items():
            name = f"{m}.{local}"
            expected_names.add(name)
            got = case.ours.dtypes.get(name)
            if got is None:
                probs.append(f"{name}: missing")
            elif got != dt:
                probs.append(f"{name}: dtype {got}, want {dt}")
    qweights = {f"{m}.weight" for m in case.expect_q}
    for name, t in case.src.tensors.items():
        if name in qweights:
            continue
        expected_names.add(name)
        if name not in case.ours.tensors:
            probs.append(f"{name}: missing (pass-through)")
            continue
        if case.ours.dtypes[name] != "BF16":
            probs.append(f"{name}: dtype {case.ours.dtypes[name]}, want BF16")
            continue
        mm = ref.compare_tensor(name, case.ours.tensors[name], pqtest.to_bf16(t))
        if mm:
            probs.append(f"pass-through {mm}")
    for name in sorted(set(case.ours.tensors) - expected_names):
        probs.append(f"{name}: unexpected tensor ({case.ours.dtypes[name]})")
    if probs:
        _fail(f"{case.model} {case.fmt} tensors", probs)


# ---------------------------------------------------------------- (i) bytes

@lru_cache(maxsize=None)
def _ct_reference(model: str, fmt: str):
    case = _cache[(model, fmt)]
    by_scheme = {}
    for m in case.expect_q:
        s = case.scheme_for(m)
        assert s is not None, f"{m} not targeted"
        by_scheme.setdefault(id(s), (s, []))[1].append(m)
    out = {}
    for scheme, names in by_scheme.values():
        scheme = scheme.model_copy(deep=True)
        scheme.format = scheme.format or ref.CT_FORMAT[fmt]
        weights = {m: pqtest.to_bf16(case.linears[m]) for m in names}
        out.update(ref.ct_compress(weights, scheme))
    return out


@_params
def test_ct_compressor_produces_our_bytes(case: Case):
    """compressed-tensors' quantize+compress (llm-compressor's min-max observer path) on the
    source weights cast to bf16 gives byte-identical tensors."""
    theirs = _ct_reference(case.model, case.fmt)
    probs = []
    for m in case.expect_q:
        ours = {k: v for k, v in case.ours.module(m).items() if k != "bias"}
        for local in sorted(set(ours) | set(theirs[m])):
            name = f"{m}.{local}"
            if local not in ours:
                probs.append(f"{name}: ct writes it, we do not")
            elif local not in theirs[m]:
                probs.append(f"{name}: we write it, ct does not")
            else:
                mm = ref.compare_tensor(name, ours[local], theirs[m][local])
                if mm:
                    probs.append(str(mm))
    if probs:
        _fail(f"{case.model} {case.fmt}: ct compressor vs our export", probs)


# ---------------------------------------------------------------- (ii) decode

def _deq_weight(case: Case, m: str) -> torch.Tensor:
    name = f"{m}.weight"
    assert name in case.deq.tensors, f"dequantized checkpoint lacks {name}"
    assert case.deq.dtypes[name] == "F32", f"{name} is {case.deq.dtypes[name]}, want F32"
    return case.deq.tensors[name]


def _first_diff(a: torch.Tensor, b: torch.Tensor):
    d = (a.view(torch.int16 if a.dtype == torch.bfloat16 else torch.int32)
         != b.view(torch.int16 if b.dtype == torch.bfloat16 else torch.int32))
    idx = d.nonzero()
    return int(d.sum()), (tuple(idx[0].tolist()) if len(idx) else None)


@_params
def test_ct_decompress_equals_our_dequantize(case: Case):
    """What transformers/ct load: ct's compressor.decompress() of our tensors (dense dtype
    bfloat16, as ct returns it) == bf16_rne(our dequantize's float32), bit for bit."""
    probs = []
    for m in case.expect_q:
        scheme = case.scheme_for(m)
        local = {k: v for k, v in case.ours.module(m).items() if k != "bias"}
        theirs = ref.ct_decompress(local, scheme)
        ours32 = _deq_weight(case, m)
        if theirs.dtype != torch.bfloat16:
            probs.append(f"{m}: ct decompressed to {theirs.dtype} (expected bfloat16)")
            continue
        ours = ours32.to(torch.bfloat16)
        n, at = _first_diff(ours, theirs)
        if n:
            exact = ref.pure_math_f32(local, case.fmt)[at].item()
            probs.append(f"{m}.weight: {n} of {ours.numel()} differ; first {at}: ct bf16 "
                         f"{theirs[at].item()!r}, ours f32 {ours32[at].item()!r} -> bf16 "
                         f"{ours[at].item()!r}; exact code*scale {exact!r}")
    if probs:
        _fail(f"{case.model} {case.fmt}: ct decompress (bf16) vs our dequantize", probs)


@_params
def test_ct_decode_graph_in_f32_equals_our_dequantize(case: Case):
    """ct's decompression graph (same ct functions and operation order) run with float32 as
    the dense dtype == our float32 dequantization, bit for bit. For NVFP4 ct computes
    code * f32(scale_fp8 / global_scale) (two roundings), not (code*scale)/global."""
    probs = []
    for m in case.expect_q:
        scheme = case.scheme_for(m)
        local = {k: v for k, v in case.ours.module(m).items() if k != "bias"}
        theirs = ref.ct_decompress_f32(local, scheme, case.fmt)
        ours = _deq_weight(case, m)
        if theirs.shape != ours.shape:
            probs.append(f"{m}.weight: shape ours {list(ours.shape)} vs ct {list(theirs.shape)}")
            continue
        n, at = _first_diff(ours, theirs)
        if n:
            exact = ref.pure_math_f32(local, case.fmt)
            n_exact, _ = _first_diff(ours, exact)
            probs.append(f"{m}.weight: {n} of {ours.numel()} differ; first {at}: ct "
                         f"{theirs[at].item()!r} vs ours {ours[at].item()!r} (exact "
                         f"code*scale/global rounded once: {exact[at].item()!r}; ours differs "
                         f"from that in {n_exact} elements)")
    if probs:
        _fail(f"{case.model} {case.fmt}: ct decode graph (f32) vs our dequantize", probs)


@_params
def test_dequantized_checkpoint_passthrough(case: Case):
    """`dequantize` keeps every non-quantized tensor exactly as the export has it, and writes
    exactly one F32 M.weight per quantized Linear."""
    probs = []
    qnames = set()
    for m in case.expect_q:
        qnames.update(f"{m}.{k}" for k in ref.TENSORS[case.fmt])
        name = f"{m}.weight"
        if case.deq.dtypes.get(name) != "F32":
            probs.append(f"{name}: {case.deq.dtypes.get(name)}, want F32")
        elif list(case.deq.tensors[name].shape) != list(case.linears[m].shape):
            probs.append(f"{name}: shape {list(case.deq.tensors[name].shape)}")
    for name, t in case.ours.tensors.items():
        if name in qnames:
            if name in case.deq.tensors and not name.endswith(".weight"):
                probs.append(f"{name}: compressed tensor left in the dequantized checkpoint")
            continue
        if name not in case.deq.tensors:
            probs.append(f"{name}: missing")
            continue
        if case.deq.dtypes[name] != case.ours.dtypes[name]:
            same = torch.equal(case.deq.tensors[name].double(), t.double())
            probs.append(f"{name}: dtype {case.deq.dtypes[name]} vs export "
                         f"{case.ours.dtypes[name]} (values {'equal' if same else 'DIFFER'}); "
                         "only quantized Linears should change")
            continue
        mm = ref.compare_tensor(name, case.deq.tensors[name], t)
        if mm:
            probs.append(str(mm))
    if probs:
        _fail(f"{case.model} {case.fmt}: dequantized checkpoint", probs)


# Per-Linear relative RMS error of our dequantization against the source weight: a loose
# sanity bound (a gross error shared by ct and us, e.g. the wrong tensor, passes the
# bit-exact checks but not this). Measured on these Gaussian-ish test weights: NVFP4 0.10,
# MXFP4 0.13, INT4 g128 0.11, FP8/MXFP8 0.027, INT8 0.019.
REL_RMS_BOUND = {"NVFP4A16": 0.14, "MXFP4": 0.17, "INT4": 0.15, "FP8": 0.04, "MXFP8": 0.04,
                 "INT8": 0.03}


@_params
def test_dequantized_error_is_plausible(case: Case):
    if case.model == "llama-awkward":
        pytest.skip("extreme values: no meaningful error bound")
    probs = []
    for m in case.expect_q:
        w = case.linears[m].double()
        d = _deq_weight(case, m).double()
        rel = ((d - w).pow(2).mean().sqrt() / w.pow(2).mean().sqrt()).item()
        if not rel < REL_RMS_BOUND[case.fmt]:
            probs.append(f"{m}: relative RMS error {rel:.4f} >= {REL_RMS_BOUND[case.fmt]}")
    if probs:
        _fail(f"{case.model} {case.fmt}: dequantized vs source", probs)
