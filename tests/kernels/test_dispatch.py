"""kernels' one dispatch point: which backend runs, and the errors an impossible request gets.

No GPU here, so the fused path is exercised by standing the CPU emulation in for the CUDA launch
(``cupy_ops.run``) and lifting the CUDA-device requirement (and setting the compiled CPU kernels
aside, which ``auto`` would otherwise pick for CPU tensors; tests/kernels/test_cpu_ops.py covers them); everything else (dispatch, cupy_ops'
public functions, planning) is the real code.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import kernels
from kernels import cupy_ops, reference
from tests.conftest import REPO, random_planes
from tests.kernels import inputs
from tests.kernels.emulation import emulator


@pytest.fixture
def fused_on_cpu(monkeypatch, emulation_libs):
    """Make the fused path runnable on CPU tensors: no device/cupy obstacle, launches emulated.
    Returns the list of launches run, to tell which path a call took."""
    ran = []

    def run(launches, device):
        assert device.type == "cpu"
        for launch in launches:
            emulator.run(emulation_libs[launch.source], [launch])
        ran.extend(launches)

    monkeypatch.setattr(kernels, "_cupy_obstacle", lambda tensors, **kw: None)
    monkeypatch.setattr(kernels, "_cpu_obstacle", lambda tensors, has_kernel: "standing in for CUDA")
    monkeypatch.setattr(cupy_ops, "run", run)
    return ran


def test_backends():
    assert kernels.BACKENDS == ("auto", "torch", "cupy", "cpu")


@pytest.mark.parametrize("backend", ["auto", "cupy"])
def test_fused_path_through_the_public_ops(fused_on_cpu, backend):
    y, u, v = random_planes(2, 11, 9, 10, seed=1)
    packed = kernels.pack(y, u, v, bits=10, block=2, dtype=torch.float16, backend=backend)
    assert [launch.name for launch in fused_on_cpu] == ["pack_u16_f16"]
    assert torch.equal(packed, reference.pack(y, u, v, bits=10, block=2, dtype=torch.float16))
    planes = kernels.unpack(packed, bits=10, block=2, height=11, width=9, backend=backend)
    for a, b in zip(planes, (y, u, v)):
        assert torch.equal(a, b)
    r, _ = inputs.residual(y, u, v, bits=10, scale=2, dtype=torch.float32)
    out = kernels.unpack_upscale(r, y, u, v, bits=10, scale=2, backend=backend)
    for a, b in zip(out, reference.unpack_upscale(r, y, u, v, bits=10, scale=2)):
        assert torch.equal(a, b)
    assert [launch.name for launch in fused_on_cpu][1:] == ["unpack_f16_u16"] + ["upscale_f32_u16"] * 3
    r, _, _ = inputs.downscale_residual(y, u, v, bits=10, dtype=torch.bfloat16)
    out = kernels.unpack_downscale(r, y, u, v, bits=10, backend=backend)
    for a, b in zip(out, reference.unpack_downscale(r, y, u, v, bits=10)):
        assert torch.equal(a, b)
    assert fused_on_cpu[-1].name == "downscale_bf16_u16" and len(fused_on_cpu) == 6  # one launch, three planes


def test_downscale_dispatch_rules(fused_on_cpu, monkeypatch):
    """unpack_downscale follows the same rules as the other ops: planes the kernel does not read go
    to the twin under auto and are an error under cupy; so does a residual that needs a gradient."""
    y, u, v = random_planes(1, 9, 6, 8)
    r = torch.zeros(1, 6, 3, 2)
    for planes in ((y.to(torch.int32), u.to(torch.int32), v.to(torch.int32)),   # not uint8/uint16
                   (y.to(torch.uint16), u.to(torch.uint16), v.to(torch.uint16))):  # uint16 planes at 8 bits
        want = reference.unpack_downscale(r, *planes, bits=8)
        assert all(torch.equal(a, b) for a, b in zip(kernels.unpack_downscale(r, *planes, bits=8), want))
        assert fused_on_cpu == []
        with pytest.raises(kernels.BackendUnavailable, match="planes") as info:
            kernels.unpack_downscale(r, *planes, bits=8, backend="cupy")
        assert isinstance(info.value.__cause__, cupy_ops.Unsupported)
    with pytest.raises(kernels.BackendUnavailable, match="residuals") as info:
        kernels.unpack_downscale(r.double(), y, u, v, bits=8, backend="cupy")
    assert isinstance(info.value.__cause__, cupy_ops.Unsupported)
    monkeypatch.undo()  # the real obstacles again: CPU tensors, a gradient
    with pytest.raises(kernels.BackendUnavailable, match="need CUDA tensors"):
        kernels.unpack_downscale(r, y, u, v, bits=8, backend="cupy")
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.setattr(cupy_ops, "load_cupy", lambda: None)
    with pytest.raises(kernels.BackendUnavailable, match="requires grad"):
        kernels.unpack_downscale(r.requires_grad_(), y, u, v, bits=8, backend="cupy")


def test_torch_backend_never_runs_the_fused_path(fused_on_cpu):
    y, u, v = random_planes(1, 4, 4, 8)
    kernels.pack(y, u, v, bits=8, backend="torch")
    assert fused_on_cpu == []


def test_inputs_the_kernels_do_not_cover(fused_on_cpu):
    y, u, v = (p.to(torch.int32) for p in random_planes(1, 5, 5, 8))
    assert torch.equal(kernels.pack(y, u, v, bits=8), reference.pack(y, u, v, bits=8))  # auto: the twin
    assert fused_on_cpu == []
    with pytest.raises(kernels.BackendUnavailable, match="uint8 or uint16 planes") as info:
        kernels.pack(y, u, v, bits=8, backend="cupy")
    assert isinstance(info.value.__cause__, cupy_ops.Unsupported)


def test_explicit_cupy_request_on_cpu_tensors_says_why():
    y, u, v = random_planes(1, 4, 4, 8)
    with pytest.raises(kernels.BackendUnavailable, match="need CUDA tensors, got tensors on cpu"):
        kernels.pack(y, u, v, bits=8, backend="cupy")


def test_explicit_cupy_request_needing_a_gradient_says_why(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))  # only the grad obstacle left
    monkeypatch.setattr(cupy_ops, "load_cupy", lambda: None)
    y, u, v = random_planes(1, 4, 4, 8)
    r = torch.zeros(1, 24, 2, 2, requires_grad=True)
    with pytest.raises(kernels.BackendUnavailable, match="requires grad") as info:
        kernels.unpack_upscale(r, y, u, v, bits=8, scale=2, backend="cupy")
    assert "CUDA" not in str(info.value) and "cupy cannot be imported" not in str(info.value)
    assert kernels._cupy_obstacle((r,)) is not None
    with torch.no_grad():
        assert kernels._cupy_obstacle((r,)) is None  # no gradient needed: the fused kernels may run


def test_missing_cupy_is_an_error_with_the_import_error_attached(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.setattr(cupy_ops, "_import_cupy", lambda: (None, ImportError("No module named 'cupy'")))
    y, u, v = random_planes(1, 4, 4, 8)
    with pytest.raises(kernels.BackendUnavailable, match="cupy cannot be imported.*cupy-cuda13x") as info:
        kernels.pack(y, u, v, bits=8, backend="cupy")
    assert isinstance(info.value.__cause__, ImportError)


def test_auto_without_cupy_uses_the_twin(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    monkeypatch.setattr(cupy_ops, "_import_cupy", lambda: (None, ImportError("No module named 'cupy'")))
    monkeypatch.setattr(cupy_ops, "run", lambda launches, device: pytest.fail("the fused path ran"))
    y, u, v = random_planes(1, 5, 3, 8)
    assert torch.equal(kernels.pack(y, u, v, bits=8), reference.pack(y, u, v, bits=8))


def test_unknown_backend():
    y, u, v = random_planes(1, 4, 4, 8)
    with pytest.raises(ValueError, match="unknown kernel backend 'opencl'; choose one of auto, torch, cupy"):
        kernels.unpack(torch.zeros(1, 6, 2, 2), bits=8, block=2, height=4, width=4, backend="opencl")


def test_package_imports_and_runs_without_cupy():
    code = textwrap.dedent("""
        import sys
        sys.modules["cupy"] = None  # any `import cupy` now raises ImportError
        import torch, kernels
        y = torch.zeros(1, 3, 3, dtype=torch.uint8)
        u = torch.zeros(1, 2, 2, dtype=torch.uint8)
        assert kernels.pack(y, u, u, bits=8).shape == (1, 6, 2, 2)
        try:
            kernels.pack(y, u, u, bits=8, backend="cupy")
        except kernels.BackendUnavailable as err:
            assert isinstance(err.__cause__, ImportError), err.__cause__
            print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# ---- planning: the twin's validation, and launch shapes ------------------------------------------

