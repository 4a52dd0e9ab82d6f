"""The y4m pipe between real ffmpeg processes, and the VapourSynth filter through vspipe and in-process."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import ffmpeg
import numpy as np
import pytest

from tests.media_helpers import make_clip, read_back
from vsr_plugin.ffmpeg_tools import command

REPO = Path(__file__).resolve().parents[2]
PIPE = [sys.executable, "-m", "vsr_plugin.cli", "pipe", "--upscale"]
VSPIPE = Path(sys.executable).with_name("vspipe")


def _y4m_bytes(src: Path) -> bytes:
    return subprocess.run(command(ffmpeg.input(str(src)).output("pipe:", format="yuv4mpegpipe", strict=-1)),
                          capture_output=True, check=True).stdout


def test_ffmpeg_pipe_ffmpeg_chain(tmp_path, tiny_model):
    src = make_clip(tmp_path / "in.mp4", size=(96, 64), frames=8, audio=True)
    out = tmp_path / "out.mp4"
    dec = subprocess.Popen(command(ffmpeg.input(str(src)).output("pipe:", format="yuv4mpegpipe")), stdout=subprocess.PIPE)
    mid = subprocess.Popen(PIPE + ["--model", tiny_model], stdin=dec.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dec.stdout.close()
    enc = subprocess.Popen(command(ffmpeg.input("pipe:", format="yuv4mpegpipe").output(str(out), vcodec="libx264")),
                           stdin=mid.stdout, stderr=subprocess.PIPE)
    mid.stdout.close()
    assert enc.wait(timeout=180) == 0
    assert mid.wait(timeout=10) == 0 and dec.wait(timeout=10) == 0
    assert "stdin 96x64 -> stdout 192x128, 8 frames" in mid.stderr.read().decode()
    b = read_back(out)
    assert (b["width"], b["height"], b["frames"]) == (192, 128, 8)


@pytest.mark.parametrize("pix_fmt,bits", [("yuv420p", 8), ("yuv420p10le", 10)])
def test_pipe_stdout_is_exactly_y4m(tmp_path, tiny_model, pix_fmt, bits):
    src = make_clip(tmp_path / "in.mkv", size=(37, 21), frames=3, vcodec="ffv1", pix_fmt=pix_fmt, audio=False)
    proc = subprocess.run(PIPE + ["--model", tiny_model], input=_y4m_bytes(src), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    data = proc.stdout
    header = data[: data.index(b"\n") + 1]
    assert header.startswith(b"YUV4MPEG2 W74 H42 ") and (b"C420p10" in header) == (bits == 10)
    plane_bytes = (74 * 42 + 2 * 37 * 21) * (2 if bits == 10 else 1)
    assert len(data) == len(header) + 3 * (len(b"FRAME\n") + plane_bytes)  # nothing but video


@pytest.mark.parametrize("header,message", [
    (b"YUV4MPEG2 W64 Hxyz F25:1 C420jpeg", "height must be a positive integer, got Hxyz"),
    (b"YUV4MPEG2 W0 H0 F25:1 C420jpeg", "width must be a positive integer, got W0"),
    (b"YUV4MPEG2 W100000 H48 F25:1 C420jpeg", "width 100000 is larger than 32768"),
    (b"YUV4MPEG2 W64 H48 F25:0", "frame rate must be F<num>:<den> with both positive, got F25:0"),
])
def test_pipe_bad_y4m_header_is_one_clear_line(tiny_model, header, message):
    proc = subprocess.run(PIPE + ["--model", tiny_model], input=header + b"\nFRAME\n" + bytes(4608),
                          capture_output=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.decode().strip().splitlines() == [f"vsr-transcode: error: bad y4m header on stdin: {message}"]


def test_pipe_ctrl_c_says_the_stream_ends_early(tiny_model):
    """Ctrl-C while the upstream still holds stdin open (the reader blocked in a read): exit 130
    within the grace period, one line that does not claim nothing was written."""
    import signal
    import time

    header, frame = b"YUV4MPEG2 W32 H24 F25:1 Ip C420jpeg\n", b"FRAME\n" + bytes(32 * 24 + 2 * 16 * 12)
    proc = subprocess.Popen(PIPE + ["--model", tiny_model, "--batch", "1"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc.stdin.write(header + frame * 20)  # more than the muxer's 32 KB output buffer
    proc.stdin.flush()
    got = proc.stdout.read(40)  # the output has started
    assert got.startswith(b"YUV4MPEG2 W64 H48 ")
    time.sleep(0.3)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read().decode()  # stdin stays open: the reader thread is blocked in read()
    assert proc.wait(timeout=60) == 130
    assert time.monotonic() - start < 30
    assert err.strip().splitlines()[-1] == "vsr-transcode: interrupted; the output stream ends early"
    assert "Traceback" not in err and "terminate called" not in err
    proc.stdin.close()


def test_pipe_keeps_the_sample_aspect_ratio(tmp_path, tiny_model):
    src = make_clip(tmp_path / "in.mkv", size=(32, 24), frames=3, vcodec="ffv1", audio=False, sar="16/11")
    proc = subprocess.run(PIPE + ["--model", tiny_model], input=_y4m_bytes(src), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    header = proc.stdout[: proc.stdout.index(b"\n")]
    assert header.startswith(b"YUV4MPEG2 W64 H48 ") and b" A16:11 " in header
    plane_bytes = 64 * 48 + 2 * 32 * 24
    assert len(proc.stdout) == len(header) + 1 + 3 * (len(b"FRAME\n") + plane_bytes)


def test_pipe_equals_the_file_path(tmp_path, tiny_model):
    """Same frames through the pipe and through the engine directly."""
    from vsr_plugin.engine import Upscaler
    from vsr_plugin.media import VideoInput, TimedFrame

    src = make_clip(tmp_path / "in.y4m", size=(40, 30), frames=2, vcodec="rawvideo", audio=False)
    out = subprocess.run(PIPE + ["--model", tiny_model], input=src.read_bytes(), capture_output=True, timeout=120).stdout
    (tmp_path / "out.y4m").write_bytes(out)
    engine = Upscaler(tiny_model, device="cpu")
    with VideoInput(src) as a, VideoInput(tmp_path / "out.y4m") as b:
        fa = [t.frame for t in a.items() if isinstance(t, TimedFrame)]
        fb = [t.frame for t in b.items() if isinstance(t, TimedFrame)]
    assert len(fb) == 2
    for x, y in zip(fa, fb):
        want = engine.upscale(x)
        assert all(np.array_equal(p, q) for p, q in zip(want.planes, y.planes))


def test_pipe_input_ending_mid_frame_fails_clearly(tmp_path, tiny_model):
    src = make_clip(tmp_path / "in.y4m", size=(40, 30), frames=4, vcodec="rawvideo", audio=False)
    data = src.read_bytes()
    proc = subprocess.run(PIPE + ["--model", tiny_model, "-q"], input=data[:-500], capture_output=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.decode().strip().splitlines()
    assert lines == ["vsr-transcode: error: y4m input ends mid-frame (1306 bytes of an incomplete frame), "
                     "after 3 complete frames"]


def test_pipe_rejects_garbage_on_stdin(tiny_model):
    proc = subprocess.run(PIPE + ["--model", tiny_model], input=b"hello, not y4m\n" * 50, capture_output=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == b""
    err = proc.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "bad y4m header on stdin: it must start with 'YUV4MPEG2'" in err[0]


# --- VapourSynth -----------------------------------------------------------------------------------

vs = pytest.importorskip("vapoursynth")


@pytest.mark.skipif(not VSPIPE.exists(), reason="vspipe not installed")
def test_vspipe_sample_script_into_ffmpeg(tmp_path):
    out = tmp_path / "vs.mkv"
    vsp = subprocess.Popen([str(VSPIPE), "-c", "y4m", str(REPO / "samples" / "upscale.vpy"), "-"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    enc = subprocess.Popen(command(ffmpeg.input("pipe:", format="yuv4mpegpipe").output(str(out), vcodec="ffv1")),
                           stdin=vsp.stdout, stderr=subprocess.PIPE)
    vsp.stdout.close()
    assert enc.wait(timeout=600) == 0, enc.stderr.read().decode()
    assert vsp.wait(timeout=10) == 0, vsp.stderr.read().decode()
    b = read_back(out)
    assert (b["width"], b["height"], b["frames"]) == (960, 540, 72)
    assert b["pix_fmt"] == "yuv420p"


def test_vs_upscale_keeps_props_and_matches_the_engine(tmp_path, tiny_model):
    import vsr_plugin
    from vsr_plugin.engine import Upscaler
    from vsr_plugin.yuv import Frame

    core = vs.core
    src_file = make_clip(tmp_path / "in.mkv", size=(48, 32), frames=3, rate=30000 / 1001, vcodec="ffv1",
                         pix_fmt="yuv420p10le", audio=False)
    clip = vsr_plugin.source(str(src_file))
    clip = core.std.SetFrameProps(clip, _Matrix=1, _Transfer=1, _Primaries=1, _Range=0, _FieldBased=0,
                                  _SARNum=4, _SARDen=3, _ChromaLocation=0)
    up = vsr_plugin.upscale(clip, model=tiny_model, device="cpu", num_streams=2)
    assert (up.width, up.height, up.format.id, up.num_frames) == (96, 64, vs.YUV420P10, 3)
    src, out = clip.get_frame(1), up.get_frame(1)
    assert dict(out.props) == dict(src.props)
    assert out.props["_DurationNum"] == 1001 and out.props["_DurationDen"] == 30000
    assert out.props["_SARNum"] == 4 and out.props["_Range"] == 0
    frame = Frame(y=np.asarray(src[0]).copy(), u=np.asarray(src[1]).copy(), v=np.asarray(src[2]).copy(), bits=10)
    want = Upscaler(tiny_model, device="cpu").upscale(frame)
    for i in range(3):
        assert np.array_equal(np.asarray(out[i]), want.planes[i])
    assert len(list(up.frames())) == 3  # concurrent requests through the stream pool


@pytest.mark.parametrize("fmt", ["RGB24", "YUV444P8", "YUV420P16", "GRAY8"])
def test_vs_rejects_other_formats_with_the_accepted_ones(fmt, tiny_model):
    import vsr_plugin

    clip = vs.core.std.BlankClip(width=16, height=16, format=getattr(vs, fmt))
    with pytest.raises(vs.Error, match=f"clip format {clip.format.name} is not supported; accepted: YUV420P8, YUV420P10"):
        vsr_plugin.upscale(clip, model=tiny_model)


def test_restore_and_upscale_to_stdout_are_the_file_outputs(tmp_path, tiny_pair):
    """-o - writes yuv4mpegpipe on stdout (nothing else): a restored 2/3 layer and an --upscale, each frame for
    frame what the file output holds; a base layer cannot go to stdout."""
    from vsr_plugin.cli import main as cli_main
    from vsr_plugin.measure.video import decode

    down, up, folder = tiny_pair
    src = make_clip(tmp_path / "in.mkv", size=(96, 64), frames=3, vcodec="ffv1", audio=False)
    layer = tmp_path / "in.vsr.mkv"
    assert cli_main([str(src), "--down-model", down, "--up-model", up, "--resolution", "two-thirds",
                     "--codec", "ffv1", "-q"]) == 0
    cases = [([str(layer), "--weights-dir", folder], tmp_path / "in.restored.mkv"),
             ([str(src), "--upscale", "--model", up], tmp_path / "in.x2.mkv")]
    for argv, file_out in cases:
        assert cli_main(argv + ["--codec", "ffv1", "-q"]) == 0
        run = subprocess.run([sys.executable, "-m", "vsr_plugin.cli", *argv, "-o", "-"], capture_output=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr.decode()
        assert run.stdout.startswith(b"YUV4MPEG2 ") and b"vsr-transcode" in run.stderr  # the summary: stderr
        (tmp_path / "out.y4m").write_bytes(run.stdout)
        got, want = decode(tmp_path / "out.y4m"), decode(file_out)
        assert len(got) == len(want) == 3 and (got[0].width, got[0].height) == (want[0].width, want[0].height)
        assert all(np.array_equal(a.planes[i], b.planes[i]) for a, b in zip(got, want) for i in range(3))
    run = subprocess.run([sys.executable, "-m", "vsr_plugin.cli", str(src), "--resolution", "half", "-o", "-"],
                         capture_output=True, timeout=300)
    err = run.stderr.decode().strip().splitlines()
    assert run.returncode != 0 and run.stdout == b"" and len(err) == 1 and "a base layer is a Matroska file" in err[0]


@pytest.mark.skipif(not VSPIPE.exists(), reason="vspipe not installed")
def test_vspipe_restore_script_equals_the_cli_restore(tmp_path, tiny_pair):
    """samples/restore.vpy in a real vspipe process: the y4m it writes is the CLI's restore of a 2/3 layer."""
    from vsr_plugin.cli import main as cli_main
    from vsr_plugin.measure.video import decode

    down, up, folder = tiny_pair
    src = make_clip(tmp_path / "in.mkv", size=(96, 64), frames=3, vcodec="ffv1", audio=False)
    layer, restored, piped = tmp_path / "in.vsr.mkv", tmp_path / "in.restored.mkv", tmp_path / "vs.y4m"
    assert cli_main([str(src), "--down-model", down, "--up-model", up, "--resolution", "two-thirds",
                     "--codec", "ffv1", "-q"]) == 0
    assert cli_main([str(layer), "--weights-dir", folder, "--codec", "ffv1", "-q"]) == 0
    # paths relative to where vspipe was started (a shell's PWD), though vspipe runs the script from its folder
    run = subprocess.run([str(VSPIPE), "-c", "y4m", "-a", f"path={layer.name}", "-a", f"weights_dir={folder}",
                          "-a", "device=cpu", str(REPO / "samples" / "restore.vpy"), piped.name],
                         capture_output=True, timeout=300, cwd=tmp_path, env={**os.environ, "PWD": str(tmp_path)})
    assert run.returncode == 0, run.stderr.decode()
    got, want = decode(piped), decode(restored)
    assert len(got) == len(want) == 3 and (got[0].width, got[0].height) == (96, 64)
    assert all(np.array_equal(a.planes[i], b.planes[i]) for a, b in zip(got, want) for i in range(3))
    bad = subprocess.run([str(VSPIPE), "-c", "y4m", str(REPO / "samples" / "restore.vpy"), "-"], capture_output=True,
                         timeout=120)
    assert bad.returncode != 0 and b"give the base layer" in bad.stderr


