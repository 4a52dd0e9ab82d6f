"""Per-sample oracles written straight from the docstrings in kernels/reference.py (slow loops)."""

from __future__ import annotations

import numpy as np


def pack(y, u, v, bits, block):
    m = (1 << bits) - 1
    n, h, w = y.shape
    hc, wc = u.shape[1:]
    cb = block // 2
    rows, cols = -(-h // block), -(-w // block)
    out = np.zeros((n, block * block + 2 * cb * cb, rows, cols), np.float32)
    for b in range(n):
        for i in range(rows):
            for j in range(cols):
                for c in range(block * block):
                    code = int(y[b, min(block * i + c // block, h - 1), min(block * j + c % block, w - 1)])
                    out[b, c, i, j] = np.float32(2 * code - m) / np.float32(m)
                for k in range(cb * cb):
                    r, q = min(cb * i + k // cb, hc - 1), min(cb * j + k % cb, wc - 1)
                    out[b, block * block + k, i, j] = np.float32(2 * int(u[b, r, q]) - m) / np.float32(m)
                    out[b, block * block + cb * cb + k, i, j] = np.float32(2 * int(v[b, r, q]) - m) / np.float32(m)
    return out


def bilinear(plane, s, out_h, out_w):
    n, h, w = plane.shape

    def taps(o, size):
        t = 2 * o + 1 - s
        i = t // (2 * s)
        f = t - 2 * s * i
        return min(max(i, 0), size - 1), min(max(i + 1, 0), size - 1), 2 * s - f, f

    out = np.zeros((n, out_h, out_w), np.float32)
    for b in range(n):
        for oy in range(out_h):
            ra, rb, wa, wb = taps(oy, h)
            for ox in range(out_w):
                ca, cb, va, vb = taps(ox, w)
                total = (wa * va * int(plane[b, ra, ca]) + wa * vb * int(plane[b, ra, cb])
                         + wb * va * int(plane[b, rb, ca]) + wb * vb * int(plane[b, rb, cb]))
                out[b, oy, ox] = np.float32(total) / np.float32(4 * s * s)
    return out


def unpack_upscale(residual, y, u, v, bits, s):
    m = (1 << bits) - 1
    half = np.float32(m / 2)
    n, h, w = y.shape
    oh, ow = s * h, s * w
    ch, cw = (oh + 1) // 2, (ow + 1) // 2
    res = residual.astype(np.float32)
    outs = []
    for p, (ph, pw), blk, c0 in ((y, (oh, ow), 2 * s, 0), (u, (ch, cw), s, 4 * s * s), (v, (ch, cw), s, 5 * s * s)):
        base = bilinear(p, s, ph, pw)
        out = np.zeros((n, ph, pw), np.int64)
        for b in range(n):
            for oy in range(ph):
                for ox in range(pw):
                    r = res[b, c0 + (oy % blk) * blk + ox % blk, oy // blk, ox // blk]
                    x = np.float32(base[b, oy, ox] + np.float32(r * half))
                    x = 0.0 if np.isnan(x) else x
                    out[b, oy, ox] = min(max(np.rint(x), 0), m)
        outs.append(out)
    return outs
