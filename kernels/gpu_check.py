"""GPU check of the fused kernels: parity tests, timings and bandwidth, written to docs/results/.

On a machine with a CUDA GPU and cupy (``pip install cupy-cuda13x``)::

    python -m kernels.gpu_check                         # tests + benchmark -> docs/results/gpu_check.{json,md}
    python -m kernels.gpu_check --bandwidth-gbs 3350    # if the card's peak cannot be queried
    python -m kernels.gpu_check --dry-run --out /tmp/x  # no GPU: plans, byte counts and report only

Steps:
1. ``pytest -m cuda tests/kernels`` in-process (CuPy vs the twin on the same GPU, bit for bit).
2. Median time (CUDA events, after warm-up; fp16 packed tensors and residuals, batch 1 and 4) of
   each op through the fused kernels and through the torch twin on the same GPU:
   * upsampler, 1920x1080 -> 3840x2160: ``pack`` (block 2), ``unpack_upscale``, and ``unpack``;
   * downsampler (encoder side), 1920x1080 -> 960x540: ``pack`` with block 4 of the full-resolution
     frame (``pack_b4``) and ``unpack_downscale``;
   * the 2/3 layer's restore, after the upsampler's x2 of 1280x720: ``resize`` 2560x1440 -> 1920x1080
     (antialiased bicubic, as the engine reduces; its int64 scratch is not counted in the bytes);
   plus the sum of each network's pack and unpack.
3. Achieved bandwidth = (bytes of every input + bytes of every output) / time, as a fraction of
   the card's peak (queried from the device, or ``--bandwidth-gbs``) and of a measured
   device-to-device copy.
4. Diagnostics: whether the fused outputs equal the CPU twin on the benchmark frames, and how many
   samples the twin run *on CUDA* gets off the CPU twin (0 since the twins divide by device tensors;
   torch divides by a Python scalar through a rounded reciprocal there; see docs/kernels.md).
   Either failing makes the exit status non-zero.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from . import cupy_ops, reference

REPO = Path(__file__).resolve().parent.parent
LR_H, LR_W = 1080, 1920   # the upsampler's input frame (output: SCALE times larger)
SCALE = 2
HR_H, HR_W = 1080, 1920   # the downsampler's input frame (output: 960x540)
X2_H, X2_W = 1440, 2560   # the x2 of a 1080p picture's 2/3 layer, reduced to HR_W x HR_H by "resize"
REDUCTION = "bicubic"     # vsr_plugin.engine.REDUCTION_KERNEL (kernels does not import the plugin; a test ties them)
# Benchmark cases: name -> the kernels op it runs. "pack" is the upsampler's (block 2, LR frame),
# "pack_b4" the downsampler's (block 4, HR frame).
CASES = {"pack": "pack", "unpack_upscale": "unpack_upscale", "unpack": "unpack", "pack_b4": "pack",
         "unpack_downscale": "unpack_downscale", "resize": "resize"}
OPS = tuple(CASES)
PATHS = {"Upsampler path (pack + unpack_upscale)": ("pack", "unpack_upscale"),
         "Downsampler path (pack_b4 + unpack_downscale)": ("pack_b4", "unpack_downscale")}
# Published peak memory bandwidths (GB/s), used when the device cannot be queried.
KNOWN_PEAK_GBS = {"H200": 4800.0, "H100 SXM": 3350.0, "H100 80GB HBM3": 3350.0, "H100 PCIe": 2000.0,
                  "H100 NVL": 3900.0, "A100-SXM4-80GB": 2039.0, "A100 80GB PCIe": 1935.0, "A100-SXM4-40GB": 1555.0,
                  "A100-PCIE-40GB": 1555.0, "L40S": 864.0, "L4": 300.0, "A10": 600.0, "RTX 4090": 1008.0}


@dataclass(frozen=True)
class Timing:
    op: str
    batch: int
    backend: str          # "cupy" (fused) or "torch" (twin on the GPU)
    ms: float             # median wall time on the GPU per call
    bytes: int            # inputs + outputs, each read or written once
    gbs: float            # bytes / time
    peak_fraction: float | None
    copy_fraction: float | None


def make_inputs(case: str, batch: int, bits: int, device: str) -> tuple[tuple, dict]:
    """Arguments of ``kernels.<CASES[case]>`` for a 1080p batch (random content; shapes only on "meta")."""
    dt = reference.plane_dtype(bits)
    m = reference.max_code(bits)
    ch, cw = (LR_H + 1) // 2, (LR_W + 1) // 2

    def codes(*shape):
        if device == "meta":
            return torch.empty(shape, dtype=dt, device=device)
        return torch.randint(0, m + 1, shape, device=device, dtype=torch.int32).to(dt)

    def floats(*shape, scale=1.0):
        if device == "meta":
            return torch.empty(shape, dtype=torch.float16, device=device)
        return (torch.randn(shape, device=device) * scale).clamp_(-1, 1).to(torch.float16)

    if case == "resize":
        x2 = (codes(batch, X2_H, X2_W), codes(batch, X2_H // 2, X2_W // 2), codes(batch, X2_H // 2, X2_W // 2))
        return x2, dict(height=HR_H, width=HR_W, kernel=REDUCTION, bits=bits)
    if case in ("pack_b4", "unpack_downscale"):
        hc, wc = (HR_H + 1) // 2, (HR_W + 1) // 2
        hr = (codes(batch, HR_H, HR_W), codes(batch, hc, wc), codes(batch, hc, wc))
        if case == "pack_b4":
            return hr, dict(bits=bits, block=4, dtype=torch.float16)
        return (floats(batch, 6, -(-HR_H // 4), -(-HR_W // 4), scale=0.05), *hr), dict(bits=bits)
    planes = (codes(batch, LR_H, LR_W), codes(batch, ch, cw), codes(batch, ch, cw))
    if case == "pack":
        return planes, dict(bits=bits, block=2, dtype=torch.float16)
    if case == "unpack":
        return (floats(batch, 6, ch, cw),), dict(bits=bits, block=2, height=LR_H, width=LR_W)
    if case == "unpack_upscale":
        return (floats(batch, 6 * SCALE * SCALE, ch, cw, scale=0.05), *planes), dict(bits=bits, scale=SCALE)
    raise ValueError(f"unknown case {case!r}; choose one of {', '.join(CASES)}")


def bytes_moved(case: str, args: tuple, kwargs: dict) -> int:
    """Bytes of all inputs plus all outputs of one call (outputs sized by the op's plan)."""
    plan = {"pack": cupy_ops.plan_pack, "unpack": cupy_ops.plan_unpack,
            "unpack_upscale": cupy_ops.plan_unpack_upscale,
            "unpack_downscale": cupy_ops.plan_unpack_downscale, "resize": cupy_ops.plan_resize}[CASES[case]]
    outs, _ = plan(*args, **kwargs, empty=lambda shape, dtype, device: torch.empty(shape, dtype=dtype, device="meta"))
    outs = outs if isinstance(outs, tuple) else (outs,)
    return sum(t.numel() * t.element_size() for t in (*args, *outs))


def time_cuda(fn: Callable[[], object], *, iters: int, warmup: int) -> float:
    """Median milliseconds per call, by CUDA events around each call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events)


def peak_bandwidth(name: str, override: float | None) -> tuple[float | None, str]:
    """Peak memory bandwidth in GB/s and where the figure came from."""
    if override:
        return override, "--bandwidth-gbs"
    try:
        runtime = cupy_ops.load_cupy().cuda.runtime
        dev = torch.cuda.current_device()
        clock_khz = runtime.deviceGetAttribute(36, dev)  # cudaDevAttrMemoryClockRate
        bus_bits = runtime.deviceGetAttribute(37, dev)   # cudaDevAttrGlobalMemoryBusWidth
        if clock_khz > 0 and bus_bits > 0:
            return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9, "device attributes (2 x memory clock x bus width)"
    except Exception as err:  # an unsupported attribute must not stop the report
        print(f"gpu_check: could not query the memory clock ({err}); trying the name table", file=sys.stderr)
    for key, gbs in KNOWN_PEAK_GBS.items():
        if key.lower() in name.lower():
            return gbs, f"published figure for {key}"
    return None, "unknown (pass --bandwidth-gbs)"


def copy_bandwidth(*, iters: int) -> float:
    """GB/s of a 1 GiB device-to-device copy (read + write), the practical ceiling."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_cuda(lambda: dst.copy_(src), iters=iters, warmup=3)
    return 2 * src.numel() / (ms * 1e-3) / 1e9


def run_tests() -> dict:
    """``pytest -m cuda tests/kernels`` in this process; outcome counts and failed test ids."""
    import pytest

    tests = REPO / "tests" / "kernels"
    if not tests.is_dir():
        return {"ran": False, "reason": f"{tests} not found (installed package without tests)"}

    class Collect:
        def __init__(self):
            self.counts, self.failed = Counter(), []

        def pytest_runtest_logreport(self, report):
            if report.when == "call" or report.outcome != "passed":
                self.counts[report.outcome] += 1
                if report.failed:
                    self.failed.append(report.nodeid)

    collect = Collect()
    code = pytest.main([str(tests), "-m", "cuda", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                        "--rootdir", str(REPO)], plugins=[collect])
    return {"ran": True, "exit_code": int(code), **dict(collect.counts), "failed_ids": collect.failed}


def diagnostics(bits: int) -> dict:
    """Fused vs CPU twin on the benchmark frames, and the twin on CUDA vs the twin on CPU (both must
    hold: the GPU tests use the twin on CUDA as the reference). A step that raises is recorded as its
    error message, so the report is always written."""
    import kernels

    torch.manual_seed(0)
    out = {}

    def record(key: str, fn: Callable[[], object]) -> None:
        try:
            out[key] = fn()
        except Exception as err:  # recorded in the report, which is the point of this script
            out[key] = f"error: {type(err).__name__}: {err}"

    def tensors(t):
        return (t,) if isinstance(t, torch.Tensor) else tuple(t)

    for case, op in CASES.items():
        args, kw = make_inputs(case, 1, bits, "cuda")
        spec = tensors(getattr(reference, op)(*(a.cpu() for a in args), **kw))

        def on(backend):
            return tensors(getattr(kernels, op)(*args, **kw, backend=backend))

        record(f"{case}_fused_equals_cpu_twin",
               lambda: all(torch.equal(a.cpu(), b) for a, b in zip(on("cupy"), spec)))
        record(f"{case}_twin_on_cuda_samples_off_spec",
               lambda: sum(int((a.cpu() != b).sum()) for a, b in zip(on("torch"), spec)))
    # where a reciprocal multiplication would show most: float32 packing (126 of 256 8-bit codes) and
    # a 3x upscale (/36)
    y, u, v = make_inputs("pack", 1, bits, "cuda")[0]
    record("pack_f32_twin_on_cuda_samples_off_spec", lambda: int(
        (reference.pack(y, u, v, bits=bits, dtype=torch.float32).cpu()
         != reference.pack(y.cpu(), u.cpu(), v.cpu(), bits=bits, dtype=torch.float32)).sum()))
    r = torch.randn(1, 54, *u.shape[1:], device="cuda") * 0.05
    record("unpack_upscale_x3_twin_on_cuda_samples_off_spec", lambda: sum(
        int((p.cpu() != q).sum()) for p, q in zip(reference.unpack_upscale(r, y, u, v, bits=bits, scale=3),
                                                  reference.unpack_upscale(r.cpu(), y.cpu(), u.cpu(), v.cpu(),
                                                                           bits=bits, scale=3))))
    return out


def benchmark(bits: int, batches: tuple[int, ...], *, peak: float | None, copy: float | None, iters: int,
              dry_run: bool) -> list[Timing]:
    import kernels

    rows = []
    for batch in batches:
        for case, op in CASES.items():
            args, kw = make_inputs(case, batch, bits, "meta" if dry_run else "cuda")
            nbytes = bytes_moved(case, args, kw)
            for backend in ("cupy", "torch"):
                if dry_run:
                    ms = 1.0  # placeholder: the report's arithmetic and layout are what a dry run checks
                else:
                    fn = getattr(kernels, op)
                    with torch.inference_mode():
                        ms = time_cuda(lambda: fn(*args, **kw, backend=backend), iters=iters, warmup=5)
                gbs = nbytes / (ms * 1e-3) / 1e9
                rows.append(Timing(case, batch, backend, ms, nbytes, gbs, gbs / peak if peak else None,
                                   gbs / copy if copy else None))
            if not dry_run:
                del args
                torch.cuda.empty_cache()
    return rows


def to_markdown(report: dict) -> str:
    dev, tests = report["device"], report["tests"]
    lines = [f"# Fused kernel check — {dev['name']}", "",
             f"{report['date']}; torch {report['torch']}, cupy {report['cupy']}, CUDA {dev.get('cuda')}; "
             f"{report['bits']}-bit planes, fp16 packed tensors and residuals; upsampler "
             f"{LR_W}x{LR_H} -> {SCALE * LR_W}x{SCALE * LR_H}, downsampler {HR_W}x{HR_H} -> "
             f"{-(-HR_W // 2)}x{-(-HR_H // 2)} (`pack_b4` = pack with block 4), `resize` {X2_W}x{X2_H} -> "
             f"{HR_W}x{HR_H} (the 2/3 layer's reduction)."
             + (" **DRY RUN: placeholder timings.**" if report["dry_run"] else ""),
             "",
             f"Peak memory bandwidth: {_num(dev['peak_gbs'])} GB/s ({dev['peak_source']}); measured device copy: "
             f"{_num(dev['copy_gbs'])} GB/s.", "",
             "Parity tests (`pytest -m cuda tests/kernels`): " + (
                 ", ".join(f"{k} {tests[k]}" for k in ("passed", "failed", "skipped", "error") if k in tests)
                 if tests.get("ran") else f"not run ({tests.get('reason')})"), ""]
    if tests.get("failed_ids"):
        lines += ["Failed: " + ", ".join(f"`{t}`" for t in tests["failed_ids"]), ""]
    lines += ["| op | batch | path | ms | GB/s | of peak | of copy | fused speed-up |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    by_key = {(r["op"], r["batch"], r["backend"]): r for r in report["timings"]}
    for r in report["timings"]:
        twin = by_key[(r["op"], r["batch"], "torch")]
        speed = f"{twin['ms'] / r['ms']:.1f}x" if r["backend"] == "cupy" else ""
        lines.append(f"| {r['op']} | {r['batch']} | {'fused' if r['backend'] == 'cupy' else 'twin'} | {r['ms']:.3f} | "
                     f"{r['gbs']:.0f} | {_pct(r['peak_fraction'])} | {_pct(r['copy_fraction'])} | {speed} |")
    for title, cases in PATHS.items():
        if not all((case, batch, be) in by_key for case in cases for batch in report["batches"]
                   for be in ("cupy", "torch")):
            continue
        lines += ["", f"{title}, ms per batch:", ""]
        for batch in report["batches"]:
            fused = sum(by_key[(case, batch, "cupy")]["ms"] for case in cases)
            twin = sum(by_key[(case, batch, "torch")]["ms"] for case in cases)
            lines.append(f"- batch {batch}: fused {fused:.3f}, twin {twin:.3f} ({twin / fused:.1f}x)")
    if report.get("diagnostics"):
        lines += ["", "Diagnostics:", ""] + [f"- {k}: {v}" for k, v in report["diagnostics"].items()]
    lines += ["", "Bytes = every input and output tensor once; GB/s = bytes / median time (CUDA events).", ""]
    return "\n".join(lines)


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.0f}"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results", help="folder for gpu_check.json/.md")
    parser.add_argument("--bandwidth-gbs", type=float, default=None, help="the card's peak memory bandwidth, GB/s")
    parser.add_argument("--bits", type=int, default=8, choices=(8, 10))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--skip-tests", action="store_true", help="benchmark only")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU: byte counts and the report, with placeholder times")
    args = parser.parse_args(argv)

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (use --dry-run to check the report without one)", file=sys.stderr)
        return 2
    if not args.dry_run and not cupy_ops.available():
        print(f"gpu_check: {cupy_ops.BackendUnavailable.__name__}: cupy cannot be imported; "
              "pip install cupy-cuda13x", file=sys.stderr)
        return 2
    cupy_version = (getattr(cupy_ops.load_cupy(), "__version__", "?") if cupy_ops.available() else "not installed")

    if args.dry_run:
        device = {"name": "dry run (no GPU)", "capability": None, "cuda": torch.version.cuda,
                  "peak_gbs": args.bandwidth_gbs or 1000.0, "peak_source": "--bandwidth-gbs or placeholder",
                  "copy_gbs": None}
        tests = {"ran": False, "reason": "dry run"}
        diag = {}
    else:
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        peak, source = peak_bandwidth(props.name, args.bandwidth_gbs)
        device = {"name": props.name, "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                  "memory_gib": round(props.total_memory / 2**30, 1), "sms": props.multi_processor_count,
                  "peak_gbs": peak, "peak_source": source, "copy_gbs": copy_bandwidth(iters=20)}
        tests = {"ran": False, "reason": "--skip-tests"} if args.skip_tests else run_tests()
        diag = diagnostics(args.bits)

    timings = benchmark(args.bits, tuple(args.batches), peak=device["peak_gbs"], copy=device["copy_gbs"],
                        iters=args.iters, dry_run=args.dry_run)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "dry_run": args.dry_run, "host": platform.node(), "torch": torch.__version__, "cupy": cupy_version,
              "bits": args.bits, "batches": list(args.batches), "device": device, "tests": tests,
              "diagnostics": diag, "timings": [asdict(t) for t in timings]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "gpu_check.md").write_text(to_markdown(report))
    print(to_markdown(report))
    failed = tests.get("failed", 0) + tests.get("error", 0) if tests.get("ran") else 0
    bad_parity = [k for k, v in diag.items() if (k.endswith("_equals_cpu_twin") and v is not True)
                  or (k.endswith("_off_spec") and v != 0)]
    return 1 if failed or bad_parity else 0


if __name__ == "__main__":
    sys.exit(main())
