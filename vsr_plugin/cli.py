"""``vsr-transcode``: the command line.

    vsr-transcode in.mp4 [-o out.vsr.mkv]            encoder side: learned 2x down + base codec
    vsr-transcode in.vsr.mkv [-o out.mkv]            decoder side: restore the original size
    vsr-transcode --upscale in.mp4 [-o out.mkv]      2x super-resolution of any video
    vsr-transcode pipe --upscale | --downscale       yuv4mpegpipe stdin -> stdout

Errors are one line on stderr with a non-zero exit (2: bad input or usage, 1: failure while
running, 130: Ctrl-C, 143/129: SIGTERM/SIGHUP); no partial output file is ever left behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import DEFAULT_PAIR, NAMED_PAIRS, __version__

EXIT_FAILURE, EXIT_USAGE = 1, 2  # a signal ends a run with 128 + its number (Ctrl-C: 130)


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and runtime")
    g.add_argument("--model", default="default", help="shipped model name (default, fast) or a weights path")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None,
                   help="network precision (default: fp16 on CUDA; bf16 on CPUs with native BF16, else fp32)")
    g.add_argument("--batch", type=int, default=None, help="frames per network call (default: 1 on the CPU, 4 on CUDA)")
    g.add_argument("--tile", type=int, default=None, help="tile edge in input pixels, to bound memory on large frames")
    g.add_argument("--runtime", choices=["torch", "onnxruntime", "openvino", "auto"], default="torch",
                   help="where the network runs: torch, ONNX Runtime or OpenVINO (CPU; extras 'onnx', 'openvino'), "
                        "or auto: the fastest installed one, measured on the first frame")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the network and for the encoder, each (default: the libraries' own "
                        "choice, all cores; lower it to run several jobs side by side)")


def _add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vsr-transcode", description="Learned 2x enhancement layer for ordinary video codecs.",
        epilog="pipe mode: vsr-transcode pipe --upscale  (yuv4mpegpipe on stdin and stdout; see vsr-transcode pipe -h)")
    p.add_argument("input", help="input video (mp4, mkv, webm, mov, y4m, ...) or a .vsr.mkv base layer")
    p.add_argument("-o", "--output", help="output file (default next to the input: IN.vsr.mkv when encoding, "
                                          "IN.restored.mkv when restoring, IN.x2.mkv with --upscale); '-' when "
                                          "restoring or with --upscale: yuv4mpegpipe on stdout, e.g. for "
                                          "| ffmpeg -i - ...")
    p.add_argument("--upscale", action="store_true", help="2x super-resolution of any video")
    p.add_argument("--report", action="store_true",
                   help="measure the round trip on INPUT (bitrate, PSNR-Y, SSIM-Y, VMAF) beside a native encode at "
                        "the same bitrate and a conventional pipeline; prints a table, writes no video. The layer is "
                        "the one --resolution auto chooses (at full size: the one closest on the probes) at the CRF "
                        "it would be coded at, or the one --resolution names at --crf (the 2x layer beside bicubic "
                        "2x; the 2/3 layer beside its base layer restored by Lanczos-3)")
    p.add_argument("--frames", type=int, default=None,
                   help="use the first N frames only (with the audio and subtitles up to them)")
    p.add_argument("--report-json", default=None, help="with --report: also write every number to this JSON file")
    g = p.add_argument_group("encoder side")
    g.add_argument("--pair", default=DEFAULT_PAIR,
                   help="shipped down/upsampler pair used to make a base layer (x2-PAIR-down and x2-PAIR-up, or "
                        + ", ".join(f"{k}: x2-{d} and x2-{u}" for k, (d, u) in NAMED_PAIRS.items()) + ")")
    g.add_argument("--down-model", help="downsampler weights path (overrides --pair)")
    g.add_argument("--up-model", help="the matching upsampler weights path (overrides --pair)")
    g.add_argument("--resolution", choices=["auto", "half", "two-thirds", "full"], default="auto",
                   help="auto: probe-encode samples of the input each way at the target rate and code it at full "
                        "resolution, as the 2/3 layer (two-thirds: 1280x720 for 1080p, restored by the x2 upsampler "
                        "and a reduction) or as the 2x layer (half), whichever measures best (one summary line says "
                        "why); half, two-thirds or full: skip the probes. With auto, --crf C means the rate a "
                        "full-resolution encode at CRF C spends (a chosen layer gets the CRF that spends the same); "
                        "with half or two-thirds, C is the base layer's own CRF")
    g.add_argument("--metric", choices=["vmaf", "psnr"], default="vmaf",
                   help="what --resolution auto compares: VMAF, or PSNR-Y (dB)")
    g.add_argument("--weights-dir", action="append", default=[],
                   help="extra folder to search for the upsampler a base layer names (repeatable)")
    p.add_argument("--overwrite", "-y", action="store_true", help="replace an existing output")
    g = p.add_argument_group("encoding")
    g.add_argument("--codec", default=None, choices=["libx264", "libx265", "libsvtav1", "ffv1"],
                   help="output codec (default libx264; libsvtav1 when restoring an odd original size, "
                        "which H.264 cannot store)")
    g.add_argument("--crf", type=float, default=None, help="constant quality (default: x264 18, x265 20, SVT-AV1 30)")
    g.add_argument("--bitrate", default=None,
                   help="target video bitrate instead of CRF, e.g. 4M or 2500k: two passes, and a third (or more) "
                        "when the result is more than 3%% off, as two-pass encoders are on short clips")
    g.add_argument("--preset", default=None, help="encoder preset (e.g. medium, slow; SVT-AV1: 0-13)")
    g.add_argument("--tune", default=None,
                   help="x264/x265 tune (film, animation, grain, psnr, ssim, ...) for every encode of the run, "
                        "--resolution auto's probes included (default: none)")
    g.add_argument("--pix-fmt", choices=["yuv420p", "yuv420p10le"], default=None,
                   help="output pixel format (default: the input's bit depth)")
    _add_engine_args(p)
    _add_common_args(p)
    p.add_argument("--version", action="version", version=f"vsr {__version__}")
    return p


def build_pipe_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vsr-transcode pipe",
        description="Filter a yuv4mpegpipe stream from stdin to stdout (video only; logs on stderr). Example: "
                    "ffmpeg -i in.mp4 -f yuv4mpegpipe - | vsr-transcode pipe --upscale | ffmpeg -i - -c:v libx264 out.mp4")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--upscale", action="store_true", help="2x super-resolution (--model)")
    mode.add_argument("--downscale", action="store_true", help="learned 2x reduction (--pair / --down-model)")
    p.add_argument("--pair", default=DEFAULT_PAIR, help="shipped pair whose downsampler --downscale uses")
    p.add_argument("--down-model", help="downsampler weights path (overrides --pair)")
    _add_engine_args(p)
    _add_common_args(p)
    return p


def parse_bitrate(text: str | None) -> int | None:
    if text is None:
        return None
    units = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise ValueError(f"bad bitrate {text!r}; use e.g. 2500k or 4M") from None
    if value <= 0:
        raise ValueError(f"bitrate must be positive, got {text!r}")
    return int(value)


def _import_torch() -> None:
    """``import torch`` with SIGINT, SIGTERM and SIGHUP held back (in the main thread). A handler that
    raises while torch's C++ is calling back into Python during that import ends the process in
    std::terminate ("terminate called after throwing an instance of 'pybind11::error_already_set'",
    seen once in a loaded `make test`); held back, the signal arrives as soon as the import is
    done, in Python code, and ends the run the usual way."""
    import signal
    import threading

    if "torch" in sys.modules or threading.current_thread() is not threading.main_thread():
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        import torch  # noqa: F401
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _apply_threads(args: argparse.Namespace) -> None:
    """``--threads N``: the network's torch threads (ONNX Runtime and OpenVINO take torch's count);
    the encoder gets the same cap through :class:`~vsr_plugin.media.EncodeOptions`."""
    if args.threads is None:
        return
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)


def _engine(args: argparse.Namespace, model=None):
    from .engine import Upscaler

    return Upscaler(model or args.model, device=args.device, dtype=args.dtype, batch=args.batch, tile=args.tile,
                    runtime=args.runtime)


def _downscaler(args: argparse.Namespace):
    from .engine import Downscaler

    from .models import pair_names

    return Downscaler(args.down_model or pair_names(args.pair)[0], device=args.device, dtype=args.dtype,
                      batch=args.batch, tile=args.tile, runtime=args.runtime)


def _size(path: str) -> str:
    n = Path(path).stat().st_size
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _warn_truncated(result) -> None:
    if result.damaged_packets:
        print(f"vsr-transcode: warning: {result.damaged_packets} damaged video packet(s) skipped "
              f"({result.damage_reason}); decoding went on, output holds {result.frames} frames", file=sys.stderr)
    if result.truncated:
        print(f"vsr-transcode: warning: input is truncated or damaged ({result.truncation_reason}); "
              f"output holds the {result.frames} frames that decoded", file=sys.stderr)


def run_transcode(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _apply_threads(args)
    from .baselayer import SUFFIX as BASE_SUFFIX
    from .media import EncodeOptions, check_input
    from .transcode import read_base_layer_tags

    check_input(args.input)  # before loading a model: bad paths fail fast
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    # SVT-AV1 prints a ~20-line banner and warnings through its own logger: errors only, unless
    # the user set SVT_LOG themselves
    os.environ.setdefault("SVT_LOG", "1")
    if args.report:
        return _report(args)
    tags = None if args.upscale else read_base_layer_tags(args.input)
    if tags is None and not args.upscale and not args.output and args.input.lower().endswith(BASE_SUFFIX):
        raise ValueError(f"{args.input} is named as a vsr base layer but carries no vsr tags (a remux or tag "
                         f"editor may have dropped them), so it cannot be restored; to reduce it 2x again anyway, "
                         f"give the output name with -o")
    codec = args.codec or "libx264"
    if tags is not None and args.codec is None and (tags.width % 2 or tags.height % 2):
        codec = "libsvtav1"
        print(f"note: restoring the odd size {tags.width}x{tags.height} with libsvtav1 (H.264 cannot store it)",
              file=sys.stderr)
    encode = EncodeOptions(codec=codec, crf=args.crf, preset=args.preset, bitrate=parse_bitrate(args.bitrate),
                           pix_fmt=args.pix_fmt, threads=args.threads, tune=args.tune)
    if args.upscale:
        return _upscale(args, encode)
    if tags is not None:
        return _restore(args, encode)
    return _encode(args, encode)


def _upscale(args: argparse.Namespace, encode) -> int:
    from .transcode import check_output, default_output, upscale_file

    output = Path(args.output) if args.output else default_output(args.input, 2)
    check_output(output, overwrite=args.overwrite, input_path=args.input)
    result = upscale_file(args.input, output, lambda: _engine(args), encode, overwrite=args.overwrite,
                          show_progress=not args.quiet, frames=args.frames)
    _warn_truncated(result)
    if not args.quiet:
        print(result.summary(f"vsr-transcode ({result.engine})"), file=sys.stderr)
    return 0


def _encode(args: argparse.Namespace, encode) -> int:
    from dataclasses import replace

    from .baselayer import default_base_output
    from .models import pair_names, read_info, resolve_weights
    from .transcode import check_output, encode_base_layer, encode_full_layer, encode_two_thirds_layer

    output = Path(args.output) if args.output else default_base_output(args.input)
    check_output(output, overwrite=args.overwrite, input_path=args.input)
    if bool(args.down_model) != bool(args.up_model):
        raise ValueError("--down-model and --up-model go together (a downsampler and the upsampler trained with it)")
    up_path = resolve_weights(args.up_model or pair_names(args.pair)[1])
    up_info = read_info(up_path)
    resolution, reason = args.resolution, ""
    if resolution == "auto":
        encode, decision = _decide(args, encode, up_path)
        resolution, reason = decision.choice, decision.summary()
        if decision.layer_crf is not None:
            encode = replace(encode, crf=decision.layer_crf)
    if resolution == "half":
        result = encode_base_layer(args.input, output, _downscaler(args), up_info, encode, overwrite=args.overwrite,
                                   show_progress=not args.quiet, frames=args.frames, decision=reason)
    elif resolution == "two-thirds":
        result = encode_two_thirds_layer(args.input, output, up_info, encode, device=args.device,
                                         overwrite=args.overwrite, show_progress=not args.quiet, frames=args.frames,
                                         decision=reason)
    else:
        result = encode_full_layer(args.input, output, encode, overwrite=args.overwrite,
                                   show_progress=not args.quiet, frames=args.frames, decision=reason)
    _warn_truncated(result)
    if not args.quiet:
        a, b = Path(args.input).stat().st_size, output.stat().st_size
        print(result.summary(f"vsr-transcode ({result.engine})"), file=sys.stderr)
        print(f"vsr-transcode: {args.input} {_size(args.input)} -> {output} {_size(str(output))} "
              f"({a / max(b, 1):.2f}x smaller); restore with: vsr-transcode {output}", file=sys.stderr)
    return 0


def _decide(args: argparse.Namespace, encode, up_path: Path):
    """``--resolution auto``: the probes, with the models and encoder settings of the real encode (the
    codec's default preset where none is given, for the probes and the encode alike); the summary line
    on stderr. Returns the encode options and the decision."""
    from dataclasses import replace

    from .measure.ladder import DEFAULT_PRESET, RD_CODECS, native, two_thirds, vsr
    from .models import pair_names, resolve_weights
    from .resolution import ProbeOptions, decide

    if encode.codec not in RD_CODECS:
        raise ValueError(f"--resolution auto compares lossy encodes at one rate; {encode.codec} is lossless "
                         "(use --resolution half or full)")
    if encode.preset is None and encode.codec in DEFAULT_PRESET:
        encode = replace(encode, preset=DEFAULT_PRESET[encode.codec])
    down = str(resolve_weights(args.down_model or pair_names(args.pair)[0]))
    engine = {"device": args.device, "dtype": args.dtype, "batch": args.batch, "runtime": args.runtime}
    opts = ProbeOptions(codec=encode.codec, preset=encode.preset, crf=encode.crf, bitrate=encode.bitrate,
                        tune=encode.tune, metric=args.metric, frames=args.frames)
    say = (lambda text: None) if args.quiet else (lambda text: print(f"vsr-transcode: {text}", file=sys.stderr))
    layers = {"half": vsr(down, str(up_path), engine), "two-thirds": two_thirds(str(up_path), engine)}
    decision = decide(args.input, native(), layers, opts, say=say)
    say(decision.summary())
    return encode, decision


def _report(args: argparse.Namespace) -> int:
    from .atomic import write_bytes_atomic
    from .models import pair_names, resolve_weights
    from .resolution import LAYER_WORDS
    from .transcode_report import ReportOptions, run_report

    if args.upscale:
        raise ValueError("--report measures the encoder side's round trip; it does not combine with --upscale")
    if args.resolution == "full":
        raise ValueError("--report measures a layer against the native encode; --resolution full has no layer "
                         "(give half or two-thirds, or auto: the layer auto chooses)")
    if bool(args.down_model) != bool(args.up_model):
        raise ValueError("--down-model and --up-model go together (a downsampler and the upsampler trained with it)")
    down = str(resolve_weights(args.down_model or pair_names(args.pair)[0]))
    up = resolve_weights(args.up_model or pair_names(args.pair)[1])
    codec, layer, crf, decided = args.codec or "libx264", args.resolution, args.crf, None
    if layer == "auto":  # the probes of the encode; the layer they choose, at the CRF it would be coded at
        from .media import EncodeOptions

        encode = EncodeOptions(codec=codec, crf=args.crf, preset=args.preset, bitrate=parse_bitrate(args.bitrate),
                               tune=args.tune)
        decision = _decide(args, encode, up)[1]
        decided = decision.summary()
        layer = decision.choice if decision.choice != "full" else decision.best.name
        crf = decision.layer(layer).crf
    opts = ReportOptions(down_model=down, up_model=str(up), codec=codec, crf=crf,
                         bitrate=parse_bitrate(args.bitrate), preset=args.preset, tune=args.tune, frames=args.frames,
                         layer=layer, engine={"device": args.device, "dtype": args.dtype, "batch": args.batch,
                                              "runtime": args.runtime})
    md, data = run_report(args.input, opts, quiet=args.quiet)
    if decided is not None:
        data["decision"] = decided
        head = (f"`--resolution auto` codes this clip as the {LAYER_WORDS[layer]}; it is measured below"
                if layer == decision.choice else
                f"`--resolution auto` codes this clip at full resolution (the native encode); the layer that came "
                f"closest on the probes, the {LAYER_WORDS[layer]}, is measured below")
        md = f"{head} ({decided}).\n\n{md}"
    print(md, end="")
    if args.report_json:
        import json

        write_bytes_atomic(args.report_json, (json.dumps(data, indent=2) + "\n").encode())
    return 0


def _restore(args: argparse.Namespace, encode) -> int:
    from .baselayer import default_restored_output
    from .transcode import check_output, restore_base_layer

    output = Path(args.output) if args.output else default_restored_output(args.input)
    check_output(output, overwrite=args.overwrite, input_path=args.input)
    search = tuple(Path(d) for d in args.weights_dir)
    result = restore_base_layer(args.input, output, lambda path: _engine(args, path), encode,
                                overwrite=args.overwrite, show_progress=not args.quiet, search=search,
                                frames=args.frames)
    _warn_truncated(result)
    if not args.quiet:
        print(result.summary(f"vsr-transcode ({result.engine})"), file=sys.stderr)
    return 0


def run_pipe(argv: list[str]) -> int:
    args = build_pipe_parser().parse_args(argv)
    _apply_threads(args)
    from .transcode import upscale_pipe

    from .transcode import downscale_pipe

    if args.downscale:
        result = downscale_pipe(lambda: _downscaler(args), show_progress=not args.quiet)
    else:
        result = upscale_pipe(lambda: _engine(args), show_progress=not args.quiet)
    if result.truncated:
        print(f"vsr-transcode: error: y4m input {result.truncation_reason}, after {result.frames} complete frames",
              file=sys.stderr)
        return EXIT_FAILURE
    if not args.quiet:
        print(result.summary(f"vsr-transcode pipe ({result.engine})"), file=sys.stderr)
    return 0


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so that the same clean-up as Ctrl-C runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# Signals received during this run. An interrupt can surface as another exception (numpy turns one
# that lands inside its first import into an ImportError); the run still ends as interrupted.
_SIGNALLED: list[int] = []


def _raise_terminated(signum: int, frame) -> None:
    _SIGNALLED.append(signum)
    raise Terminated(signum)


def _raise_interrupt(signum: int, frame) -> None:
    _SIGNALLED.append(signum)
    raise KeyboardInterrupt


def _catch_termination() -> list[tuple[int, object]]:
    """Route SIGTERM and SIGHUP through :class:`Terminated`, and note SIGINT (main thread only);
    the old handlers."""
    import signal
    import threading

    _SIGNALLED.clear()
    if threading.current_thread() is not threading.main_thread():
        return []
    old = []
    for sig, ours, default in ((signal.SIGTERM, _raise_terminated, signal.SIG_DFL),
                               (signal.SIGHUP, _raise_terminated, signal.SIG_DFL),
                               (signal.SIGINT, _raise_interrupt, signal.default_int_handler)):
        if signal.getsignal(sig) == default:  # leave a caller's own handler (or SIG_IGN) alone
            old.append((sig, signal.signal(sig, ours)))
    return old


def main(argv: list[str] | None = None) -> int:
    import signal

    own_process = argv is None  # the command line of this process (not a caller's list)
    argv = sys.argv[1:] if argv is None else list(argv)
    pipe = bool(argv) and argv[0] == "pipe"
    old_handlers: list = []
    code = EXIT_FAILURE
    try:
        old_handlers = _catch_termination()
        code = _main(argv, pipe)
    except BaseException as e:
        # which signal ended the run: Ctrl-C, SIGTERM/SIGHUP, or one a library turned into another exception
        if isinstance(e, KeyboardInterrupt):
            signum = signal.SIGINT
        elif isinstance(e, Terminated):
            signum = e.signum
        elif _SIGNALLED:
            signum = _SIGNALLED[0]
        else:
            raise
        what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        print(f"vsr-transcode: {what}; {_what_was_written(pipe)}", file=sys.stderr)
        code = 128 + signum
    finally:
        for sig, handler in old_handlers:
            signal.signal(sig, handler)
    # no new imports after an interrupt: one that hit an import left that module half-loaded
    pipeline = sys.modules.get(f"{__package__}.pipeline")
    if code >= 128 and (own_process or (pipeline is not None and pipeline.stages_alive())):
        # End now with the code printed. At interpreter exit a stage still blocked (e.g. in a read
        # from stdin) aborts the process; and under `python -m` CPython 3.12 ends by SIGINT itself
        # (not 130) when the Ctrl-C landed in code run from a string (exec/eval: dataclasses and
        # namedtuples build their methods so, e.g. during a lazy import), however it was handled.
        sys.stderr.flush()
        os._exit(code)
    return code


def _what_was_written(pipe: bool) -> str:
    return "the output stream ends early" if pipe else "no output written"


def _main(argv: list[str], pipe: bool) -> int:
    _import_torch()  # the imports below load it
    from .baselayer import BaseLayerError
    from .media import MediaError
    from .models import CheckpointError

    try:
        if pipe:
            return run_pipe(argv[1:])
        return run_transcode(argv)
    except (MediaError, CheckpointError, BaseLayerError, ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"vsr-transcode: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        print("vsr-transcode: error: output pipe closed by the reader", file=sys.stderr)
        return EXIT_FAILURE
    except (RuntimeError, OSError) as e:
        print(f"vsr-transcode: error: {e}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