@pytest.mark.parametrize("resolution", ["two-thirds", "half", "full"])
def test_vs_restore_is_the_cli_restore(tmp_path, tiny_pair, resolution):
    """vsr_plugin.restore(FILE) gives the frames `vsr-transcode FILE` writes, at the original size: a 2/3
    layer (64x42 for 96x62) upscaled and reduced, a 2x layer (48x32, padded) upscaled and cropped, a
    full-resolution layer as it is."""
    import vsr_plugin
    from vsr_plugin.cli import main as cli_main
    from vsr_plugin.measure.video import decode

    down, up, folder = tiny_pair
    src = make_clip(tmp_path / "in.mkv", size=(96, 62), frames=3, vcodec="ffv1", audio=False)
    layer, restored = tmp_path / "in.vsr.mkv", tmp_path / "in.restored.mkv"
    assert cli_main([str(src), "--down-model", down, "--up-model", up, "--resolution", resolution,
                     "--codec", "ffv1", "-q"]) == 0
    assert cli_main([str(layer), "--weights-dir", folder, "--codec", "ffv1", "-q"]) == 0
    clip = vsr_plugin.restore(str(layer), weights_dir=folder, device="cpu")
    assert (clip.width, clip.height, clip.num_frames, clip.format.id) == (96, 62, 3, vs.YUV420P8)
    for n, want in enumerate(decode(restored)):
        got = clip.get_frame(n)
        assert all(np.array_equal(np.asarray(got[i]), want.planes[i]) for i in range(3))
    with pytest.raises(vs.Error, match="vsr_plugin.restore: .*not a vsr base layer"):
        vsr_plugin.restore(str(src))
    if resolution != "full":  # the upsampler the tags name is not installed (no weights_dir)
        with pytest.raises(vs.Error, match="vsr_plugin.restore: "):
            vsr_plugin.restore(str(layer))


