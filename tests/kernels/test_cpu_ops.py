"""The compiled CPU kernels (kernels/cpu_kernels.cpp, ``backend="cpu"``: pack and the upsampler's unpack)
against the torch twins: bit for bit, on the same adversarial inputs as the CUDA kernels' emulation
(ties, FMA witnesses, subnormals, NaN, +-inf), any thread count, strided and channels-last inputs;
mutated sources must be caught; and the dispatch rules."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import kernels
from kernels import BackendUnavailable, cpu_ops, reference
from tests.conftest import random_planes
from tests.kernels import inputs
from tests.kernels.parity import FLOATS, SIZES, assert_identical, frames

pytestmark = pytest.mark.skipif(not cpu_ops.available(), reason="the compiled CPU kernels cannot be built here")



@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("block", [2, 4])
@pytest.mark.parametrize("bits", [8, 10])
def test_pack_matches_twin(bits, block, dtype, h, w):
    y, u, v = random_planes(frames(h, w), h, w, bits, seed=h * w + block)
    want = reference.pack(y, u, v, bits=bits, block=block, dtype=dtype)
    for threads in (1, 2, 7):
        got = cpu_ops.pack(y, u, v, bits=bits, block=block, dtype=dtype, threads=threads)
        assert got.is_contiguous()
        assert_identical([got], [want])


def test_pack_strided_planes_and_out_of_range_codes():
    big = random_planes(2, 40, 30, 10, seed=11)
    y, u, v = big[0][:, 3:36:2, 1:30:3], big[1][:, 2:11, 4:14:2], big[2][:, 5:14, 1:6]
    assert not y.is_contiguous() and y.shape == (2, 17, 10)
    for block in (2, 4, 6):
        assert_identical([cpu_ops.pack(y, u, v, bits=10, block=block, dtype=torch.float16)],
                         [reference.pack(y, u, v, bits=10, block=block, dtype=torch.float16)])
    g = torch.Generator().manual_seed(3)  # the twin does not clamp codes above m; neither does the kernel
    y = torch.randint(0, 1 << 16, (1, 5, 6), generator=g).to(torch.uint16)
    u = torch.randint(0, 256, (1, 3, 3), generator=g).to(torch.uint16)
    v = torch.randint(0, 256, (1, 3, 3), generator=g).to(torch.uint16)
    assert_identical([cpu_ops.pack(y, u, v, bits=8, block=2, dtype=torch.bfloat16)],
                     [reference.pack(y, u, v, bits=8, block=2, dtype=torch.bfloat16)])


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("bits", [8, 10])
def test_unpack_upscale_matches_twin(bits, scale, dtype, h, w):
    y, u, v = random_planes(frames(h, w), h, w, bits, seed=h * 7 + w)
    r, witnesses = inputs.residual(y, u, v, bits=bits, scale=scale, dtype=dtype, seed=bits + scale)
    assert witnesses > 0 or dtype != torch.float32 or h * w == 1
    want = reference.unpack_upscale(r, y, u, v, bits=bits, scale=scale)
    for layout in (torch.contiguous_format, torch.channels_last):  # the CPU network returns channels-last
        for threads in (1, 2, 5):
            got = cpu_ops.unpack_upscale(r.contiguous(memory_format=layout), y, u, v, bits=bits, scale=scale,
                                         threads=threads)
            assert_identical(got, want)


@pytest.mark.parametrize("scale,bits", [(1, 10), (4, 10), (8, 16)])
def test_other_scales(scale, bits):
    y, u, v = random_planes(2, 9, 6, bits, seed=scale)
    r, _ = inputs.residual(y, u, v, bits=bits, scale=scale, dtype=torch.float32)
    assert_identical(cpu_ops.unpack_upscale(r, y, u, v, bits=bits, scale=scale),
                     reference.unpack_upscale(r, y, u, v, bits=bits, scale=scale))


def test_strided_planes():
    big = random_planes(2, 40, 30, 10, seed=11)
    y, u, v = big[0][:, 3:36:2, 1:30:3], big[1][:, 2:11, 4:14:2], big[2][:, 5:14, 1:6]
    assert not y.is_contiguous() and y.shape == (2, 17, 10)
    r, _ = inputs.residual(y, u, v, bits=10, scale=2, dtype=torch.bfloat16)
    r = r.contiguous(memory_format=torch.channels_last)
    assert_identical(cpu_ops.unpack_upscale(r, y, u, v, bits=10, scale=2),
                     reference.unpack_upscale(r, y, u, v, bits=10, scale=2))


def _case(bits, dtype, scale=2, h=17, w=13):
    y, u, v = random_planes(2, h, w, bits, seed=3)
    r, _ = inputs.residual(y, u, v, bits=bits, scale=scale, dtype=dtype, seed=4)
    return (r.contiguous(memory_format=torch.channels_last), y, u, v), dict(bits=bits, scale=scale)


# name: (original text, mutated text, the case that must catch it)
MUTATIONS = {
    "fused multiply-add": ("rintf(val[x] * half + base)", "rintf(fmaf(val[x], half, base))", _case(10, torch.float32)),
    "round half away from zero": ("rintf(val[x] * half + base)", "roundf(val[x] * half + base)",
                                  _case(8, torch.float16)),
    "2x taps swapped": ("sm[2 * k] = bl[k - 1] + 3 * bl[k];", "sm[2 * k] = 3 * bl[k - 1] + bl[k];",
                        _case(8, torch.bfloat16)),
    "2x right edge not clamped": ("bl[src_w] = bl[src_w - 1];", "bl[src_w] = 0;", _case(10, torch.bfloat16)),
    "reciprocal for 3x": ("(float)sm[x] / norm_f", "(float)sm[x] * (1.0f / norm_f)", _case(10, torch.float32, 3)),
    "NaN kept": ("v = v > 0.0f ? v : 0.0f;", "v = v < 0.0f ? 0.0f : v;", _case(8, torch.float32)),
    "residual cells swapped in luma rows": ("val[j * cell + dx] = In::load(r_row[j * rsw + dx]);",
                                            "val[j * cell + dx] = In::load(r_row[j * rsw + (cell - 1 - dx)]);",
                                            _case(8, torch.float16)),
}


def _pack_case(bits, dtype, block=2, h=17, w=13):
    return random_planes(2, h, w, bits, seed=5), dict(bits=bits, block=block, dtype=dtype)


PACK_MUTATIONS = {
    "reciprocal instead of division in pack": (
        "Out::store((float)(2 * (int)row[(int64_t)(q0 + step * j) * sw] - m) / m_f)",
        "Out::store((float)(2 * (int)row[(int64_t)(q0 + step * j) * sw] - m) * (1.0f / m_f))", _pack_case(8, torch.float32)),
    "right edge not replicated in pack": ("o[j] = edge;", "o[j] = Out::store(0.0f);", _pack_case(10, torch.bfloat16)),
    "bottom edge not clamped in pack": ("(int64_t)(r < h ? r : h - 1) * sh", "(int64_t)(r < h ? r : 0) * sh",
                                        _pack_case(8, torch.float16, block=4)),
    "U and V swapped in pack": ("plane = is_v ? p.v : p.u", "plane = is_v ? p.u : p.v", _pack_case(8, torch.float32)),
}


@pytest.fixture(scope="module")
def mutants(tmp_path_factory):
    """Every mutated source built once (concurrently: each build is a compiler process), by name."""
    source = (cpu_ops.KERNEL_DIR / cpu_ops.SOURCE).read_text()
    cache = tmp_path_factory.mktemp("mutants")
    texts = {}
    for name, (original, mutated, _) in {**MUTATIONS, **PACK_MUTATIONS}.items():
        assert source.count(original) == 1, f"mutation target for {name!r} not found once"
        texts[name] = source.replace(original, mutated)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        built = {name: pool.submit(cpu_ops.build, text, cache=cache) for name, text in texts.items()}
        return {name: future.result() for name, future in built.items()}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_parity_catches_mutation(name, mutants):
    _, _, (args, kw) = MUTATIONS[name]
    want = reference.unpack_upscale(*args, **kw)
    assert_identical(cpu_ops.unpack_upscale(*args, **kw), want)
    with pytest.raises(AssertionError):
        assert_identical(cpu_ops.unpack_upscale(*args, **kw, lib=mutants[name]), want)


@pytest.mark.parametrize("name", list(PACK_MUTATIONS))
def test_pack_parity_catches_mutation(name, mutants):
    _, _, (planes, kw) = PACK_MUTATIONS[name]
    want = [reference.pack(*planes, **kw)]
    assert_identical([cpu_ops.pack(*planes, **kw)], want)
    with pytest.raises(AssertionError):
        assert_identical([cpu_ops.pack(*planes, **kw, lib=mutants[name])], want)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the process's mapped libraries (Linux)")
def test_the_kernels_share_torchs_openmp_runtime():
    """The library's threads are torch's (one libgomp in the process, torch's), and a call with
    more threads than torch uses still splits its rows exactly."""
    cpu_ops.load()
    gomp = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "libgomp" in line}
    torch_gomp = {g for g in gomp if Path(g).parent == Path(torch.__file__).parent / "lib"}
    if not torch_gomp:
        pytest.skip("this torch build brings no libgomp of its own")
    assert gomp == torch_gomp, gomp
    y, u, v = random_planes(1, 37, 53, 8, seed=3)
    assert_identical(cpu_ops.pack(y, u, v, bits=8, block=2, dtype=torch.float32, threads=torch.get_num_threads() + 3),
                     reference.pack(y, u, v, bits=8, block=2, dtype=torch.float32))


def test_auto_uses_the_compiled_kernels_on_cpu_tensors(monkeypatch):
    calls = []
    for name in ("pack", "unpack_upscale"):
        real = getattr(cpu_ops, name)
        monkeypatch.setattr(cpu_ops, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    (r, y, u, v), kw = _case(8, torch.bfloat16)
    assert_identical([kernels.pack(y, u, v, bits=8, dtype=torch.bfloat16)],
                     [reference.pack(y, u, v, bits=8, dtype=torch.bfloat16)])
    assert_identical(kernels.unpack_upscale(r, y, u, v, **kw), reference.unpack_upscale(r, y, u, v, **kw))
    assert calls == ["pack", "unpack_upscale"]
    calls.clear()
    r.requires_grad_(True)  # a gradient is needed: the twin, and an explicit "cpu" says why
    kernels.unpack_upscale(r.float(), y, u, v, **kw)
    assert calls == []
    with pytest.raises(BackendUnavailable, match="requires grad"):
        kernels.unpack_upscale(r.float(), y, u, v, **kw, backend="cpu")


def test_explicit_cpu_backend_refuses_what_it_cannot_run():
    y, u, v = random_planes(1, 6, 8, 8, seed=1)
    with pytest.raises(BackendUnavailable, match="no compiled CPU kernel"):
        kernels.unpack(torch.zeros(1, 6, 3, 4), bits=8, block=2, height=6, width=8, backend="cpu")
    r = torch.zeros(1, 24, 3, 4)
    with pytest.raises(BackendUnavailable, match="backend=.cpu. cannot run this call"):
        kernels.unpack_upscale(r, y.to(torch.int32), u.to(torch.int32), v.to(torch.int32), bits=8, scale=2,
                               backend="cpu")
    # the twin takes those int32 planes, and auto falls back to it
    assert_identical(kernels.unpack_upscale(r, y.int(), u.int(), v.int(), bits=8, scale=2),
                     reference.unpack_upscale(r, y.int(), u.int(), v.int(), bits=8, scale=2))


def test_no_compiler_or_disabled_means_the_twin(monkeypatch):
    (r, y, u, v), kw = _case(10, torch.float32)
    want = reference.unpack_upscale(r, y, u, v, **kw)
    for env, message in ((("CXX", "/nonexistent/c++"), "no C\\+\\+ compiler"), (("VSR_CPU_KERNELS", "0"), "VSR_CPU_KERNELS")):
        monkeypatch.setenv(*env)
        cpu_ops._library.cache_clear()
        try:
            assert not cpu_ops.available()
            assert_identical(kernels.unpack_upscale(r, y, u, v, **kw), want)
            with pytest.raises(BackendUnavailable, match=message):
                kernels.unpack_upscale(r, y, u, v, **kw, backend="cpu")
        finally:
            monkeypatch.undo()
            cpu_ops._library.cache_clear()
    assert cpu_ops.available()


def test_a_failed_build_says_why(tmp_path):
    with pytest.raises(BackendUnavailable, match="failed: .*error"):  # the compiler's first error line
        cpu_ops.build("this is not C++", cache=tmp_path)
    assert not list(tmp_path.glob("*.so"))  # nothing half-built left in the cache


def test_cache_folder_without_a_home(monkeypatch):
    monkeypatch.delenv("VSR_KERNEL_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert cpu_ops.cache_dir() == Path("/somewhere/vsr/cpu-kernels")
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home():
        raise RuntimeError("Could not determine home directory.")
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert cpu_ops.cache_dir().name.startswith("vsr-cpu-kernels-")
