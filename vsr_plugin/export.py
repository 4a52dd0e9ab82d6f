"""``vsr-export``: a shipped model or weights file as an ONNX graph for other runtimes.

    vsr-export onnx default -o x2-default.onnx            # float32
    vsr-export onnx x2-codec-aware-up --fp16 -o up16.onnx  # float16 weights and tensors (GPU runtimes)
    vsr-export onnx --all -o exported/                     # every shipped model, fp32 and fp16

The graph is the network on the packed layout, height and width dynamic (see
:mod:`vsr_plugin.runtimes` for the data flow and ``README.md`` for the tensor contract); its
metadata names the model, its content hash, kind, scale, packing block and channel counts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .models import (DOWNSAMPLER, UPSAMPLER, CheckpointError, load_downsampler, load_upsampler, read_info,
                     resolve_weights, shipped_models, sidecar_paths)


def export(model: str, output: str | Path, *, fp16: bool = False) -> Path:
    """Export one model (shipped name or weights path) to ``output``; returns the written path."""
    path = resolve_weights(model)
    info = read_info(sidecar_paths(path)[1])
    loader = load_upsampler if info.kind == UPSAMPLER else load_downsampler
    net, info = loader(path, scale=info.config.get("scale", 2))
    block = 2 if info.kind == UPSAMPLER else 4
    first = net.body[0]
    metadata = {"vsr.model": info.name, "vsr.sha256": info.sha256, "vsr.kind": info.kind,
                "vsr.scale": str(net.scale), "vsr.block": str(block), "vsr.in_channels": str(first.in_channels),
                "vsr.out_channels": str(net.tail.out_channels), "vsr.dtype": "fp16" if fp16 else "fp32",
                "vsr.layout": "packed: (N, C_in, ceil(H/block), ceil(W/block)) in [-1, 1] -> residual (N, C_out, same)"}
    from .runtimes import save_onnx

    return save_onnx(net, output, metadata=metadata, fp16=fp16)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsr-export", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="format", required=True)
    o = sub.add_parser("onnx", help="ONNX graph with dynamic height and width")
    o.add_argument("model", nargs="?", help="shipped model name or weights path")
    o.add_argument("-o", "--output", required=True, help="output .onnx file (with --all: a folder)")
    o.add_argument("--fp16", action="store_true", help="float16 graph (GPU runtimes; CPUs run fp32)")
    o.add_argument("--all", action="store_true", help="every shipped model, fp32 and fp16, into the folder -o")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.all == bool(args.model):
            raise ValueError("name one model, or --all for every shipped model")
        if args.all:
            folder = Path(args.output)
            if not folder.is_dir():
                raise ValueError(f"--all writes into an existing folder; {folder} is not one")
            for name in shipped_models(UPSAMPLER) + shipped_models(DOWNSAMPLER):
                for fp16 in (False, True):
                    written = export(name, folder / f"{name}{'-fp16' if fp16 else ''}.onnx", fp16=fp16)
                    print(written)
            return 0
        out = Path(args.output)
        if out.is_dir():
            raise ValueError(f"-o names a folder ({out}); give a file name such as {out / 'model.onnx'}")
        if not out.parent.is_dir():
            raise ValueError(f"output folder {out.parent} does not exist")
        print(export(args.model, out, fp16=args.fp16))
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
