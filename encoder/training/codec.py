"""The codec in the training loop: straight-through quantisation and codec proxies.

A base codec is not differentiable, so training sees it through proxies whose backward pass is
the identity (straight-through estimator, Bengio et al. 2013; as in ViSTRA2 and "deep video
precoding"): the forward value is what the decoder would really get, the gradient flows as if
nothing had happened. Proxies, drawn per batch:

* ``identity`` — lossless base layer (rounding only);
* ``noise`` — additive Gaussian noise of a random strength, a cheap stand-in for coding error;
* ``x264`` / ``jpeg`` — a real all-intra x264 (random CRF) or JPEG (random quantiser) round trip
  through PyAV, on a configurable fraction of batches.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np
import torch

import kernels
from vsr_plugin.media import planes_of, video_frame
from vsr_plugin.yuv import Frame

CODEC_PROXIES = ("none", "x264", "jpeg")


def straight_through(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + (value - x).detach()


def quantize_st(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round and clamp to integer code values with a straight-through gradient (float result)."""
    return straight_through(x, x.detach().round().clamp(0, kernels.max_code(bits)))


def round_trip(planes: tuple[np.ndarray, np.ndarray, np.ndarray], add_stream, fmt: str = "yuv420p"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode 8-bit planes ``(T, H, W)`` (chroma ``(T, H/2, W/2)``) into an in-memory Matroska file
    with the stream ``add_stream(container)`` makes, and decode them back (same layout)."""
    y, u, v = planes
    t, h, w = y.shape
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        s = add_stream(out)
        s.width, s.height, s.pix_fmt = w, h, fmt
        for i in range(t):
            vf = video_frame(Frame(y=y[i], u=u[i], v=v[i]), fmt)
            vf.pts = i
            for packet in s.encode(vf):
                out.mux(packet)
        for packet in s.encode(None):
            out.mux(packet)
    with av.open(io.BytesIO(buf.getvalue())) as inp:
        decoded = [planes_of(f) for f in inp.decode(video=0)]
    if len(decoded) != t:
        raise RuntimeError(f"{s.codec_context.name} round trip returned {len(decoded)} frames for {t}")
    return tuple(np.stack([d[k] for d in decoded]) for k in range(3))


def codec_round_trip(planes: tuple[torch.Tensor, ...], codec: str, quality: int) -> tuple[torch.Tensor, ...]:
    """Encode 8-bit planes ``(N, H, W)`` as N all-intra frames and decode them back.

    ``codec`` is ``x264`` (``quality`` = CRF, preset ultrafast, keyint 1) or ``jpeg`` (``quality`` =
    the MJPEG quantiser, 2..31). Planes go in and come out unchanged in layout (JPEG's full-range
    tag is only a label here: no range conversion happens).
    """
    if codec == "x264":
        def add_stream(out):
            return out.add_stream("libx264", rate=25, options={"crf": str(quality), "preset": "ultrafast",
                                                               "x264-params": "keyint=1:log-level=error"})
        fmt = "yuv420p"
    elif codec == "jpeg":
        def add_stream(out):
            s = out.add_stream("mjpeg", rate=25)
            s.codec_context.qmin = s.codec_context.qmax = int(quality)
            return s
        fmt = "yuvj420p"
    else:
        raise ValueError(f"unknown proxy codec {codec!r}; choose x264 or jpeg")
    coded = round_trip(tuple(p.detach().to("cpu", torch.uint8).numpy() for p in planes), add_stream, fmt)
    return tuple(torch.from_numpy(c).to(planes[0].device) for c in coded)


@dataclass(frozen=True, kw_only=True)
class ProxyConfig:
    """How the codec is simulated during joint training.

    Args:
        noise: largest Gaussian noise sigma in 8-bit code values (drawn uniformly per batch); 0 off.
        codec: real codec for the round trips: ``none``, ``x264`` or ``jpeg``.
        codec_fraction: share of batches that go through the real codec (the rest get noise).
        quality: ``(low, high)`` range of x264 CRF or JPEG quantiser, drawn per batch.
    """

    noise: float = 2.0
    codec: str = "x264"
    codec_fraction: float = 0.5
    quality: tuple[int, int] = (20, 40)

    def __post_init__(self) -> None:
        if self.codec not in CODEC_PROXIES:
            raise ValueError(f"proxy codec must be one of {', '.join(CODEC_PROXIES)}, got {self.codec!r}")
        if not 0.0 <= self.codec_fraction <= 1.0:
            raise ValueError(f"codec_fraction must be in [0, 1], got {self.codec_fraction}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        lo, hi = self.quality
        if lo > hi:
            raise ValueError(f"quality range {self.quality} is empty")


def apply_proxy(planes: tuple[torch.Tensor, ...], cfg: ProxyConfig, gen: torch.Generator
                ) -> tuple[tuple[torch.Tensor, ...], str]:
    """One batch through the proxy: returns the (straight-through) planes and what was applied."""
    draw = float(torch.rand((), generator=gen))
    if cfg.codec != "none" and draw < cfg.codec_fraction:
        lo, hi = cfg.quality
        q = int(torch.randint(lo, hi + 1, (), generator=gen))
        coded = codec_round_trip(planes, cfg.codec, q)
        return tuple(straight_through(p, c.to(p.dtype)) for p, c in zip(planes, coded)), f"{cfg.codec}:{q}"
    if cfg.noise > 0:
        sigma = float(torch.rand((), generator=gen)) * cfg.noise
        noisy = []
        for p in planes:
            eps = torch.randn(p.shape, generator=gen).to(p.device) * sigma
            noisy.append(straight_through(p, (p.detach() + eps).round().clamp(0, 255)))
        return tuple(noisy), f"noise:{sigma:.2f}"
    return planes, "identity"
