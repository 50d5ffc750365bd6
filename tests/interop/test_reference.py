"""The reference harness itself (ct_reference.py) reproduces the worked examples of
shared/reference/compressed-tensors-format.md §2 byte for byte, and pins the ct
behaviours the C++ must copy (CT_NOTES.md). Needs no prismaquant binary."""

import torch

import ct_reference as ref

BF = torch.bfloat16


def _one(w: torch.Tensor, fmt: str) -> dict:
    return ref.ct_compress({"layer": w.to(BF)}, ref.expected_scheme(fmt))["layer"]


def test_nvfp4_worked_example():
    row0 = [0.25, -0.0625, 0.5, 0.015625, -0.375, 0.125, 0, -0.1875, 0.3125, 0.4375,
            -0.03125, 0.09375, 0.21875, -0.5, 0.0625, 0.46875]
    row1 = [k / 40 for k in [1, 2, 3, -4, 5, 6, -7, 8, 1, 2, 3, -4, 5, 6, -7, 8]]
    out = _one(torch.tensor([row0, row1]), "NVFP4A16")
    assert sorted(out) == ["weight_global_scale", "weight_packed", "weight_scale"]
    assert ref.raw_bytes(out["weight_global_scale"]).hex() == "0000a845"
    assert ref.raw_bytes(out["weight_scale"]).hex() == "7e73"
    assert ref.raw_bytes(out["weight_packed"]).hex() == "a5073ec07629f572" + "32d4667f32d4667f"
    assert out["weight_scale"].dtype == torch.float8_e4m3fn


def test_nvfp4_global_scale_is_bf16_reciprocal_times_2688():
    """generate_gparam computes 2688.0 / amax as Tensor.__rtruediv__ = reciprocal() * 2688,
    both in bf16, then casts to f32 (found by reading torch/_tensor.py + ct helpers)."""
    amax = torch.linspace(0.01, 3.0, 4001).to(BF).unique()
    w = torch.zeros(1, 16)
    got, want, naive = [], [], 0
    for a in amax:
        w[0, 0] = a.float()
        g = _one(w, "NVFP4A16")["weight_global_scale"]
        expect = (torch.reciprocal(a) * 2688.0).to(torch.float32)
        got.append(g.item())
        want.append(expect.item())
        naive += int((torch.tensor(2688.0 / a.item()).to(BF).float() != g).item())
    assert got == want
    assert naive > 0, "bf16(2688/amax) never differs from bf16(bf16(1/amax)*2688)?"


def test_nvfp4_zero_tensor_and_tiny_amax_give_global_scale_one():
    for amax in (0.0, 1e-37):
        w = torch.zeros(2, 16)
        w[0, 0] = amax
        out = _one(w, "NVFP4A16")
        assert out["weight_global_scale"].item() == 1.0
        # zero FP8 scales are replaced by 0.125 (ct eps for float8_e4m3fn)
        assert out["weight_scale"].float().tolist() == [[0.125], [0.125]]


def test_fp4_negative_zero_codes():
    """Bytes: (code(4)=6 | 0<<4), (code(-0.1)=0x8 | code(-0.0)=0x0 << 4).
    x/s in (-0.25, 0) -> nibble 0x8 (torch.sign(x) = -1, 0 * -1 = -0.0); an exact -0.0
    weight -> nibble 0x0 (torch.sign(-0.0) = +0)."""
    w = torch.zeros(1, 32)
    w[0, 0] = 4.0          # MX group amax 4 -> scale 1
    w[0, 2] = -0.1
    w[0, 3] = -0.0
    out = _one(w, "MXFP4")
    assert ref.raw_bytes(out["weight_packed"])[:2].hex() == "0608"
    assert out["weight_scale"].item() == 127


def test_mxfp8_worked_example_and_exponents():
    w = torch.zeros(1, 32)
    w[0, :4] = torch.tensor([3.3, -0.7, 1.25, 0.01])
    out = _one(w, "MXFP8")
    assert ref.raw_bytes(out["weight"])[:4].hex() == "7deb723a"
    assert out["weight_scale"].item() == 0x78
    for amax, e in [(1.0, 119), (1.7, 119), (1.75, 120), (448.0, 128)]:
        w = torch.zeros(1, 32)
        w[0, 0] = amax
        assert _one(w, "MXFP8")["weight_scale"].item() == e, amax
    w = torch.zeros(1, 32)                        # all-zero group -> E = 0 (scale 2^-127)
    assert _one(w, "MXFP8")["weight_scale"].item() == 0


def test_mxfp4_exponent_offset_2():
    w = torch.zeros(1, 32)
    w[0, 0] = 6.0                                 # 6 = 1.5*4 -> 4 -> E = 127 + 2 - 2
    assert _one(w, "MXFP4")["weight_scale"].item() == 127


def test_fp8_channel_worked_example():
    out = _one(torch.tensor([[0.80078125, -1.296875, 0.050048828125, 2.59375]]), "FP8")
    assert out["weight_scale"].dtype == BF and out["weight_scale"].shape == (1, 1)
    assert out["weight_scale"].item() == 0.00579833984375
    assert ref.raw_bytes(out["weight"]).hex() == "71f6517e"


def test_int4_packing_order_and_ties():
    w = torch.zeros(1, 128)
    w[0, :8] = torch.tensor([7.5, -2.5, 0.5, 1.5, -0.5, -7.5, 3.0, 2.5])
    out = _one(w, "INT4")
    assert out["weight_scale"].item() == 1.0
    # bf16 division then round-half-even: 7.5->8 clamped 7, -2.5->-2, 0.5->0, 1.5->2,
    # -0.5->-0, -7.5->-8, 3, 2.5->2; u = q+8 = [15,6,8,10,8,0,11,10], element 0 in the
    # low nibble: bytes 6f a8 08 ab
    assert ref.raw_bytes(out["weight_packed"])[:4].hex() == "6fa808ab"
    assert out["weight_shape"].tolist() == [1, 128] and out["weight_shape"].dtype == torch.int64


def test_int8_channel():
    w = torch.zeros(2, 8)
    w[0, :3] = torch.tensor([127.5, -127.5, 0.5])
    out = _one(w, "INT8")
    assert out["weight_scale"].tolist() == [[1.0], [torch.finfo(BF).eps]]
    assert ref.raw_bytes(out["weight_packed"])[:4].hex() == "ff008080"
    assert out["weight_packed"].shape == (2, 2)


def test_fused_siblings_share_global_scale():
    g = torch.Generator().manual_seed(0)
    ws = {f"model.layers.0.self_attn.{n}_proj": (torch.randn(32, 64, generator=g) * s).to(BF)
          for n, s in (("q", 1.0), ("k", 3.0), ("v", 0.5))}
    ws["model.layers.0.self_attn.o_proj"] = torch.randn(32, 64, generator=g).to(BF)
    out = ref.ct_compress(ws, ref.expected_scheme("NVFP4A16"))
    gs = {n: out[n]["weight_global_scale"].item() for n in ws}
    k = "model.layers.0.self_attn.k_proj"
    assert gs[k] == gs[k.replace("k_proj", "q_proj")] == gs[k.replace("k_proj", "v_proj")]
    assert gs[k] != gs["model.layers.0.self_attn.o_proj"]
    amax = ws[k].abs().max()
    assert gs[k] == (torch.reciprocal(amax) * 2688.0).float().item()
