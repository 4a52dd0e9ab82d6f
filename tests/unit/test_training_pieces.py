"""Training machinery that is not a network: precision choice, the batch prefetcher."""

import threading
from fractions import Fraction

import pytest
import torch

import kernels
from encoder.training.data import BatchPrefetcher, CropSampler, SRPair, make_pair
from encoder.training.train import config_from_args, resolve_amp
from tests.conftest import smooth_rgb
from vsr_plugin.cpu_features import has_native_bf16
from vsr_plugin.engine import Resizer
from vsr_plugin.yuv import rgb_to_frame


@pytest.mark.parametrize("flags,native", [
    ({"avx2", "fma"}, False),
    ({"avx512f", "avx512bw"}, False),  # AVX-512 without BF16: torch emulates bf16, slower than fp32
    ({"avx512f", "avx512_bf16"}, True),
    ({"amx_tile", "amx_bf16"}, True),
    (set(), False),
])
def test_native_bf16_is_read_from_the_cpu_flags(flags, native):
    assert has_native_bf16(frozenset(flags)) is native


def test_amp_auto_follows_the_device(monkeypatch):
    import encoder.training.train as train_module
    cpu = torch.device("cpu")
    monkeypatch.setattr(train_module, "has_native_bf16", lambda: True)
    assert resolve_amp("auto", cpu) == "bf16"
    assert resolve_amp("auto", cpu, "joint") == "none"  # the downsampler stalls in bf16 on the CPU
    monkeypatch.setattr(train_module, "has_native_bf16", lambda: False)
    assert resolve_amp("auto", cpu) == "none"
    assert resolve_amp("auto", torch.device("cuda")) == "bf16"
    assert resolve_amp("none", torch.device("cuda")) == "none" and resolve_amp("bf16", cpu) == "bf16"


def _sampler() -> CropSampler:
    g = torch.Generator().manual_seed(0)
    pairs: list[SRPair] = [make_pair(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy(), 2)
                           for h, w in ((64, 96), (80, 64), (72, 72))]
    return CropSampler(pairs, scale=2, crop=32)


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))


def test_prefetched_batches_depend_on_their_index_only():
    sampler = _sampler()
    with BatchPrefetcher(sampler, batch=3, seed=7, start=0, depth=1) as slow, \
            BatchPrefetcher(sampler, batch=3, seed=7, start=0, depth=8) as deep:
        first = [slow.next() for _ in range(6)]
        assert all(_same(a, deep.next()) for a in first)
    # a resumed run starting at batch 4 sees batches 4, 5 of the uninterrupted one
    with BatchPrefetcher(sampler, batch=3, seed=7, start=4) as resumed:
        assert _same(resumed.next(), first[4]) and _same(resumed.next(), first[5])
    with BatchPrefetcher(sampler, batch=3, seed=8, start=0) as other:
        assert not _same(other.next(), first[0])
    lr, hr = first[0]
    assert [tuple(p.shape) for p in lr + hr] == [(3, 16, 16), (3, 8, 8), (3, 8, 8), (3, 32, 32), (3, 16, 16),
                                                  (3, 16, 16)]
    assert all(p.dtype == torch.uint8 for p in lr + hr)


def test_prefetcher_thread_ends_on_exit_and_errors_reach_the_caller():
    sampler = _sampler()
    with BatchPrefetcher(sampler, batch=2, seed=0, start=0) as batches:
        batches.next()
    assert not any(t.name == "vsr-batches" for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="cannot sample"):  # raised on the thread, re-raised here
        with BatchPrefetcher(sampler, batch=-1, seed=0, start=0) as broken:
            broken.next()
    assert not any(t.name == "vsr-batches" for t in threading.enumerate())


def test_mixed_codec_degradation_makes_one_spec_per_codec():
    cfg = config_from_args(["--degradation", "x264+x265", "--degrade-crf", "20,30"])
    assert [s.codec for s in cfg.degrade_specs()] == ["x264", "x265"]
    assert {s.crf for s in cfg.degrade_specs()} == {(20, 30)}


