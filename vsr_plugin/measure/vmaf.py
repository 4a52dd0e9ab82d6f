"""VMAF through the libvmaf filter of the bundled ffmpeg (imageio-ffmpeg's ffmpeg 9, driven with
ffmpeg-python), with the safeguards this project learned the hard way (DESIGN.md, pitfalls):

* both inputs are tagged identically with ``setparams`` (ffmpeg 9 negotiates colour properties
  between filter inputs and would otherwise insert a silent matrix conversion), and
* both are retimed (``settb``, ``setpts=N``) so frames pair by index, not by container timestamps;
* libvmaf also computes its own PSNR-Y, which :func:`check_psnr` compares frame by frame with the
  PSNR-Y computed in-process from the very planes that were written: any conversion inside the
  filter graph shows up as a mismatch and stops the run.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import ffmpeg

from ..ffmpeg_tools import command
from ..yuv import MATRICES, PRIMARIES, TRANSFERS, Colorimetry

DEFAULT_MODEL = "version=vmaf_v0.6.1"
PSNR_TOLERANCE_DB = 0.01


class MetricError(RuntimeError):
    """The metric graph did not measure the pictures it was given."""


@dataclass(frozen=True)
class VmafResult:
    """Pooled and per-frame VMAF, and libvmaf's own per-frame PSNR-Y (capped at 6 * bits + 12 dB)."""

    vmaf: float
    vmaf_harmonic_mean: float
    vmaf_min: float
    frames: list[float]
    psnr_y: list[float]
    psnr_cap: float
    model: str


def _params(c: Colorimetry) -> dict[str, str]:
    """setparams values for both inputs: the clip's own tags, BT.709 where they are unspecified."""
    return {"colorspace": MATRICES.get(c.matrix, "bt709") if c.matrix not in (0, 2) else "bt709",
            "color_trc": TRANSFERS.get(c.transfer, "bt709") if c.transfer != 2 else "bt709",
            "color_primaries": PRIMARIES.get(c.primaries, "bt709") if c.primaries != 2 else "bt709",
            "range": "pc" if c.range == "full" else "tv"}


def graph(distorted: str | Path, reference: str | Path, log_path: str | Path, *, rate: Fraction,
          colorimetry: Colorimetry, threads: int = 0, model: str = DEFAULT_MODEL):
    """The ffmpeg-python output node: distorted and reference, tagged and retimed alike, into libvmaf."""
    if str(distorted) == str(reference):  # one input node feeding both sides needs a split
        a, b = _split(distorted)
    else:
        a, b = ffmpeg.input(str(distorted)).video, ffmpeg.input(str(reference)).video
    params = _params(colorimetry)
    tb = f"{rate.denominator}/{rate.numerator}"
    a, b = (s.filter("setparams", **params).filter("settb", tb).filter("setpts", "N") for s in (a, b))
    vmaf = ffmpeg.filter([a, b], "libvmaf", model=model, log_fmt="json", log_path=str(log_path),
                         n_threads=threads, feature="name=psnr")
    return vmaf.output("-", format="null")


def _split(path: str | Path):
    s = ffmpeg.input(str(path)).video.split()
    return s[0], s[1]


class VmafJob:
    """libvmaf running in a background ffmpeg process (so in-process metrics can run meanwhile)."""

    def __init__(self, distorted: str | Path, reference: str | Path, *, rate: Fraction, colorimetry: Colorimetry,
                 bits: int, threads: int = 0, model: str = DEFAULT_MODEL) -> None:
        self.bits, self.model = bits, model
        self._tmp = tempfile.TemporaryDirectory(prefix="vsr-vmaf-")
        self._log = Path(self._tmp.name) / "vmaf.json"
        self._err = open(Path(self._tmp.name) / "stderr.txt", "w+b")
        cmd = command(graph(distorted, reference, self._log, rate=rate, colorimetry=colorimetry, threads=threads,
                            model=model))
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._err)

    def result(self) -> VmafResult:
        try:
            rc = self._proc.wait()
            if rc != 0:
                self._err.seek(0)
                tail = self._err.read().decode(errors="replace").strip().splitlines()[-3:]
                raise MetricError("ffmpeg libvmaf failed: " + " | ".join(tail))
            data = json.loads(self._log.read_text())
        finally:
            self.close()
        frames = data["frames"]
        pooled = data["pooled_metrics"]["vmaf"]
        return VmafResult(vmaf=float(pooled["mean"]), vmaf_harmonic_mean=float(pooled["harmonic_mean"]),
                          vmaf_min=float(pooled["min"]), frames=[float(f["metrics"]["vmaf"]) for f in frames],
                          psnr_y=[float(f["metrics"]["psnr_y"]) for f in frames], psnr_cap=6.0 * self.bits + 12.0,
                          model=self.model)

    def close(self) -> None:
        """Stop ffmpeg if it still runs (e.g. on Ctrl-C) and remove the log."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._err.close()
        self._tmp.cleanup()


def libvmaf(distorted: str | Path, reference: str | Path, *, rate: Fraction, colorimetry: Colorimetry,
            bits: int, threads: int = 0, model: str = DEFAULT_MODEL) -> VmafResult:
    """VMAF of ``distorted`` against ``reference`` (two y4m files of the same geometry)."""
    return VmafJob(distorted, reference, rate=rate, colorimetry=colorimetry, bits=bits, threads=threads,
                   model=model).result()


def check_psnr(result: VmafResult, psnr_y: list[float], what: str) -> None:
    """Raise :class:`MetricError` unless libvmaf saw the same pictures as the in-process metrics:
    same frame count and, frame by frame, the same PSNR-Y (below libvmaf's cap)."""
    if len(result.psnr_y) != len(psnr_y):
        raise MetricError(f"{what}: libvmaf compared {len(result.psnr_y)} frames, the clip has {len(psnr_y)}")
    for i, (theirs, ours) in enumerate(zip(result.psnr_y, psnr_y)):
        expected = min(ours, result.psnr_cap)
        if abs(theirs - expected) > PSNR_TOLERANCE_DB:
            raise MetricError(f"{what}: frame {i} PSNR-Y is {ours:.3f} dB on the planes but {theirs:.3f} dB inside "
                              "ffmpeg's libvmaf graph (a colour or format conversion was inserted)")
