"""Bjøntegaard deltas between two rate–distortion curves, over their overlap only, and where the
curves cross.

* **BD-rate** (%): the average difference of log-bitrate at equal quality, integrated over the
  quality interval that *both* curves cover (Bjøntegaard, VCEG-M33, 2001; piecewise-cubic
  variants per VCEG-AL22 / JVET CTC). Negative: the test needs fewer bits.
* **BD-quality** (dB for PSNR, points for VMAF): the average quality difference at equal
  log-bitrate, integrated over the bitrate interval both curves cover.

The integrals come from the ``bjontegaard`` package (pchip and akima interpolation). A delta over
a sliver of overlap says little, so each result carries its interval and its overlap — as a
fraction of the union of the two ranges (the package's own definition) and of the narrower
range — and is marked unreliable when the overlap covers less than ``min_overlap`` of the
narrower curve, or when a curve has fewer than two points inside it. Curves that cross make a single BD
number misleading; :func:`crossovers` finds the bitrates where they do.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import bjontegaard
import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq

METHODS = ("pchip", "akima")
DEFAULT_MIN_OVERLAP = 0.5


@dataclass(frozen=True)
class Curve:
    """Rate–distortion points sorted by rate, kept only while quality strictly increases (the
    upper envelope that interpolation needs); ``dropped`` lists the (rate, quality) points left out."""

    rate: np.ndarray
    quality: np.ndarray
    dropped: list[tuple[float, float]] = field(default_factory=list)

    @classmethod
    def of(cls, rates, qualities) -> Curve:
        pts = sorted((float(r), float(q)) for r, q in zip(rates, qualities)
                     if math.isfinite(r) and math.isfinite(q) and r > 0)
        keep: list[tuple[float, float]] = []
        dropped = []
        for r, q in pts:
            if keep and (q <= keep[-1][1] or r <= keep[-1][0]):
                dropped.append((r, q))
            else:
                keep.append((r, q))
        return cls(np.array([p[0] for p in keep]), np.array([p[1] for p in keep]), dropped)

    def __len__(self) -> int:
        return len(self.rate)


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """(low, high, fraction of the union, fraction of the narrower range) of the ranges of ``a``, ``b``."""
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    width = max(hi - lo, 0.0)
    union = max(a.max(), b.max()) - min(a.min(), b.min())
    narrower = min(a.max() - a.min(), b.max() - b.min())
    return (float(lo), float(hi), float(width / union) if union > 0 else 1.0,
            float(width / narrower) if narrower > 0 else 0.0)


def _inside(x: np.ndarray, lo: float, hi: float) -> int:
    return int(np.sum((x >= lo - 1e-12) & (x <= hi + 1e-12)))


@dataclass(frozen=True)
class Delta:
    """One Bjøntegaard delta: ``value`` (None when the curves do not overlap), the interval it was
    integrated over (quality for BD-rate, kbps for BD-quality), the overlap as a fraction of the
    union of the two ranges and of the narrower range, and whether it is meaningful."""

    value: float | None
    interval: tuple[float, float] | None
    overlap: float
    overlap_of_narrower: float
    reliable: bool
    note: str = ""


def _delta(kind: str, anchor: Curve, test: Curve, method: str, min_overlap: float) -> Delta:
    if method not in METHODS:
        raise ValueError(f"unknown interpolation {method!r}; choose {', '.join(METHODS)}")
    if len(anchor) < 2 or len(test) < 2:
        return Delta(None, None, 0.0, 0.0, False, "fewer than two usable points on a curve")
    axis = (anchor.quality, test.quality) if kind == "rate" else (np.log10(anchor.rate), np.log10(test.rate))
    lo, hi, frac, frac_narrow = _overlap(*axis)
    if hi <= lo:
        return Delta(None, None, 0.0, 0.0, False, "the curves do not overlap")
    fn = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap is judged here, with the reason recorded
        value = float(fn(anchor.rate, anchor.quality, test.rate, test.quality, method=method,
                         require_matching_points=False, min_overlap=0))
    interval = (lo, hi) if kind == "rate" else (10.0 ** lo, 10.0 ** hi)
    notes = []
    if frac_narrow < min_overlap:
        notes.append(f"overlap is {100 * frac_narrow:.0f}% of the narrower curve")
    if min(_inside(axis[0], lo, hi), _inside(axis[1], lo, hi)) < 2:
        notes.append("< 2 points of a curve in the overlap")
    return Delta(value, interval, frac, frac_narrow, not notes, "; ".join(notes))


def bd_rate(anchor: Curve, test: Curve, method: str = "pchip", *, min_overlap: float = DEFAULT_MIN_OVERLAP) -> Delta:
    """BD-rate of ``test`` against ``anchor`` in percent, over the quality interval both cover."""
    return _delta("rate", anchor, test, method, min_overlap)


def bd_quality(anchor: Curve, test: Curve, method: str = "pchip", *,
               min_overlap: float = DEFAULT_MIN_OVERLAP) -> Delta:
    """BD-quality (BD-PSNR, BD-VMAF) of ``test`` against ``anchor``, over the bitrate interval both cover."""
    return _delta("quality", anchor, test, method, min_overlap)


def crossovers(anchor: Curve, test: Curve) -> list[dict]:
    """Bitrates (same unit as the curves) inside the common bitrate range where the two curves'
    quality-vs-log-rate interpolants (pchip) cross, each with which curve is better just below."""
    if len(anchor) < 2 or len(test) < 2:
        return []
    la, lt = np.log10(anchor.rate), np.log10(test.rate)
    lo, hi = max(la.min(), lt.min()), min(la.max(), lt.max())
    if hi <= lo:
        return []
    fa, ft = PchipInterpolator(la, anchor.quality), PchipInterpolator(lt, test.quality)

    def diff(x: float) -> float:
        return float(ft(x) - fa(x))

    grid = np.linspace(lo, hi, 512)
    d = np.array([diff(x) for x in grid])
    sign = np.sign(d)
    for i in range(1, len(sign)):  # an exact zero on the grid takes the sign before it
        if sign[i] == 0:
            sign[i] = sign[i - 1]
    out = []
    for i in range(len(grid) - 1):
        if sign[i] * sign[i + 1] < 0:
            x = brentq(diff, grid[i], grid[i + 1], xtol=1e-9)
            out.append({"rate": float(10.0 ** x), "better_below": "test" if sign[i] > 0 else "anchor"})
    return out


def compare(anchor: Curve, test: Curve, *, min_overlap: float = DEFAULT_MIN_OVERLAP) -> dict:
    """Every delta (both methods) and the crossovers, as plain data for a report."""
    return {
        "bd_rate": {m: asdict(bd_rate(anchor, test, m, min_overlap=min_overlap)) for m in METHODS},
        "bd_quality": {m: asdict(bd_quality(anchor, test, m, min_overlap=min_overlap)) for m in METHODS},
        "crossovers": crossovers(anchor, test),
        "dropped_points": {"anchor": anchor.dropped, "test": test.dropped},
    }
