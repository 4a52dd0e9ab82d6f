"""The 2/3 layer's restore reduction alone, for whole-process timing: 200 antialiased bicubic
reductions of a 2560x1440 4:2:0 frame to 1920x1080 with the compiled CPU kernel. Timed per checkout,
e.g. ``PYTHONPATH=<checkout> .venv/bin/python docs/resize_loop.py`` for two commits, alternating runs."""

import torch

import kernels

y = torch.randint(0, 256, (1, 1440, 2560), dtype=torch.uint8)
u = torch.randint(0, 256, (1, 720, 1280), dtype=torch.uint8)
v = u.clone()
for _ in range(200):
    kernels.resize(y, u, v, height=1080, width=1920, kernel="bicubic", bits=8, backend="cpu")
