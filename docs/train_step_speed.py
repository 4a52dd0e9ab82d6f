"""Time one training step (forward, L1 backward, AdamW) of the `default` upsampler in NCHW fp32,
channels-last fp32, channels-last bf16 and NCHW bf16, in one process; median of 12 steps after 3
warm-up steps. Batch 16 on a 64x64 packed grid (256x256 HR crops). The figures in README.md,
"Precision and speed", come from:

    .venv/bin/python docs/train_step_speed.py 2      # torch threads (default 2)
"""

import sys
import time

import torch

from vsr_plugin.models import PRESETS, Upsampler


def step_seconds(channels_last: bool, bf16: bool, n: int = 15) -> float:
    net = Upsampler(PRESETS["default"])
    x, y = torch.randn(16, 6, 64, 64), torch.randn(16, 24, 64, 64)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = (out.float() - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    times = sorted(times[3:])
    return times[len(times) // 2]


if __name__ == "__main__":
    torch.manual_seed(0)
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    for cl, bf16 in [(False, False), (True, False), (True, True), (False, True)]:
        print(f"channels_last={cl} bf16={bf16}: {step_seconds(cl, bf16):.4f} s/step", flush=True)