def test_docs_multiframe_trial_arms_start_as_the_single_frame_network_and_windows_clamp():
    import numpy as np

    from docs.multiframe_trial import WiderHead, _window, crf_plane, restore
    from vsr_plugin.models import Upsampler, UpsamplerConfig

    torch.manual_seed(0)
    single = Upsampler(UpsamplerConfig(channels=8, blocks=1))
    torch.nn.init.normal_(single.tail.weight, std=0.05)  # a non-zero residual to compare
    temporal, conditioned = WiderHead(single, 18, 6), WiderHead(single, 7, 0)
    assert temporal.body[0].in_channels == 18 and temporal.tail is single.tail
    rng = np.random.default_rng(0)
    seq = {f"lr_{p}": rng.integers(0, 256, (1, 4, *s), dtype=np.uint8) for p, s in zip("yuv", [(8, 10), (4, 5), (4, 5)])}
    seq |= {f"hr_{p}": rng.integers(0, 256, (1, 4, *s), dtype=np.uint8) for p, s in zip("yuv", [(16, 20), (8, 10), (8, 10)])}
    lr, hr = _window(seq, 0, 0, 3, (2, 4, 4))  # frame 0: its own previous frame
    assert [k for k in range(4) if np.array_equal(lr[0][0], seq["lr_y"][0, k, 2:6, 4:8])] == [0]
    assert np.array_equal(lr[2][0], seq["lr_y"][0, 1, 2:6, 4:8]) and np.array_equal(lr[1][2], seq["lr_v"][0, 0, 1:3, 2:4])
    assert np.array_equal(hr[0], seq["hr_y"][0, 0, 4:12, 8:16]) and np.array_equal(hr[1], seq["hr_u"][0, 0, 2:6, 4:8])
    lr_last, _ = _window(seq, 0, 3, 3, (0, 0, 8))
    assert np.array_equal(lr_last[2][0], lr_last[1][0])  # the last frame: its own next frame
    plane = crf_plane([40, -1], torch.zeros(2, 6, 3, 5))
    assert plane.shape == (2, 1, 3, 5) and plane[0].unique().item() == 1.0 and plane[1].unique().item() == pytest.approx(-28 / 12)
    frames = [tuple(torch.from_numpy(p)[None] for p in planes) for planes in _window(seq, 0, 1, 3, (0, 0, 8))[0]]
    with torch.no_grad():  # the extra inputs' weights start at zero: the single-frame network's output (to the
        want = restore(single, frames[1:2], train=False)  # bf16 rounding of another summation order: 1 code value)
        for got in (restore(temporal, frames, train=False), restore(conditioned, frames[1:2], train=False, crfs=[30])):
            assert all(int((x.int() - y.int()).abs().max()) <= 1 for x, y in zip(got, want))


def test_docs_multiframe_trial_conditioned_arms_start_unconditioned_and_fold_into_plain_convolutions():
    """``crfbias``/``crffilm``: zero vectors give the network back; for one condition the moved outputs
    equal a plain network whose weights and biases were scaled and shifted (what a decoder would load)."""
    import copy

    from docs.multiframe_trial import Conditioned, crf_values
    from vsr_plugin.models import Upsampler, UpsamplerConfig

    torch.manual_seed(0)
    single = Upsampler(UpsamplerConfig(channels=8, blocks=2))
    torch.nn.init.normal_(single.tail.weight, std=0.05)
    x = torch.rand(2, 6, 7, 9)
    want = single(x)
    film = Conditioned(copy.deepcopy(single), film=True)
    film.condition = crf_values([40, -1])
    assert torch.equal(film(x), want)
    assert crf_values([40, -1]).tolist() == pytest.approx([1.0, -28 / 12])
    with torch.no_grad():
        for vectors in (film.shift, film.gain):
            for v in vectors:
                v.normal_(std=0.1)
    for k, crf in enumerate([40, -1]):
        c = crf_values([crf]).item()
        plain = copy.deepcopy(single)
        convs = [m for m in list(plain.body) + [plain.tail] if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            for conv, shift, gain in zip(convs, film.shift, film.gain):
                scale = 1 + c * gain
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias.copy_(conv.bias * scale + c * shift)
        film.condition = torch.tensor([c])
        torch.testing.assert_close(film(x[k:k + 1]), plain(x[k:k + 1]), atol=1e-5, rtol=1e-5)
    bias_only = Conditioned(copy.deepcopy(single), film=False)
    assert bias_only.gain is None and len(bias_only.shift) == 4  # head, two blocks, tail


def test_two_thirds_crops_are_the_same_part_of_the_picture():
    """At scale 3/2 each LR crop is the 2/3 layer's reduction of its HR crop (away from the crop's
    edges, where the whole picture's reduction saw neighbours), through every flip and rotation."""
    pairs = []
    for h, w, seed in ((120, 144, 1), (96, 132, 2)):
        hr = rgb_to_frame(smooth_rgb(h, w, seed=seed))
        planes = tuple(torch.from_numpy(p)[None] for p in hr.planes)
        lr = Resizer.two_thirds_layer(h, w, device="cpu").resize_planes(*planes, bits=8)
        pairs.append(SRPair(hr=hr, lr=hr.with_planes(*(p[0].numpy() for p in lr)), name=str(seed)))
    sampler = CropSampler(pairs, scale=Fraction(3, 2), crop=48)
    lr, hr = sampler.sample(16, torch.Generator().manual_seed(5))
    assert [tuple(p.shape) for p in lr + hr] == [(16, 32, 32), (16, 16, 16), (16, 16, 16), (16, 48, 48),
                                                  (16, 24, 24), (16, 24, 24)]
    again = kernels.resize(*hr, height=32, width=32, kernel="lanczos", bits=8, backend="torch")
    for got, want, m in zip(again, lr, (3, 3, 3)):  # Lanczos-3 at 2/3 reaches 4.5 HR samples out
        assert torch.equal(got[:, m:-m, m:-m], want[:, m:-m, m:-m])
    with pytest.raises(ValueError, match="crop 40 must be a multiple of 6 at scale 3/2"):
        CropSampler(pairs, scale=Fraction(3, 2), crop=40)