def _message(fn):
    try:
        fn()
    except ValueError as err:
        return str(err)
    return None


@pytest.mark.parametrize("case", ["chroma", "float planes", "odd block", "dtype", "channels", "grid too small",
                                  "residual channels", "residual grid", "downscale chroma", "downscale float planes",
                                  "downscale residual channels", "downscale residual grid", "downscale bits"])
def test_planners_refuse_bad_input_like_the_twin(case):
    y, u, v = random_planes(1, 4, 4, 8)
    calls = {
        "chroma": lambda m: m.pack(y, u[:, :1], v, bits=8),
        "float planes": lambda m: m.pack(y.float(), u, v, bits=8),
        "odd block": lambda m: m.pack(y, u, v, bits=8, block=3),
        "dtype": lambda m: m.pack(y, u, v, bits=8, dtype=torch.float64),
        "channels": lambda m: m.unpack(torch.zeros(1, 7, 2, 2), bits=8, block=2, height=4, width=4),
        "grid too small": lambda m: m.unpack(torch.zeros(1, 6, 2, 2), bits=8, block=2, height=5, width=4),
        "residual channels": lambda m: m.unpack_upscale(torch.zeros(1, 6, 2, 2), y, u, v, bits=8, scale=2),
        "residual grid": lambda m: m.unpack_upscale(torch.zeros(1, 24, 3, 2), y, u, v, bits=8, scale=2),
        "downscale chroma": lambda m: m.unpack_downscale(torch.zeros(1, 6, 1, 1), y, v[:, :, :1], v, bits=8),
        "downscale float planes": lambda m: m.unpack_downscale(torch.zeros(1, 6, 1, 1), y, u.float(), v, bits=8),
        "downscale residual channels": lambda m: m.unpack_downscale(torch.zeros(1, 24, 1, 1), y, u, v, bits=8),
        "downscale residual grid": lambda m: m.unpack_downscale(torch.zeros(1, 6, 2, 2), y, u, v, bits=8),
        "downscale bits": lambda m: m.unpack_downscale(torch.zeros(1, 6, 1, 1), y, u, v, bits=17),
    }
    twin = _message(lambda: calls[case](reference))
    assert twin is not None
    plans = type("Plans", (), {"pack": staticmethod(cupy_ops.plan_pack), "unpack": staticmethod(cupy_ops.plan_unpack),
                               "unpack_upscale": staticmethod(cupy_ops.plan_unpack_upscale),
                               "unpack_downscale": staticmethod(cupy_ops.plan_unpack_downscale)})
    assert _message(lambda: calls[case](plans)) == twin


