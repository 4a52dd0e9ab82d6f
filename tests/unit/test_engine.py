import numpy as np
import pytest
import torch

from tests.conftest import random_planes, smooth_rgb
from tests.unit.test_models import randomised
from vsr_plugin.engine import Downscaler, EngineOptions, Upscaler, default_batch
from vsr_plugin.models import UpsamplerConfig
from vsr_plugin.yuv import Colorimetry, rgb_to_frame


@pytest.fixture(scope="module")
def engine():
    return Upscaler(randomised(UpsamplerConfig(channels=16, blocks=3), seed=3), device="cpu")


def _planes_from_image(h, w, bits, seed=1):
    f = rgb_to_frame(smooth_rgb(h, w, seed=seed), bits=bits)
    return tuple(torch.from_numpy(p.astype(np.int32)).to(torch.uint8 if bits == 8 else torch.uint16)[None]
                 for p in f.planes)


@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("tile,h,w", [(32, 150, 98), (48, 199, 333), (16, 41, 37)])
def test_tiled_equals_untiled_within_one(engine, bits, tile, h, w):
    planes = _planes_from_image(h, w, bits)
    whole = engine.upscale_planes(*planes, bits=bits)
    tiled = Upscaler(engine.net, device="cpu", tile=tile).upscale_planes(*planes, bits=bits)
    for a, b in zip(whole, tiled):
        diff = (a.to(torch.int32) - b.to(torch.int32)).abs()
        assert a.shape == b.shape and int(diff.max()) <= 1
        assert float((diff > 0).float().mean()) < 0.01


def test_tiles_without_overlap_do_differ(engine):
    """The overlap is what makes tiling exact: without it, tile borders show."""
    planes = _planes_from_image(96, 96, 8)
    whole = engine.upscale_planes(*planes, bits=8)
    seams = Upscaler(engine.net, device="cpu", tile=32, tile_overlap=0).upscale_planes(*planes, bits=8)
    assert int((whole[0].to(torch.int32) - seams[0].to(torch.int32)).abs().max()) > 1


def test_batches_equal_single_frames(engine):
    frames = [rgb_to_frame(smooth_rgb(21, 35, seed=s), bits=8) for s in range(5)]
    batched = Upscaler(engine.net, device="cpu", batch=3).upscale_frames(frames)
    for f, b in zip(frames, batched):
        assert b.equals(engine.upscale(f))


def test_frame_api_odd_size_keeps_metadata(engine):
    frame = rgb_to_frame(smooth_rgb(199, 333, seed=2), bits=10).with_planes(
        *rgb_to_frame(smooth_rgb(199, 333, seed=2), bits=10).planes)
    tagged = frame.__class__(y=frame.y, u=frame.u, v=frame.v, bits=10, colorimetry=Colorimetry.bt709())
    out = engine.upscale(tagged)
    assert out.y.shape == (398, 666) and out.u.shape == (199, 333) and out.y.dtype == np.uint16
    assert out.colorimetry == Colorimetry.bt709() and out.bits == 10


def test_mixed_sizes_in_one_call(engine):
    frames = [rgb_to_frame(smooth_rgb(h, w, seed=0)) for h, w in ((10, 12), (10, 12), (7, 9))]
    out = Upscaler(engine.net, device="cpu", batch=4).upscale_frames(frames)
    assert [o.y.shape for o in out] == [(20, 24), (20, 24), (14, 18)]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_dtypes_run_on_cpu(engine, dtype):
    up = Upscaler(engine.net, device="cpu", dtype=dtype)
    y, u, v = up.upscale_planes(*random_planes(1, 16, 16, 8), bits=8)
    assert y.shape == (1, 32, 32) and y.dtype == torch.uint8


def test_bf16_stays_close_to_fp32(engine):
    planes = _planes_from_image(64, 64, 8)
    a = engine.upscale_planes(*planes, bits=8)[0].to(torch.int32)
    b = Upscaler(engine.net, device="cpu", dtype="bf16").upscale_planes(*planes, bits=8)[0].to(torch.int32)
    assert float((a - b).abs().float().mean()) < 1.0


def test_options_are_validated():
    with pytest.raises(ValueError, match="dtype must be one of"):
        EngineOptions(dtype="fp8")
    with pytest.raises(ValueError, match="tile must be an even number"):
        EngineOptions(tile=15)
    with pytest.raises(ValueError, match="batch must be"):
        EngineOptions(batch=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_an_error(engine):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        Upscaler(engine.net, device="cuda")


@pytest.mark.parametrize("bits,h,w", [(8, 37, 50), (10, 21, 17)])
def test_a_downsampler_with_a_zero_tail_is_skipped_exactly(bits, h, w):
    """A downsampler whose last layer is all zeros adds nothing: the engine skips packing and the
    network, and the planes are those of the full path."""
    import kernels
    from vsr_plugin.engine import Downscaler
    from vsr_plugin.models import Downsampler, DownsamplerConfig

    net = Downsampler(DownsamplerConfig(channels=8, blocks=1))  # the tail starts at zero
    engine = Downscaler(net, device="cpu", dtype="fp32")
    assert engine.zero_residual
    planes = _planes_from_image(h, w, bits)
    packed = kernels.pack(*planes, bits=bits, block=4, dtype=torch.float32)
    with torch.inference_mode():
        full = kernels.unpack_downscale(net(packed), *planes, bits=bits)
    for a, b in zip(engine.downscale_planes(*planes, bits=bits), full):
        assert torch.equal(a, b)
    with torch.no_grad():
        net.tail.bias[0] = 0.01
    assert not Downscaler(net, device="cpu", dtype="fp32").zero_residual


def test_default_batch_follows_the_device():
    assert Upscaler("fast", device="cpu").options.batch == 1
    assert Downscaler("x2-codec-default-down", device="cpu").options.batch == 1
    assert Upscaler("fast", device="cpu", batch=3).options.batch == 3
    assert default_batch(torch.device("cuda")) == 4 and default_batch(torch.device("cpu")) == 1
