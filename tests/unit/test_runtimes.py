"""ONNX export and the ONNX Runtime / OpenVINO runtimes against the torch engine."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO, random_planes
from tests.unit.test_models import randomised
from vsr_plugin import runtimes
from vsr_plugin.engine import Downscaler, EngineOptions, Upscaler
from vsr_plugin.export import main as export_main
from vsr_plugin.models import Upsampler, UpsamplerConfig, load_upsampler, read_info, resolve_weights, sidecar_paths

RUNTIMES = [pytest.param(r, marks=pytest.mark.skipif(not runtimes.installed(r), reason=f"{r} not installed"))
            for r in ("onnxruntime", "openvino")]


def _max_code_difference(a, b) -> int:
    return max(int((x.to(torch.int32) - y.to(torch.int32)).abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("bits", [8, 10])
def test_runtime_equals_torch_within_one_code_on_odd_sizes(runtime, bits):
    for shape in ((2, 37, 23), (1, 9, 64)):  # odd sizes, two resolutions through one engine (one graph)
        planes = random_planes(*shape, bits)
        want = Upscaler("default", device="cpu", dtype="fp32").upscale_planes(*planes, bits=bits)
        engine = Upscaler("default", device="cpu", dtype="fp32", runtime=runtime)
        got = engine.upscale_planes(*planes, bits=bits)
        assert [tuple(p.shape) for p in got] == [tuple(p.shape) for p in want]
        assert all(g.dtype == w.dtype for g, w in zip(got, want))
        assert _max_code_difference(got, want) <= 1
    assert repr(engine).endswith(f"float32, {runtime})")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_downscaler_and_tiles(runtime):
    planes = random_planes(1, 70, 46, 8)
    down = "x2-codec-default-down"
    want = Downscaler(down, device="cpu", dtype="fp32").downscale_planes(*planes, bits=8)
    got = Downscaler(down, device="cpu", dtype="fp32", runtime=runtime).downscale_planes(*planes, bits=8)
    assert _max_code_difference(got, want) <= 1
    want = Upscaler("fast", device="cpu", dtype="fp32").upscale_planes(*planes, bits=8)
    tiled = Upscaler("fast", device="cpu", dtype="fp32", runtime=runtime, tile=32).upscale_planes(*planes, bits=8)
    assert _max_code_difference(tiled, want) <= 1


def test_exported_file_runs_at_two_resolutions_and_names_its_model(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "x2-default.onnx"
    assert export_main(["onnx", "default", "-o", str(out)]) == 0
    meta = runtimes.read_metadata(out)
    info = read_info(sidecar_paths(resolve_weights("default"))[1])
    assert meta["vsr.sha256"] == info.sha256 and meta["vsr.model"] == "x2-default"
    assert (meta["vsr.kind"], meta["vsr.scale"], meta["vsr.block"], meta["vsr.in_channels"],
            meta["vsr.out_channels"]) == ("upsampler", "2", "2", "6", "24")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    net, _ = load_upsampler("default")
    for shape in ((1, 6, 17, 30), (3, 6, 40, 9)):
        x = torch.rand(shape) * 2 - 1
        got = session.run(None, {"packed": x.numpy()})[0]
        np.testing.assert_allclose(got, net(x).detach().numpy(), atol=2e-5)
    # fp16: half the size, within a fraction of a code value
    half = tmp_path / "half.onnx"
    assert export_main(["onnx", "default", "--fp16", "-o", str(half)]) == 0
    assert runtimes.read_metadata(half)["vsr.dtype"] == "fp16" and half.stat().st_size < 0.6 * out.stat().st_size
    x = torch.rand(1, 6, 21, 13) * 2 - 1
    got = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"]).run(
        None, {"packed": x.numpy().astype(np.float16)})[0]
    assert np.abs(got.astype(np.float32) - net(x).detach().numpy()).max() < 0.5 * 2 / 255


def test_export_errors_are_one_line(tmp_path, capsys):
    assert export_main(["onnx", "nope", "-o", str(tmp_path / "a.onnx")]) == 2
    assert export_main(["onnx", "default", "-o", str(tmp_path)]) == 2
    assert export_main(["onnx", "-o", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("vsr-export: error:") for line in err)
    assert "no model 'nope'" in err[0] and "names a folder" in err[1] and "--all" in err[2]
    assert not list(tmp_path.iterdir())


def test_missing_runtime_is_an_error_when_asked_and_auto_does_without(monkeypatch):
    monkeypatch.setattr(runtimes, "installed", lambda name: name == "torch")
    with pytest.raises(ValueError, match=r"runtime 'openvino' is not installed; .*'openvino' extra"):
        EngineOptions(runtime="openvino")
    with pytest.raises(ValueError, match="runtime must be one of"):
        EngineOptions(runtime="tensorrt")
    engine = Upscaler("fast", device="cpu", runtime="auto")
    engine.upscale_planes(*random_planes(1, 8, 8, 8), bits=8)
    assert engine.runtime == "torch"


def test_auto_keeps_the_fastest_measured_runtime():
    slow_calls = []

    def slow(x):
        slow_calls.append(x.shape)
        import time
        time.sleep(0.01)
        return x

    fast = lambda x: x  # noqa: E731
    assert runtimes.fastest({"slow": slow, "fast": fast}, torch.zeros(1)) == "fast"
    assert len(slow_calls) == 4  # one warm-up, three timed


def test_default_precision_follows_the_cpu(monkeypatch):
    import vsr_plugin.engine as engine_module
    monkeypatch.setattr(engine_module, "has_native_bf16", lambda: True)
    assert Upscaler("fast", device="cpu").dtype == torch.bfloat16
    assert Upscaler("fast", device="cpu", runtime="onnxruntime").dtype == torch.float32  # it runs fp32 only
    monkeypatch.setattr(engine_module, "has_native_bf16", lambda: False)
    assert Upscaler("fast", device="cpu").dtype == torch.float32
    assert engine_module.default_dtype(torch.device("cuda")) == "fp16"


def test_runtime_refuses_what_it_cannot_run():
    net = Upsampler(UpsamplerConfig(channels=8, blocks=1))
    if runtimes.installed("onnxruntime"):
        with pytest.raises(ValueError, match="onnxruntime runs fp32"):
            runtimes.network(net, "onnxruntime", device=torch.device("cpu"), dtype=torch.bfloat16)
        with pytest.raises(ValueError, match="runs on the CPU here"):
            runtimes.network(net, "onnxruntime", device=torch.device("cuda"), dtype=torch.float32)


@pytest.mark.skipif(not runtimes.installed("openvino"), reason="openvino not installed")
def test_openvino_runs_without_its_telemetry():
    """Importing openvino plainly sends a usage event from a forked process; vsr's import does not."""
    import subprocess
    import sys

    code = ("import sys, multiprocessing.popen_fork as pf\n"
            "pf.Popen._launch = lambda self, obj: sys.exit('forked')\n"
            "from vsr_plugin.engine import Upscaler\n"
            "from tests.conftest import random_planes\n"
            "Upscaler('fast', device='cpu', runtime='openvino').upscale_planes(*random_planes(1, 8, 8, 8), bits=8)\n"
            "assert 'openvino_telemetry' not in sys.modules\n"
            "print('ok')\n")
    from tests.conftest import REPO
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def _run_planes_graph(path, runtime, planes):
    feeds = [p.numpy() for p in planes]
    if runtime == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [torch.from_numpy(a) for a in session.run(None, dict(zip("yuv", feeds)))]
    compiled = runtimes._import_openvino().Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled.create_infer_request().infer(feeds)
    return [torch.from_numpy(result[out].copy()) for out in compiled.outputs]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("bits", [8, 10])
