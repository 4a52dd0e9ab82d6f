"""Encoder-side refinement of the base layer (vsr_plugin.refine) through the Downscaler."""

import pytest
import torch

import kernels
from tests.unit.test_engine import _planes_from_image
from vsr_plugin.engine import Downscaler, Upscaler
from vsr_plugin.models import Downsampler, DownsamplerConfig, Upsampler, UpsamplerConfig, load_upsampler
from vsr_plugin.refine import RefineOptions, refine_residual, restoration_loss


def _hr(h, w, bits, seed=3):
    return _planes_from_image(h, w, bits, seed=seed)


def _restored_mse(base, hr, bits):
    out = Upscaler("fast", device="cpu", dtype="fp32").upscale_planes(*base, bits=bits)
    h, w = hr[0].shape[1:]
    assert out[0].shape[1:] == (2 * -(-h // 2), 2 * -(-w // 2))  # an odd size restores one larger
    return float((out[0][:, :h, :w].to(torch.float64) - hr[0].to(torch.float64)).square().mean())


@pytest.fixture(scope="module")
def bicubic_down():
    return Downsampler(DownsamplerConfig(channels=8, blocks=0))  # zero tail: the bicubic reduction


@pytest.mark.parametrize("bits,h,w", [(8, 37, 50), (10, 42, 27)])
def test_refined_base_restores_better_with_the_same_upsampler(bicubic_down, bits, h, w):
    """Bicubic down + x2-fast against the same with the base layer refined for x2-fast: same
    shapes and dtypes, codes in range, the restored luma closer to the original."""
    hr = _hr(h, w, bits)
    plain = Downscaler(bicubic_down, device="cpu", dtype="fp32").downscale_planes(*hr, bits=bits)
    refined = Downscaler(bicubic_down, device="cpu", dtype="fp32", refine=RefineOptions(steps=40, base_weight=0.0),
                         refine_with="x2-fast").downscale_planes(*hr, bits=bits)
    for a, b in zip(plain, refined):
        assert a.shape == b.shape and a.dtype == b.dtype == kernels.plane_dtype(bits)
        assert int(b.to(torch.int32).max()) <= kernels.max_code(bits)
    assert any(not torch.equal(a, b) for a, b in zip(plain, refined))
    before, after = _restored_mse(plain, hr, bits), _restored_mse(refined, hr, bits)
    assert after < 0.9 * before, (before, after)


def test_refinement_lowers_its_objective_and_leaves_the_upsampler_alone(bicubic_down):
    up, _ = load_upsampler("x2-fast")
    state = {k: v.clone() for k, v in up.state_dict().items()}
    hr = _hr(30, 44, 8)
    start = torch.zeros(1, 6, 8, 11)
    opts = RefineOptions(steps=25, base_weight=0.1)
    with torch.inference_mode():  # as Downscaler.downscale_planes calls it
        refined = refine_residual(start, *hr, up, bits=8, options=opts)
    assert refined.shape == start.shape and refined.dtype == torch.float32 and not refined.requires_grad
    with torch.no_grad():
        assert restoration_loss(refined, hr, up, bits=8, options=opts) < restoration_loss(start, hr, up, bits=8,
                                                                                          options=opts)
    assert all(torch.equal(v, state[k]) for k, v in up.state_dict().items())
    assert all(p.requires_grad for p in up.parameters())  # as it was handed over
    again = refine_residual(start, *hr, up, bits=8, options=opts)
    assert torch.equal(refined, again)  # deterministic


def test_loss_at_zero_residual_is_the_plain_pipeline_error():
    """A zero-tail upsampler restores the bilinear base: the objective at a zero residual is the
    weighted MSE of bilinear(bicubic reduction) against the planes, in units of the code range."""
    hr = _hr(24, 20, 8)
    up = Upsampler(UpsamplerConfig(channels=8, blocks=1))
    opts = RefineOptions(luma_weight=0.5, base_weight=3.0)
    with torch.no_grad():
        loss = restoration_loss(torch.zeros(1, 6, 6, 5), hr, up, bits=8, options=opts)
        base = kernels.unpack_downscale(torch.zeros(1, 6, 6, 5), *hr, bits=8)
        residual = up(kernels.pack(*base, bits=8, block=2, dtype=torch.float32))
        assert not residual.any()  # the zero tail
        restored = kernels.reference.upscale_planes_float(residual, *base, bits=8, scale=2)
    mse = [float(((r - t.float()) / 255).square().mean()) for r, t in zip(restored, hr)]
    # the base layer inside the loss is unrounded: within rounding of the stored one
    assert float(loss) == pytest.approx(0.5 * mse[0] + 0.25 * (mse[1] + mse[2]), rel=0.05)


def test_base_weight_keeps_the_base_layer_near_the_bicubic_reduction(bicubic_down):
    hr = _hr(40, 40, 8, seed=5)
    plain = Downscaler(bicubic_down, device="cpu", dtype="fp32").downscale_planes(*hr, bits=8)

    def departure(weight):
        base = Downscaler(bicubic_down, device="cpu", dtype="fp32", refine=RefineOptions(steps=30, base_weight=weight),
                          refine_with="x2-fast").downscale_planes(*hr, bits=8)
        return float((base[0].float() - plain[0].float()).square().mean())

    assert departure(10.0) < 0.5 * departure(0.0)


def test_zero_steps_is_the_plain_downscale(bicubic_down):
    hr = _hr(21, 17, 8)
    engine = Downscaler(bicubic_down, device="cpu", refine=RefineOptions(steps=0))
    assert engine.refiner is None and "refined" not in repr(engine)
    for a, b in zip(engine.downscale_planes(*hr, bits=8), Downscaler(bicubic_down, device="cpu").downscale_planes(*hr, bits=8)):
        assert torch.equal(a, b)
    assert "refined 3 steps" in repr(Downscaler(bicubic_down, device="cpu", refine=RefineOptions(steps=3),
                                                refine_with="x2-fast"))


def test_refinement_needs_an_upsampler_and_sane_options(bicubic_down):
    with pytest.raises(ValueError, match="refinement needs the decoder's upsampler"):
        Downscaler(bicubic_down, device="cpu", refine=RefineOptions(steps=5))
    with pytest.raises(ValueError, match="steps must be >= 0"):
        RefineOptions(steps=-1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        RefineOptions(lr=0)
    # a shipped downsampler finds its paired upsampler by name
    assert Downscaler("x2-codec-default-down", device="cpu", refine=RefineOptions(steps=1)).refiner is not None


def test_docs_refine_cost_times_a_step_beside_the_plain_reduction(monkeypatch, capsys):
    import re
    import sys

    from docs.refine_cost import main

    monkeypatch.setattr(sys, "argv", ["refine_cost", "--steps", "1", "--threads", "2", "--repeat", "1"])
    main()
    line = capsys.readouterr().out
    m = re.fullmatch(r"1920x1080, x2-codec-default-down, 2 threads: plain (\S+) s, 1 steps (\S+) s -> (\S+) s per step\n",
                     line)
    assert m and 0 < float(m[1]) < float(m[2])
