"""Whole-process A/B of the CPU engines' allocator setting (``vsr_plugin.cpu_features.retain_freed_memory``):
the same frame loop with it (A) and with ``VSR_MALLOC_TUNING=0`` (B), run in turn A B A B ... after one
warm-up each, each run's wall time, CPU time and peak RSS from the OS (``os.wait4``).

    PYTHONPATH=. .venv/bin/python docs/allocator_ab.py [--model fast] [--size 960x540] [--frames 300]
        [--pairs 5] [--name cpu_allocator_xeon]

Writes docs/results/NAME.json and NAME.md; keep other jobs off the machine while it runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from encoder.benchmarks.report import write_report

REPO = Path(__file__).resolve().parent.parent

LOOP = """
import sys, torch
from vsr_plugin.engine import Upscaler
w, h, frames = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
g = torch.Generator().manual_seed(0)
y = torch.randint(0, 256, (1, h, w), generator=g, dtype=torch.uint8)
u = torch.randint(0, 256, (1, (h + 1) // 2, (w + 1) // 2), generator=g, dtype=torch.uint8)
up = Upscaler(sys.argv[1], device="cpu")
for _ in range(frames):
    up.upscale_planes(y, u, u, bits=8)
"""


def run(args: argparse.Namespace, tuned: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), VSR_MALLOC_TUNING="1" if tuned else "0")
    w, h = args.size.split("x")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", LOOP, args.model, w, h, str(args.frames)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)  # the child's own CPU time and peak RSS
    wall = time.perf_counter() - start
    if code := os.waitstatus_to_exitcode(status):
        raise SystemExit(f"allocator_ab: the frame loop failed (exit {code})")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "sys_s": usage.ru_stime,
            "peak_mib": usage.ru_maxrss / 1024}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fast")
    p.add_argument("--size", default="960x540")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--name", default="cpu_allocator_xeon")
    args = p.parse_args()
    for tuned in (True, False):  # warm-up: caches, the compiled kernels' build
        run(args, tuned)
    runs = {"A": [], "B": []}
    for _ in range(args.pairs):
        runs["A"].append(run(args, True))
        runs["B"].append(run(args, False))
    ratios = [a["wall_s"] / b["wall_s"] for a, b in zip(runs["A"], runs["B"])]
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in runs.items()}
    data = {"command": " ".join(["docs/allocator_ab.py", *sys.argv[1:]]), "args": vars(args), "runs": runs,
            "median": med, "wall_ratio_A_over_B": ratios, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    per_frame = (med["B"]["wall_s"] - med["A"]["wall_s"]) / args.frames * 1e3
    md = [f"# CPU allocator setting, A/B ({data['date']})", "",
          f"`{data['command']}`: `x2-{args.model}` at {args.size}, {args.frames} frames per process, whole processes, "
          f"{args.pairs} pairs A B A B … after one warm-up each. A = the engines' setting (default), "
          "B = `VSR_MALLOC_TUNING=0`.", "",
          "| | wall s (median) | CPU s | of which sys | peak MiB |", "| --- | --- | --- | --- | --- |"]
    md += [f"| {k} | {m['wall_s']:.2f} | {m['cpu_s']:.2f} | {m['sys_s']:.2f} | {m['peak_mib']:.0f} |" for k, m in med.items()]
    md += ["", f"A/B wall, pair by pair: {', '.join(f'{r:.3f}' for r in ratios)} (median "
               f"{statistics.median(ratios):.3f}); {per_frame:.2f} ms per frame saved (median walls; process "
               "start-up and model loading included in both).", ""]
    write_report(REPO / "docs" / "results", args.name, data, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
