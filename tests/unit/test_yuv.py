import numpy as np
import pytest

from vsr_plugin.yuv import (Colorimetry, Frame, chroma_shape, frame_to_rgb, max_code, rgb_to_frame,
                            subsample_420)


@pytest.mark.parametrize("h,w,want", [(1, 1, (1, 1)), (2, 2, (1, 1)), (199, 333, (100, 167)), (1080, 1920, (540, 960))])
def test_chroma_shape(h, w, want):
    assert chroma_shape(h, w) == want


def test_frame_validates_dtype_and_geometry():
    y = np.zeros((5, 7), np.uint8)
    c = np.zeros((3, 4), np.uint8)
    Frame(y=y, u=c, v=c)
    with pytest.raises(ValueError, match="must be uint16"):
        Frame(y=y, u=c, v=c, bits=10)
    with pytest.raises(ValueError, match=r"U plane must be \(3, 4\)"):
        Frame(y=y, u=np.zeros((2, 4), np.uint8), v=c)
    with pytest.raises(ValueError, match="unsupported bit depth 9"):
        Frame(y=y, u=c, v=c, bits=9)


def test_colorimetry_validation():
    with pytest.raises(ValueError, match="colour range"):
        Colorimetry(range="tv")
    with pytest.raises(ValueError, match="chroma location"):
        Colorimetry(chroma_location="middle")
    assert Colorimetry.bt709().describe().startswith("bt709/bt709/bt709, limited")


@pytest.mark.parametrize("rgb,bits,rng,want", [
    ((255, 255, 255), 8, "limited", (235, 128, 128)),
    ((0, 0, 0), 8, "limited", (16, 128, 128)),
    ((255, 0, 0), 8, "limited", (81, 90, 240)),      # BT.601 red
    ((255, 255, 255), 10, "limited", (940, 512, 512)),
    ((255, 255, 255), 8, "full", (255, 128, 128)),
    ((0, 0, 0), 10, "full", (0, 512, 512)),
])
def test_rgb_to_yuv_reference_colours(rgb, bits, rng, want):
    img = np.broadcast_to(np.array(rgb, np.uint8), (3, 5, 3))
    f = rgb_to_frame(img, matrix=6, bits=bits, range=rng)
    assert f.y.shape == (3, 5) and f.u.shape == (2, 3)
    assert (int(f.y[0, 0]), int(f.u[0, 0]), int(f.v[0, 0])) == want
    assert f.y.dtype == (np.uint8 if bits == 8 else np.uint16)
    assert f.colorimetry.chroma_location == "center"


def test_bt709_red_differs_from_bt601():
    img = np.broadcast_to(np.array((255, 0, 0), np.uint8), (2, 2, 3))
    assert int(rgb_to_frame(img, matrix=1).y[0, 0]) == 63  # 16 + 219 * 0.2126 = 62.56


def test_rgb_round_trip_close_on_flat_colours():
    rng = np.random.default_rng(0)
    colours = rng.integers(30, 220, (16, 3), dtype=np.uint8)
    img = np.repeat(np.repeat(colours[None], 4, axis=0), 4, axis=1)  # flat 4x4 patches per colour
    img = img.reshape(4, 16 * 4, 3)
    back = frame_to_rgb(rgb_to_frame(img))
    assert np.abs(back.astype(int) - img.astype(int)).max() <= 2


def test_subsample_420_odd_edges_replicated():
    p = np.arange(15, dtype=np.float64).reshape(3, 5)
    s = subsample_420(p)
    assert s.shape == (2, 3)
    assert s[0, 0] == (0 + 1 + 5 + 6) / 4
    assert s[1, 2] == 14.0  # bottom-right sample replicated to a full 2x2 block


def test_max_code():
    assert max_code(8) == 255 and max_code(10) == 1023


def test_frame_planes_by_position_and_refused_bad_planes():
    y = np.zeros((4, 6), np.uint16)
    c = np.zeros((2, 3), np.uint16)
    f = Frame(y, c, c, bits=10)  # as the README shows it
    assert (f.width, f.height, f.bits) == (6, 4, 10)
    with pytest.raises(TypeError):
        Frame(y, c, c, 10)  # bit depth and colorimetry are keyword-only
    with pytest.raises(ValueError, match="at least 1x1 pixels, got 0x0"):
        Frame(np.zeros((0, 0), np.uint8), np.zeros((0, 0), np.uint8), np.zeros((0, 0), np.uint8))
    bad = y.copy()
    bad[1, 2] = 1024
    with pytest.raises(ValueError, match="Y plane holds code 1024, above the 10-bit maximum 1023"):
        Frame(bad, c, c, bits=10)
    Frame(np.full((4, 6), 65535, np.uint16), c, c, bits=16)  # 16 bits use the whole range
