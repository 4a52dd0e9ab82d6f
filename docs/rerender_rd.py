"""Re-run the analysis of saved ``vsr-bench rd`` reports (no encodes): each clip's ``auto`` table with the
current :func:`encoder.benchmarks.rd.auto_check`, the markdown re-rendered around the existing plots.

    PYTHONPATH=. .venv/bin/python docs/rerender_rd.py docs/results/rd_1080p_libx264_auto.json [...]

Rewrites REPORT.json and REPORT.md beside it; the points, BD-rates and plots are left as they were.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from encoder.benchmarks.rd import PLOT_METRICS, auto_check, markdown
from encoder.benchmarks.report import write_report


def rerender(path: Path) -> None:
    data = json.loads(path.read_text())
    metric = "vmaf" if data.get("auto_metric", "vmaf") == "vmaf" else "psnr_y"
    name = path.stem
    plots = {}
    for clip in data["clips"]:
        if clip.get("auto"):
            clip["auto"] = auto_check(clip["points"], metric)
        found = {m: f"{name}_{clip['name']}_{m}.png" for m in PLOT_METRICS}
        plots[clip["name"]] = {m: f for m, f in found.items() if (path.parent / f).is_file()}
    write_report(path.parent, name, data, markdown(data, plots))


def main(argv: list[str]) -> int:
    if not argv or any(not Path(a).is_file() or not a.endswith(".json") for a in argv):
        print("usage: docs/rerender_rd.py REPORT.json [REPORT.json ...] (saved vsr-bench rd reports)", file=sys.stderr)
        return 2
    for arg in argv:
        rerender(Path(arg))
        print(f"re-rendered {arg}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