def test_upscale_beyond_exact_float32_sums_is_left_to_the_twin():
    y, u, v = random_planes(1, 2, 2, 16)
    with pytest.raises(cupy_ops.Unsupported, match="2\\^24"):
        cupy_ops.plan_unpack_upscale(torch.zeros(1, 6 * 81, 1, 1), y, u, v, bits=16, scale=9)
    _, launches = cupy_ops.plan_unpack_upscale(torch.zeros(1, 6 * 64, 1, 1), y, u, v, bits=16, scale=8)
    assert len(launches) == 3  # 4 * 64 * 65535 < 2^24: still exact


def test_empty_work_launches_nothing():
    y = torch.zeros(0, 3, 3, dtype=torch.uint8)
    u = torch.zeros(0, 2, 2, dtype=torch.uint8)
    out, launches = cupy_ops.plan_pack(y, u, u, bits=8)
    assert out.shape == (0, 6, 2, 2) and launches == []
    planes, launches = cupy_ops.plan_unpack_downscale(torch.zeros(0, 6, 1, 1), y, u, u, bits=8)
    assert [p.shape for p in planes] == [(0, 2, 2), (0, 1, 1), (0, 1, 1)] and launches == []


@pytest.mark.parametrize("cols,rows,depth", [(1, 1, 1), (31, 7, 2), (257, 1080, 4), (960, 540, 1),
                                             (5, 100_000, 70_000), (2**29, 3, 1)])
