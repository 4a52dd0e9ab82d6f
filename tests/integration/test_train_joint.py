"""vsr-train --mode joint: the codec proxies, straight-through gradients, and a short run that learns."""

from contextlib import nullcontext

import pytest
import torch

import kernels
from encoder.training.codec import ProxyConfig, apply_proxy, codec_round_trip, quantize_st, straight_through
from encoder.training.data import CropSampler, list_images, load_pairs
from encoder.training.tasks import JointTask
from encoder.training.train import config_from_args, train
from tests.conftest import random_planes
from vsr_plugin.models import load_downsampler, load_upsampler

JOINT = ["--mode", "joint", "--model", "fast", "--down-model", "fast", "--crop", "32", "--batch", "4",
         "--val-count", "2", "--samples", "1", "--warmup", "5", "--lr", "3e-3", "--ema", "0", "--threads", "1",
         "--init", "random"]


def test_straight_through_rounding_passes_the_gradient():
    x = torch.tensor([1.2, 2.7, 300.0, -4.0], requires_grad=True)
    q = quantize_st(x, 8)
    assert q.tolist() == [1.0, 3.0, 255.0, 0.0]
    q.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0]
    y = torch.zeros(3, requires_grad=True)
    straight_through(y, torch.ones(3)).sum().backward()
    assert y.grad.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("codec,quality", [("x264", 30), ("jpeg", 8)])
def test_codec_round_trip_really_codes(codec, quality):
    g = torch.Generator().manual_seed(0)
    planes = (torch.randint(0, 256, (3, 32, 48), generator=g, dtype=torch.int32).to(torch.uint8),
              torch.full((3, 16, 24), 128, dtype=torch.uint8), torch.full((3, 16, 24), 100, dtype=torch.uint8))
    out = codec_round_trip(planes, codec, quality)
    assert [tuple(p.shape) for p in out] == [(3, 32, 48), (3, 16, 24), (3, 16, 24)]
    err = (out[0].float() - planes[0].float()).abs().mean()
    assert 1.0 < err < 60.0  # lossy, but the same picture (random noise is the worst case)
    assert (out[1].float() - 128).abs().max() <= 3  # flat chroma survives


@pytest.mark.parametrize("codec", ["none", "x264", "jpeg"])
def test_proxy_keeps_gradients(codec):
    cfg = ProxyConfig(noise=3.0, codec=codec, codec_fraction=1.0 if codec != "none" else 0.0, quality=(25, 25))
    x = tuple(torch.full(s, 100.0, requires_grad=True) for s in ((2, 16, 16), (2, 8, 8), (2, 8, 8)))
    out, applied = apply_proxy(x, cfg, torch.Generator().manual_seed(1))
    assert applied.startswith(codec if codec != "none" else "noise")
    sum(o.sum() for o in out).backward()
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in x)
    assert all(torch.equal(o, o.round()) for o in out)  # the upsampler sees integer codes


def test_downscale_base_matches_torch_antialiased_bicubic_inside():
    import torch.nn.functional as F

    p = torch.randint(0, 1024, (1, 40, 56)).to(torch.uint16)
    ours = kernels.bicubic_downscale2(p, 20, 28)
    theirs = F.interpolate(p[None].float(), scale_factor=0.5, mode="bicubic", antialias=True)[0]
    assert torch.allclose(ours[:, 2:-2, 2:-2], theirs[:, 2:-2, 2:-2], atol=1e-3)


def _fixed_batch_loss(task, model, image_dir) -> float:
    """The joint loss on one fixed batch with fixed proxy draws (so before/after compare fairly)."""
    pairs = load_pairs(list_images(image_dir)[:6], 2)
    lr, hr = CropSampler(pairs, scale=2, crop=32).sample(8, torch.Generator().manual_seed(3))
    model.generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        return float(task.loss(model, lr, hr, nullcontext()))


