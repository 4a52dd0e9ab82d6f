"""vsr-bench sr on a tiny synthetic set, and the shipped weights on Set5 when the data is present."""

import json
import math

import pytest
import torch
from PIL import Image

import numpy as np

from encoder.benchmarks.bench import detailed_crop, main, sr_case
from vsr_plugin.yuv import frame_to_rgb
from tests.conftest import SHARED_DATA, smooth_rgb
from tests.unit.test_models import randomised
from vsr_plugin.models import PRESETS, Upsampler, UpsamplerConfig, save_upsampler, shipped_models


@pytest.fixture
def bench_root(tmp_path):
    root = tmp_path / "data"
    (root / "Tiny").mkdir(parents=True)
    for i, (h, w) in enumerate(((64, 48), (51, 77))):  # one odd size: crop to a multiple of 2
        Image.fromarray(smooth_rgb(h, w, seed=10 + i)).save(root / "Tiny" / f"t{i}.png")
    return root


def test_protocol_geometry():
    lr, hr = sr_case(smooth_rgb(51, 77, seed=0), 2)
    assert (hr.height, hr.width) == (50, 76) and (lr.height, lr.width) == (25, 38)
    assert lr.u.shape == (13, 19)


def test_bench_sr_writes_json_and_markdown(bench_root, tiny_pair, tmp_path, capsys):
    zero = tmp_path / "zero"
    save_upsampler(zero, Upsampler(PRESETS["fast"]))  # the bilinear base
    trained = tmp_path / "rand"
    save_upsampler(trained, randomised(UpsamplerConfig(channels=16, blocks=1)))
    out = tmp_path / "out"
    down, up, _ = tiny_pair
    argv = ["sr", "--data", str(bench_root), "--sets", "Tiny", "--models", f"{zero},{trained}", "--out", str(out),
            "--pairs", down, "--quiet", "--save-images", str(tmp_path / "img")]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| bicubic (PIL, a=-0.5) |" in table and "ms/frame" in table
    data = json.loads((out / "sr_x2.json").read_text())
    res = data["results"]
    pair = f"pair {down}"
    assert set(res) == {"bicubic", "lanczos", str(zero), str(trained), pair}
    for r in res.values():
        assert 20 < r["sets"]["Tiny"]["psnr_y"] < 60 and 0 < r["sets"]["Tiny"]["ssim_y"] <= 1
        assert r["sets"]["Tiny"]["images"] == 2
    assert res[str(zero)]["params"] == sum(p.numel() for p in Upsampler(PRESETS["fast"]).parameters())
    assert res[str(zero)]["cpu_ms_960x540"] > 0 and data["speed"]["torch_bicubic_ms"] > 0
    # the pair's base layer is a near-bicubic downscale (tiny random residual), so it tracks the LR closely
    assert res[pair]["sets"]["Tiny"]["base_psnr_y"] > 35
    assert res[pair]["weights"] == ["pair-down", "pair-up"] and res[pair]["params"] > 0
    assert (out / "sr_x2.md").read_text().count("\n|") >= 6 and "[base " in table
    assert "\nSpeed: " in (out / "sr_x2.md").read_text()
    assert (tmp_path / "img" / "Tiny" / "bicubic" / "t1.png").is_file()
    assert Image.open(tmp_path / "img" / "Tiny" / "zero" / "t1.png").size == (76, 50)
    # side by side: bicubic | two models | the pair | HR, each the same 50x50 crop (the image's short side)
    panel = np.asarray(Image.open(tmp_path / "img" / "Tiny" / "side_by_side" / "t1.png"))
    assert panel.shape == (50, 5 * 50 + 4 * 4, 3)
    hr = frame_to_rgb(sr_case(smooth_rgb(51, 77, seed=11), 2)[1])
    top, left, edge = detailed_crop(sr_case(smooth_rgb(51, 77, seed=11), 2)[1].y)
    assert np.array_equal(panel[:, -50:], hr[top:top + edge, left:left + edge])  # the last panel is the reference
    assert (panel[:, 50:54] == 255).all()  # white gaps


def test_detailed_crop_finds_the_textured_corner():
    y = np.full((256, 256), 128, np.uint8)
    y[160:, 32:160] = np.random.default_rng(0).integers(0, 255, (96, 128))
    top, left, edge = detailed_crop(y, 64)
    assert edge == 64 and 160 <= top <= 192 and 32 <= left <= 96


def test_bench_sr_refine_adds_a_refined_row_per_pair(bench_root, tiny_pair, tmp_path, capsys):
    """``--refine N``: each pair also with its base layer refined for its upsampler, and named so;
    naming another upsampler than the sibling names the row ``DOWN:UP``."""
    down, up, _ = tiny_pair
    out = tmp_path / "out"
    argv = ["sr", "--data", str(bench_root), "--sets", "Tiny", "--models", "x2-fast", "--out", str(out), "--no-speed",
            "--pairs", f"{down},{down}:x2-fast", "--refine", "20", "--refine-base-weight", "0", "--quiet"]
    assert main(argv) == 0
    res = json.loads((out / "sr_x2.json").read_text())["results"]
    names = [f"pair {down}", f"pair {down}:x2-fast"]
    assert set(res) == {"bicubic", "lanczos", "x2-fast", *names, *(f"{n} refined 20" for n in names)}
    for n in names:
        plain, refined = res[n]["sets"]["Tiny"], res[f"{n} refined 20"]["sets"]["Tiny"]
        assert refined["psnr_y"] > plain["psnr_y"] and refined["base_psnr_y"] < plain["base_psnr_y"]
    md = (out / "sr_x2.md").read_text()
    assert "Refined pairs: the base layer optimised for its upsampler, 20 Adam steps" in md
    assert "Speed:" not in md  # --no-speed: no timing header
    assert main(argv[:-5] + ["--refine=-1", "--quiet"]) == 2
    assert "refinement steps must be >= 0" in capsys.readouterr().err


def test_pair_without_upsampler_is_a_clear_error(bench_root, tiny_model, capsys):
    assert main(["sr", "--data", str(bench_root), "--sets", "Tiny", "--pairs", tiny_model, "--quiet"]) == 2
    assert f"no upsampler paired with {tiny_model!r}: name it as DOWN:UP" in capsys.readouterr().err


def test_missing_set_is_a_clear_error(bench_root, capsys):
    assert main(["sr", "--data", str(bench_root), "--sets", "Set5", "--quiet"]) == 2
    assert "benchmark set 'Set5' not found" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED_DATA / "Set5").is_dir(), reason="shared data not present")
@pytest.mark.skipif("x2-default" not in shipped_models(), reason="no shipped weights")
def test_shipped_default_meets_its_set5_floor(tmp_path):
    """A regression floor for the shipped weights (the README's model card states the exact figure)."""
    assert main(["sr", "--data", str(SHARED_DATA), "--sets", "Set5", "--no-speed", "--quiet",
                 "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "sr_x2.json").read_text())["results"]
    assert res["x2-default"]["sets"]["Set5"]["psnr_y"] >= 36.8
    assert res["x2-fast"]["sets"]["Set5"]["psnr_y"] >= res["bicubic"]["sets"]["Set5"]["psnr_y"] + 2.5
    assert not math.isnan(res["lanczos"]["sets"]["Set5"]["psnr_y"])
    if "x2-codec-default-up" in shipped_models():  # the pair, lossless base layer: watchable and restorable
        pair = res["pair x2-codec-default-down"]["sets"]["Set5"]
        assert pair["base_psnr_y"] >= 30.0 and pair["psnr_y"] >= 36.5
