"""How far ``--resolution auto``'s half-resolution encodes land from the rate they aimed at.

    PYTHONPATH=. .venv/bin/python docs/auto_rate.py docs/results/rd_1080p_libx264.json [more reports...]

Under ``--crf C`` a chosen 2x layer gets the CRF that spent, on the probes, what the native encode
at CRF C spent. For every half decision of the ``auto`` pipeline in an ``vsr-bench rd`` report this
prints the layer's whole-clip rate over the native point's at the same CRF (1.00: on target), the
figures README and benchmarks.md quote ("spend 7-14% more than native at the same CRF").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def ratios(report: dict) -> list[tuple[str, float, float]]:
    """``(clip, CRF, auto half kbps / native kbps)`` for each half decision with a native point at its CRF."""
    out = []
    for clip in report["clips"]:
        native = {p["crf"]: p["kbps"] for p in clip["points"] if p["pipeline"] == "native"}
        for a in clip.get("auto", []):
            if a["resolution"] == "half" and a["full_crf"] in native:
                out.append((clip["name"], a["full_crf"], a["kbps"] / native[a["full_crf"]]))
    return out


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    for path in paths:
        report = json.loads(Path(path).read_text())
        rows = ratios(report)
        print(f"{path} ({report['codec']}):")
        for clip, crf, r in rows:
            print(f"  {clip:32s} CRF {crf:>4g}  {r:.3f}")
        if rows:
            values = [r for _, _, r in rows]
            print(f"  range {min(values):.3f}-{max(values):.3f} over {len(values)} half decisions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
