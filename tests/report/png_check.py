#!/usr/bin/env python3
"""Checks a screenshot PNG with the standard library only (zlib, struct).

  png_check.py SHOT.png WIDTH HEIGHT [#rrggbb ...]

Decodes the PNG (8-bit RGB/RGBA, not interlaced: what Chromium writes), then requires the
given size, a page that is not blank (more than 3% non-white pixels, more than 40 distinct
colours) and, for every colour given, at least 40 pixels of exactly that colour (the format
map's cells are flat fills). Prints one line of numbers; exit 1 with the reason on failure.
"""
import struct
import sys
import zlib


def decode(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {ctype}, interlace {interlace}")
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def main():
    path, want_w, want_h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    want = [bytes.fromhex(c.lstrip("#")) for c in sys.argv[4:]]
    w, h, bpp, rows = decode(path)
    counts = {}
    for line in rows:
        for x in range(0, len(line), bpp):
            px = line[x:x + 3]
            counts[px] = counts.get(px, 0) + 1
    white = counts.get(b"\xff\xff\xff", 0)
    nonwhite = 1 - white / (w * h)
    print(f"{w}x{h}, {len(counts)} colours, {100 * nonwhite:.1f}% non-white")
    errors = []
    if (w, h) != (want_w, want_h):
        errors.append(f"size {w}x{h}, expected {want_w}x{want_h}")
    if nonwhite < 0.03 or len(counts) <= 40:
        errors.append("the page looks blank")
    for c in want:
        if counts.get(c, 0) < 40:
            errors.append(f"colour #{c.hex()} has {counts.get(c, 0)} pixels (expected a map cell)")
    for e in errors:
        print("png_check:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