@pytest.mark.parametrize("codec", ["none", "x264", "jpeg"])
def test_joint_smoke_run_reduces_the_loss(image_dir, tmp_path, codec):
    out = tmp_path / codec
    cfg = config_from_args(JOINT + ["--data", str(image_dir), "--out", str(out), "--steps", "40",
                                    "--epoch-steps", "20", "--proxy-codec", codec, "--proxy-codec-fraction", "0.5"])
    torch.manual_seed(cfg.seed)  # the initial weights training starts from
    fresh = JointTask(cfg, torch.device("cpu"), torch.Generator(), nullcontext)
    before = _fixed_batch_loss(fresh, fresh.model, image_dir)
    result = train(cfg)
    after = _fixed_batch_loss(fresh, result.model, image_dir)
    assert after < 0.98 * before
    assert result.summary["history"][-1]["val_base_psnr_y"] > 30  # base layer stays close to bicubic
    down, _ = load_downsampler(out / "best-down")
    up, _ = load_upsampler(out / "best-up")
    assert down.config.channels == 32 and up.config.channels == 32


def test_init_down_is_grown_to_a_larger_down_model_and_kept_otherwise(image_dir, tmp_path):
    argv = JOINT[:4] + ["--data", str(image_dir), "--out", str(tmp_path / "g"), "--init-down", "x2-codec-default-down"]
    shipped, _ = load_downsampler("x2-codec-default-down")
    packed = kernels.pack(*random_planes(2, 36, 44, 8), bits=8, block=4)
    kept = JointTask(config_from_args(argv), torch.device("cpu"), torch.Generator(), nullcontext)
    assert kept.model.down.config == shipped.config
    grown = JointTask(config_from_args(argv + ["--down-model", "large"]), torch.device("cpu"), torch.Generator(),
                      nullcontext)
    assert grown.model.down.config.channels == 64 and grown.model.down.config.blocks == 8
    assert "64x8 downsampler" in grown.describe()
    with torch.no_grad():
        torch.testing.assert_close(grown.model.down.float()(packed), shipped(packed), rtol=1e-5, atol=1e-5)


def test_rate_term_prices_a_base_layer_that_costs_more_than_bicubic(image_dir, tmp_path):
    """At rate_target 1 the bicubic base layer (zero tail) pays nothing; a downsampler that adds
    detail pays in proportion to its excess proxy bits, and the term's gradient reaches it."""
    argv = JOINT + ["--data", str(image_dir), "--out", str(tmp_path / "r"), "--proxy-codec", "none",
                    "--proxy-noise", "0", "--base-weight", "0"]
    pairs = load_pairs(list_images(image_dir)[:6], 2)
    lr, hr = CropSampler(pairs, scale=2, crop=32).sample(8, torch.Generator().manual_seed(3))

    def losses(tail_std: float) -> tuple[float, float, JointTask]:
        out = []
        for weight in ("0", "1"):
            torch.manual_seed(0)
            task = JointTask(config_from_args(argv + ["--rate-weight", weight]), torch.device("cpu"),
                             torch.Generator(), nullcontext)
            torch.nn.init.normal_(task.model.down.tail.weight, std=tail_std)
            task.model.down.zero_grad()
            loss = task.loss(task.model, lr, hr, nullcontext())
            loss.backward()
            out.append((float(loss.detach()), task))
        return out[0][0], out[1][0], out[1][1]

    plain, priced, _ = losses(0.0)
    assert priced == pytest.approx(plain, rel=1e-6)
    plain, priced, task = losses(0.2)
    assert priced > plain + 0.05
    assert task.model.down.tail.weight.grad.abs().sum() > 0
    sums, _ = task.validate(task.model, load_pairs(list_images(image_dir)[:2], 2))
    assert task.score(sums)["val_rate_ratio"] > 1.0
    with pytest.raises(ValueError, match="rate_weight must be >= 0"):
        config_from_args(["--rate-weight", "-1"])
