"""How far ``--resolution auto``'s probes are from the whole clip they stand for.

    PYTHONPATH=. .venv/bin/python docs/probe_bias.py bytes CLIP FULL_CRF HALF_CRF
    PYTHONPATH=. .venv/bin/python docs/probe_bias.py margins REPORT.json CRF,CRF,... [vmaf|psnr]

``bytes``: the frames 12..35 of a 48-frame clip (the 1 s probe segment of a 2 s clip) encoded on their
own (the probe without lead-out), with 12 frames after them (lead-out), with 8 before them (lead-in),
and inside the whole clip; prints the P and B frames' bytes of each against the whole clip's, for the
full-size encode at FULL_CRF and the 2x layer (the default pair) at HALF_CRF — the figures README
(*Choosing the resolution*, the lead-out) and ``resolution.LEAD_OUT_SECONDS`` quote.

``margins``: for each clip of a ``vsr-bench rd`` report and each CRF, the probe decision's margin
(half minus full at the target rate) against the true one (the report's ``vsr`` curve, linear in
log-rate, at the ``native`` point's rate), and the probes' estimate of native's rate against the
measured one.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import vsr_plugin
from vsr_plugin.measure.ladder import native, vsr
from vsr_plugin.measure.video import encode_y4m, pad_even, read_clip, stream_bits, write_y4m
from vsr_plugin.media import EncodeOptions
from vsr_plugin.models import pair_names, resolve_weights
from vsr_plugin.resolution import ProbeOptions, decide


def _half():
    down, up = pair_names(vsr_plugin.DEFAULT_PAIR)
    return vsr(str(resolve_weights(down)), str(resolve_weights(up)), {"device": "cpu", "dtype": "fp32"})


def byte_ratios(path: str, full_crf: float, half_crf: float) -> None:
    clip = read_clip(path)
    if len(clip.frames) < 48:
        raise SystemExit(f"{path}: needs 48 frames, has {len(clip.frames)}")
    windows = {"whole": (0, 48), "probe": (12, 36), "probe + 12 lead-out": (12, 48), "8 lead-in + probe": (4, 36)}
    with tempfile.TemporaryDirectory() as tmp:
        y4m, out = Path(tmp) / "x.y4m", Path(tmp) / "x.mkv"
        for pipe, crf in ((native(), full_crf), (_half(), half_crf)):
            frames = pipe.down(clip.frames[:48]) if pipe.down else clip.frames[:48]
            sums = {}
            for name, (a, b) in windows.items():
                write_y4m(y4m, [pad_even(f) for f in frames[a:b]], clip.rate)
                encode_y4m(y4m, out, EncodeOptions(codec="libx264", crf=crf, preset="medium"), clip.colorimetry,
                           seconds=(b - a) / float(clip.rate))
                sizes = stream_bits(out).frame_bytes
                first = 12 - a  # clip frame 12 in this encode
                sums[name] = sum(sizes[first + 1:first + 24])  # the P and B frames after the segment's first
            print(f"{pipe.name} CRF {crf:g}: " + ", ".join(f"{k} {v / sums['whole']:.3f}x" for k, v in sums.items()
                                                           if k != "whole") + f" of the whole clip's {sums['whole']} B")


def on_curve(points: list[dict], kbps: float, key: str) -> float:
    """``key`` of a rate-quality curve at ``kbps``: linear in log-rate between its points, the end
    segments extended beyond them."""
    pts = sorted(points, key=lambda p: p["kbps"])
    pairs = list(zip(pts, pts[1:]))
    a, b = next(((a, b) for a, b in pairs if a["kbps"] <= kbps <= b["kbps"]),
                pairs[0] if kbps < pts[0]["kbps"] else pairs[-1])
    t = math.log(kbps / a["kbps"]) / math.log(b["kbps"] / a["kbps"])
    return a[key] + t * (b[key] - a[key])


def margins(report_path: str, crfs: list[float], metric: str) -> None:
    report = json.loads(Path(report_path).read_text())
    key = "vmaf" if metric == "vmaf" else "psnr_y"
    half = _half()
    for clip in report["clips"]:
        natives = {p["crf"]: p for p in clip["points"] if p["pipeline"] == "native"}
        halves = [p for p in clip["points"] if p["pipeline"] == "vsr"]
        for crf in crfs:
            d = decide(clip["path"], native(), {"half": half}, ProbeOptions(codec=report["codec"], preset=report["preset"],
                                                                   crf=crf, metric=metric))
            n = natives[crf]
            print(f"{clip['name']} CRF {crf:g}: {d.choice}, probe margin {d.margin:+.2f}, true "
                  f"{on_curve(halves, n['kbps'], key) - n[key]:+.2f}; native's rate on the probes "
                  f"{d.target_kbps / n['kbps']:.3f}x the clip's")


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "bytes":
        byte_ratios(argv[1], float(argv[2]), float(argv[3]))
    elif len(argv) in (3, 4) and argv[0] == "margins":
        margins(argv[1], [float(c) for c in argv[2].split(",")], argv[3] if len(argv) == 4 else "vmaf")
    else:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
