"""Trial (stop 28): the 2/3 layer restored with a Lanczos-3 reduction after the x2 network instead of the
antialiased bicubic that vsr-transcode uses (``vsr_plugin.engine.REDUCTION_KERNEL``), on the 1080p clips:

    PYTHONPATH=. .venv/bin/python docs/reduction_trial.py --out runs/eval/lred

``vsr-bench rd --pipelines native,vsr23`` with the constant patched for this process only (native reused
from rd_1080p_libx264, whose reports carry no vsr23, so vsr23 is measured); the report's vsr23 line names
the bicubic reduction, which the copy in docs/results corrects (rd_1080p_libx264_vsr23_lanczos_reduction).
"""

import argparse
import sys

import vsr_plugin.engine as engine
from encoder.benchmarks.bench import main

CLIPS = ["out/clips/urban_1080p.mkv", "out/clips/nature_1080p.mkv", "out/clips/urban2_1080p.mkv"]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/eval/lred")
    args = parser.parse_args()
    engine.REDUCTION_KERNEL = "lanczos"
    sys.exit(main(["rd", *CLIPS, "--codec", "libx264", "--pipelines", "native,vsr23", "--dtype", "bf16",
                   "--reuse", "docs/results/rd_1080p_libx264.json", "--name", "rd_lred", "--out", args.out]))
