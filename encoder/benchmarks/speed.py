"""``vsr-bench speed``: how fast the upsampler runs, with the conventional scalers timed beside it.

Three sections, all in one run so every figure also reads as a ratio:

1. **Network** — for each model, device, dtype, input size and batch: frames per second of the
   network alone (packed tensor in, residual out), of network + pack/unpack kernels (integer
   planes on the device in and out) and end to end from host frames (numpy planes in and out,
   copies included); peak memory of one end-to-end call (CUDA: torch's peak allocation; CPU: the
   peak RSS growth in a fresh process, read from ``/proc/self/status``).
2. **Scalers** — the same 2x enlargement by torch ``interpolate`` (bicubic, on each device/dtype),
   VapourSynth ``core.resize.Bicubic`` / ``Lanczos`` (zimg, CPU) and the bundled ffmpeg's ``scale``
   filter (swscale; a real ffmpeg process reading y4m, its read-only time measured too).
3. **Transcode** — ``vsr-transcode --upscale`` of a 960x540 clip, in-process
   (:func:`vsr_plugin.transcode.upscale_file`: decode, network and encode threads), beside each
   stage alone (decode only, network only, encode only), so end-to-end fps reads as a fraction
   of the slowest stage; and the VapourSynth path through a real ``vspipe -c y4m`` process.

Models: shipped names or weight paths; a preset name (``fast``, ``default``) with no shipped
weights times that architecture with untrained weights — speed does not depend on weight values,
and the report says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vsr_plugin import runtimes
from vsr_plugin.cpu_features import has_native_bf16
from vsr_plugin.engine import DTYPES, Upscaler, resolve_device
from vsr_plugin.measure.markdown import markdown_table
from vsr_plugin.measure.video import encode, write_y4m
from vsr_plugin.media import DEFAULT_CRF, EncodeOptions, TimedFrame, VideoInput
from vsr_plugin.models import (PRESETS, CheckpointError, Upsampler, resolve_weights, save_upsampler,
                               shipped_models, standalone_upsamplers)
from vsr_plugin.yuv import Frame

from .clips import ClipSpec, plan, render
from .report import machine, write_report

DEFAULT_SIZES = "960x540,1920x1080"


# --- timing and memory -----------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, *, repeat: int, warmup: int) -> float:
    """Median seconds per call of ``fn`` (device work included)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class CudaPeak:
    """Peak CUDA allocation (MiB) of a block above what was allocated at entry."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.mb = device, None

    def __enter__(self) -> CudaPeak:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc) -> None:
        torch.cuda.synchronize(self.device)
        self.mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20


_CHILD = """
import json, sys
from pathlib import Path
from encoder.benchmarks.speed import _status_kb, synthetic_frames
from vsr_plugin.engine import Upscaler
model, w, h, dtype, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
engine = Upscaler(model, device="cpu", dtype=dtype, batch=batch, runtime=sys.argv[6])
frames = synthetic_frames(w, h, batch)
base = _status_kb("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
engine.upscale_frames(frames)
print(json.dumps({"base_kb": base, "peak_kb": _status_kb("VmHWM")}))
"""


def cpu_peak_mb(model_path: str, width: int, height: int, dtype: str, batch: int, runtime: str = "torch"
                ) -> float | None:
    """Peak RSS growth (MiB) of one end-to-end call of ``batch`` frames in a fresh process, with the
    model loaded and the input frames in memory (Linux; None elsewhere). A fresh process, because a
    long-lived one reuses the heap it grew earlier and would under-report."""
    if _status_kb("VmHWM") is None:
        return None
    proc = subprocess.run([sys.executable, "-c", _CHILD, model_path, str(width), str(height), dtype, str(batch),
                           runtime],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("memory probe failed: " + " | ".join(proc.stderr.strip().splitlines()[-2:]))
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return max(r["peak_kb"] - r["base_kb"], 0) / 1024


# --- inputs ----------------------------------------------------------------------------------------

def _thread_list(text: str) -> list[int]:
    caps = [int(t) for t in _list(text)]
    if any(n < 1 for n in caps):
        raise ValueError(f"--e2e-threads takes thread counts >= 1, got {text!r}")
    return caps


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"bad size {text!r}; use WxH, e.g. 960x540") from None
    if w < 16 or h < 16:
        raise ValueError(f"size must be at least 16x16, got {text}")
    return w, h


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def synthetic_canvas(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic natural-looking RGB picture (multi-scale smooth noise, edges, gradients)."""
    g = torch.Generator().manual_seed(seed)
    acc = torch.zeros(3, height, width)
    for k, weight in ((8, 0.5), (32, 0.3), (128, 0.2)):
        small = torch.rand(1, 3, max(height // k, 2) + 2, max(width // k, 2) + 2, generator=g)
        acc += weight * F.interpolate(small, size=(height, width), mode="bicubic", align_corners=False)[0]
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    acc += 0.15 * ((torch.sin(40 * xx + 25 * yy) > 0).float() - 0.5)
    return (acc.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def synthetic_frames(width: int, height: int, count: int, bits: int = 8) -> list[Frame]:
    """``count`` frames of a slow pan over :func:`synthetic_canvas`, rendered like make-clip."""
    from .clips import _planes

    spec = ClipSpec(width=width, height=height, frames=max(count, 2), bits=bits, zoom=1.0)
    canvas = synthetic_canvas(int(height * 1.5) + 16, int(width * 1.5) + 16)
    planes = _planes(canvas, bits)
    return [render(planes, w, spec) for w in plan(canvas.shape[0], canvas.shape[1], spec)[:count]]


@dataclass
class Model:
    """A model to time: its label, the engine argument and a weights path (for vspipe)."""

    label: str
    source: str | Upsampler
    path: str
    untrained: bool = False


def resolve_models(names: list[str], tmp: Path) -> list[Model]:
    shipped = shipped_models()
    out = []
    for name in names:
        try:
            resolve_weights(name)
            out.append(Model(name, name, name))
            continue
        except CheckpointError:
            pass
        if name in PRESETS:
            torch.manual_seed(0)
            net = Upsampler(PRESETS[name])
            for p in net.parameters():  # non-zero everywhere: no shortcut a zero tail could allow
                torch.nn.init.normal_(p, std=0.02)
            path = tmp / f"untrained-{name}"
            save_upsampler(path, net)
            out.append(Model(f"{name} (untrained preset)", net, str(path), untrained=True))
        else:
            raise ValueError(f"no model {name!r}: not shipped (shipped: {', '.join(shipped) or 'none'}), not a "
                             f"preset ({', '.join(PRESETS)}), not a weights path")
    return out


def dtype_supported(device: torch.device, dtype: str) -> bool:
    """Whether a 3x3 convolution runs in ``dtype`` on ``device``."""
    if device.type == "cuda" and dtype == "bf16" and not torch.cuda.is_bf16_supported():
        return False
    try:
        x = torch.zeros(1, 4, 8, 8, device=device, dtype=DTYPES[dtype])
        torch.nn.functional.conv2d(x, torch.zeros(4, 4, 3, 3, device=device, dtype=DTYPES[dtype]), padding=1)
        return True
    except (RuntimeError, TypeError):
        return False


# --- section 1: network ----------------------------------------------------------------------------

def _planes(frames: list[Frame], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.stack([f.planes[k] for f in frames])).to(device) for k in range(3))


def time_network(engine: Upscaler, frames: list[Frame], *, repeat: int, warmup: int) -> dict:
    """fps of the network alone, with pack/unpack, with pack/unpack and the 2/3 layer's reduction (the
    x2 output reduced to 3/2 of the input: how a 2/3 layer is restored) and end to end; on CUDA also
    each one's peak MiB."""
    dev, batch = engine.device, len(frames)
    y, u, v = _planes(frames, dev)
    h, w = frames[0].height, frames[0].width
    packed = torch.randn(batch, 6, (h + 1) // 2, (w + 1) // 2, device=dev).to(engine.dtype)
    packed = packed.contiguous(memory_format=torch.channels_last)

    def net():
        with torch.inference_mode():
            engine.run_network(packed)

    out = {}
    restore = lambda: engine.upscale_planes_to(y, u, v, bits=8, height=h * 3 // 2, width=w * 3 // 2)  # noqa: E731
    for key, fn in (("network", net), ("network_pack_unpack", lambda: engine.upscale_planes(y, u, v, bits=8)),
                    ("two_thirds_restore", restore), ("end_to_end", lambda: engine.upscale_frames(frames))):
        if dev.type == "cuda":
            with CudaPeak(dev) as mem:
                s = timed(fn, dev, repeat=repeat, warmup=warmup)
            peak = mem.mb
        else:
            s, peak = timed(fn, dev, repeat=repeat, warmup=warmup), None
        out[key] = {"fps": batch / s, "ms_per_frame": 1000 * s / batch, "peak_mb": peak}
    return out


# --- section 2: scalers ----------------------------------------------------------------------------

def time_torch_interpolate(frames: list[Frame], device: torch.device, dtype: str, mode: str, *,
                           repeat: int, warmup: int) -> dict:
    y, u, v = _planes(frames, device)
    dt = DTYPES[dtype]

    def run():
        for p in (y, u, v):
            x = p[:, None].to(dt)
            F.interpolate(x, scale_factor=2, mode=mode, align_corners=False).round_().clamp_(0, 255).to(torch.uint8)

    s = timed(run, device, repeat=repeat, warmup=warmup)
    return {"fps": len(frames) / s, "ms_per_frame": 1000 * s / len(frames)}


def time_vapoursynth(width: int, height: int, count: int, kernel: str) -> dict:
    """zimg through VapourSynth's built-in resize, YUV420P8, all cores, ``count`` frames."""
    import vapoursynth as vs

    core = vs.core
    src = core.std.BlankClip(width=width, height=height, format=vs.YUV420P8, length=count, color=[120, 110, 140])
    resize = getattr(core.resize, kernel)
    resize(src[0], width=2 * width, height=2 * height).get_frame(0)  # warm-up: thread pool, zimg graph
    clip = resize(src, width=2 * width, height=2 * height)
    t = time.perf_counter()
    n = sum(1 for _ in clip.frames(close=True))
    s = time.perf_counter() - t
    return {"fps": n / s, "ms_per_frame": 1000 * s / n, "threads": core.num_threads}


def time_ffmpeg_scale(y4m: Path, width: int, height: int, count: int, flags: str) -> dict:
    """The bundled ffmpeg reading a y4m file and scaling it 2x (output discarded); the same
    process without ``scale`` gives the read cost."""
    import ffmpeg

    from vsr_plugin.ffmpeg_tools import run

    def wall(stream) -> float:
        t = time.perf_counter()
        run(stream.output("-", format="null"))
        return time.perf_counter() - t

    scaled = wall(ffmpeg.input(str(y4m)).video.filter("scale", 2 * width, 2 * height, flags=flags))
    read = wall(ffmpeg.input(str(y4m)).video)
    return {"fps": count / scaled, "ms_per_frame": 1000 * scaled / count, "read_only_fps": count / read,
            "scale_only_fps": count / (scaled - read) if scaled > read else None}


# --- section 3: transcode ---------------------------------------------------------------------------

def transcode_section(model: Model, clip: Path, device: str, dtype: str | None, batch: int | None, encode_opts: EncodeOptions,
                      tmp: Path, *, repeat: int, vspipe: bool, threads: Sequence[int] = ()) -> dict:
    """End to end and each stage alone, each the best (shortest) of ``repeat`` runs; ``threads``:
    more end-to-end runs with the network and the encoder each capped at that many threads (what
    ``vsr-transcode --threads N`` does)."""
    from vsr_plugin.media import VideoOutput, stream_info
    from vsr_plugin.transcode import upscale_file

    engine = Upscaler(model.source, device=device, dtype=dtype, batch=batch)
    crf = encode_opts.crf if encode_opts.crf is not None else DEFAULT_CRF[encode_opts.codec]
    out: dict = {"model": model.label, "engine": repr(engine), "repeat": repeat,
                 "encode": {"codec": encode_opts.codec, "crf": crf, "preset": encode_opts.preset}}

    def best(fn: Callable[[], object]) -> tuple[float, object]:
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            value = fn()
            _sync(engine.device)
            runs.append((time.perf_counter() - t, value))
        return min(runs, key=lambda r: r[0])

    def decode_all():
        with VideoInput(clip) as inp:
            items = [i for i in inp.items() if isinstance(i, TimedFrame)]
            return items, stream_info(inp, items[0].frame, scale=engine.scale)

    dec_s, (decoded, info) = best(decode_all)  # also brings the file into the page cache
    frames = [d.frame for d in decoded]
    # one untimed pass over the whole clip first: kernel selection, thread pools and the allocator
    # settle over several calls on CPU (the first pass measured here ran at about half speed)
    engine.upscale_frames(frames)
    net_s, upscaled = best(lambda: engine.upscale_frames(frames))
    _, res = best(lambda: upscale_file(clip, tmp / "e2e.mkv", engine, encode_opts, overwrite=True,
                                       show_progress=False))
    st = res.stats
    out["end_to_end"] = {"fps": res.fps, "frames": res.frames, "wall_s": st.wall_s,
                         "busy_s": {"decode": st.decode_s, "network": st.network_s, "encode": st.encode_s}}

    def encode_all():
        enc = VideoOutput(tmp / "encode_only.mkv", info, encode_opts)
        for d, f in zip(decoded, upscaled):
            enc.write(f, d.pts)
        enc.close()

    enc_s, _ = best(encode_all)
    n = len(frames)
    stages = {"decode": n / dec_s, "network": n / net_s, "encode": n / enc_s}
    slowest = min(stages, key=stages.get)
    out["stages_fps"] = stages
    out["slowest_stage"] = slowest
    out["end_to_end_vs_slowest"] = res.fps / stages[slowest]
    if torch.device(device).type == "cpu":
        # every stage alone used all the cores; run side by side they share them, so the best the
        # pipeline can do is the cores' time spent on one frame by all stages together
        bound = 1 / sum(1 / v for v in stages.values())
        out["shared_cores_bound_fps"] = bound
        out["end_to_end_vs_bound"] = res.fps / bound
    out["capped"] = []
    for cap in threads:
        before = torch.get_num_threads()
        torch.set_num_threads(cap)
        try:
            _, capped = best(lambda: upscale_file(clip, tmp / "e2e.mkv", engine,
                                                  dataclasses.replace(encode_opts, threads=cap), overwrite=True,
                                                  show_progress=False))
        finally:
            torch.set_num_threads(before)
        out["capped"].append({"threads": cap, "fps": capped.fps, "wall_s": capped.stats.wall_s})
    out["input"] = {"path": str(clip), "width": res.in_size[0], "height": res.in_size[1], "frames": n}
    if vspipe:
        out["vspipe"] = time_vspipe(model, clip, device, dtype, n, tmp)
    return out


def time_vspipe(model: Model, clip: Path, device: str, dtype: str | None, frames: int, tmp: Path) -> dict:
    """``vspipe -c y4m script.vpy -`` with stdout discarded; fps from vspipe's own summary line
    (processing only) and from the wall time of the whole process (start-up included)."""
    exe = Path(sys.executable).with_name("vspipe")
    if not exe.exists():
        return {"skipped": f"vspipe not found next to {sys.executable}"}
    script = tmp / "speed.vpy"
    script.write_text("import vsr_plugin\n"
                      f"clip = vsr_plugin.source({str(clip)!r})\n"
                      f"clip = vsr_plugin.upscale(clip, model={model.path!r}, device={device!r}, dtype={dtype!r})\n"
                      "clip.set_output()\n")
    t = time.perf_counter()
    proc = subprocess.run([str(exe), "-c", "y4m", str(script), "-"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, cwd=tmp)
    wall = time.perf_counter() - t
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError("vspipe failed: " + " | ".join(err.strip().splitlines()[-3:]))
    m = re.search(r"Output (\d+) frames in ([\d.]+) seconds \(([\d.]+) fps\)", err)
    out = {"wall_s": wall, "fps_wall": frames / wall, "script": script.read_text()}
    if m:
        out.update(frames=int(m.group(1)), seconds=float(m.group(2)), fps=float(m.group(3)))
    return out


# --- command ---------------------------------------------------------------------------------------

def _defaults(device: torch.device) -> tuple[list[str], list[int]]:
    if device.type == "cuda":
        return ["fp16", "bf16", "fp32"], [1, 4]
    return (["fp32", "bf16"] if has_native_bf16() else ["fp32"]), [1]


def runtimes_for(device: torch.device, dtype: str, wanted: list[str] | None) -> list[str]:
    """The runtimes to time for a device and dtype: torch, and each installed one that runs them."""
    return [r for r in ("torch", "onnxruntime", "openvino")
            if runtimes.installed(r) and runtimes.unsupported(r, device, DTYPES[dtype]) is None
            and (wanted is None or r in wanted)]


def run_speed(args: argparse.Namespace) -> int:
    say = (lambda text: None) if args.quiet else (lambda text: print(f"speed: {text}", file=sys.stderr, flush=True))
    sizes = [_size(s) for s in _list(args.sizes)]
    if not sizes:
        raise ValueError("--sizes is empty")
    e2e_threads = _thread_list(args.e2e_threads)
    devices = [resolve_device(d) for d in (_list(args.devices) if args.devices else
                                            ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))]
    dtypes_arg = _list(args.dtypes) if args.dtypes else None
    runtimes_arg = _list(args.runtimes) if args.runtimes else None
    for r in runtimes_arg or []:
        runtimes.require(r)
    for d in dtypes_arg or []:
        if d not in DTYPES:
            raise ValueError(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
    try:
        batches_arg = [int(b) for b in _list(args.batches)] if args.batches else None
    except ValueError:
        raise ValueError(f"bad --batches {args.batches!r}; give e.g. 1,4") from None
    if batches_arg is not None and (not batches_arg or min(batches_arg) < 1):
        raise ValueError(f"--batches must be positive integers, got {args.batches!r}")
    for name, value, low in (("--repeat", args.repeat, 1), ("--warmup", args.warmup, 0), ("--frames", args.frames, 1),
                             ("--e2e-frames", args.e2e_frames, 2), ("--e2e-batch", 1 if args.e2e_batch is None else args.e2e_batch, 1),
                             ("--e2e-repeat", args.e2e_repeat, 1)):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if args.e2e_clip and not Path(args.e2e_clip).is_file():
        raise FileNotFoundError(f"no such clip: {args.e2e_clip}")
    # a pair's upsampler has the architecture of a standalone one: timing it again adds nothing
    names = _list(args.models) if args.models else (standalone_upsamplers() or list(PRESETS))

    data: dict = {"protocol": "speed-v1", "machine": machine(), "command": "vsr-bench " + " ".join(args.argv),
                  "network": [], "scalers": [], "transcode": [], "notes": []}
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="vsr-speed-", dir=args.work_dir) as tmp_name:
        tmp = Path(tmp_name)
        models = resolve_models(names, tmp)
        if any(m.untrained for m in models):
            data["notes"].append("models marked 'untrained preset' are the shipped architectures with random "
                                 "weights (no trained weights yet); speed does not depend on weight values")
        for dev in devices:
            dtypes, batches = _defaults(dev)
            dtypes = [d for d in (dtypes_arg or dtypes) if dtype_supported(dev, d)]
            skipped = sorted(set(dtypes_arg or []) - set(dtypes))
            if skipped:
                data["notes"].append(f"{dev}: {', '.join(skipped)} not supported here, skipped")
            for (w, h) in sizes:
                for batch in batches_arg or batches:
                    frames = synthetic_frames(w, h, batch)
                    for dtype in dtypes:
                        for mode in ("bicubic", "bilinear"):
                            r = time_torch_interpolate(frames, dev, dtype, mode, repeat=args.repeat, warmup=args.warmup)
                            data["scalers"].append({"scaler": f"torch interpolate {mode}", "device": str(dev),
                                                    "dtype": dtype, "batch": batch, "size": [w, h], **r})
                        for m, runtime in ((m, r) for m in models for r in runtimes_for(dev, dtype, runtimes_arg)):
                            say(f"{m.label} {dev} {dtype} {runtime} {w}x{h} batch {batch}")
                            engine = Upscaler(m.source, device=str(dev), dtype=dtype, batch=batch, runtime=runtime)
                            r = time_network(engine, frames, repeat=args.repeat, warmup=args.warmup)
                            peak = (r["end_to_end"]["peak_mb"] if dev.type == "cuda"
                                    else cpu_peak_mb(m.path, w, h, dtype, batch, runtime))
                            data["network"].append({"model": m.label, "device": str(dev), "dtype": dtype,
                                                    "runtime": runtime, "batch": batch, "size": [w, h],
                                                    "peak_mb": peak, **r})
                            del engine
                            if dev.type == "cuda":
                                torch.cuda.empty_cache()
        # CPU scalers outside torch, per size
        for (w, h) in sizes:
            frames = synthetic_frames(w, h, args.frames)
            y4m = tmp / f"scalers_{w}x{h}.y4m"
            write_y4m(y4m, frames, Fraction(25))
            for kernel in ("Bicubic", "Lanczos"):
                say(f"VapourSynth resize.{kernel} {w}x{h}")
                data["scalers"].append({"scaler": f"VapourSynth resize.{kernel}", "device": "cpu", "dtype": "uint8",
                                        "batch": 1, "size": [w, h],
                                        **time_vapoursynth(w, h, args.frames, kernel)})
            for flags in ("bicubic", "lanczos"):
                say(f"ffmpeg scale flags={flags} {w}x{h}")
                data["scalers"].append({"scaler": f"ffmpeg scale flags={flags}", "device": "cpu", "dtype": "uint8",
                                        "batch": 1, "size": [w, h],
                                        **time_ffmpeg_scale(y4m, w, h, args.frames, flags)})
            y4m.unlink()
        if args.e2e:
            e2e_model = resolve_models([args.e2e_model], tmp)[0]
            if args.e2e_clip:
                clip = Path(args.e2e_clip)
            else:
                ew, eh = _size(args.e2e_size)
                say(f"making a {ew}x{eh} {args.e2e_frames}-frame x264 clip for the transcode section")
                clip = tmp / f"input_{ew}x{eh}.mkv"
                encode(synthetic_frames(ew, eh, args.e2e_frames), clip, Fraction(25),
                       EncodeOptions(codec="libx264", crf=18, preset="veryfast"))
            opts = EncodeOptions(codec=args.e2e_codec, crf=args.e2e_crf, preset=args.e2e_preset)
            for dev in devices:
                say(f"transcode {e2e_model.label} on {dev}")
                data["transcode"].append(transcode_section(e2e_model, clip, str(dev), None, args.e2e_batch, opts, tmp,
                                                           threads=e2e_threads,
                                                           repeat=args.e2e_repeat, vspipe=args.vspipe))
    ratios(data)
    data["machine"]["load_average_before"] = load_before  # 1-minute load before this run started
    if load_before is not None and load_before > 0.5 * (os.cpu_count() or 1):
        data["notes"].append(f"the machine was busy before the run (1-minute load average {load_before:.1f} on "
                             f"{os.cpu_count()} CPUs): other processes shared the CPU, so timings are low and noisy")
    json_path, md_path = write_report(args.out, args.name, data, markdown(data))
    say(f"wrote {json_path} and {md_path}")
    return 0


def ratios(data: dict) -> None:
    """Add, to every network row, its end-to-end fps over each scaler's fps at the same size
    (torch: same device, dtype and batch)."""
    for row in data["network"]:
        r = {}
        for s in data["scalers"]:
            if s["size"] != row["size"]:
                continue
            if s["scaler"].startswith("torch"):
                if (s["device"], s["dtype"], s["batch"]) != (row["device"], row["dtype"], row["batch"]):
                    continue
            r[s["scaler"]] = row["end_to_end"]["fps"] / s["fps"]
        row["end_to_end_vs_scaler"] = r


def _mb(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _two_thirds_cell(row: dict) -> str:
    """The 2/3 restore's fps and the reduction's share of its time (older reports lack it: "-")."""
    if "two_thirds_restore" not in row:
        return "-"
    restore, x2 = row["two_thirds_restore"]["fps"], row["network_pack_unpack"]["fps"]
    return f"{restore:.2f} ({100 * (1 - restore / x2):.0f}%)"


def markdown(data: dict) -> str:
    info = data["machine"]
    lines = ["# vsr-bench speed", "",
             f"Machine: {info['cpu']} ({info['cpu_threads']} torch threads)"
             + (f", {info['gpu']}" if info.get("gpu") else "") + f"; torch {info['torch']}; {info['date']}.",
             "Sizes are input sizes; every row is a 2x enlargement of 8-bit 4:2:0 frames. fps = frames per second "
             "(median of the timed repeats). Peak MB of one end-to-end call: on CUDA torch's peak allocation; on "
             "CPU the peak RSS growth in a fresh process (model loaded, input frames in memory).", ""]
    lines += [f"Note: {n}" for n in data["notes"]]
    if data["network"]:
        lines += ["", "## Network", ""]
        rows = []
        for r in data["network"]:
            w, h = r["size"]
            vs = r["end_to_end_vs_scaler"]
            torch_b = vs.get("torch interpolate bicubic")
            rows.append([r["model"], f"{w}x{h}→{2 * w}x{2 * h}", r["device"], r["dtype"], r.get("runtime", "torch"),
                         r["batch"],
                         f"{r['network']['fps']:.2f}", f"{r['network_pack_unpack']['fps']:.2f}",
                         _two_thirds_cell(r), f"{r['end_to_end']['fps']:.2f}", _mb(r["peak_mb"]),
                         "-" if torch_b is None else f"{torch_b:.3f}",
                         "-" if "VapourSynth resize.Bicubic" not in vs else f"{vs['VapourSynth resize.Bicubic']:.3f}",
                         "-" if "ffmpeg scale flags=bicubic" not in vs else f"{vs['ffmpeg scale flags=bicubic']:.3f}"])
        lines.append(markdown_table(["model", "size", "device", "dtype", "runtime", "batch", "network fps",
                                     "+pack/unpack fps", "+2/3 reduction fps",
                                     "end-to-end fps", "peak MB", "× torch bicubic", "× VS Bicubic",
                                     "× ffmpeg bicubic"], rows))
        lines.append("The × columns divide end-to-end fps by the scaler's fps at the same size (torch: same "
                     "device, dtype, batch); below 1 means the network is that many times slower. +2/3 reduction: "
                     "the +pack/unpack call followed by the antialiased bicubic reduction to 3/2 of the input "
                     "(kernels.resize; how a 2/3 layer is restored, e.g. 1280x720 → 1920x1080), with its share "
                     "of that time.")
    if data["scalers"]:
        lines += ["", "## Conventional scalers", ""]
        rows = [[s["scaler"], f"{s['size'][0]}x{s['size'][1]}→{2 * s['size'][0]}x{2 * s['size'][1]}", s["device"],
                 s["dtype"], s["batch"], f"{s['fps']:.2f}",
                 (f"read-only {s['read_only_fps']:.1f} fps" if "read_only_fps" in s else
                  f"{s['threads']} threads" if "threads" in s else "")] for s in data["scalers"]]
        lines.append(markdown_table(["scaler", "size", "device", "dtype", "batch", "fps", "note"], rows))
        lines.append("ffmpeg rows are a whole ffmpeg process reading y4m (start-up included); VapourSynth rows "
                     "request every frame from the core's thread pool.")
    for t in data["transcode"]:
        i = t["input"]
        lines += ["", f"## Transcode: vsr-transcode --upscale, {i['width']}x{i['height']}, {i['frames']} frames", "",
                  f"Model {t['model']}, {t['engine']}; encode {t['encode']['codec']} crf {t['encode']['crf']:g} "
                  f"preset {t['encode']['preset'] or 'default'}. Each row is the best of {t['repeat']} runs.", ""]
        e = t["end_to_end"]
        rows = [["end to end (decode ∥ network ∥ encode)", f"{e['fps']:.2f}",
                 f"busy: decode {e['busy_s']['decode']:.1f} s, network {e['busy_s']['network']:.1f} s, "
                 f"encode {e['busy_s']['encode']:.1f} s, wall {e['wall_s']:.1f} s"]]
        rows += [[f"{k} only", f"{v:.2f}", "slowest stage" if k == t["slowest_stage"] else ""]
                 for k, v in t["stages_fps"].items()]
        vp = t.get("vspipe")
        if vp and "skipped" not in vp:
            rows.append(["VapourSynth: vspipe -c y4m (output discarded)",
                         f"{vp['fps']:.2f}" if "fps" in vp else "-",
                         f"whole process incl. start-up: {vp['fps_wall']:.2f} fps ({vp['wall_s']:.1f} s)"])
        elif vp:
            rows.append(["VapourSynth: vspipe", "-", vp["skipped"]])
        for c in t.get("capped", []):
            rows.append([f"end to end, --threads {c['threads']} (network and encoder each)", f"{c['fps']:.2f}",
                         f"wall {c['wall_s']:.1f} s"])
        lines.append(markdown_table(["path", "fps", "note"], rows))
        lines.append(f"End to end runs at {100 * t['end_to_end_vs_slowest']:.0f}% of the slowest single stage "
                     f"({t['slowest_stage']}).")
        if "shared_cores_bound_fps" in t:
            lines.append(f"Each stage alone had every core; side by side they share them, so the pipeline's "
                         f"ceiling is 1 / (sum of 1/fps of the stages) = {t['shared_cores_bound_fps']:.2f} fps: "
                         f"end to end reaches {100 * t['end_to_end_vs_bound']:.0f}% of it.")
    return "\n".join(lines).rstrip() + "\n"


def add_parser(sub) -> None:
    p = sub.add_parser("speed", help="fps and memory of the upsampler beside torch, VapourSynth and ffmpeg scalers",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Time the network (alone, with pack/unpack, end to end), the conventional "
                                   "scalers, and vsr-transcode --upscale with each stage alone and through vspipe.")
    p.add_argument("--models", default="", help="comma-separated shipped names, presets or weights paths "
                                                "(default: shipped models, else the presets untrained)")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="input sizes WxH (each upscaled 2x)")
    p.add_argument("--devices", default="", help="comma-separated devices (default: cpu, and cuda when present)")
    p.add_argument("--dtypes", default="",
                   help="comma-separated fp32,fp16,bf16 (default: CPU fp32; CUDA fp16,bf16,fp32)")
    p.add_argument("--runtimes", default="",
                   help="comma-separated runtimes to time (default: torch and every installed one: "
                        "onnxruntime, openvino)")
    p.add_argument("--batches", default="", help="comma-separated batch sizes (default: CPU 1; CUDA 1,4)")
    p.add_argument("--repeat", type=int, default=3, help="timed repeats per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--frames", type=int, default=32, help="frames per VapourSynth / ffmpeg scaler run")
    p.add_argument("--e2e", action=argparse.BooleanOptionalAction, default=True, help="the transcode section")
    p.add_argument("--e2e-model", default="fast", help="model of the transcode section")
    p.add_argument("--e2e-clip", default=None, help="input clip (default: a synthetic x264 clip of --e2e-size)")
    p.add_argument("--e2e-size", default="960x540")
    p.add_argument("--e2e-frames", type=int, default=240,
                   help="frames of the transcode clip (48 until 2026-12-03: about 1.2 s of wall per timed run on a "
                        "2-core CPU, where one scheduling hiccup moves the end-to-end ratio by points)")
    p.add_argument("--e2e-batch", type=int, default=None, help="default: the engine's (1 on the CPU, 4 on CUDA)")
    p.add_argument("--e2e-repeat", type=int, default=2, help="runs of each transcode measurement (best kept)")
    p.add_argument("--e2e-codec", default="libx264", choices=["libx264", "libx265", "libsvtav1"])
    p.add_argument("--e2e-crf", type=float, default=None, help="default: the codec's vsr-transcode default")
    p.add_argument("--e2e-preset", default=None, help="default: the encoder's own default")
    p.add_argument("--e2e-threads", default="", help="comma-separated thread caps: one more end-to-end run per cap, "
                                                     "network and encoder each capped (vsr-transcode --threads)")
    p.add_argument("--vspipe", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the VapourSynth path through a vspipe process")
    p.add_argument("--out", default="docs/results")
    p.add_argument("--name", default="speed", help="report name")
    p.add_argument("--work-dir", default=None, help="scratch folder (default: system temp)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_speed)
