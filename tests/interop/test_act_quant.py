"""Activation fake-quantization (src/pq/formats/act_quant.h) against compressed-tensors'
own run-time path, bit for bit: `forward_quantize(module, x, "input", args)` -- what
`set_forward_quantized`'s forward calls on a Linear's input -- with the QuantizationArgs
our `input_activations` JSON parses to, on bf16 activations. Our side runs through the
test-only tool pq_act_quant_tool (PQ_ACT_TOOL, set by run.sh). CT_NOTES.md "Activations"."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from compressed_tensors.quantization import (
    QuantizationArgs,
    QuantizationScheme,
    QuantizationStatus,
    initialize_module_for_quantization,
)
from compressed_tensors.quantization.lifecycle.forward import (
    forward_quantize,
    set_forward_quantized,
)
from compressed_tensors.quantization.utils import generate_gparam

import ct_reference as ref
import pqtest

BF = torch.bfloat16


def _args(bits, strategy, group, dynamic, scale_dtype):
    return {"num_bits": bits, "type": "float", "symmetric": True, "strategy": strategy,
            "group_size": group, "block_structure": None, "dynamic": dynamic,
            "actorder": None, "scale_dtype": scale_dtype, "zp_dtype": None,
            "observer": None if dynamic is True else "static_minmax", "observer_kwargs": {}}


# compressed_tensors.cc InputArgs, verbatim (test_input_args_match_our_writer checks it).
INPUT_ARGS = {
    "NVFP4": _args(4, "tensor_group", 16, "local", "torch.float8_e4m3fn"),
    "MXFP8": _args(8, "group", 32, True, "torch.uint8"),
    "MXFP4": _args(4, "group", 32, True, "torch.uint8"),
    "FP8": _args(8, "token", None, True, None),
}
GROUP = {"NVFP4": 16, "MXFP8": 32, "MXFP4": 32, "FP8": 1}
SHAPES = [(37, 64), (5, 4096), (3, 32), (64, 160), (1, 2048), (9, 96)]


def tool() -> Path:
    t = os.environ.get("PQ_ACT_TOOL")
    if not t:
        pytest.skip("PQ_ACT_TOOL not set (run through tests/interop/run.sh)")
    assert Path(t).exists(), f"PQ_ACT_TOOL={t} does not exist (build target pq_act_quant_tool)"
    return Path(t)


def run_tool(*args) -> subprocess.CompletedProcess:
    cmd = [str(tool()), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"`{' '.join(cmd)}` exited {p.returncode}\n{p.stderr[-4000:]}"
    return p


def ours(fmt: str, tensors: dict[str, torch.Tensor], work: Path, gs: float | None = None):
    """Our fake-quantization of each [rows, cols] float32 tensor."""
    from safetensors.torch import load_file
    work.mkdir(parents=True, exist_ok=True)
    src, out = work / "in.safetensors", work / "out"
    pqtest.write_safetensors_file(src, {k: v.float() for k, v in tensors.items()})
    extra = [] if gs is None else ["--input-global-scale", float(gs).hex()]
    run_tool("fake-quant", fmt, src, out, *extra)
    return load_file(str(out / "model.safetensors"))


def ct_module(gs: torch.Tensor | None) -> torch.nn.Module:
    """A stand-in for a quantized Linear as forward_quantize sees it."""
    m = torch.nn.Module()
    m.quantization_status = QuantizationStatus.FROZEN
    if gs is not None:
        m.input_global_scale = torch.nn.Parameter(gs.reshape(1).float(), requires_grad=False)
    return m


def ct_fake_quant(fmt: str, x: torch.Tensor, gs: torch.Tensor | None) -> torch.Tensor:
    """ct on bf16 activations shaped [batch=1, tokens, K], as transformers passes them (a
    2-D input would make ct's TOKEN strategy reduce over the whole tensor)."""
    args = QuantizationArgs.model_validate(INPUT_ARGS[fmt])
    return forward_quantize(ct_module(gs), x.to(BF).unsqueeze(0), "input", args)[0]


def ct_global_scale(amax: torch.Tensor) -> torch.Tensor:
    """ct's calibration: the static_minmax observer's bf16 absmax -> generate_gparam."""
    a = amax.to(BF).reshape(1)
    return generate_gparam(-a, a)


def assert_same_bits(got: torch.Tensor, want: torch.Tensor, what: str):
    want = want.float()
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} vs {tuple(want.shape)}"
    gn, wn = got.isnan(), want.isnan()
    assert torch.equal(gn, wn), f"{what}: NaN at different places"
    g, w = got.view(torch.int32), want.view(torch.int32)
    bad = ((g != w) & ~gn).nonzero()
    if len(bad):
        rows = []
        for i in bad[:8].tolist():
            rows.append(f"  {tuple(i)}: ours {got[tuple(i)].item()!r} "
                        f"ct {want[tuple(i)].item()!r}")
        pytest.fail(f"{what}: {len(bad)} of {got.numel()} values differ\n" + "\n".join(rows))


