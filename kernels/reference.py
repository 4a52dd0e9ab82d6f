"""Torch reference twins of the packed-layout kernels.

These functions *are* the specification: the CUDA kernels in this folder must produce bit-identical
results, and the docstrings say exactly how every value is computed (operation order included,
because float rounding depends on it). They run on any device, batch over frames, and
:func:`upscale_planes_float` is differentiable in the residual for training.

Packed layout (DESIGN.md, "Tensor contracts")::

    planes  Y (N, H, W), U/V (N, ceil(H/2), ceil(W/2))      integer codes 0 .. m = 2**bits - 1
      |  pack(block=b): space-to-depth, luma b x b, chroma b/2 x b/2, edge replication
      v
    packed  (N, b^2 + 2 (b/2)^2, ceil(H/b), ceil(W/b))       (2 code - m) / m  in [-1, 1]
      |  network (upsampler: b = 2, 6 channels in, 6 s^2 out)
      v
    residual (N, 4 s^2 + 2 s^2, ceil(H/2), ceil(W/2))        normalised units
      |  unpack_upscale: depth-to-space + bilinear base + denormalise + round + clamp + crop
      v
    planes  Y (N, sH, sW), U/V (N, ceil(sH/2), ceil(sW/2))   integer codes
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def max_code(bits: int) -> int:
    if not 8 <= bits <= 16:
        raise ValueError(f"bit depth must be 8..16, got {bits}")
    return (1 << bits) - 1


def plane_dtype(bits: int) -> torch.dtype:
    """Integer dtype of a ``bits``-deep plane: uint8 for 8 bits, uint16 above."""
    return torch.uint8 if max_code(bits) == 255 else torch.uint16


def packed_channels(block: int) -> int:
    """Channels of a packed tensor with luma block ``block`` (chroma block ``block // 2``)."""
    return block * block + 2 * (block // 2) ** 2


def _check_planes(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, allow_float: bool = False) -> None:
    if y.dim() != 3:
        raise ValueError(f"planes must be batched (N, H, W); got Y of shape {tuple(y.shape)}")
    n, h, w = y.shape
    want = (n, (h + 1) // 2, (w + 1) // 2)
    if tuple(u.shape) != want or tuple(v.shape) != want:
        raise ValueError(f"4:2:0 chroma must be {want} for Y {tuple(y.shape)}; got U {tuple(u.shape)}, V {tuple(v.shape)}")
    for p in (y, u, v):
        if (p.dtype.is_floating_point and not (allow_float and p.dtype == torch.float32)) or p.dtype == torch.bool:
            raise ValueError(f"planes must hold integer codes, got {p.dtype}")


def _edge_indices(n_out: int, n_in: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n_out, device=device).clamp_(max=n_in - 1)


def _space_to_depth(plane: torch.Tensor, block: int, rows: int, cols: int) -> torch.Tensor:
    """(N, h, w) -> (N, block^2, rows, cols), reading out-of-range samples from the nearest edge."""
    padded = plane
    if rows * block != plane.shape[1]:
        padded = padded.index_select(1, _edge_indices(rows * block, plane.shape[1], plane.device))
    if cols * block != plane.shape[2]:
        padded = padded.index_select(2, _edge_indices(cols * block, plane.shape[2], plane.device))
    return F.pixel_unshuffle(padded.unsqueeze(1), block) if block > 1 else padded.unsqueeze(1)


def _true_div(x: torch.Tensor, d: float) -> torch.Tensor:
    """``x / d`` as one correctly rounded IEEE division on every device.

    On CUDA, torch divides by a Python number as a multiplication by its rounded reciprocal, which
    is not the specified division; a 0-dim tensor operand takes the true-division path there (and
    gives the same result as before on the CPU)."""
    return x / torch.full((), d, dtype=torch.float32, device=x.device)


def normalise(codes: torch.Tensor, bits: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Integer codes to ``float32((2 * code - m) / m)``, then cast to ``dtype`` (nearest even).

    ``2 * code - m`` is an exact integer in float32 and the division is a single IEEE division,
    so the value is correctly rounded and identical on every device.
    """
    m = max_code(bits)
    x = codes.to(torch.float32) * 2.0 - m  # exact: small integers
    return _true_div(x, float(m)).to(dtype)


def pack(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int, block: int = 2,
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pack 4:2:0 planes into the network's normalised space-to-depth layout.

    Args:
        y: ``(N, H, W)`` integer codes (uint8, uint16, int16 or int32), ``0 .. m``, ``m = 2**bits - 1``.
        u, v: ``(N, ceil(H/2), ceil(W/2))``, same dtype family.
        bits: bit depth of the codes (8 or 10 in practice).
        block: luma block edge ``b`` (even); chroma blocks are ``b/2``. 2 for the upsampler's
            low-resolution input, ``2 * scale`` for the downsampler's high-resolution input.
        dtype: float32, float16 or bfloat16.

    Returns:
        ``(N, b^2 + 2 (b/2)^2, Hp, Wp)`` with ``Hp = ceil(H/b)``, ``Wp = ceil(W/b)``. For cell
        ``(i, j)``:

        * channel ``c < b^2`` holds luma at row ``min(b*i + c // b, H - 1)``, column
          ``min(b*j + c % b, W - 1)`` (edge replication of odd or non-multiple sizes);
        * channel ``b^2 + k`` (``k < (b/2)^2``) holds U at row ``min((b/2)*i + k // (b/2), Hc - 1)``,
          column ``min((b/2)*j + k % (b/2), Wc - 1)``; channel ``b^2 + (b/2)^2 + k`` holds V alike;
        * every value is :func:`normalise` of its code.
    """
    _check_planes(y, u, v)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype}")
    stored = {p.dtype for p in (y, u, v)}
    if stored <= {torch.uint8, torch.uint16}:
        # Each code looked up in the normalised values of every code the storage can hold (the
        # same values, out-of-range codes included): a gather per plane instead of five
        # arithmetic passes.
        table = _normalised_codes(256 if stored == {torch.uint8} else 65536, bits, dtype, y.device)
        values = [table.index_select(0, p.reshape(-1).to(torch.int32)).view(p.shape) for p in (y, u, v)]
    else:
        values = [normalise(p.to(torch.int32), bits, dtype) for p in (y, u, v)]
    return _pack(values, block)


@functools.lru_cache(maxsize=32)
def _normalised_codes(count: int, bits: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`normalise` of the codes ``0 .. count - 1`` (a lookup table; read, never written)."""
    return normalise(torch.arange(count, dtype=torch.int32, device=device), bits, dtype)


def _pack(values: list[torch.Tensor], block: int) -> torch.Tensor:
    """Normalised Y, U, V planes -> the packed layout of :func:`pack` (differentiable)."""
    if block < 2 or block % 2:
        raise ValueError(f"block must be an even number >= 2, got {block}")
    y = values[0]
    rows, cols = -(-y.shape[1] // block), -(-y.shape[2] // block)
    cb = block // 2
    return torch.cat([_space_to_depth(p, b, rows, cols) for p, b in zip(values, (block, cb, cb))], dim=1)


def pack_float(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, bits: int, block: int = 2) -> torch.Tensor:
    """:func:`pack` of float32 planes holding code values, differentiable (for training).

    On integer-valued input it equals ``pack(..., dtype=torch.float32)`` exactly; gradients flow
    to the planes (each packed sample is ``(2 x - m) / m`` of one plane sample).
    """
    n, h, w = y.shape
    want = (n, (h + 1) // 2, (w + 1) // 2)
    if tuple(u.shape) != want or tuple(v.shape) != want:
        raise ValueError(f"4:2:0 chroma must be {want} for Y {tuple(y.shape)}; got U {tuple(u.shape)}, V {tuple(v.shape)}")
    if not all(p.dtype == torch.float32 for p in (y, u, v)):
        raise ValueError("pack_float takes float32 planes")
    return _pack([normalise(p, bits) for p in (y, u, v)], block)


def denormalise(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Normalised values back to float32 code values: ``float32(x) * (m/2) + (m/2)``, two IEEE
    operations (the inverse of :func:`normalise` before rounding)."""
    half = max_code(bits) / 2.0
    return (x.to(torch.float32) * half).add_(half)


def unpack(packed: torch.Tensor, *, bits: int, block: int, height: int, width: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inverse of :func:`pack`: packed tensor -> ``(N, height, width)`` planes.

    Each value is :func:`denormalise`-d and :func:`quantize`-d, then moved back by depth-to-space
    (channel layout as in :func:`pack`) and cropped to ``height x width`` (chroma
    ``ceil(height/2) x ceil(width/2)``). ``unpack(pack(p)) == p`` exactly for float32 and float16
    (whose spacing near 1 is finer than 2/1023); bfloat16 keeps 8-bit codes but not 10-bit ones.
    """
    cb = block // 2
    n, c, rows, cols = packed.shape
    if c != packed_channels(block):
        raise ValueError(f"a block-{block} packed tensor has {packed_channels(block)} channels, got {c}")
    if height > block * rows or width > block * cols:
        raise ValueError(f"packed grid {rows}x{cols} is too small for {width}x{height} at block {block}")
    ch, cw = (height + 1) // 2, (width + 1) // 2
    x = denormalise(packed, bits)
    y = F.pixel_shuffle(x[:, : block * block], block)[:, 0, :height, :width]
    u = F.pixel_shuffle(x[:, block * block: block * block + cb * cb], cb)[:, 0, :ch, :cw]
    v = F.pixel_shuffle(x[:, block * block + cb * cb:], cb)[:, 0, :ch, :cw]
    return quantize(y, bits), quantize(u, bits), quantize(v, bits)


def bilinear_upscale(plane: torch.Tensor, scale: int, out_h: int, out_w: int) -> torch.Tensor:
    """Exact bilinear ``scale``-x upscale of integer codes (half-pixel centres, edges clamped).

    Output sample ``(Y, X)`` of an ``(h, w)`` source: with ``t = 2Y + 1 - s``,
    ``i = floor(t / 2s)``, ``f = t - 2s i`` (so ``0 <= f < 2s``), rows ``a = clamp(i, 0, h-1)``,
    ``b = clamp(i + 1, 0, h-1)`` and row weights ``(2s - f, f)``; columns likewise. The value is
    ``float32(sum of weight_row * weight_col * code) / float32(4 s^2)``: an exact integer sum
    followed by one IEEE division (exact for power-of-two ``s``). This is the same sampling as
    ``F.interpolate(mode="bilinear", align_corners=False)`` without its float error.

    Args:
        plane: ``(N, h, w)`` integer codes (float32 holding codes also works, differentiably:
            training feeds the rounded base layer through here).
        scale: integer factor ``s >= 1``.
        out_h, out_w: output size, at most ``s*h x s*w`` (larger outputs are cropped sizes).

    Returns:
        ``(N, out_h, out_w)`` float32 code values.
    """
    if plane.shape[1] * scale < out_h or plane.shape[2] * scale < out_w:
        raise ValueError(f"{out_w}x{out_h} is larger than x{scale} of a {plane.shape[2]}x{plane.shape[1]} plane")
    # Every weight, code and partial sum is an integer below 2**24, so float32 arithmetic is
    # exact and this separable, phase-sliced evaluation equals the formula above.
    x = plane.to(torch.float32)
    if not x.requires_grad and scale & (scale - 1) == 0 and not torch.jit.is_tracing():
        # Without autograd and for a power-of-two scale: the same sums with the weights divided by
        # 2s on each axis (still exact: every value is a multiple of 1 / 4s^2 below 2**16), written
        # phase by phase into the output, so neither the edge padding, the stacking nor the final
        # division is a pass of its own. (Not while tracing an ONNX graph: writes into slices of
        # an empty tensor do not export.)
        x = _upscale_1d_into(x, scale, dim=2, weight=1.0 / (2 * scale))[:, :, :out_w]
        return _upscale_1d_into(x, scale, dim=1, weight=1.0 / (2 * scale))[:, :out_h]
    x = _upscale_1d(x, scale, dim=2)[:, :, :out_w]
    x = _upscale_1d(x, scale, dim=1)[:, :out_h]
    return _true_div(x, float(4 * scale * scale))


def _phase_taps(p: int, s: int) -> tuple[int, int]:
    """Output phase ``p`` of a 1-D bilinear x``s``: ``o = 2p + 1 - s``, source offset
    ``d = floor(o / 2s)`` and far-tap weight ``f = o - 2s d`` (near tap ``2s - f``)."""
    o = 2 * p + 1 - s
    d = o // (2 * s)
    return d, o - 2 * s * d


def _upscale_1d(x: torch.Tensor, s: int, dim: int) -> torch.Tensor:
    """Unnormalised 1-D bilinear x``s`` along ``dim``: output ``s*j + p`` is
    ``(2s - f) * x[j + d] + f * x[j + d + 1]`` with ``o = 2p + 1 - s``, ``d = floor(o / 2s)``,
    ``f = o - 2s d``, indices clamped (here by replicating one edge sample on each side)."""
    n = x.shape[dim]
    xp = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, n - 1, 1)], dim)
    phases = []
    for p in range(s):
        d, f = _phase_taps(p, s)
        a = xp.narrow(dim, 1 + d, n) * float(2 * s - f)
        phases.append(a.add_(xp.narrow(dim, 2 + d, n), alpha=float(f)) if f else a)
    shape = list(x.shape)
    shape[dim] = n * s
    return torch.stack(phases, dim + 1).reshape(shape)


def _upscale_1d_into(x: torch.Tensor, s: int, dim: int, weight: float) -> torch.Tensor:
    """:func:`_upscale_1d` times ``weight`` (exact for the callers' power-of-two weights), without
    autograd: each phase written straight into its slots of the output."""
    n = x.shape[dim]
    shape = list(x.shape)
    shape.insert(dim + 1, s)
    out = torch.empty(shape, dtype=torch.float32, device=x.device)
    for p in range(s):
        d, f = _phase_taps(p, s)
        dst = out.select(dim + 1, p)
        # dst[j] = (2s - f) w x[j + d] + f w x[j + d + 1], indices clamped to 0 .. n - 1 (d is -1 or 0)
        near, far = (2 * s - f) * weight, f * weight
        if d == -1:  # x[j - 1] and x[j]
            torch.mul(x, far, out=dst)
            if n > 1:
                dst.narrow(dim, 1, n - 1).add_(x.narrow(dim, 0, n - 1), alpha=near)
            dst.narrow(dim, 0, 1).add_(x.narrow(dim, 0, 1), alpha=near)
        else:  # x[j] and x[j + 1]
            torch.mul(x, near, out=dst)
            if f:
                if n > 1:
                    dst.narrow(dim, 0, n - 1).add_(x.narrow(dim, 1, n - 1), alpha=far)
                dst.narrow(dim, n - 1, 1).add_(x.narrow(dim, n - 1, 1), alpha=far)
    shape = list(x.shape)
    shape[dim] = n * s
    return out.view(shape)


def _depth_to_space_scaled(x: torch.Tensor, block: int, factor: float) -> torch.Tensor:
    """``factor * float32(x)`` rearranged ``(N, block^2, h, w) -> (N, block*h, block*w)``
    (channel ``dy * block + dx`` of cell ``(i, j)`` lands on ``(block*i + dy, block*j + dx)``)."""
    x = x.to(torch.float32)
    if x.requires_grad:
        return F.pixel_shuffle(x * factor, block)[:, 0]
    # Without autograd, multiply and rearrange in one pass by writing into the output layout.
    n, _, h, w = x.shape
    out = torch.empty((n, h, block, w, block), dtype=torch.float32, device=x.device)
    torch.mul(x.permute(0, 2, 3, 1).unflatten(3, (block, block)).permute(0, 1, 3, 2, 4), factor, out=out)
    return out.view(n, block * h, block * w)


def residual_to_planes(residual: torch.Tensor, scale: int, out_h: int, out_w: int, *, factor: float = 1.0
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Depth-to-space of an upsampler residual, times ``factor``, cropped to the output size.

    ``residual`` is ``(N, 6 s^2, Hc, Wc)``: channels ``0 .. 4s^2 - 1`` are the ``2s x 2s`` luma
    block of each cell (channel ``dy * 2s + dx``), then ``s^2`` U and ``s^2`` V channels
    (``dy * s + dx``). Returns float32 luma ``(N, out_h, out_w)`` and chroma
    ``(N, ceil(out_h/2), ceil(out_w/2))``, each sample ``float32(r) * factor`` (one rounding).
    """
    s = scale
    n, c, hc, wc = residual.shape
    if c != 6 * s * s:
        raise ValueError(f"an x{s} residual has {6 * s * s} channels, got {c}")
    ch, cw = (out_h + 1) // 2, (out_w + 1) // 2
    if out_h > 2 * s * hc or out_w > 2 * s * wc:
        raise ValueError(f"residual grid {hc}x{wc} is too small for a {out_w}x{out_h} x{s} output")
    luma = _depth_to_space_scaled(residual[:, : 4 * s * s], 2 * s, factor)[:, :out_h, :out_w]
    u = _depth_to_space_scaled(residual[:, 4 * s * s: 5 * s * s], s, factor)[:, :ch, :cw]
    v = _depth_to_space_scaled(residual[:, 5 * s * s:], s, factor)[:, :ch, :cw]
    return luma, u, v


def upscale_planes_float(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                         bits: int, scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unrounded output planes: ``base + float32(residual) * (m / 2)`` (two IEEE operations,
    never a fused multiply-add).

    ``base`` is :func:`bilinear_upscale` of each low-resolution plane. Differentiable in
    ``residual``; training uses this, inference rounds it with :func:`unpack_upscale`.

    The planes may also be float32 holding code values (joint training passes the rounded base
    layer this way so the gradient reaches the downsampler through the base as well).

    Returns float32 Y ``(N, sH, sW)`` and U, V ``(N, ceil(sH/2), ceil(sW/2))`` in code units.
    """
    _check_planes(y, u, v, allow_float=True)
    half = max_code(bits) / 2.0  # exact in float32 (x.5)
    n, h, w = y.shape
    out_h, out_w = scale * h, scale * w
    if residual.shape[0] != n or residual.shape[2:] != u.shape[1:]:
        raise ValueError(f"residual {tuple(residual.shape)} does not match planes with chroma {tuple(u.shape)}")
    ch, cw = (out_h + 1) // 2, (out_w + 1) // 2
    scaled = residual_to_planes(residual, scale, out_h, out_w, factor=half)
    bases = (bilinear_upscale(y, scale, out_h, out_w), bilinear_upscale(u, scale, ch, cw),
             bilinear_upscale(v, scale, ch, cw))
    if residual.requires_grad or any(b.requires_grad for b in bases):
        return tuple(r + b for r, b in zip(scaled, bases))
    return tuple(r.add_(b) for r, b in zip(scaled, bases))


def quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Float code values to integer planes: NaN -> 0, round half to even, clamp to ``0 .. m``."""
    m = max_code(bits)
    x = torch.nan_to_num(x, nan=0.0, posinf=float(m), neginf=0.0)
    return x.round_().clamp_(0, m).to(plane_dtype(bits))


def unpack_upscale(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                   bits: int, scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Network residual + bilinear base -> output planes (the upsampler's unpack).

    Args:
        residual: ``(N, 6 s^2, ceil(H/2), ceil(W/2))`` float32/float16/bfloat16, normalised units
            (a residual of ``r`` adds ``r * m / 2`` code values).
        y, u, v: the low-resolution input planes ``(N, H, W)`` and ``(N, ceil(H/2), ceil(W/2))``.
        bits: bit depth of input and output.
        scale: the upscale factor ``s``.

    Returns:
        Y ``(N, sH, sW)`` and U, V ``(N, ceil(sH/2), ceil(sW/2))``, uint8 for 8 bits, uint16
        otherwise: for each sample ``q(base + float32(r) * (m / 2))`` where ``q`` is
        :func:`quantize` and ``r`` is the residual sample that :func:`residual_to_planes` places
        there.
    """
    return tuple(quantize(p, bits) for p in upscale_planes_float(residual, y, u, v, bits=bits, scale=scale))


# --- the downsampler's direction -------------------------------------------------------------------

# Keys' cubic (a = -0.5, MATLAB's imresize kernel) stretched for a 2x reduction, sampled at the
# eight input rows around each output centre: (-3, -9, 29, 111, 111, 29, -9, -3) / 256.
DOWN2_TAPS = (-3, -9, 29, 111, 111, 29, -9, -3)
DOWN_MAX_BITS = 14  # the int32 sum of the 8x8 window stays exact below 2**14 codes


def check_down_bits(bits: int) -> None:
    if not 8 <= bits <= DOWN_MAX_BITS:
        raise ValueError(f"the 2x reduction takes 8..{DOWN_MAX_BITS}-bit planes (its exact int32 sum), got {bits}-bit")


def bicubic_downscale2(plane: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Exact antialiased bicubic 2x reduction of integer codes (edges clamped).

    Output ``(Y, X)`` is ``float32(S) / 65536`` where ``S`` is the integer sum over
    ``i, j in 0..7`` of ``T[i] * T[j] * code[clamp(2Y - 3 + i), clamp(2X - 3 + j)]`` with ``T`` =
    :data:`DOWN2_TAPS`: an exact int32 sum (``|S| <= 78976 * code < 2**31`` for codes below
    2**14, hence :data:`DOWN_MAX_BITS`), one round-to-nearest conversion to float32, and an exact
    division by a power of two. The output
    sample sits at input position ``2Y + 0.5`` (half-pixel centres), like
    ``F.interpolate(scale_factor=0.5, mode="bicubic", antialias=True)`` away from the edges.

    Args:
        plane: ``(N, h, w)`` integer codes (or float32 holding integers, see below).
        out_h, out_w: output size, at most ``ceil(h/2) x ceil(w/2)``.

    Returns:
        ``(N, out_h, out_w)`` float32 code values.
    """
    n, h, w = plane.shape
    if out_h > (h + 1) // 2 or out_w > (w + 1) // 2:
        raise ValueError(f"{out_w}x{out_h} is larger than half of a {w}x{h} plane (rounded up)")
    dev = plane.device
    # edge-clamped copies, then eight strided multiply-adds per pass (integer, so the order of the
    # additions cannot change the sum; partial sums stay below 304 * 304 * code < 2**31)
    cols = torch.arange(-3, max(w, 2 * out_w + 4), device=dev).clamp_(0, w - 1)
    p = plane.to(torch.int32).index_select(2, cols)
    horizontal = torch.zeros((n, h, out_w), dtype=torch.int32, device=dev)
    for j, tap in enumerate(DOWN2_TAPS):
        horizontal.add_(p[:, :, j:j + 2 * out_w:2], alpha=tap)
    rows = torch.arange(-3, max(h, 2 * out_h + 4), device=dev).clamp_(0, h - 1)
    q = horizontal.index_select(1, rows)
    total = torch.zeros((n, out_h, out_w), dtype=torch.int32, device=dev)
    for i, tap in enumerate(DOWN2_TAPS):
        total.add_(q[:, i:i + 2 * out_h:2], alpha=tap)
    return _true_div(total.to(torch.float32), 65536.0)


def downscale_shapes(height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Base-layer luma and chroma shapes of a 2x reduction of a ``height x width`` frame."""
    lh, lw = (height + 1) // 2, (width + 1) // 2
    return (lh, lw), ((lh + 1) // 2, (lw + 1) // 2)


def downscale_planes_float(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                           bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unrounded base-layer planes: ``base + float32(residual) * (m / 2)`` (two IEEE operations).

    The mirror of :func:`upscale_planes_float`. ``residual`` is ``(N, 6, ceil(H/4), ceil(W/4))`` in
    the block-2 packed layout of the low-resolution frame (channel ``dy * 2 + dx`` -> luma
    ``(2i + dy, 2j + dx)``, channel 4 -> U ``(i, j)``, channel 5 -> V); ``base`` is
    :func:`bicubic_downscale2` of each high-resolution plane. Differentiable in ``residual``.

    Returns float32 Y ``(N, ceil(H/2), ceil(W/2))`` and U, V of the matching 4:2:0 chroma size.
    Planes deeper than :data:`DOWN_MAX_BITS` are refused.
    """
    _check_planes(y, u, v)
    check_down_bits(bits)
    half = max_code(bits) / 2.0
    n, h, w = y.shape
    (lh, lw), (ch, cw) = downscale_shapes(h, w)
    if residual.shape[:2] != (n, 6) or tuple(residual.shape[2:]) != (-(-h // 4), -(-w // 4)):
        raise ValueError(f"a downscale residual for {w}x{h} is ({n}, 6, {-(-h // 4)}, {-(-w // 4)}), "
                         f"got {tuple(residual.shape)}")
    luma = _depth_to_space_scaled(residual[:, :4], 2, half)[:, :lh, :lw]
    cu = _depth_to_space_scaled(residual[:, 4:5], 1, half)[:, :ch, :cw]
    cv = _depth_to_space_scaled(residual[:, 5:6], 1, half)[:, :ch, :cw]
    bases = (bicubic_downscale2(y, lh, lw), bicubic_downscale2(u, ch, cw), bicubic_downscale2(v, ch, cw))
    if residual.requires_grad:
        return tuple(r + b for r, b in zip((luma, cu, cv), bases))
    return tuple(r.add_(b) for r, b in zip((luma, cu, cv), bases))


def unpack_downscale(residual: torch.Tensor, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                     bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Downsampler residual + bicubic base -> base-layer planes (the downsampler's unpack).

    Args:
        residual: ``(N, 6, ceil(H/4), ceil(W/4))`` float32/float16/bfloat16, normalised units.
        y, u, v: the full-resolution planes ``(N, H, W)`` and ``(N, ceil(H/2), ceil(W/2))``.
        bits: bit depth of input and output.

    Returns:
        Y ``(N, ceil(H/2), ceil(W/2))`` and U, V of the matching 4:2:0 chroma size, uint8 or
        uint16: :func:`quantize` of :func:`downscale_planes_float`.
    """
    return tuple(quantize(p, bits) for p in downscale_planes_float(residual, y, u, v, bits=bits))


# ---- conventional resize (the layers that are not a 2x reduction) --------------------------------

RESIZE_KERNELS = ("bicubic", "lanczos")
RESIZE_WEIGHT_BITS = 14    # each axis's taps are integers summing to 2**14
RESIZE_SHIFT = 2 * RESIZE_WEIGHT_BITS


def _resize_filter(kernel: str):
    """(support radius, function) of Keys' cubic (a = -0.5) or Lanczos-3, as PIL defines them."""
    if kernel == "bicubic":
        def cubic(x: float) -> float:
            x = abs(x)
            if x < 1:
                return (1.5 * x - 2.5) * x * x + 1
            return ((-0.5 * x + 2.5) * x - 4) * x + 2 if x < 2 else 0.0
        return 2.0, cubic
    if kernel == "lanczos":
        def sinc(x: float) -> float:
            return 1.0 if x == 0 else math.sin(math.pi * x) / (math.pi * x)
        return 3.0, lambda x: sinc(x) * sinc(x / 3) if -3 < x < 3 else 0.0
    raise ValueError(f"unknown resize kernel {kernel!r}; choose {', '.join(RESIZE_KERNELS)}")


@functools.lru_cache(maxsize=64)
def resize_taps(src: int, dst: int, kernel: str) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """``(indices, weights)`` of a resize of one axis from ``src`` to ``dst`` samples: for output
    sample i, ``sum_k weights[i][k] * x[indices[i][k]] / 2**14``. Pixel centres are aligned
    (``(i + 0.5) src / dst - 0.5``); when reducing, the kernel is stretched by ``src / dst``
    (antialiased); taps falling outside the axis are dropped and the rest renormalised, as PIL's
    resampling does. The float weights are rounded to integers summing to exactly 2**14 (the largest
    tap takes the rounding residue); every row has the same number of taps, the unused ones weight 0."""
    if src < 1 or dst < 1:
        raise ValueError(f"resize sizes must be >= 1, got {src} -> {dst}")
    radius, fn = _resize_filter(kernel)
    scale = src / dst
    stretch = max(scale, 1.0)
    support = radius * stretch
    rows = []
    for i in range(dst):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), src)
        w = [fn((j - centre + 0.5) / stretch) for j in range(lo, hi)]
        total = sum(w)
        ints = [round(v / total * (1 << RESIZE_WEIGHT_BITS)) for v in w]
        big = max(range(len(ints)), key=lambda k: abs(w[k]))
        ints[big] += (1 << RESIZE_WEIGHT_BITS) - sum(ints)
        rows.append((list(range(lo, hi)), ints))
    taps = max(len(ix) for ix, _ in rows)
    indices = tuple(tuple(ix + [ix[-1]] * (taps - len(ix))) for ix, _ in rows)
    weights = tuple(tuple(w + [0] * (taps - len(w))) for _, w in rows)
    return indices, weights


@functools.lru_cache(maxsize=64)
def resize_tables(src: int, dst: int, kernel: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`resize_taps` as int64 index and int64 weight tensors ``(dst, taps)`` on ``device``, made once
    per size, kernel and device (rebuilt on every call they slowed the CPU resize: docs/benchmarks.md,
    Speed (CPU)); shared, so read-only."""
    indices, weights = resize_taps(src, dst, kernel)
    return (torch.tensor(indices, dtype=torch.int64, device=device),
            torch.tensor(weights, dtype=torch.int64, device=device))


def resize_plane(plane: torch.Tensor, height: int, width: int, *, kernel: str, bits: int) -> torch.Tensor:
    """One batch of planes ``(N, h, w)`` of integer codes resized to ``(N, height, width)``.

    Exact integer arithmetic, so any evaluation order gives these values::

        R[n, r, j] = sum_k Wx[j, k] * code[n, r, Ix[j, k]]                   (int64)
        S[n, i, j] = sum_t Wy[i, t] * R[n, Iy[i, t], j]                       (int64)
        out        = 0 if S < 0 else min((S + 2**27) >> 28, m)                (round half up, clamp)

    with ``(Ix, Wx) = resize_taps(w, width, kernel)`` and ``(Iy, Wy) = resize_taps(h, height, kernel)``.
    |S| < 2**45 for 16-bit codes (the taps' absolute sums stay below 2**16 per axis)."""
    if plane.dim() != 3:
        raise ValueError(f"planes are (N, H, W), got shape {tuple(plane.shape)}")
    m = max_code(bits)
    n, h, w = plane.shape
    if min(h, w, height, width) < 1:
        raise ValueError(f"cannot resize {w}x{h} planes to {width}x{height}")
    ix, wx = resize_tables(w, width, kernel, plane.device)
    iy, wy = resize_tables(h, height, kernel, plane.device)
    x = plane.to(torch.int64)
    across = torch.zeros((n, h, width), dtype=torch.int64, device=plane.device)
    for k in range(ix.shape[1]):
        across += x.index_select(2, ix[:, k]) * wx[:, k]
    total = torch.zeros((n, height, width), dtype=torch.int64, device=plane.device)
    for t in range(iy.shape[1]):
        total += across.index_select(1, iy[:, t]) * wy[:, t, None]
    out = (total + (1 << (RESIZE_SHIFT - 1))) >> RESIZE_SHIFT
    return out.clamp_(0, m).to(plane_dtype(bits))


@functools.lru_cache(maxsize=64)
def resize_matrix(src: int, dst: int, kernel: str, device: torch.device) -> torch.Tensor:
    """:func:`resize_taps` as a dense float32 ``(dst, src)`` matrix of weights (the integer taps over
    2**14): ``matrix @ x`` resizes an axis with the weights of :func:`resize_plane`. Made once per size,
    kernel and device (training resizes every step); shared, so read-only."""
    indices, weights = resize_tables(src, dst, kernel, device)
    matrix = torch.zeros((dst, src), dtype=torch.float64, device=device)
    matrix.scatter_add_(1, indices, weights.to(torch.float64))  # padded taps repeat an index with weight 0
    return (matrix / (1 << RESIZE_WEIGHT_BITS)).to(torch.float32)


def resize_planes_float(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, height: int, width: int, kernel: str
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`resize` of float32 planes holding code values, unrounded and differentiable (for
    training a network whose output is resized before the loss, as a 2/3 layer is restored): the
    same taps as float weights, with no rounding or clamping."""
    ch, cw = (height + 1) // 2, (width + 1) // 2
    out = []
    for plane, (hh, ww) in zip((y, u, v), ((height, width), (ch, cw), (ch, cw))):
        if plane.dim() != 3:
            raise ValueError(f"planes are (N, H, W), got shape {tuple(plane.shape)}")
        rows = resize_matrix(plane.shape[1], hh, kernel, plane.device)
        cols = resize_matrix(plane.shape[2], ww, kernel, plane.device)
        out.append(rows @ plane @ cols.T)
    return tuple(out)


def resize(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, height: int, width: int, kernel: str, bits: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """4:2:0 planes of ``(N, H, W)`` pictures resized to ``height x width`` pictures (chroma to
    ``ceil(height/2) x ceil(width/2)``), each plane on its own grid with centres aligned
    (:func:`resize_plane`). Antialiased when reducing; 8..16-bit codes of any integer dtype in,
    :func:`plane_dtype` out."""
    _check_planes(y, u, v)
    ch, cw = (height + 1) // 2, (width + 1) // 2
    return (resize_plane(y, height, width, kernel=kernel, bits=bits),
            resize_plane(u, ch, cw, kernel=kernel, bits=bits), resize_plane(v, ch, cw, kernel=kernel, bits=bits))
