"""Where the network runs: torch (the reference), ONNX Runtime or OpenVINO, through one ONNX graph.

The exported graph is the network alone on the packed layout (:mod:`kernels`): ``packed``
``(N, C_in, h, w)`` float in, ``residual`` ``(N, C_out, h, w)`` out, with batch, height and width
dynamic, so one file serves every frame size (no per-resolution rebuild). Packing and unpacking
stay the torch twins of the kernels (the specification of every rounding), so a runtime changes
nothing but the arithmetic of the convolutions::

    planes --kernels.pack--> packed --[torch | ONNX Runtime | OpenVINO]--> residual
           --kernels.unpack_upscale--> planes

``onnxruntime`` and ``openvino`` are optional (extras ``onnx`` and ``openvino``) and imported only
here, only when asked for. Asking for one that is not installed is an error naming the extra;
``auto`` measures the installed ones on the engine's first frame size and keeps the fastest.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
_EXTRA = {"onnxruntime": "onnx", "openvino": "openvino"}
OPSET = 17

Network = Callable[[torch.Tensor], torch.Tensor]


def installed(runtime: str) -> bool:
    """Whether ``runtime`` can run here (torch always can)."""
    return runtime == "torch" or importlib.util.find_spec(runtime) is not None


def require(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if not installed(runtime):
        raise ValueError(f"runtime {runtime!r} is not installed; install vsr with the "
                         f"'{_EXTRA[runtime]}' extra (pip install 'vsr[{_EXTRA[runtime]}]')")


def _import_openvino():
    """``import openvino`` without its usage telemetry: importing it otherwise sends an event to
    Google Analytics from a process forked off this (multi-threaded) one, which can deadlock, and vsr
    sends nothing anywhere. With the optional ``openvino_telemetry`` package hidden during the
    import, OpenVINO takes its own no-op stub; the package stays importable afterwards."""
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    hidden = {name: sys.modules.get(name) for name in ("openvino_telemetry", "openvino_telemetry.backend")}
    sys.modules.update(dict.fromkeys(hidden))  # None: "import fails" for this import only
    try:
        import openvino
    finally:
        for name, module in hidden.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return openvino


def trace_onnx(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], *, input_names: list[str],
               output_names: list[str], dynamic: dict[str, dict[int, str]]) -> bytes:
    """``module`` traced on ``inputs`` into an ONNX graph (opset :data:`OPSET`) with the named axes dynamic."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(module, inputs, buffer, dynamo=False, opset_version=OPSET, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic)
    return buffer.getvalue()


def export_copy(net: torch.nn.Module, *, fp16: bool = False) -> torch.nn.Module:
    """A CPU copy of ``net`` to trace (float32 or float16, contiguous); the caller's stays as it was."""
    return copy.deepcopy(net).eval().to("cpu", torch.float16 if fp16 else torch.float32,
                                        memory_format=torch.contiguous_format)


def onnx_bytes(net: torch.nn.Module, *, fp16: bool = False) -> bytes:
    """The ONNX graph of ``net`` on the packed layout (float32, or float16 weights and tensors) with
    dynamic N, h, w."""
    net = export_copy(net, fp16=fp16)
    example = torch.zeros(1, net.body[0].in_channels, 16, 16, dtype=torch.float16 if fp16 else torch.float32)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    return trace_onnx(net, (example,), input_names=["packed"], output_names=["residual"],
                      dynamic={"packed": dynamic, "residual": dynamic})


def save_onnx(graph: bytes, path: str | Path, *, metadata: dict[str, str], doc: str) -> Path:
    """Write an ONNX graph (atomically) whose metadata_props carry ``metadata`` (model name,
    content hash, scale, layout, ...) and whose doc string is ``doc``."""
    import onnx

    from .atomic import write_bytes_atomic

    model = onnx.load_from_string(graph)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=str(value))
    model.doc_string = doc
    path = Path(path)
    write_bytes_atomic(path, model.SerializeToString())
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


class OnnxRuntimeNetwork:
    """The network through ONNX Runtime's CPU provider (float32)."""

    def __init__(self, graph: bytes, *, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, packed: torch.Tensor) -> torch.Tensor:
        x = packed.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"packed": x})[0])


class OpenVinoNetwork:
    """The network through OpenVINO on the CPU; ``bf16`` asks for bf16 inference precision (used
    natively on CPUs with AVX-512 BF16 or AMX), otherwise float32."""

    def __init__(self, graph: bytes, *, threads: int, bf16: bool = False) -> None:
        ov = _import_openvino()
        core = ov.Core()
        model = core.read_model(graph, b"")  # an ONNX graph in memory, weights inside
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
                  "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, packed: torch.Tensor) -> torch.Tensor:
        x = packed.detach().to("cpu", torch.float32).contiguous().numpy()
        result = self.request.infer({0: x})
        return torch.from_numpy(next(iter(result.values())).copy())


