"""Seconds per refinement step (vsr_plugin.refine) on one 1920x1080 frame, beside the plain learned
reduction of the same frame, timed in the same process (median of --repeat calls of each, after one
that warms up)::

    PYTHONPATH=. .venv/bin/python docs/refine_cost.py [--pair x2-codec-default-down] [--steps 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vsr_plugin.engine import Downscaler
from vsr_plugin.refine import RefineOptions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", default="x2-codec-default-down", help="downsampler; its '-up' sibling is refined for")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=3, help="timed calls of each (median reported)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(16, 236, (1, 1080, 1920), generator=g, dtype=torch.int32).to(torch.uint8)
    u = torch.randint(16, 241, (1, 540, 960), generator=g, dtype=torch.int32).to(torch.uint8)
    seconds = {}
    for steps in (0, args.steps):
        engine = Downscaler(args.pair, device="cpu", dtype="fp32", refine=RefineOptions(steps=steps))
        engine.downscale_planes(y, u, u.clone(), bits=8)
        times = []
        for _ in range(max(1, args.repeat)):
            t = time.perf_counter()
            engine.downscale_planes(y, u, u.clone(), bits=8)
            times.append(time.perf_counter() - t)
        seconds[steps] = statistics.median(times)
    per_step = (seconds[args.steps] - seconds[0]) / args.steps
    print(f"1920x1080, {args.pair}, {torch.get_num_threads()} threads: plain {seconds[0]:.2f} s, "
          f"{args.steps} steps {seconds[args.steps]:.2f} s -> {per_step:.3f} s per step")


if __name__ == "__main__":
    main()