def test_planes_graph_equals_the_engine_at_any_size(runtime, bits, tmp_path):
    path = tmp_path / "planes.onnx"
    assert export_main(["onnx", "default", "--planes", str(bits), "-o", str(path)]) == 0
    meta = runtimes.read_metadata(path)
    assert meta["vsr.bits"] == str(bits) and meta["vsr.layout"].startswith("planes:")
    assert meta["vsr.sha256"] == read_info(sidecar_paths(resolve_weights("default"))[1]).sha256
    engine = Upscaler("default", device="cpu", dtype="fp32")
    for shape in ((2, 37, 23), (1, 9, 64), (1, 40, 30)):  # odd and even sizes through one file
        planes = random_planes(*shape, bits)
        planes = [p.to(torch.uint8 if bits == 8 else torch.uint16) for p in planes]
        want = engine.upscale_planes(*planes, bits=bits)
        got = _run_planes_graph(path, runtime, planes)
        assert [tuple(p.shape) for p in got] == [tuple(p.shape) for p in want]
        assert all(g.dtype == w.dtype for g, w in zip(got, want))  # uint8 / uint16 codes out
        assert _max_code_difference(got, want) <= 1


def test_planes_graph_fp16_and_its_limits(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "planes16.onnx"
    assert export_main(["onnx", "fast", "--planes", "8", "--fp16", "-o", str(path)]) == 0
    planes = random_planes(1, 21, 34, 8)
    want = Upscaler("fast", device="cpu", dtype="fp32").upscale_planes(*planes, bits=8)
    assert _max_code_difference(_run_planes_graph(path, "onnxruntime", planes), want) <= 1
    assert export_main(["onnx", "x2-codec-default-down", "--planes", "8", "-o", str(tmp_path / "d.onnx")]) == 2
    assert export_main(["onnx", "default", "--planes", "9", "-o", str(tmp_path / "n.onnx")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["planes16.onnx"]


@pytest.mark.skipif(not hasattr(torch.ops.mkldnn, "_convolution_pointwise"),
                    reason="this torch build has no fused oneDNN convolution (the engine runs the module)")
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_torch_runtime_fuses_each_convolution_with_its_relu_on_the_cpu(dtype):
    attention = randomised(UpsamplerConfig(channels=16, blocks=2, attention=True, attention_pool=4))
    cases = [(Upscaler, "fast"), (Upscaler, "default"), (Downscaler, "x2-codec-default-down"), (Upscaler, attention)]
    for engine_type, model in cases:
        engine = engine_type(model, device="cpu", dtype=dtype)
        fused = engine._run
        assert isinstance(fused, runtimes.FusedCpuNetwork)
        body = list(engine.net.body)
        # every ReLU went into the convolution before it; attention stays a step of its own
        assert len(fused.steps) == len(body) + 1 - sum(isinstance(m, torch.nn.ReLU) for m in body)
        assert not any(isinstance(step, torch.nn.ReLU) for step in fused.steps)
        x = (torch.rand(2, engine.net.body[0].in_channels, 23, 17) * 2 - 1).to(engine.dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            for part in (x, x[:, :, 3:20, 2:15]):  # a tile is a strided view
                got, want = fused(part).float(), engine.net(part).float()
                tol = 1e-5 if dtype == "fp32" else 1e-2
                assert got.shape == want.shape and torch.allclose(got, want, rtol=tol, atol=tol)


def test_torch_runtime_keeps_the_module_where_the_fused_op_is_missing(monkeypatch):
    def missing(conv):
        raise AttributeError("'_OpNamespace' 'mkldnn' object has no attribute '_convolution_pointwise'")

    monkeypatch.setattr(runtimes.FusedCpuNetwork, "_conv_relu", staticmethod(missing))
    engine = Upscaler("fast", device="cpu", dtype="fp32")
    assert engine._run is engine.net
    planes = random_planes(1, 19, 26, 8)
    monkeypatch.undo()
    want = Upscaler("fast", device="cpu", dtype="fp32").upscale_planes(*planes, bits=8)
    assert _max_code_difference(engine.upscale_planes(*planes, bits=8), want) <= 1  # (0 here: same sums)


_PAGE_FAULTS = """
import resource, sys, torch
from vsr_plugin.cpu_features import retain_freed_memory
from vsr_plugin.engine import Upscaler

def faults(run):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    run()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

up = Upscaler("fast", device="cpu", dtype="fp32")  # a CPU engine applies the setting, process-wide
# a 64 MiB block (above glibc's largest dynamic mmap threshold, so unmapped at every free by default)
# (the least of four repeats: now and then one lands beside the freed block, in fresh pages, when a
# small allocation in between has split it)
big = [faults(lambda: torch.ones(16 << 20)) for _ in range(5)]
y = torch.randint(0, 256, (1, 270, 480), dtype=torch.uint8)
u = torch.randint(0, 256, (1, 135, 240), dtype=torch.uint8)
frames = [faults(lambda: up.upscale_planes(y, u, u, bits=8)) for _ in range(10)]
print(retain_freed_memory(), min(big[1:]), sum(frames[4:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_cpu_engines_keep_freed_memory_so_frames_stop_page_faulting():
    """glibc unmaps large freed blocks, so every frame would fault its feature maps in again; the
    CPU engines' allocator setting keeps them in the heap for the next frame."""
    def run(env):
        proc = subprocess.run([sys.executable, "-c", _PAGE_FAULTS], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO), **env), check=True)
        applied, big, frames = proc.stdout.split()
        return applied, int(big), int(frames)
    applied, big, frames = run({})
    assert applied == "True" and big < 100 and frames < 300, (big, frames)
    applied, big, _ = run({"VSR_MALLOC_TUNING": "0"})
    assert applied == "False" and big > 16_000
