"""Image data for training and benchmarks: loading, the bicubic degradation, YUV pairs, crops.

The degradation is the literature's: HR RGB -> bicubic antialiased downscale in float RGB
(torch's antialiased bicubic, Keys a = -0.5, the MATLAB ``imresize`` kernel) -> rounded to 8 bits
-> YUV 4:2:0 (BT.601, limited range). Training and ``vsr-bench sr`` share it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vsr_plugin.yuv import Frame, rgb_to_frame

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def list_images(root: str | Path) -> list[Path]:
    """Image files under ``root`` (recursively), sorted by path for a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return files


def load_rgb(path: str | Path) -> np.ndarray:
    """An image as uint8 RGB ``(H, W, 3)`` (greyscale is replicated to three channels)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def crop_to_multiple(rgb: np.ndarray, multiple: int) -> np.ndarray:
    """Crop bottom/right so both sides are multiples of ``multiple`` (the literature's modcrop)."""
    h, w = rgb.shape[:2]
    return rgb[: h - h % multiple, : w - w % multiple]


def bicubic_resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bicubic resize of uint8 RGB in float, rounded back to uint8."""
    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].to(torch.float32)
    y = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def bicubic_downscale_rgb(rgb: np.ndarray, scale: int) -> np.ndarray:
    """The SR degradation: ``scale``-x antialiased bicubic downscale (sides must divide)."""
    h, w = rgb.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"image {w}x{h} is not a multiple of the scale {scale}; crop it first")
    return bicubic_resize_rgb(rgb, h // scale, w // scale)


@dataclass(frozen=True)
class SRPair:
    """A high-resolution frame and its degraded low-resolution frame (8-bit BT.601)."""

    hr: Frame
    lr: Frame
    name: str


def make_pair(rgb: np.ndarray, scale: int, name: str = "") -> SRPair:
    """Crop to a multiple of ``2 * scale`` (so the LR frame has even sides) and degrade."""
    rgb = crop_to_multiple(rgb, 2 * scale)
    return SRPair(hr=rgb_to_frame(rgb), lr=rgb_to_frame(bicubic_downscale_rgb(rgb, scale)), name=name)


def load_pairs(paths: Sequence[Path], scale: int, *, rescales: Sequence[float] = (), min_side: int = 0
               ) -> list[SRPair]:
    """Training pairs from image files, plus downscaled copies of each image (``rescales``,
    e.g. ``(0.8, 0.6)``: the FSRCNN/VDSR data augmentation), skipping images smaller than
    ``min_side`` after cropping."""
    pairs = []
    for path in paths:
        rgb = load_rgb(path)
        versions = [rgb] + [bicubic_resize_rgb(rgb, round(rgb.shape[0] * f), round(rgb.shape[1] * f))
                            for f in rescales]
        for k, im in enumerate(versions):
            pair = make_pair(im, scale, name=f"{path.stem}" + (f"@{rescales[k - 1]}" if k else ""))
            if min(pair.hr.height, pair.hr.width) >= min_side:
                pairs.append(pair)
    return pairs


def split_validation(paths: Sequence[Path], count: int) -> tuple[list[Path], list[Path]]:
    """A fixed split: every k-th file (by sorted path) is held out, ``count`` in all."""
    paths = list(paths)
    if count <= 0:
        return paths, []
    if count >= len(paths):
        raise ValueError(f"validation count {count} leaves no training images out of {len(paths)}")
    stride = len(paths) / count
    held = {int(i * stride + stride / 2) for i in range(count)}
    return [p for i, p in enumerate(paths) if i not in held], [p for i, p in enumerate(paths) if i in held]


def _transform(plane: np.ndarray, op: int) -> np.ndarray:
    """One of the 8 symmetries of the square: bit 0 flips left-right, bit 1 flips up-down, bit 2
    transposes. On 2x2-aligned crops they commute with 4:2:0 subsampling and the degradation."""
    if op & 1:
        plane = plane[:, ::-1]
    if op & 2:
        plane = plane[::-1, :]
    if op & 4:
        plane = plane.T
    return plane


Batch = tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]  # (LR planes, HR planes)


class CropSampler:
    """Random aligned HR/LR crops with flips and 90-degree rotations, drawn with the torch Generator
    each call is given (training gives one per step, see :class:`BatchPrefetcher`).

    ``scale`` is the HR side over the LR side: an integer, or a fraction such as 3/2 (the 2/3 layer),
    whose crops start where both grids meet (every 2 LR chroma samples at 3/2) so that each crop is
    the same part of the picture at both sizes, with the phase of the whole-picture resize."""

    def __init__(self, pairs: Sequence[SRPair], *, scale: int | Fraction, crop: int) -> None:
        scale = Fraction(scale)
        if crop % (2 * scale.numerator):  # then the LR crop is a multiple of 2 x the start grid
            raise ValueError(f"crop {crop} must be a multiple of {2 * scale.numerator} at scale {scale}")
        self.pairs = [p for p in pairs if min(p.hr.height, p.hr.width) >= crop]
        if not self.pairs:
            raise ValueError(f"no training image is at least {crop}x{crop}")
        self.scale, self.crop = scale, crop
        areas = torch.tensor([float(p.hr.height * p.hr.width) for p in self.pairs])
        self.weights = areas / areas.sum()  # sample images by area: every pixel equally likely

    def sample(self, batch: int, generator: torch.Generator) -> Batch:
        """``(lr_y, lr_u, lr_v), (hr_y, hr_u, hr_v)`` uint8 tensors with a leading batch dim."""
        randint = lambda high: int(torch.randint(high, (1,), generator=generator))  # noqa: E731
        s, c = self.scale, self.crop
        lc = int(c / s)  # LR crop (even)
        g = s.denominator  # crops start every g LR chroma samples
        idx = torch.multinomial(self.weights, batch, replacement=True, generator=generator)
        lr_planes: list[list[np.ndarray]] = [[], [], []]
        hr_planes: list[list[np.ndarray]] = [[], [], []]
        for i in idx.tolist():
            pair = self.pairs[i]
            # top-left on the LR chroma grid keeps luma, chroma and both resolutions aligned
            cy = g * randint((pair.lr.height - lc) // (2 * g) + 1)
            cx = g * randint((pair.lr.width - lc) // (2 * g) + 1)
            op = randint(8)
            for k, (lr_p, hr_p) in enumerate(zip(pair.lr.planes, pair.hr.planes)):
                f = 2 if k == 0 else 1  # luma rows per chroma row
                lr_crop = lr_p[f * cy: f * cy + f * lc // 2, f * cx: f * cx + f * lc // 2]
                hy, hx, hc = (int(f * s * n) for n in (cy, cx, lc // 2))
                hr_crop = hr_p[hy: hy + hc, hx: hx + hc]
                lr_planes[k].append(_transform(lr_crop, op))
                hr_planes[k].append(_transform(hr_crop, op))
        stack = lambda planes: tuple(torch.from_numpy(np.stack(p)) for p in planes)  # noqa: E731
        return stack(lr_planes), stack(hr_planes)


class BatchPrefetcher:
    """Training batches made ahead on a background thread, so the training thread only trains.

    Batch ``k`` (``k = step x accum + micro-step``) is drawn with a generator seeded from
    ``(seed, k)`` alone, so the sequence does not depend on how far ahead the thread ran, and a
    resumed run (``start`` = the saved step's first batch) sees exactly the batches an
    uninterrupted run would. Crop assembly is numpy and torch work that releases the GIL.
    Use it as a context manager: the thread is stopped and joined on exit.
    """

    def __init__(self, sampler: CropSampler, *, batch: int, seed: int, start: int, depth: int = 4) -> None:
        self.sampler, self.batch, self.seed, self.next_index = sampler, batch, seed, start
        self._queue: queue.Queue[tuple[int, Batch | BaseException]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vsr-batches", daemon=True)
        self._thread.start()

    def batch_at(self, index: int) -> Batch:
        """The batch of index ``index`` (what the thread makes; callable directly)."""
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + index) % 2**63)
        return self.sampler.sample(self.batch, gen)

    def _run(self) -> None:
        index = self.next_index
        while not self._stop.is_set():
            try:
                item: Batch | BaseException = self.batch_at(index)
            except BaseException as e:  # handed to the training thread, raised there
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put((index, item), timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            index += 1

    def next(self) -> Batch:
        index, item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        assert index == self.next_index, (index, self.next_index)
        self.next_index += 1
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