# ---------------------------------------------------------------- activations

def activations(rows: int, cols: int, seed: int) -> torch.Tensor:
    """bf16-representable float32 activations: normal, outliers, tiny values (bf16
    subnormals included), exact zeros and -0.0, coarse values that hit rounding ties."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=g)
    u = torch.rand(rows, cols, generator=g)
    x = torch.where(u < 0.02, x * 200.0, x)
    tiny = torch.ldexp(torch.randn(rows, cols, generator=g),
                       torch.randint(-135, -90, (rows, cols), generator=g))
    x = torch.where((u >= 0.02) & (u < 0.07), tiny, x)
    x = torch.where((u >= 0.07) & (u < 0.10), torch.zeros_like(x), x)
    x = torch.where((u >= 0.10) & (u < 0.12), torch.full_like(x, -0.0), x)
    coarse = torch.round(torch.randn(rows, cols, generator=g) * 16) / 8
    x = torch.where((u >= 0.12) & (u < 0.30), coarse, x)
    if rows > 2:
        x[1] *= 1e-4           # a quiet token
        x[2] = 0.0             # an all-zero token
    return x.to(BF).float()


def tie_rows(fmt: str) -> torch.Tensor:
    """Groups whose scale makes q land exactly on rounding thresholds. MXFP4 amax 5 ->
    scale 1; NVFP4 amax 6*2^-3 under gs 448 -> eff 2^-3; MXFP8 amax 1 -> scale 2^-8 with
    E4M3 midpoints; FP8 amax 448 -> scale 1."""
    cols = 64
    x = torch.zeros(4, cols)
    # The FP4 thresholds (ties to even), values between, and the clamp (5.5, 6). MXFP4:
    # any amax below 7 keeps scale 1.
    fp4_ties = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.125, 5.5, 6.0, 2.75, 0.5])
    if fmt in ("MXFP4", "NVFP4"):
        unit = 1.0 if fmt == "MXFP4" else 0.125
        for r in range(4):
            sign = 1.0 if r % 2 == 0 else -1.0
            for g0 in range(0, cols, GROUP[fmt]):
                x[r, g0] = (6.0 if fmt == "NVFP4" else 5.0) * unit
                x[r, g0 + 1:g0 + 1 + len(fp4_ties)] = sign * fp4_ties * unit
    else:
        # E4M3 midpoints (m + 0.5) * 2^(e-3) for normal binades and the subnormal range.
        mids = [(m + 0.5) * 2.0 ** (e - 3) for e in range(-6, 9) for m in range(8, 16)]
        mids += [(n + 0.5) * 2.0 ** -9 for n in range(8)]
        mids = torch.tensor(mids)
        base = 2.0 ** -8 if fmt == "MXFP8" else 1.0
        for r in range(4):
            sign = 1.0 if r % 2 == 0 else -1.0
            for g0 in range(0, cols, 32):
                x[r, g0] = 1.0 if fmt == "MXFP8" else 448.0
                sel = mids[torch.randperm(len(mids), generator=torch.Generator().manual_seed(
                    r * 100 + g0))[:31]]
                sel = sel[sel * base <= (1.0 if fmt == "MXFP8" else 448.0)]
                x[r, g0 + 1:g0 + 1 + len(sel)] = sign * sel * base
    assert torch.equal(x.to(BF).float(), x), "tie values must be bf16-exact"
    return x


# ---------------------------------------------------------------- tests

def test_input_args_match_our_writer_and_ct_presets():
    for fmt, args in INPUT_ARGS.items():
        printed = json.loads(run_tool("input-args", fmt).stdout)
        assert printed == args, f"{fmt}: InputArgs changed; update INPUT_ARGS here"
        mine = QuantizationArgs.model_validate(args)
        preset = ref.expected_scheme(fmt).input_activations
        assert ref.args_diff(mine, preset) == [], fmt
    for fmt in ("BF16", "NVFP4A16", "INT4", "INT8"):
        assert json.loads(run_tool("input-args", fmt).stdout) is None


@pytest.mark.parametrize("fmt", ["MXFP8", "MXFP4", "FP8"])
def test_dynamic_formats_bit_exact(fmt, work_dir):
    shapes = SHAPES + ([(7, 100), (2, 1)] if fmt == "FP8" else [])
    xs = {f"t{i}": activations(r, c, seed=i + 10) for i, (r, c) in enumerate(shapes)}
    xs["ties"] = tie_rows(fmt)
    got = ours(fmt, xs, work_dir / "act_quant" / fmt)
    for name, x in xs.items():
        assert_same_bits(got[name], ct_fake_quant(fmt, x, None), f"{fmt} {name}")
    # Sanity: the quantizer did something (the tie rows are not fixed points).
    assert not torch.equal(got["ties"], xs["ties"])


def test_mx_huge_group_is_nan_like_ct(work_dir):
    """amax >= ~2.98e38 rounds ct's power of two to Inf: E8M0 255, scale Inf, 0 * Inf."""
    x = torch.zeros(2, 64)
    x[0, 0] = 3.2e38
    x[1, 33] = -3.0e38
    x = x.to(BF).float()
    for fmt in ("MXFP8", "MXFP4"):
        got = ours(fmt, {"x": x}, work_dir / "act_quant" / f"{fmt}-huge")["x"]
        want = ct_fake_quant(fmt, x, None)
        assert want[0, :32].isnan().all() and want[1, 32:].isnan().all()
        assert_same_bits(got, want, f"{fmt} huge")


