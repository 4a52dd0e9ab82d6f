"""The twins are exact on CUDA too: every float division they make is a true IEEE division there.

torch's CUDA true division has a shortcut (``aten/src/ATen/native/cuda/BinaryDivTrueKernel.cu``):
when the divisor is a *CPU scalar* (a Python number, or any 0-dim CPU tensor) it computes
``a * (1 / b)`` with the reciprocal rounded to float32 first, which "may lose one bit of precision";
any other divisor takes the plain ``a / b`` path, an IEEE division. The twins therefore divide through
``reference._true_div``, by a 0-dim tensor on the dividend's device. Without a GPU this is checked two
ways:

1. The twins run on fake CUDA tensors (``FakeTensorMode``: devices and shapes, no data, no GPU) under
   a dispatch mode that records every division-like aten call: each must divide by a CUDA tensor.
   A deliberately wrong twin (``x / 3.0``) shows the recorder catches the scalar path.
2. A numpy model of the two CUDA paths on every value the twins divide shows which divisions the
   shortcut would change (float32 ``normalise``: 126 of 256 8-bit codes; 3x bilinear bases) and which
   it cannot (power-of-two divisors: 2x/4x bilinear, the downscale's ``/ 65536``), and that the true
   path is what the twins compute on the CPU.

Together: the twins on CUDA equal the twins on CPU, so the GPU tests (``test_cupy.py``) compare the
kernels with the twin on the same device; ``test_cupy.test_twin_on_cuda_is_the_cpu_twin`` confirms it
on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import kernels
from kernels import reference

F32 = np.float32


class DivisionRecorder(TorchDispatchMode):
    """Records ``(op name, divisor)`` for every aten division or reciprocal."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, object]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if "div" in name or "reciprocal" in name:
            self.calls.append((name, args[1] if len(args) > 1 else None))
        return func(*args, **(kwargs or {}))


def on_cuda_path(divisor) -> bool:
    """Whether CUDA's div takes the IEEE ``a / b`` path for this divisor (not a CPU scalar)."""
    return isinstance(divisor, torch.Tensor) and divisor.device.type == "cuda"


