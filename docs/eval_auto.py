"""How well ``--resolution auto`` decides: its probe decision at each full-resolution CRF of an rd
report, against what that report measured on the whole clips (quicker than a ``vsr-bench rd`` auto
run: no final encodes, and a probe setting can be tried without changing the product).

    PYTHONPATH=. .venv/bin/python docs/eval_auto.py [--report docs/results/rd_1080p_libx264.json]
        [--segment-seconds 1.0] [--metric vmaf|psnr] [--preset medium]

For each clip and full-resolution CRF C of the report: native's rate and quality at C, vsr's quality
at that rate (its curve interpolated linearly in log-rate), which side is better there, which side
the probes chose, the probe margin and the quality lost by the choice. The half side runs the
default pair (the report's vsr points should come from it too).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

import vsr_plugin.resolution as resolution
from vsr_plugin import DEFAULT_PAIR
from vsr_plugin.measure.ladder import native, vsr
from vsr_plugin.models import pair_names, resolve_weights


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", default="docs/results/rd_1080p_libx264.json")
    p.add_argument("--segment-seconds", type=float, default=resolution.SEGMENT_SECONDS)
    p.add_argument("--metric", choices=["vmaf", "psnr"], default="vmaf")
    p.add_argument("--preset", default="medium", help="the probes' x264 preset (the report's encodes: medium)")
    args = p.parse_args()
    resolution.SEGMENT_SECONDS = args.segment_seconds  # the probe length under test
    key = "vmaf" if args.metric == "vmaf" else "psnr_y"
    data = json.loads(open(args.report).read())
    half = vsr(*(str(resolve_weights(n)) for n in pair_names(DEFAULT_PAIR)), {})
    wrong, lost = 0, 0.0
    for c in data["clips"]:
        full_pts = sorted((q["kbps"], q[key], q["crf"]) for q in c["points"] if q["pipeline"] == "native")
        half_pts = sorted((q["kbps"], q[key]) for q in c["points"] if q["pipeline"] == "vsr")
        for kbps, full_q, crf in full_pts:
            dec = resolution.decide(c["path"], native(), {"half": half}, resolution.ProbeOptions(
                codec=data["codec"], preset=args.preset, crf=crf, frames=c["frames"], metric=args.metric))
            half_q = float(np.interp(math.log(kbps), np.log([r for r, _ in half_pts]), [q for _, q in half_pts]))
            best = "half" if half_q > full_q else "full"
            loss = max(full_q, half_q) - (half_q if dec.choice == "half" else full_q)
            wrong += dec.choice != best
            lost = max(lost, loss)
            print(f"{c['name']} CRF {crf:g}: {kbps:.0f} kbps, native {full_q:.2f}, vsr {half_q:.2f} -> best {best}, "
                  f"chose {dec.choice} (probe margin {dec.margin:+.2f}, {len(dec.layer("half").probes)} half probes, "
                  f"{dec.probe_s:.1f} s), lost {loss:.2f}", flush=True)
    print(f"wrong side at {wrong} points; most lost at one point: {lost:.2f} {args.metric}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
