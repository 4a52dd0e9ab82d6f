"""kernels/gpu_check.py without a GPU: its byte accounting and report (the timing needs a GPU)."""

from __future__ import annotations

import json

import pytest
import torch

from kernels import gpu_check


def test_bytes_moved_counts_every_input_and_output_once():
    args, kw = gpu_check.make_inputs("unpack_upscale", 4, 10, "meta")
    lr = 1920 * 1080 + 2 * 960 * 540
    residual = 4 * 24 * 540 * 960 * 2
    assert gpu_check.bytes_moved("unpack_upscale", args, kw) == residual + 4 * 2 * (lr + 4 * lr)  # uint16 in and out
    args, kw = gpu_check.make_inputs("pack", 1, 8, "meta")
    assert gpu_check.bytes_moved("pack", args, kw) == lr + 6 * 540 * 960 * 2
    args, kw = gpu_check.make_inputs("unpack", 1, 8, "meta")
    assert gpu_check.bytes_moved("unpack", args, kw) == 6 * 540 * 960 * 2 + lr
    # the downsampler: a 1920x1080 frame (= lr above) -> 960x540 (a quarter of it)
    args, kw = gpu_check.make_inputs("pack_b4", 1, 8, "meta")
    assert kw["block"] == 4 and gpu_check.bytes_moved("pack_b4", args, kw) == lr + 24 * 270 * 480 * 2
    args, kw = gpu_check.make_inputs("unpack_downscale", 4, 10, "meta")
    assert args[0].shape == (4, 6, 270, 480)
    assert gpu_check.bytes_moved("unpack_downscale", args, kw) == 4 * 6 * 270 * 480 * 2 + 4 * 2 * (lr + lr // 4)
    # the 2/3 layer's reduction: 2560x1440 (16/9 of lr) -> 1920x1080, 8-bit
    args, kw = gpu_check.make_inputs("resize", 1, 8, "meta")
    from vsr_plugin.engine import REDUCTION_KERNEL
    assert (kw["height"], kw["width"], kw["kernel"]) == (1080, 1920, "bicubic") and REDUCTION_KERNEL == "bicubic"
    assert gpu_check.bytes_moved("resize", args, kw) == lr * 16 // 9 + lr


def test_dry_run_writes_the_report(tmp_path):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path), "--bandwidth-gbs", "2000"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and report["batches"] == [1, 4]
    rows = report["timings"]
    assert {(r["op"], r["batch"], r["backend"]) for r in rows} == {
        (op, b, be) for op in gpu_check.OPS for b in (1, 4) for be in ("cupy", "torch")}
    for r in rows:
        assert r["gbs"] == pytest.approx(r["bytes"] / (r["ms"] * 1e-3) / 1e9)
        assert r["peak_fraction"] == pytest.approx(r["gbs"] / 2000)
    md = (tmp_path / "gpu_check.md").read_text()
    assert "DRY RUN" in md and "| unpack_upscale | 4 | fused |" in md and "batch 4: fused" in md
    assert "| unpack_downscale | 1 | twin |" in md and "| pack_b4 | 4 | fused |" in md
    assert "Upsampler path" in md and "Downsampler path (pack_b4 + unpack_downscale)" in md


def test_report_lists_failures_and_diagnostics():
    row = dict(op="pack", batch=1, backend="cupy", ms=0.5, bytes=10**9, gbs=2000.0, peak_fraction=0.6,
               copy_fraction=0.7)
    timings = [row, {**row, "backend": "torch", "ms": 2.0}, {**row, "op": "unpack_upscale"},
               {**row, "op": "unpack_upscale", "backend": "torch", "ms": 4.0}]
    report = {"date": "d", "dry_run": False, "torch": "t", "cupy": "c", "bits": 8, "batches": [1],
              "device": {"name": "GPU", "cuda": "13", "peak_gbs": 3350.0, "peak_source": "s", "copy_gbs": 2900.0},
              "tests": {"ran": True, "passed": 3, "failed": 1, "failed_ids": ["tests/kernels/test_cupy.py::x"]},
              "diagnostics": {"pack_fused_equals_cpu_twin": True}, "timings": timings}
    md = gpu_check.to_markdown(report)
    assert "passed 3, failed 1" in md and "`tests/kernels/test_cupy.py::x`" in md
    assert "| pack | 1 | fused | 0.500 | 2000 | 60% | 70% | 4.0x |" in md
    assert "batch 1: fused 1.000, twin 6.000 (6.0x)" in md and "pack_fused_equals_cpu_twin: True" in md
    assert "Downsampler path" not in md  # its cases were not timed


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_it_refuses_clearly(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "gpu_check.json").exists()
