"""Adversarial inputs for kernel-vs-twin parity (shared by the CPU emulation and the GPU tests).

Random values alone rarely expose the mistakes that break bit-exactness, so every input mixes in:
* exact ties (``x.5`` code values: zero residuals on half-integer bilinear bases, packed values that
  are normalised codes, and for the downscale residuals crafted by :func:`tie_sensitive`), which tell
  round-half-even from round-half-away and expose any error in the base, however small;
* fused-multiply-add witnesses (:func:`fma_sensitive`): float32 values for which
  ``round(fl(fl(r * h) + b))`` differs from the single-rounding ``round(fl(r * h + b))``;
* fp16 subnormals (decoded by integer code), float32/bf16 subnormals (what CuPy's -ftz=true build
  flushes to zero), NaN, +-inf and huge values (quantize's clamps).
"""

from __future__ import annotations

import numpy as np
import torch

import kernels


def fma_sensitive(base: np.ndarray, half: float, *, targets: int = 8, reach: int = 6) -> np.ndarray:
    """For each float32 ``base`` value, a float32 ``r`` with ``rint(fl(fl(r * half) + base))`` !=
    ``rint(fl(r * half + base))`` (separate roundings vs a fused multiply-add), or NaN if none is
    found. Candidates are the float32 neighbours of ``(k + 0.5 - base) / half`` for small ``k``:
    the sum lands on a tie while the product is much larger, so the product's rounding error
    decides the tie only when there is no intermediate rounding."""
    base = np.asarray(base, np.float32).reshape(-1)
    k = np.arange(targets, dtype=np.float64) + 0.5
    r0 = ((k[None, :] - base[:, None].astype(np.float64)) / half).astype(np.float32)
    steps = np.arange(-reach, reach + 1, dtype=np.int32)
    r = (r0[:, :, None].view(np.int32) + steps).view(np.float32).reshape(len(base), -1)
    exact = r.astype(np.float64) * half  # exact: 24-bit x 10-bit significands
    b = base[:, None]
    two = np.rint((exact.astype(np.float32) + b).astype(np.float32))
    fused = np.rint((exact + b.astype(np.float64)).astype(np.float32))  # the f64 sum is exact here
    hit = two != fused
    first = np.where(hit.any(1), hit.argmax(1), -1)
    out = np.full(len(base), np.nan, np.float32)
    ok = first >= 0
    out[ok] = r[np.nonzero(ok)[0], first[ok]]
    return out


def bilinear_at(plane: np.ndarray, s: int, b: np.ndarray, oy: np.ndarray, ox: np.ndarray) -> np.ndarray:
    """float32 :func:`kernels.bilinear_upscale` of ``plane`` (N, h, w) at output samples (b, oy, ox)."""
    _, h, w = plane.shape

    def taps(o, size):
        t = 2 * o + 1 - s
        i = t // (2 * s)
        f = t - 2 * s * i
        return np.clip(i, 0, size - 1), np.clip(i + 1, 0, size - 1), 2 * s - f, f

    ra, rb, wa, wb = taps(oy, h)
    ca, cb, va, vb = taps(ox, w)
    p = plane.astype(np.int64)
    total = wa * va * p[b, ra, ca] + wa * vb * p[b, ra, cb] + wb * va * p[b, rb, ca] + wb * vb * p[b, rb, cb]
    return (total.astype(np.float32) / np.float32(4 * s * s)).astype(np.float32)


