"""``vsr-export``: a shipped model or weights file as an ONNX graph for other runtimes, or a blend of two.

    vsr-export onnx default -o x2-default.onnx            # float32
    vsr-export onnx x2-codec-aware-up --fp16 -o up16.onnx  # float16 weights and tensors (GPU runtimes)
    vsr-export onnx --all -o exported/                     # every shipped model, fp32 and fp16
    vsr-export onnx default --planes 10 -o x2-10bit.onnx   # 4:2:0 planes in and out, packing inside
    vsr-export blend x2-codec-aware-v2-up runs/gan/best --alpha 0.4 -o runs/blend40  # network interpolation

By default the graph is the network on the packed layout (see :mod:`vsr_plugin.runtimes` for the
data flow and ``README.md`` for the tensor contract); ``--planes BITS`` puts the packing and
unpacking inside the graph (upsamplers), so a runtime takes the Y, U, V planes of a frame as they
are and returns the upscaled ones. Batch, height and width are dynamic either way. The metadata
names the model, its content hash, kind, scale, packing block, channel counts and layout.

``blend A B --alpha X`` writes the weights ``(1 - X) A + X B`` (same architecture; see
:func:`vsr_plugin.models.blend_weights`): between a fidelity-trained upsampler and its adversarial
fine-tune, one number trades PSNR for texture without training again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import kernels.reference as spec

from .models import (DOWNSAMPLER, UPSAMPLER, CheckpointError, blend_weights, load_downsampler, load_upsampler,
                     read_info, resolve_weights, shipped_models, sidecar_paths)


PLANES_BITS = (8, 10, 12, 14, 16)


class PlanesUpscaleGraph(nn.Module):
    """An upsampler with its packing and unpacking around it, written for tracing into one graph.

    ``(y, u, v)`` 4:2:0 planes of integer codes, ``(N, H, W)`` and ``(N, ceil(H/2), ceil(W/2))``, in;
    the upscaled planes, same dtype, out. This is :func:`kernels.reference.pack` and
    :func:`~kernels.reference.unpack_upscale` (the specification) re-expressed with ops whose
    shapes follow the input's (slices, pixel (un)shuffle), so that the traced graph serves every
    frame size: the edge replication of an odd luma size is "append the last row/column, keep an
    even count" instead of a gather with size-dependent indices. The bilinear base is the
    specification's own function. Tested equal to the torch engine within one code value (the
    runtimes' convolution arithmetic, as for the packed graph). With ``fp16`` only the network runs
    in float16; the code-value arithmetic stays float32 (10-bit codes and their sums do not fit
    float16's spacing).
    """

    def __init__(self, net: nn.Module, *, bits: int, fp16: bool = False) -> None:
        super().__init__()
        self.net = net
        self.bits = bits
        self.scale = net.scale
        self.fp16 = fp16

    def forward(self, y: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m, s = float(spec.max_code(self.bits)), self.scale
        y, u, v, dtype = y.to(torch.float32), u.to(torch.float32), v.to(torch.float32), y.dtype
        h, w = y.shape[1], y.shape[2]
        ch, cw = u.shape[1], u.shape[2]
        even = torch.cat([y, y[:, -1:]], 1)[:, : 2 * ch]
        even = torch.cat([even, even[:, :, -1:]], 2)[:, :, : 2 * cw]
        packed = torch.cat([F.pixel_unshuffle(even[:, None], 2), u[:, None], v[:, None]], 1)
        packed = (packed * 2.0 - m) / m
        residual = self.net(packed.half() if self.fp16 else packed).to(torch.float32) * (m / 2)
        oh, ow = s * h, s * w
        och, ocw = (oh + 1) // 2, (ow + 1) // 2
        out = (F.pixel_shuffle(residual[:, : 4 * s * s], 2 * s)[:, 0, :oh, :ow] + spec.bilinear_upscale(y, s, oh, ow),
               F.pixel_shuffle(residual[:, 4 * s * s: 5 * s * s], s)[:, 0, :och, :ocw] + spec.bilinear_upscale(u, s, och, ocw),
               F.pixel_shuffle(residual[:, 5 * s * s:], s)[:, 0, :och, :ocw] + spec.bilinear_upscale(v, s, och, ocw))
        return tuple(p.round().clamp(0.0, m).to(dtype) for p in out)  # Round: half to even, as quantize


def _planes_onnx_bytes(net: nn.Module, *, bits: int, fp16: bool) -> bytes:
    """The traced :class:`PlanesUpscaleGraph`: uint8 planes for 8 bits, uint16 above."""
    import onnx

    from .runtimes import export_copy, trace_onnx

    net = export_copy(net, fp16=fp16)
    # the TorchScript exporter has no uint16: trace with int16 (which holds every code up to 15 bits
    # alike), then retype the inputs, outputs and casts below; 16-bit codes need the retyping
    dtype = torch.uint8 if bits == 8 else torch.int16
    example = tuple(torch.zeros(1, n, n, dtype=dtype) for n in (16, 8, 8))
    names = ["y", "u", "v"], ["y_out", "u_out", "v_out"]
    dynamic = {name: {0: "batch", 1: "height", 2: "width"} for name in names[0] + names[1]}
    graph = trace_onnx(PlanesUpscaleGraph(net, bits=bits, fp16=fp16), example, input_names=names[0],
                       output_names=names[1], dynamic=dynamic)
    if bits == 8:
        return graph
    model = onnx.load_from_string(graph)
    int16, uint16 = onnx.TensorProto.INT16, onnx.TensorProto.UINT16
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.elem_type = uint16
    for node in model.graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == int16:
                attribute.i = uint16
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export(model: str, output: str | Path, *, fp16: bool = False, planes: int | None = None) -> Path:
    """Export one model (shipped name or weights path) to ``output``; returns the written path.

    ``planes``: the bit depth of a planes-in, planes-out graph (upsamplers only); None for the
    packed network."""
    from .runtimes import onnx_bytes, save_onnx

    path = resolve_weights(model)
    info = read_info(sidecar_paths(path)[1])
    if planes is not None and info.kind != UPSAMPLER:
        raise ValueError(f"--planes graphs are built for upsamplers; {info.name} is a {info.kind} "
                         "(export it without --planes: the packed network)")
    if planes is not None and planes not in PLANES_BITS:
        raise ValueError(f"--planes takes a bit depth of {', '.join(map(str, PLANES_BITS))}, got {planes}")
    loader = load_upsampler if info.kind == UPSAMPLER else load_downsampler
    net, info = loader(path, scale=info.config.get("scale", 2))
    block = 2 if info.kind == UPSAMPLER else 4
    first = net.body[0]
    metadata = {"vsr.model": info.name, "vsr.sha256": info.sha256, "vsr.kind": info.kind,
                "vsr.scale": str(net.scale), "vsr.block": str(block), "vsr.in_channels": str(first.in_channels),
                "vsr.out_channels": str(net.tail.out_channels), "vsr.dtype": "fp16" if fp16 else "fp32"}
    if planes is None:
        metadata["vsr.layout"] = "packed: (N, C_in, ceil(H/block), ceil(W/block)) in [-1, 1] -> residual (N, C_out, same)"
        graph, doc = onnx_bytes(net, fp16=fp16), "vsr network on the packed YUV 4:2:0 layout; see vsr_plugin/runtimes.py"
    else:
        code = "uint8" if planes == 8 else "uint16"
        metadata["vsr.bits"] = str(planes)
        metadata["vsr.layout"] = (f"planes: y (N, H, W), u, v (N, ceil(H/2), ceil(W/2)) {code} codes -> y_out "
                                  f"(N, {net.scale}H, {net.scale}W), u_out, v_out (N, ceil({net.scale}H/2), "
                                  f"ceil({net.scale}W/2)) {code}")
        graph = _planes_onnx_bytes(net, bits=planes, fp16=fp16)
        doc = f"vsr x{net.scale} upsampler on {planes}-bit YUV 4:2:0 planes, packing inside; see vsr_plugin/export.py"
    return save_onnx(graph, output, metadata=metadata, doc=doc)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsr-export", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="format", required=True)
    o = sub.add_parser("onnx", help="ONNX graph with dynamic height and width")
    o.add_argument("model", nargs="?", help="shipped model name or weights path")
    o.add_argument("-o", "--output", required=True, help="output .onnx file (with --all: a folder)")
    o.add_argument("--fp16", action="store_true", help="float16 graph (GPU runtimes; CPUs run fp32)")
    o.add_argument("--planes", type=int, metavar="BITS",
                   help="planes in and out at this bit depth (8, 10, ...), packing inside the graph "
                        "(upsamplers; with --all, downsamplers stay packed)")
    o.add_argument("--all", action="store_true", help="every shipped model, fp32 and fp16, into the folder -o")
    b = sub.add_parser("blend", help="weights interpolated between two models of one architecture")
    b.add_argument("model_a", help="shipped model name or weights path (alpha 0)")
    b.add_argument("model_b", help="shipped model name or weights path (alpha 1)")
    b.add_argument("--alpha", type=float, required=True, help="share of model_b, 0..1")
    b.add_argument("-o", "--output", required=True, help="output weights path (NAME or NAME.safetensors; "
                                                         "NAME.json is written beside it)")
    return p


def _blend(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.is_dir():
        raise ValueError(f"-o names a folder ({out}); give a weights name such as {out / 'blend'}")
    if not out.parent.is_dir():
        raise ValueError(f"output folder {out.parent} does not exist")
    weights, _ = blend_weights(args.model_a, args.model_b, args.alpha, out)
    print(weights)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.format == "blend":
            return _blend(args)
        if args.all == bool(args.model):
            raise ValueError("name one model, or --all for every shipped model")
        if args.all:
            folder = Path(args.output)
            if not folder.is_dir():
                raise ValueError(f"--all writes into an existing folder; {folder} is not one")
            for name in shipped_models(UPSAMPLER) + shipped_models(DOWNSAMPLER):
                planes = args.planes if name in shipped_models(UPSAMPLER) else None
                tag = f"-planes{planes}" if planes else ""
                for fp16 in (False, True):
                    print(export(name, folder / f"{name}{tag}{'-fp16' if fp16 else ''}.onnx", fp16=fp16, planes=planes))
            return 0
        out = Path(args.output)
        if out.is_dir():
            raise ValueError(f"-o names a folder ({out}); give a file name such as {out / 'model.onnx'}")
        if not out.parent.is_dir():
            raise ValueError(f"output folder {out.parent} does not exist")
        print(export(args.model, out, fp16=args.fp16, planes=args.planes))
    except (ValueError, CheckpointError) as e:
        print(f"vsr-export: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        print(f"vsr-export: error: {e.name} is not installed; install vsr with the 'onnx' extra "
              "(pip install 'vsr[onnx]')", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
