"""BD-rate of one pipeline of a `vsr-bench rd` report against one of another, clip by clip, on
the same clips (e.g. two upsamplers in the `sr` pipeline measured in two runs on the same base
layers). The README's "against x2-perceptual on the same base layers" figures come from here:

    PYTHONPATH=. .venv/bin/python docs/compare_reports.py \
        docs/results/rd_1080p_libx264_perceptual.json:sr docs/results/rd_1080p_libx264_perceptual_v2.json:sr
"""

from __future__ import annotations

import argparse
import json

from encoder.benchmarks.rd import curve
from vsr_plugin.measure.bdrate import compare


def _pipeline(spec: str) -> tuple[dict, str]:
    path, _, name = spec.rpartition(":")
    with open(path) as f:
        return json.load(f), name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("anchor", help="REPORT.json:PIPELINE")
    p.add_argument("test", help="REPORT.json:PIPELINE")
    args = p.parse_args()
    (anchor, a), (test, t) = _pipeline(args.anchor), _pipeline(args.test)
    clips = {c["name"]: c for c in test["clips"]}
    for metric in ("vmaf", "psnr_y"):
        values = []
        for c in anchor["clips"]:
            other = clips[c["name"]]
            if c.get("content_sha256") != other.get("content_sha256"):
                raise SystemExit(f"{c['name']}: the two reports measured different pictures")
            d = compare(curve(c["points"], a, metric), curve(other["points"], t, metric))["bd_rate"]["pchip"]
            values.append("n/a" if d["value"] is None else f"{d['value']:+.1f}%{'' if d['reliable'] else ' ⚠'}")
        print(f"{metric}: {t} vs {a}, per clip: {' / '.join(values)}")


if __name__ == "__main__":
    main()