def _every_twin(dev: str) -> None:
    """Each public twin, on zero-filled tensors of device ``dev``, in every configuration that
    divides differently (dtypes, blocks, scales, float code planes)."""
    z = torch.zeros
    for bits, code in ((8, torch.uint8), (10, torch.uint16)):
        y, u = z(2, 9, 7, dtype=code, device=dev), z(2, 5, 4, dtype=code, device=dev)
        for dtype in reference.FLOAT_DTYPES:
            for block in (2, 4):
                reference.pack(y, u, u, bits=bits, block=block, dtype=dtype)
                reference.unpack(z(2, kernels.packed_channels(block), -(-9 // block), -(-7 // block), dtype=dtype,
                                   device=dev), bits=bits, block=block, height=9, width=7)
            for scale in (1, 2, 3, 4):
                reference.unpack_upscale(z(2, 6 * scale * scale, 5, 4, dtype=dtype, device=dev), y, u, u,
                                         bits=bits, scale=scale)
            reference.unpack_downscale(z(2, 6, 3, 2, dtype=dtype, device=dev), y, u, u, bits=bits)
        yf, uf = y.float(), u.float()  # training: float32 planes holding codes
        reference.pack_float(yf, uf, uf, bits=bits, block=4)
        reference.upscale_planes_float(z(2, 24, 5, 4, device=dev), yf, uf, uf, bits=bits, scale=2)
        reference.downscale_planes_float(z(2, 6, 3, 2, device=dev), y, u, u, bits=bits)
        reference.bicubic_downscale2(y, 5, 4)
        reference.bilinear_upscale(u, 3, 15, 12)


def test_every_division_in_the_twins_takes_the_ieee_path_on_cuda():
    with FakeTensorMode(), DivisionRecorder() as recorder:
        _every_twin("cuda")
    assert recorder.calls, "no division recorded: the recorder is not seeing the twins"
    names = {name for name, _ in recorder.calls}
    assert names <= {"aten.div.Tensor", "aten.div_.Tensor"}, names
    wrong = [(name, type(d).__name__, getattr(d, "device", None)) for name, d in recorder.calls if not on_cuda_path(d)]
    assert wrong == []


@pytest.mark.parametrize("divide", [lambda x: x / 3.0, lambda x: x.div_(36), lambda x: x / torch.tensor(3.0),
                                    lambda x: torch.true_divide(x, 7)])
def test_the_recorder_catches_the_reciprocal_path(divide):
    with FakeTensorMode(), DivisionRecorder() as recorder:
        divide(torch.zeros(4, device="cuda"))
    assert recorder.calls and not all(on_cuda_path(d) for _, d in recorder.calls)


# ---- a numpy model of CUDA's two division paths -------------------------------------------------

def cuda_div_by_cpu_scalar(a: np.ndarray, b: float) -> np.ndarray:
    """``a / b`` on CUDA when ``b`` is a CPU scalar: ``inv_b = opmath(1) / b`` (float32 for float32
    tensors, on the host), then a float32 multiplication on the device."""
    return (a.astype(F32) * (F32(1) / F32(b))).astype(F32)


def cuda_div_by_tensor(a: np.ndarray, b: float) -> np.ndarray:
    """``a / b`` on CUDA otherwise: one IEEE float32 division (``DivFunctor``, no fast math)."""
    return (a.astype(F32) / F32(b)).astype(F32)


def _differ(a: np.ndarray, b: np.ndarray) -> int:
    return int((a.view(np.int32) != b.view(np.int32)).sum())


@pytest.mark.parametrize("bits,off", [(8, 126), (10, None)])
def test_normalise_needs_the_true_division(bits, off):
    m = (1 << bits) - 1
    codes = np.arange(m + 1)
    x = (2 * codes - m).astype(F32)
    twin = kernels.normalise(torch.from_numpy(codes), bits).numpy()  # the twin on the CPU
    assert _differ(twin, cuda_div_by_tensor(x, m)) == 0
    recip = _differ(twin, cuda_div_by_cpu_scalar(x, m))
    assert recip > 0 and (off is None or recip == off)  # docs/kernels.md: 126 of the 256 8-bit codes


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 5])
def test_bilinear_base_division(scale):
    """Every integer bilinear sum 0 .. 4 s^2 m (10-bit m): the true path is the CPU twin; the
    reciprocal path is harmless exactly for power-of-two 4 s^2."""
    norm = 4 * scale * scale
    sums = np.arange(norm * 1023 + 1).astype(F32)  # exact: below 2^24
    twin = reference._true_div(torch.from_numpy(sums), float(norm)).numpy()  # bilinear_upscale's last step
    assert _differ(twin, cuda_div_by_tensor(sums, norm)) == 0
    recip = _differ(twin, cuda_div_by_cpu_scalar(sums, norm))
    assert (recip == 0) == (norm & (norm - 1) == 0)


def test_downscale_division_by_65536_is_exact_either_way():
    """float32(S) / 65536 for S across the int32 range the downscale produces (and beyond): a
    power-of-two divisor and no subnormal quotient, so both CUDA paths give the CPU twin's value."""
    g = np.random.default_rng(0)
    s = np.concatenate([np.arange(-70000, 70000), g.integers(-2**31, 2**31, 1_000_000),
                        np.array([-2**31, 2**31 - 1, 78976 * 1023, -13440 * 1023])]).astype(np.int64)
    f = s.astype(np.int32).astype(F32)  # round to nearest, as torch's int32 -> float32 cast
    twin = reference._true_div(torch.from_numpy(f), 65536.0).numpy()
    assert _differ(twin, cuda_div_by_tensor(f, 65536)) == 0
    assert _differ(twin, cuda_div_by_cpu_scalar(f, 65536)) == 0