def test_launch_shape(cols, rows, depth):
    grid, block = cupy_ops.launch_shape(cols, rows, depth)
    threads = block[0]
    assert block[1:] == (1, 1) and threads % 32 == 0 and 32 <= threads <= cupy_ops.THREADS
    assert threads < 2 * max(cols, 32)  # small widths do not waste whole blocks
    assert 1 <= grid[0] <= cupy_ops.MAX_GRID_X and grid[0] * threads >= min(cols, cupy_ops.MAX_GRID_X)
    assert grid[1] == min(rows, cupy_ops.MAX_GRID_YZ) and grid[2] == min(depth, cupy_ops.MAX_GRID_YZ)


@pytest.mark.parametrize("extent", [0, -1, 2**30])
def test_launch_shape_refuses_bad_extents(extent):
    with pytest.raises(ValueError, match="launch extent"):
        cupy_ops.launch_shape(extent, 1, 1)


def test_kernel_source_is_self_contained():
    for source in cupy_ops.SOURCES:
        text = cupy_ops.kernel_source(source)
        assert "#include" not in text  # NVRTC needs no include path, and CuPy's cache key covers it all
        assert text.count("namespace vsr {") >= 2
    with pytest.raises(ValueError, match="unknown kernel source"):
        cupy_ops.kernel_source("other.cu")


def test_launch_arguments_export_by_dlpack():
    """Every tensor a plan passes is DLPack-exportable in a dtype CuPy knows (no bfloat16, no
    uint16), even a residual that requires grad reaching the kernels under no_grad."""
    y, u, v = random_planes(1, 5, 6, 10)
    r = torch.zeros(1, 24, 3, 3, dtype=torch.bfloat16, requires_grad=True)
    plans = [cupy_ops.plan_pack(y, u, v, bits=10, dtype=torch.bfloat16)[1],
             cupy_ops.plan_unpack(torch.zeros(1, 6, 3, 3, dtype=torch.float16), bits=10, block=2, height=5, width=6)[1],
             cupy_ops.plan_unpack_upscale(r, y, u, v, bits=10, scale=2)[1],
             cupy_ops.plan_unpack_downscale(torch.zeros(1, 6, 2, 2, dtype=torch.bfloat16, requires_grad=True),
                                            y, u, v, bits=10)[1]]
    for launches in plans:
        for launch in launches:
            for arg in launch.args:
                if isinstance(arg, torch.Tensor):
                    assert arg.dtype in (torch.uint8, torch.int16, torch.float32)
                    assert torch.from_dlpack(arg.__dlpack__()).data_ptr() == arg.data_ptr()


def test_float_code_planes_go_to_the_twin(fused_on_cpu):
    """unpack_upscale's twin also takes float32 planes holding codes (training); auto leaves them to it."""
    y, u, v = (p.float() for p in random_planes(1, 5, 4, 8))
    r = torch.zeros(1, 24, 3, 2)
    want = reference.unpack_upscale(r, y, u, v, bits=8, scale=2)
    got = kernels.unpack_upscale(r, y, u, v, bits=8, scale=2)
    assert fused_on_cpu == [] and all(torch.equal(a, b) for a, b in zip(got, want))
    with pytest.raises(kernels.BackendUnavailable, match="planes") as info:
        kernels.unpack_upscale(r, y, u, v, bits=8, scale=2, backend="cupy")
    assert isinstance(info.value.__cause__, cupy_ops.Unsupported)