@pytest.mark.parametrize("calib", ["calibrated", "amax/50", "amax*1e4"])
def test_nvfp4_bit_exact(calib, work_dir):
    """Global scale as ct's calibration makes it from the activation amax, and from a
    smaller (group scales saturate at 448) or larger (group scales underflow to the 0.125
    eps) calibration amax."""
    factor = {"calibrated": 1.0, "amax/50": 1 / 50, "amax*1e4": 1e4}[calib]
    for i, (r, c) in enumerate(SHAPES):
        x = activations(r, c, seed=100 + i)
        gs = ct_global_scale(x.abs().max() * factor)
        got = ours("NVFP4", {"x": x}, work_dir / "act_quant" / f"nvfp4-{calib}-{i}", gs.item())
        assert_same_bits(got["x"], ct_fake_quant("NVFP4", x, gs), f"NVFP4 {calib} {r}x{c}")


def test_nvfp4_ties_bit_exact(work_dir):
    x = tie_rows("NVFP4")
    gs = torch.tensor([448.0])
    got = ours("NVFP4", {"x": x}, work_dir / "act_quant" / "nvfp4-ties", 448.0)["x"]
    want = ct_fake_quant("NVFP4", x, gs)
    assert_same_bits(got, want, "NVFP4 ties")
    # q = x / 2^-3 exactly: the thresholds round to even (0.25 -> 0, 0.75 -> 1, 5 -> 4).
    assert want[0, 1:8].float().tolist() == [0.0, 0.125, 0.125, 0.25, 0.25, 0.5, 0.5]


def test_nvfp4_needs_input_global_scale(work_dir):
    src = work_dir / "act_quant" / "noscale.safetensors"
    src.parent.mkdir(parents=True, exist_ok=True)
    pqtest.write_safetensors_file(src, {"x": torch.ones(2, 16)})
    p = subprocess.run([str(tool()), "fake-quant", "NVFP4", str(src), str(src.parent / "o")],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "input_global_scale" in p.stderr


def test_nvfp4_input_global_scale_matches_generate_gparam(work_dir):
    g = torch.Generator().manual_seed(7)
    amax = torch.cat([
        torch.logspace(-45, 38.5, 2500, dtype=torch.float64).float(),
        torch.rand(1000, generator=g) * 20,
        torch.tensor([0.0, 7.5, 0.09326171875, 6.0, 1.0, 1e-38, 1e-36, 7.9e-36, 8e-36,
                      3.38e38, 2 ** -149, 2 ** -133, 2 ** -126, 6.01]),
    ])
    src = work_dir / "act_quant" / "amax.safetensors"
    src.parent.mkdir(parents=True, exist_ok=True)
    pqtest.write_safetensors_file(src, {"amax": amax})
    out = work_dir / "act_quant" / "gscale"
    run_tool("input-global-scale", src, out)
    from safetensors.torch import load_file
    got = load_file(str(out / "model.safetensors"))["amax"]
    want = torch.cat([ct_global_scale(a) for a in amax])
    assert_same_bits(got, want, "NvFp4InputGlobalScale")


@pytest.mark.parametrize("fmt", ["NVFP4", "MXFP8", "MXFP4", "FP8"])
def test_quantized_linear_forward_end_to_end(fmt, work_dir):
    """The whole run-time path: a bf16 Linear (identity weight, weights not quantized) with
    the scheme's input_activations, initialized by ct and calibrated like llm-compressor,
    quantizes its [batch, tokens, K] input exactly as we do."""
    k = 128
    x = activations(6, k, seed=3)
    lin = torch.nn.Linear(k, k, bias=False, dtype=BF)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(k, dtype=BF))
    scheme = QuantizationScheme(targets=["Linear"],
                                input_activations=QuantizationArgs.model_validate(INPUT_ARGS[fmt]))
    initialize_module_for_quantization(lin, scheme, force_zero_point=False)
    gs = None
    if fmt == "NVFP4":
        gs = ct_global_scale(x.abs().max())
        with torch.no_grad():
            lin.input_global_scale.copy_(gs)
    lin.quantization_status = QuantizationStatus.FROZEN
    set_forward_quantized(lin)
    with torch.no_grad():
        want = lin(x.to(BF).unsqueeze(0))[0]
    got = ours(fmt, {"x": x}, work_dir / "act_quant" / f"linear-{fmt}",
               None if gs is None else gs.item())["x"]
    # The matmul sums -0 with +0 products, so only the sign of zero is lost here.
    assert_same_bits(got + 0.0, want, f"{fmt} Linear forward")
