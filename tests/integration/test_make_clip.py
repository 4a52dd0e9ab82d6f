"""vsr-bench make-clip: deterministic, really moving, rendered by downsampling, refuses to upscale."""

import numpy as np
import pytest
from PIL import Image

from encoder.benchmarks.bench import main
from encoder.benchmarks.clips import ClipSpec, make_clip, plan
from vsr_plugin.measure.resample import downscale2, upscale2
from vsr_plugin.measure.video import read_clip


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Four 'photos' with detail at every scale (smooth shapes plus fine texture), 160x120 each."""
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:120, 0:160]
    paths = []
    for i in range(4):
        smooth = 120 + 60 * np.sin(xx / (9 + 3 * i)) * np.cos(yy / (13 - i))
        texture = rng.normal(0, 25, (120, 160))
        rgb = np.stack([smooth + texture, smooth * 0.8 + texture, 200 - smooth * 0.5 + texture], axis=-1)
        p = d / f"p{i}.png"
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(p)
        paths.append(str(p))
    return paths


def _high_frequency_share(y: np.ndarray) -> float:
    """Share of the (mean-removed) spectral energy above half the Nyquist frequency on either axis."""
    spec = np.abs(np.fft.fft2(y.astype(np.float64) - y.mean())) ** 2
    fy = np.abs(np.fft.fftfreq(y.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(y.shape[1]))[None, :]
    return float(spec[(fy > 0.25) | (fx > 0.25)].sum() / spec.sum())


@pytest.mark.parametrize("suffix", [".y4m", ".mkv"])
def test_same_bytes_twice(photos, tmp_path, suffix):
    argv = photos + ["--mosaic", "2x2", "--size", "96x64", "--frames", "4", "--quiet"]
    assert main(["make-clip", *argv, "-o", str(tmp_path / f"a{suffix}")]) == 0
    assert main(["make-clip", *argv, "-o", str(tmp_path / f"b{suffix}")]) == 0
    a, b = (tmp_path / f"a{suffix}").read_bytes(), (tmp_path / f"b{suffix}").read_bytes()
    assert a == b
    if suffix == ".y4m":
        assert len(a) == a.index(b"\n") + 1 + 4 * (len(b"FRAME\n") + 96 * 64 * 3 // 2)
    else:
        assert a[:4] == b"\x1aE\xdf\xa3" and len(a) > 1000  # Matroska (FFV1 compresses)


def test_motion_is_real_and_frames_are_not_upscales(photos, tmp_path):
    out = tmp_path / "pan.y4m"
    make_clip(photos, out, ClipSpec(width=97, height=63, frames=6), mosaic=(2, 2))  # odd size too
    clip = read_clip(out)
    assert (clip.width, clip.height, len(clip.frames), clip.bits) == (97, 63, 6, 8)
    c = clip.colorimetry
    assert (c.range, c.chroma_location) == ("limited", "left")
    ys = [f.y.astype(np.int32) for f in clip.frames]
    for a, b in zip(ys, ys[1:]):
        assert np.abs(a - b).mean() > 0.5  # every frame moved
    for f in clip.frames:
        assert 16 <= f.y.min() and f.y.max() <= 235  # limited range
        share = _high_frequency_share(f.y)
        blurred = _high_frequency_share(upscale2(downscale2(f, "bicubic"), "bicubic", f.height, f.width).y)
        assert share > 4 * blurred  # detail up to Nyquist, unlike a 2x-upscaled smaller picture (measured ~7x)


def test_plan_is_slow_subpixel_pan_and_zoom():
    spec = ClipSpec(width=96, height=64, frames=8, pan=(0.4, 0.2), zoom=1.05)
    w = plan(400, 600, spec)
    scales = [x.scale for x in w]
    assert min(scales) >= 1 and scales == sorted(scales, reverse=True)  # zooming in, never upscaling
    assert scales[0] / scales[-1] == pytest.approx(1.05)
    centre = [(x.x0 + 48 * x.scale, x.y0 + 32 * x.scale) for x in w]
    steps = [(b[0] - a[0]) / ((w[0].scale * w[-1].scale) ** 0.5) for a, b in zip(centre, centre[1:])]
    assert steps == pytest.approx([0.4] * 7)  # 0.4 output pixels per frame
    for x in w:  # inside the canvas, filter margin included
        assert x.x0 >= 0 and x.y0 >= 0 and x.x0 + 96 * x.scale <= 600 and x.y0 + 64 * x.scale <= 400


def test_10_bit_clip(photos, tmp_path):
    out = tmp_path / "ten.mkv"
    make_clip(photos[:1], out, ClipSpec(width=64, height=48, frames=2, bits=10))
    clip = read_clip(out)
    assert clip.bits == 10 and clip.colorimetry.matrix == 1 and 64 <= clip.frames[0].y.min()


@pytest.mark.parametrize("extra,message", [
    (["--size", "320x240"], "would need upscaling"),
    (["--mosaic", "2x2"], "--mosaic 2x2 takes 4 photos, got 1"),
    (["--size", "96x"], "bad --size"),
    (["--frames", "1"], "--frames must be >= 2"),
])
def test_refusals_are_one_line(photos, tmp_path, capsys, extra, message):
    out = tmp_path / "x.y4m"
    assert main(["make-clip", photos[0], "-o", str(out), "--size", "96x64", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists() and not list(tmp_path.iterdir())


def test_mosaic_makes_room_for_a_larger_render(photos, tmp_path, capsys):
    one = ["make-clip", photos[0], "--size", "200x150", "--frames", "2", "--quiet"]
    assert main([*one, "-o", str(tmp_path / "a.y4m")]) == 2
    assert "would need upscaling" in capsys.readouterr().err
    assert main(["make-clip", *photos, "--mosaic", "2x2", "--size", "200x150", "--frames", "2", "--quiet",
                 "-o", str(tmp_path / "b.y4m")]) == 0
    assert read_clip(tmp_path / "b.y4m").width == 200
