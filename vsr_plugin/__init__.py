"""vsr: a learned 2x enhancement layer for ordinary video codecs.

Core (always importable, CPU-only machines included): :mod:`vsr_plugin.yuv` (planes and
colorimetry), :mod:`vsr_plugin.models` (networks, checkpoints), :mod:`vsr_plugin.engine`
(:class:`~vsr_plugin.engine.Upscaler`). The VapourSynth filters are loaded on first use so that
importing vsr never needs VapourSynth::

    import vsr_plugin
    clip = vsr_plugin.upscale(clip)          # YUV420P8 / YUV420P10, 2x
    small = vsr_plugin.downscale(clip)       # the learned 2x reduction (encoder side)
    full = vsr_plugin.restore("in.vsr.mkv")  # a base layer restored (decoder side), as the CLI does
"""

from __future__ import annotations

__version__ = "0.1.0"

# The shipped down/upsampler pair that vsr-transcode, the pipe's --downscale and
# vsr_plugin.downscale use unless told otherwise, chosen by `vsr-bench rd` (README, Shipped models).
DEFAULT_PAIR = "codec-perceptual-v2"
# Pairs whose halves were not trained together, by the names (less "x2-") of their down- and
# upsampler; the others are x2-PAIR-down and x2-PAIR-up. No weights file is shipped twice: the
# perceptual decoder restores base layers made by the codec-aware pair's bicubic reduction.
NAMED_PAIRS = {"codec-perceptual": ("codec-aware-v2-down", "perceptual"),
               "codec-perceptual-v2": ("codec-aware-v2-down", "perceptual-v2")}

_VAPOURSYNTH = ("upscale", "downscale", "source", "restore")


def __getattr__(name: str):
    if name in _VAPOURSYNTH:
        from . import vapoursynth_filter

        return getattr(vapoursynth_filter, name)
    raise AttributeError(f"module 'vsr_plugin' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_VAPOURSYNTH))