class FusedCpuNetwork:
    """The network on the CPU with each convolution and the ReLU after it as one oneDNN call.

    Upsampler and downsampler are ``tail(body(x))`` with ``body`` a stack of 3x3 convolutions each
    followed by a ReLU. Eager torch runs every ReLU as a separate pass over a feature map; oneDNN's
    convolution takes the ReLU as a post-op instead (the op ``torch.compile`` emits on CPUs, usable
    without a compiler). Same numbers: the ReLU is applied before the rounding to the output dtype,
    and max(0, .) commutes with that rounding. In bf16 on the AMX Xeon the network alone ran 1.4x
    faster with it, x2-fast and x2-default alike (README, Performance); fp32, compute-bound, about
    the same.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        layers = [*net.body, net.tail]
        self.steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
        i = 0
        while i < len(layers):
            layer = layers[i]
            if (isinstance(layer, torch.nn.Conv2d) and layer.padding_mode == "zeros" and i + 1 < len(layers)
                    and isinstance(layers[i + 1], torch.nn.ReLU)):
                self.steps.append(self._conv_relu(layer))
                i += 2
            else:
                self.steps.append(layer)
                i += 1

    @staticmethod
    def _conv_relu(conv: torch.nn.Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
        op = torch.ops.mkldnn._convolution_pointwise
        args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups, "relu", [], "")
        return lambda x: op(x, conv.weight, conv.bias, *args)

    def __call__(self, packed: torch.Tensor) -> torch.Tensor:
        x = packed.contiguous(memory_format=torch.channels_last)  # (a tile is a strided view)
        for step in self.steps:
            x = step(x)
        return x


def _torch_network(net: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> Network:
    """``net`` itself, or on the CPU its :class:`FusedCpuNetwork` where that op exists in this torch
    build and computes what ``net`` does on a small input of the engine's dtype (to the rounding of
    that dtype: oneDNN may pick another summation order for the fused call)."""
    if device.type != "cpu" or not isinstance(getattr(net, "body", None), torch.nn.Sequential):
        return net
    try:
        fused = FusedCpuNetwork(net)
        with torch.inference_mode():
            generator = torch.Generator().manual_seed(0)
            x = torch.rand(1, net.body[0].in_channels, 9, 7, generator=generator)
            x = x.to(dtype).contiguous(memory_format=torch.channels_last)
            tol = 1e-5 if dtype == torch.float32 else 1e-2
            same = torch.allclose(fused(x).float(), net(x).float(), rtol=tol, atol=tol)
    except (AttributeError, RuntimeError, TypeError):  # op missing from this build, or refused
        return net
    return fused if same else net


def unsupported(runtime: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """Why ``runtime`` cannot run the network on ``device`` in ``dtype``, or None when it can.
    The one statement of these rules: the engine, ``auto`` and ``vsr-bench speed`` all ask here."""
    if runtime == "torch":
        return None
    if device.type != "cpu":
        return f"runtime {runtime!r} runs on the CPU here; use --runtime torch on {device.type}"
    if dtype == torch.float16:
        return f"runtime {runtime!r} runs fp32 (or bf16 with openvino) on the CPU, not fp16"
    if dtype == torch.bfloat16 and runtime == "onnxruntime":
        return "onnxruntime runs fp32 on the CPU; use --dtype fp32, or --runtime openvino for bf16"
    return None


def network(net: torch.nn.Module, runtime: str, *, device: torch.device, dtype: torch.dtype) -> Network:
    """A callable running ``net`` on packed tensors with ``runtime`` (not ``auto``)."""
    require(runtime)
    reason = unsupported(runtime, device, dtype)
    if reason:
        raise ValueError(reason)
    if runtime == "torch":
        return _torch_network(net, device, dtype)
    graph = onnx_bytes(net)
    threads = torch.get_num_threads()
    if runtime == "onnxruntime":
        return OnnxRuntimeNetwork(graph, threads=threads)
    return OpenVinoNetwork(graph, threads=threads, bf16=dtype == torch.bfloat16)


def fastest(candidates: dict[str, Network], example: torch.Tensor, *, repeats: int = 3) -> str:
    """The name of the candidate with the lowest median time on ``example`` (after one warm-up run)."""
    times = {}
    for name, run in candidates.items():
        with torch.inference_mode():
            run(example)
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                run(example)
                samples.append(time.perf_counter() - t0)
        times[name] = sorted(samples)[len(samples) // 2]
    return min(times, key=times.get)
