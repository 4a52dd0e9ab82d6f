"""The 2/3 layer: in.mkv -> in.vsr.mkv at 2/3 of each side (Lanczos-3, tagged scale 3/2) -> restored
by the x2 upsampler and an antialiased bicubic reduction to the original size."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

import kernels
from tests.media_helpers import make_clip, read_back
from vsr_plugin.baselayer import BaseLayerError, BaseLayerTags, base_size, parse_tags
from vsr_plugin.cli import main
from vsr_plugin.engine import Upscaler
from vsr_plugin.measure.video import decode


def _tags(path) -> dict:
    with av.open(str(path)) as c:
        return {k.upper(): v for k, v in c.metadata.items()}


def _planes(frames):
    return [torch.from_numpy(np.stack([f.planes[k] for f in frames])) for k in range(3)]


@pytest.mark.parametrize("original,layer", [(1080, 720), (1920, 1280), (720, 480), (1081, 720), (97, 64), (61, 40),
                                            (3, 2), (1, 2)])
def test_layer_sides_are_two_thirds_rounded_to_even(original, layer):
    assert base_size(original, Fraction(3, 2)) == layer


def test_tags_say_scale_3_2_version_3_and_are_checked():
    tags = BaseLayerTags(scale=Fraction(3, 2), width=97, height=61, upsampler="up", upsampler_sha256="a" * 64)
    meta = tags.to_metadata()
    assert (meta["VSR_SCALE"], meta["VSR_RESOLUTION"], meta["VSR_FORMAT_VERSION"]) == ("3/2", "two-thirds", "3")
    assert parse_tags(meta, base_width=64, base_height=40, source="f") == tags
    with pytest.raises(BaseLayerError, match="scale 3/2 is format version 3, but the tags say 1"):
        parse_tags({**meta, "VSR_FORMAT_VERSION": "1"}, base_width=64, base_height=40, source="f")
    with pytest.raises(BaseLayerError, match="tags say 97x61 at x3/2, but the video is 50x32"):
        parse_tags(meta, base_width=50, base_height=32, source="f")
    with pytest.raises(BaseLayerError, match="VSR_SCALE is missing or not a positive number or fraction"):
        parse_tags({**meta, "VSR_SCALE": "1.5"}, base_width=64, base_height=40, source="f")
    with pytest.raises(BaseLayerError, match="VSR_SCALE 4/3 is not supported"):
        parse_tags({**meta, "VSR_SCALE": "4/3"}, base_width=72, base_height=46, source="f")


@pytest.mark.parametrize("pix_fmt,bits", [("yuv420p", 8), ("yuv420p10le", 10)])
def test_lossless_round_trip_is_the_resize_and_the_upsampler_exactly(tmp_path, tiny_pair, capsys, pix_fmt, bits):
    src = make_clip(tmp_path / "in.mkv", size=(97, 61), frames=4, vcodec="ffv1", pix_fmt=pix_fmt, audio=False)
    layer, restored = tmp_path / "in.vsr.mkv", tmp_path / "in.restored.mkv"
    down, up, folder = tiny_pair
    assert main([str(src), "--down-model", down, "--up-model", up, "--resolution", "two-thirds",
                 "--codec", "ffv1"]) == 0
    assert "Resizer(Lanczos-3, 64x40" in capsys.readouterr().err
    tags = _tags(layer)
    assert (tags["VSR_SCALE"], tags["VSR_RESOLUTION"], tags["VSR_FORMAT_VERSION"]) == ("3/2", "two-thirds", "3")
    assert (tags["VSR_WIDTH"], tags["VSR_HEIGHT"], tags["VSR_UPSAMPLER"]) == ("97", "61", "pair-up")
    original, base = decode(src), decode(layer)
    assert (base[0].width, base[0].height, len(base), base[0].bits) == (64, 40, 4, bits)
    want = kernels.resize(*_planes(original), height=40, width=64, kernel="lanczos", bits=bits)
    assert all(torch.equal(torch.from_numpy(np.stack([f.planes[k] for f in base])), want[k]) for k in range(3))
    assert main([str(layer), "--weights-dir", folder, "--codec", "ffv1"]) == 0
    back = decode(restored)
    assert (back[0].width, back[0].height, len(back)) == (97, 61, 4)
    expected = Upscaler(up, device="cpu").upscale_frames_to(base, 61, 97)  # the CLI's default dtype
    assert all(a.equals(b) for a, b in zip(back, expected))


def test_coded_layer_keeps_audio_and_timing(tmp_path, tiny_pair, capsys):
    src = make_clip(tmp_path / "in.mkv", size=(128, 72), frames=8, audio=True)
    layer, restored = tmp_path / "in.vsr.mkv", tmp_path / "in.restored.mkv"
    down, up, folder = tiny_pair
    assert main([str(src), "--down-model", down, "--up-model", up, "--resolution", "two-thirds", "--crf", "20",
                 "-q"]) == 0
    a = read_back(layer)
    assert (a["width"], a["height"], a["frames"], len(a["audio"])) == (86, 48, 8, 1)
    assert main([str(layer), "--weights-dir", folder, "-q"]) == 0
    b, s = read_back(restored), read_back(src)
    assert (b["width"], b["height"], b["frames"]) == (128, 72, 8)
    assert b["times"] == pytest.approx(s["times"], abs=1e-3)
    assert b["audio"][0][1] == pytest.approx(s["audio"][0][1], abs=0.03)


def test_two_pass_rate_reaches_the_two_thirds_layer(tmp_path, tiny_pair, capsys):
    src = make_clip(tmp_path / "in.mkv", size=(192, 108), frames=50, audio=False)
    layer = tmp_path / "in.vsr.mkv"
    down, up, _ = tiny_pair
    assert main([str(src), "--down-model", down, "--up-model", up, "--resolution", "two-thirds", "--bitrate", "150k",
                 "-o", str(layer)]) == 0
    err = capsys.readouterr().err
    assert "passes in" in err and "for a target of 150" in err
    kbps = float(err.split("passes in")[1].split("video ")[1].split(" kbps")[0])
    assert abs(kbps / 150 - 1) < 0.05
    assert (read_back(layer)["width"], _tags(layer)["VSR_SCALE"]) == (128, "3/2")


def test_auto_chooses_the_two_thirds_layer_on_the_bundled_clip_and_restores_it(tmp_path, capsys):
    """The shipped pair on the bundled clip's first second at CRF 30: the 2/3 layer leads full size and
    the 2x layer on the probes (+3.45 VMAF over full when measured), is coded at the CRF the probes
    found, tagged 3/2 with the decision, and restores to 480x270."""
    from tests.conftest import REPO

    layer, restored = tmp_path / "bbb.vsr.mkv", tmp_path / "bbb.restored.mkv"
    assert main([str(REPO / "samples/bbb_480x270.mp4"), "-o", str(layer), "--crf", "30", "--frames", "24"]) == 0
    line = next(ln for ln in capsys.readouterr().err.splitlines() if "resolution auto:" in ln)
    assert "resolution auto: two-thirds (2/3 layer, CRF " in line and ", two-thirds " in line and ", half " in line
    tags = _tags(layer)
    assert (tags["VSR_SCALE"], tags["VSR_RESOLUTION"], tags["VSR_FORMAT_VERSION"]) == ("3/2", "two-thirds", "3")
    assert tags["VSR_DECISION"] == line.split("vsr-transcode: ", 1)[1]
    assert (read_back(layer)["width"], read_back(layer)["height"]) == (320, 180)
    assert main([str(layer), "-o", str(restored), "-q"]) == 0
    b = read_back(restored)
    assert (b["width"], b["height"], b["frames"]) == (480, 270, 24)


def test_auto_at_a_bitrate_codes_the_chosen_layer_at_that_bitrate(tmp_path, capsys):
    from tests.conftest import REPO

    layer = tmp_path / "bbb.vsr.mkv"
    assert main([str(REPO / "samples/bbb_480x270.mp4"), "-o", str(layer), "--bitrate", "200k", "--frames", "24"]) == 0
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "resolution auto:" in ln)
    assert "resolution auto: two-thirds (2/3 layer) — at 200 kbps on the probes" in line  # no CRF: two passes
    assert "passes in" in err and "for a target of 200" in err
    assert _tags(layer)["VSR_SCALE"] == "3/2"
