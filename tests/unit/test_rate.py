"""The rate proxy of joint training on closed-form inputs: value and gradient."""

import math

import pytest
import torch

from encoder.training import rate


def _basis(u: int, v: int) -> torch.Tensor:
    """The 8x8 DCT basis image (u, v) of unit norm."""
    d = rate.dct_matrix(dtype=torch.float64)
    return torch.outer(d[u], d[v])


def test_dct_is_orthonormal_and_finds_its_basis():
    d = rate.dct_matrix(dtype=torch.float64)
    torch.testing.assert_close(d @ d.T, torch.eye(8, dtype=torch.float64))
    c = rate.block_dct(_basis(2, 5)[None] * 3.0)
    assert c.shape == (1, 1, 1, 8, 8)
    want = torch.zeros(8, 8, dtype=torch.float64)
    want[2, 5] = 3.0
    torch.testing.assert_close(c[0, 0, 0], want)


def test_flat_planes_cost_nothing():
    flat = torch.full((2, 24, 17), 117.0, dtype=torch.float64)  # odd width: edge padding keeps the last block flat
    assert float(rate.bits((flat, flat[:, :12, :9], flat[:, :12, :9]), step=10.0).abs().max()) < 1e-9


@pytest.mark.parametrize("amplitude,step", [(5.0, 10.0), (40.0, 4.0)])
def test_one_coefficient_per_block_costs_log2_one_plus_amplitude_over_step(amplitude, step):
    tile = _basis(1, 3).repeat(3, 4) * amplitude + 100.0  # 12 blocks; DC is free
    a = torch.tensor(amplitude, dtype=torch.float64, requires_grad=True)
    plane = (_basis(1, 3).repeat(3, 4) * a + 100.0)[None]
    b = rate.bits((plane,), step)
    assert b.shape == (1,)
    assert float(b.detach()) == pytest.approx(12 * math.log2(1 + amplitude / step), rel=1e-9)
    b.sum().backward()
    assert float(a.grad) == pytest.approx(12 / ((step + amplitude) * math.log(2)), rel=1e-9)
    bpp = rate.bits_per_pixel((tile[None],), step)
    assert float(bpp) == pytest.approx(12 * math.log2(1 + amplitude / step) / (24 * 32), rel=1e-6)


def test_more_detail_costs_more_and_a_larger_step_less():
    g = torch.Generator().manual_seed(0)
    smooth = torch.linspace(0, 255, 64).repeat(64, 1)[None]
    noisy = smooth + torch.randn(1, 64, 64, generator=g) * 8
    assert float(rate.bits((noisy,), 8.0)) > float(rate.bits((smooth,), 8.0))
    assert float(rate.bits((noisy,), 16.0)) < float(rate.bits((noisy,), 8.0))
    with pytest.raises(ValueError, match="rate step must be positive"):
        rate.bits((noisy,), 0.0)