def test_vs_source_reads_frames_in_any_order(tmp_path):
    import vsr_plugin
    from vsr_plugin.media import TimedFrame, VideoInput

    src = make_clip(tmp_path / "in.mkv", size=(64, 48), frames=40, vcodec="ffv1", audio=False)
    clip = vsr_plugin.source(str(src))
    assert (clip.width, clip.height, clip.num_frames, clip.format.id) == (64, 48, 40, vs.YUV420P8)
    with VideoInput(src) as inp:
        frames = [t.frame for t in inp.items() if isinstance(t, TimedFrame)]
    for n in (0, 39, 3, 38, 1):  # backwards beyond the cache forces a re-decode
        f = clip.get_frame(n)
        assert np.array_equal(np.asarray(f[0]), frames[n].y)
        assert f.props["_Matrix"] == 1 and f.props["_Range"] == 0  # limited


@pytest.mark.skipif(not __import__("vsr_plugin.runtimes").runtimes.installed("onnxruntime"),
                    reason="onnxruntime not installed")
def test_pipe_and_vapoursynth_on_onnx_runtime_match_torch(tmp_path, tiny_model):
    """--runtime onnxruntime through the y4m pipe (a real process) and runtime= in the filter."""
    import vsr_plugin

    src = make_clip(tmp_path / "in.mkv", size=(37, 21), frames=3, vcodec="ffv1", pix_fmt="yuv420p10le", audio=False)
    outs = []
    for runtime in ("torch", "onnxruntime"):
        proc = subprocess.run(PIPE + ["--model", tiny_model, "--runtime", runtime, "--dtype", "fp32"],
                              input=_y4m_bytes(src), capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        data = proc.stdout
        outs.append(np.frombuffer(data[data.index(b"\n") + 1:].replace(b"FRAME\n", b""), "<u2").astype(np.int32))
    assert outs[0].shape == outs[1].shape == (3 * (74 * 42 + 2 * 37 * 21),)
    assert np.abs(outs[0] - outs[1]).max() <= 1
    clip = vsr_plugin.source(str(make_clip(tmp_path / "even.mkv", size=(38, 22), frames=3, vcodec="ffv1",
                                           pix_fmt="yuv420p10le", audio=False)))
    a = vsr_plugin.upscale(clip, model=tiny_model, device="cpu", dtype="fp32").get_frame(2)
    b = vsr_plugin.upscale(clip, model=tiny_model, device="cpu", dtype="fp32", runtime="onnxruntime").get_frame(2)
    for i in range(3):
        assert np.abs(np.asarray(a[i]).astype(np.int32) - np.asarray(b[i])).max() <= 1