def _specials(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Sprinkle zeros, tiny values (fp16 and float32 subnormals), huge values, NaN and +-inf into
    ``x`` (float32)."""
    pick = torch.rand(x.shape, generator=g)
    tiny = torch.randn(x.shape, generator=g) * 3e-6  # fp16 subnormal range (< 6.1e-5)
    for lo, hi, value in ((0.0, 0.25, 0.0), (0.25, 0.32, tiny), (0.32, 0.33, 1e5), (0.33, 0.34, -1e5),
                          (0.34, 0.35, 1e-40), (0.35, 0.36, -3e-39)):  # the last two: float32/bf16 subnormals
        x = torch.where((pick >= lo) & (pick < hi), value, x)
    flat = x.reshape(-1)
    for i, value in enumerate((float("nan"), float("inf"), -float("inf"))):
        if flat.numel() > i:
            flat[(i * 7919) % flat.numel()] = value
    return flat.view(x.shape)


def residual(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int, scale: int, dtype: torch.dtype,
             seed: int = 0, witnesses: int = 256) -> tuple[torch.Tensor, int]:
    """An upsampler residual ``(N, 6 s^2, Hc, Wc)`` of ``dtype`` for planes ``y, u, v`` (CPU), with
    the adversarial values above. Returns it and the number of FMA witnesses placed (float32 only;
    narrower residuals make ``r * (m/2)`` exact, so a fused multiply-add cannot change anything)."""
    s = scale
    n, h, w = y.shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6 * s * s, u.shape[1], u.shape[2], generator=g) * 0.3
    x = _specials(x, g)
    placed = 0
    if dtype == torch.float32:
        count = max(1, min(witnesses, s * s * h * w // 8))
        b_idx = torch.randint(0, n, (count,), generator=g).numpy()
        oy = torch.randint(0, s * h, (count,), generator=g).numpy()
        ox = torch.randint(0, s * w, (count,), generator=g).numpy()
        r = fma_sensitive(bilinear_at(y.numpy(), s, b_idx, oy, ox), kernels.max_code(bits) / 2)
        ok = ~np.isnan(r)
        blk = 2 * s
        chan = (oy % blk) * blk + ox % blk
        x[b_idx[ok], chan[ok], oy[ok] // blk, ox[ok] // blk] = torch.from_numpy(r[ok])
        placed = int(ok.sum())
    return x.to(dtype), placed


def packed(n: int, block: int, rows: int, cols: int, *, bits: int, dtype: torch.dtype, seed: int = 0
           ) -> tuple[torch.Tensor, int]:
    """A packed tensor ``(N, C, rows, cols)`` for unpack: normalised codes (their denormalised
    values are often exact ties), random values slightly beyond [-1, 1], the specials above and,
    for float32, FMA witnesses for ``x * (m/2) + (m/2)``. Returns it and the witness count."""
    m = kernels.max_code(bits)
    g = torch.Generator().manual_seed(seed)
    c = kernels.packed_channels(block)
    codes = torch.randint(0, m + 1, (n, c, rows, cols), generator=g)
    x = kernels.normalise(codes, bits)
    noisy = torch.rand(x.shape, generator=g) < 0.5
    x[noisy] = (torch.rand(int(noisy.sum()), generator=g) * 2.2 - 1.1)
    x = _specials(x, g)
    placed = 0
    if dtype == torch.float32:
        flat = x.view(-1)
        take = torch.randperm(flat.numel(), generator=g)[:max(1, min(256, flat.numel() // 8))]
        r = fma_sensitive(np.full(len(take), m / 2, np.float32), m / 2)
        ok = ~np.isnan(r)
        flat[take[torch.from_numpy(ok)]] = torch.from_numpy(r[ok])
        placed = int(ok.sum())
    return x.to(dtype), placed


DOWN2_TAPS = np.array([-3, -9, 29, 111, 111, 29, -9, -3], np.int64)  # kernels.reference.DOWN2_TAPS


def bicubic_down2_at(plane: np.ndarray, b: np.ndarray, oy: np.ndarray, ox: np.ndarray) -> np.ndarray:
    """float32 :func:`kernels.bicubic_downscale2` of ``plane`` (N, h, w) at output samples (b, oy, ox),
    straight from its docstring: the 8x8 clamped window summed in int64 (it fits int32 for the
    8..14-bit planes the op takes), converted to float32 (round to nearest) and divided by 65536."""
    _, h, w = plane.shape
    rows = np.clip(2 * oy[:, None] - 3 + np.arange(8), 0, h - 1)
    cols = np.clip(2 * ox[:, None] - 3 + np.arange(8), 0, w - 1)
    window = plane.astype(np.int64)[b[:, None, None], rows[:, :, None], cols[:, None, :]]
    total = (window * DOWN2_TAPS[None, :, None] * DOWN2_TAPS[None, None, :]).sum((1, 2))
    return total.astype(np.int32).astype(np.float32) / np.float32(65536)


def tie_sensitive(base: np.ndarray, half: float, dtype: torch.dtype) -> np.ndarray:
    """For each float32 ``base`` (a multiple of 2**-16, as every bicubic base is), a residual ``r``
    exactly representable in ``dtype`` with ``fl(base + fl(r * half))`` an exact tie ``k + 0.5`` inside
    ``[0, m]``, or NaN where there is none. ``r = j / 2**15`` with ``j * m = (0.5 - base) * 2**16``
    modulo ``2**16`` (``m = 2 half`` is odd, hence invertible modulo ``2**16``), so ``r * half`` is an
    exact float32 ``j m / 2**16`` whose fraction completes ``base``'s to one half. A base wrong by
    any amount, or round-half-away, then changes the output."""
    base = np.asarray(base, np.float32).reshape(-1)
    m = int(round(2 * half))
    units = np.rint((0.5 - base.astype(np.float64)) * 65536).astype(np.int64) % 65536
    j = units * pow(m, -1, 65536) % 65536
    j = np.where(j >= 32768, j - 65536, j)
    r = torch.from_numpy(j / 32768.0).to(dtype)
    exact = r.double().numpy() == j / 32768.0
    a = r.float().numpy() * np.float32(half)  # float32 product, as the kernels and the twin compute it
    t = (base + a).astype(np.float32)
    ok = exact & (t - np.floor(t) == 0.5) & (t > 0) & (t < m)
    return np.where(ok, r.float().numpy(), np.float32(np.nan)).astype(np.float32)


def downscale_residual(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int, dtype: torch.dtype,
                       seed: int = 0, witnesses: int = 256) -> tuple[torch.Tensor, int, int]:
    """A downsampler residual ``(N, 6, ceil(H/4), ceil(W/4))`` of ``dtype`` for full-resolution planes
    ``y, u, v`` (CPU) with the special values above, and on distinct random output samples of all three
    planes exact ties (:func:`tie_sensitive`, every dtype) and, for float32, FMA witnesses
    (:func:`fma_sensitive`). Returns it, the number of FMA witnesses and the number of ties placed."""
    n, h, w = y.shape
    rows, cols = -(-h // 4), -(-w // 4)
    half = kernels.max_code(bits) / 2
    g = torch.Generator().manual_seed(seed)
    x = _specials(torch.randn(n, 6, rows, cols, generator=g) * 0.3, g)
    (lh, lw), _ = kernels.downscale_shapes(h, w)
    placed = {"fma": 0, "tie": 0}
    for plane, (ph, pw), cell, c0 in ((y, (lh, lw), 2, 0), (u, (rows, cols), 1, 4), (v, (rows, cols), 1, 5)):
        count = min(witnesses, n * ph * pw)
        pick = torch.randperm(n * ph * pw, generator=g)[:count].numpy()
        b, oy, ox = pick // (ph * pw), pick // pw % ph, pick % pw
        base = bicubic_down2_at(plane.numpy(), b, oy, ox)
        kinds = [("tie", slice(None))] if dtype != torch.float32 else [("fma", slice(0, None, 2)),
                                                                          ("tie", slice(1, None, 2))]
        for kind, part in kinds:
            r = (fma_sensitive(base[part], half) if kind == "fma" else tie_sensitive(base[part], half, dtype))
            ok = ~np.isnan(r)
            by, bx = oy[part][ok], ox[part][ok]
            x[b[part][ok], c0 + (by % cell) * cell + bx % cell, by // cell, bx // cell] = torch.from_numpy(r[ok])
            placed[kind] += int(ok.sum())
    return x.to(dtype), placed["fma"], placed["tie"]
