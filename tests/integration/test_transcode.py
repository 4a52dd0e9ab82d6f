"""vsr-transcode --upscale on real files, decoded back and checked; every bad input."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import ffmpeg
import numpy as np
import pytest

from tests.media_helpers import make_clip, read_back
from vsr_plugin.ffmpeg_tools import run
from vsr_plugin.cli import main

CLI = [sys.executable, "-m", "vsr_plugin.cli"]


def _no_leftovers(folder: Path, keep: set[str]) -> None:
    extra = {p.name for p in folder.iterdir()} - keep
    assert not extra, f"files left behind: {extra}"


def test_upscale_keeps_audio_timestamps_and_tags(tmp_path, tiny_model, capsys):
    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=12, audio=True, vfr=True)
    assert main(["--upscale", str(src), "--model", tiny_model, "--batch", "3"]) == 0
    out = tmp_path / "in.x2.mkv"  # default name, next to the input
    a, b = read_back(src), read_back(out)
    assert (b["width"], b["height"]) == (128, 96)
    assert b["frames"] == a["frames"] == 12
    assert b["times"] == pytest.approx(a["times"], abs=1e-3)  # variable frame rate kept
    assert len(b["audio"]) == 1 and b["audio"][0][0] == "aac"
    assert b["audio"][0][1] == pytest.approx(a["audio"][0][1], abs=0.03)
    assert (b["colorspace"], b["primaries"], b["trc"], b["range"]) == (1, 1, 1, 1)
    err = capsys.readouterr().err
    assert "in.x2.mkv 128x96, 12 frames" in err


def test_ten_bit_odd_size_in_ten_bit_out(tmp_path, tiny_model):
    src = make_clip(tmp_path / "in.mkv", size=(333, 199), frames=4, vcodec="ffv1", pix_fmt="yuv420p10le",
                    audio=False)
    out = tmp_path / "out.mkv"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "--quiet", "--crf", "0"]) == 0
    b = read_back(out)
    assert (b["width"], b["height"], b["frames"], b["pix_fmt"]) == (666, 398, 4, "yuv420p10le")
    assert int(b["first"].max()) > 255  # really 10-bit samples


def test_pix_fmt_forces_8_bit_and_rotation_sar_survive(tmp_path, tiny_model):
    src = make_clip(tmp_path / "in.mp4", frames=3, pix_fmt="yuv420p10le", rotation=90, sar="4/3", audio=False)
    out = tmp_path / "out.mp4"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "--quiet",
                 "--pix-fmt", "yuv420p", "--codec", "libx265", "--preset", "ultrafast"]) == 0
    b = read_back(out)
    assert b["pix_fmt"] == "yuv420p" and b["rotation"] == 90
    assert (b["sar"].numerator, b["sar"].denominator) == (4, 3)


def test_svtav1_and_bitrate(tmp_path, tiny_model):
    src = make_clip(tmp_path / "in.mp4", frames=3, audio=False)
    out = tmp_path / "out.webm"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "--quiet", "--codec", "libsvtav1",
                 "--bitrate", "300k", "--preset", "12"]) == 0
    assert read_back(out)["frames"] == 3


# --- bad input: one line on stderr, non-zero exit, nothing left behind ------------------------

def _one_error_line(capsys, needle: str) -> None:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vsr-transcode: error:") and needle in lines[0], lines


def test_y4m_file_output_upscale_and_restore(tmp_path, tiny_model, tiny_pair, capsys):
    """-o X.y4m writes raw yuv4mpeg at the input's frame rate (video only, said once)."""
    from vsr_plugin.engine import Upscaler
    from vsr_plugin.media import VideoInput

    src = make_clip(tmp_path / "in.mp4", size=(66, 50), frames=7, audio=True)
    out = tmp_path / "up.y4m"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "-q"]) == 0
    assert out.read_bytes().startswith(b"YUV4MPEG2 W132 H100 F25:1 ")
    assert "y4m holds one video stream; 1 other stream(s)" in capsys.readouterr().err
    with VideoInput(str(src)) as inp:
        want = Upscaler(tiny_model, device="cpu").upscale_frames([t.frame for t in inp.items() if hasattr(t, "frame")])
    with VideoInput(str(out)) as got:
        frames = [t.frame for t in got.items() if hasattr(t, "frame")]
    assert len(frames) == 7 and all(np.array_equal(a.y, b.y) and np.array_equal(a.v, b.v) for a, b in zip(frames, want))
    # the decoder side restores into y4m too, at the original size
    down, up, _ = tiny_pair
    base = tmp_path / "in.vsr.mkv"
    assert main([str(src), "-o", str(base), "--down-model", down, "--up-model", up, "--resolution", "half", "-q"]) == 0
    restored = tmp_path / "restored.y4m"
    assert main([str(base), "-o", str(restored), "--weights-dir", str(Path(up).parent), "-q"]) == 0
    assert restored.read_bytes().startswith(b"YUV4MPEG2 W66 H50 F25:1 ")
    assert main([str(src), "-o", str(tmp_path / "b.y4m"), "--down-model", down, "--up-model", up,
                 "--resolution", "half", "-q"]) == 2
    assert "a base layer is a Matroska file; name the output *.vsr.mkv, not b.y4m" in capsys.readouterr().err
    _no_leftovers(tmp_path, {"in.mp4", "up.y4m", "in.vsr.mkv", "restored.y4m"})


def test_one_damaged_packet_loses_only_its_own_frames(tmp_path, tiny_model, capsys):
    """A broken NAL length in packet 30 of 300: decoding goes on after it, as ffmpeg's does."""
    from tests.media_helpers import damage_packet

    clean = tmp_path / "clean.mkv"
    run(ffmpeg.input("testsrc2=size=96x64:rate=25", f="lavfi", t=12).output(
        str(clean), vcodec="libx264", g=25, bf=0, preset="veryfast"))
    src = tmp_path / "g25.mkv"
    damage_packet(clean, src, 30)
    out = tmp_path / "up.mkv"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "-q"]) == 0
    frames = read_back(out)["frames"]
    assert 275 <= frames <= 299, frames  # at most the rest of that GOP is lost, not the rest of the file
    err = capsys.readouterr().err
    assert "damaged video packet(s) skipped" in err and f"output holds {frames} frames" in err
    clean.unlink()
    _no_leftovers(tmp_path, {"g25.mkv", "up.mkv"})


def test_raw_h264_remuxed_with_b_frames_plays(tmp_path, tiny_model):
    """mp4 from a raw H.264 stream with B-frames has pts in decode order; dts is the usable clock."""
    raw = tmp_path / "raw.264"
    run(ffmpeg.input("testsrc2=size=96x64:rate=25", f="lavfi", t=1).output(str(raw), vcodec="libx264", f="h264"))
    src = tmp_path / "remux.mp4"
    run(ffmpeg.input(str(raw), f="h264", framerate=25).output(str(src), c="copy"))
    out = tmp_path / "up.mkv"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "-q"]) == 0
    back = read_back(out)
    with av.open(str(src)) as c:  # what ffmpeg's decoder gives for this file
        expected = sum(1 for _ in c.decode(video=0))
    assert back["frames"] == expected and back["times"] == sorted(back["times"])


@pytest.mark.parametrize("args,message", [
    (["--crf", "-5"], "libx264 takes a crf from 0 to 51, got -5"),
    (["--crf", "99"], "libx264 takes a crf from 0 to 51, got 99"),
    (["--crf", "99", "--codec", "libsvtav1"], "libsvtav1 takes a crf from 1 to 63, got 99"),
    (["--crf", "60", "--codec", "libx265"], "libx265 takes a crf from 0 to 51, got 60"),
    (["--preset", "quick"], "libx264 presets are ultrafast, superfast"),
    (["--preset", "medium", "--codec", "libsvtav1"], "libsvtav1 presets are -1..13, got 'medium'"),
    (["--preset", "fast", "--codec", "ffv1"], "ffv1 has no presets"),
])
def test_bad_codec_settings_are_one_line_before_any_work(tmp_path, tiny_model, capsys, args, message):
    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=3, audio=False)
    assert main(["--upscale", str(src), "-o", str(tmp_path / "o.mkv"), "--model", tiny_model, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vsr-transcode: error: {message}"] or (len(err) == 1 and message in err[0]), err
    _no_leftovers(tmp_path, {"in.mp4"})


def test_pickle_model_and_directory_output_are_named(tmp_path, capsys):
    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=2, audio=False)
    (tmp_path / "w.pt").write_bytes(b"\x80\x04K\x01.")  # a pickle
    assert main(["--upscale", str(src), "-o", str(tmp_path / "o.mkv"), "--model", str(tmp_path / "w.pt")]) == 2
    assert "pickled checkpoints such as .pt/.pth are refused" in capsys.readouterr().err
    (tmp_path / "outdir").mkdir()
    assert main(["--upscale", str(src), "-o", str(tmp_path / "outdir"), "--model", "fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "output is a directory" in err[0]
    assert not any((tmp_path / "outdir").iterdir())


def test_the_main_video_stream_is_taken_not_a_cover_picture(tmp_path, tiny_model):
    """A larger still picture as stream 0, the real video flagged default as stream 1 (ffmpeg's pick)."""
    video = make_clip(tmp_path / "v.mp4", size=(64, 48), frames=9, audio=False)
    cover = tmp_path / "cover.png"
    run(ffmpeg.input("testsrc2=size=128x96:rate=1", f="lavfi").output(str(cover), vframes=1))
    src = tmp_path / "cover.mkv"
    run(ffmpeg.output(ffmpeg.input(str(cover)), ffmpeg.input(str(video)), str(src),
                      **{"c:v:0": "mjpeg", "c:v:1": "copy", "disposition:v:0": "0", "disposition:v:1": "default"}))
    with av.open(str(src)) as c:
        assert [s.codec_context.name for s in c.streams.video] == ["mjpeg", "h264"]
    out = tmp_path / "up.mkv"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "-q"]) == 0
    back = read_back(out)
    assert back["frames"] == 9 and (back["width"], back["height"]) == (128, 96)


@pytest.mark.parametrize("size,matrix", [((64, 48), 6), ((1280, 720), 1)])
def test_rgb_input_becomes_tagged_limited_range_yuv(tmp_path, tiny_model, size, matrix):
    """RGB has no YUV matrix: the conversion uses BT.601 (SD) or BT.709 (HD) and says so in the tags."""
    from vsr_plugin.media import TimedFrame, VideoInput

    w, h = size
    src = tmp_path / "rgb.mkv"
    white_left = f"color=c=white:s={w // 2}x{h}:r=25:d=0.12[a];color=c=black:s={w // 2}x{h}:r=25:d=0.12[b];[a][b]hstack"
    run(ffmpeg.input(white_left, f="lavfi").output(str(src), vcodec="libx264rgb", crf=0, preset="ultrafast"))
    with VideoInput(str(src)) as inp:
        frame = next(t.frame for t in inp.items() if isinstance(t, TimedFrame))
    c = frame.colorimetry
    assert (c.matrix, c.range) == (matrix, "limited")
    assert frame.y[:, : w // 2 - 2].min() >= 234 and frame.y[:, w // 2 + 2:].max() <= 17  # 235 / 16 codes
    assert abs(int(frame.u.mean()) - 128) <= 1
    if w <= 64:  # the written file carries the same tags
        out = tmp_path / "up.mkv"
        assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "-q"]) == 0
        back = read_back(out)
        assert (back["colorspace"], back["range"]) == (6, 1)


def test_frames_limits_every_job_and_quiet_is_quiet(tmp_path, tiny_model, tiny_pair, capfd, monkeypatch):
    monkeypatch.delenv("SVT_LOG", raising=False)
    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=20, audio=True)
    capfd.readouterr()
    out = tmp_path / "up.mkv"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "--frames", "7", "-q"]) == 0
    back = read_back(out)
    assert back["frames"] == 7 and back["audio"] and back["audio"][0][1] < 0.6  # audio cut near 7 / 25 s
    down, up, _ = tiny_pair
    base = tmp_path / "in.vsr.mkv"
    assert main([str(src), "-o", str(base), "--down-model", down, "--up-model", up, "--resolution", "half",
                 "--frames", "5", "-q"]) == 0
    assert read_back(base)["frames"] == 5
    av1 = tmp_path / "av1.mkv"
    assert main(["--upscale", str(src), "-o", str(av1), "--model", tiny_model, "--codec", "libsvtav1",
                 "--frames", "3", "-q"]) == 0
    assert read_back(av1)["frames"] == 3
    assert capfd.readouterr().err == ""  # -q: not a line, SVT-AV1's banner (written by C code) included
    assert main(["--upscale", str(src), "--model", tiny_model, "--frames", "0"]) == 2
    assert "--frames must be >= 1, got 0" in capfd.readouterr().err


def _description(path: Path) -> tuple:
    with av.open(str(path)) as c:
        return (c.metadata.get("title"),
                [(float(ch["start"] * ch["time_base"]), float(ch["end"] * ch["time_base"]), ch["metadata"].get("title"))
                 for ch in c.chapters()],
                [(s.type, s.metadata.get("language"), int(s.disposition)) for s in c.streams])


def test_title_chapters_languages_and_dispositions_survive(tmp_path, tiny_model, tiny_pair):
    meta = tmp_path / "meta.txt"
    meta.write_text(";FFMETADATA1\ntitle=A Film\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=200\ntitle=One\n"
                    "[CHAPTER]\nTIMEBASE=1/1000\nSTART=200\nEND=400\ntitle=Two\n")
    src = tmp_path / "rich.mkv"
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=0.4", "-f", "lavfi", "-i",
                    "sine=frequency=220:duration=0.4", "-i", str(meta), "-t", "0.4",
                    "-map", "0", "-map", "1", "-map", "2",
                    "-map_metadata", "3", "-map_chapters", "3", "-c:v", "libx264", "-c:a", "flac",
                    "-metadata:s:v:0", "language=deu", "-metadata:s:a:0", "language=fra",
                    "-metadata:s:a:1", "language=eng", "-disposition:a:0", "0", "-disposition:a:1", "default+forced",
                    str(src)], check=True)
    want = _description(src)
    assert want[0] == "A Film" and len(want[1]) == 2 and want[2][2] == ("audio", "eng", 65)
    out = tmp_path / "up.mkv"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "-q"]) == 0
    assert _description(out) == want
    down, up, folder = tiny_pair  # and through the base layer and back
    base, restored = tmp_path / "rich.vsr.mkv", tmp_path / "restored.mkv"
    assert main([str(src), "-o", str(base), "--down-model", down, "--up-model", up, "--resolution", "half", "-q"]) == 0
    assert main([str(base), "-o", str(restored), "--weights-dir", folder, "-q"]) == 0
    assert _description(restored) == want
    with av.open(str(restored)) as c:
        assert not any(k.upper().startswith("VSR_") for k in c.metadata)  # restored: an ordinary video again


def test_aac_goes_into_mpeg_ts(tmp_path, tiny_model, capsys):
    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=10, audio=True)
    out = tmp_path / "up.ts"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "-q"]) == 0
    assert "cannot hold it" not in capsys.readouterr().err
    assert read_back(out)["audio"][0][0] == "aac"


def test_interlaced_input_is_named(tmp_path, tiny_model, capsys):
    src = tmp_path / "il.mkv"
    run(ffmpeg.input("testsrc2=size=64x48:rate=25", f="lavfi", t=0.2).filter("setfield", "tff").output(
        str(src), vcodec="libx264", flags="+ildct+ilme"))
    assert main(["--upscale", str(src), "-o", str(tmp_path / "o.mkv"), "--model", tiny_model, "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("the video is interlaced") == 1 and "deinterlace first" in err
    plain = make_clip(tmp_path / "p.mp4", size=(64, 48), frames=3, audio=False)
    assert main(["--upscale", str(plain), "-o", str(tmp_path / "p.mkv"), "--model", tiny_model, "-q"]) == 0
    assert "interlaced" not in capsys.readouterr().err


def test_missing_file(tmp_path, capsys):
    assert main(["--upscale", str(tmp_path / "nope.mp4")]) == 2
    _one_error_line(capsys, "no such file")
    _no_leftovers(tmp_path, set())


def test_not_a_video(tmp_path, capsys):
    (tmp_path / "notes.mp4").write_text("this is text, not video\n" * 100)
    assert main(["--upscale", str(tmp_path / "notes.mp4")]) == 2
    _one_error_line(capsys, "not a readable video file")
    _no_leftovers(tmp_path, {"notes.mp4"})


def test_no_video_stream(tmp_path, capsys):
    import ffmpeg
    from vsr_plugin.ffmpeg_tools import run
    run(ffmpeg.input("sine=duration=0.5", f="lavfi").output(str(tmp_path / "audio.m4a"), acodec="aac"))
    assert main(["--upscale", str(tmp_path / "audio.m4a")]) == 2
    _one_error_line(capsys, "no video stream")
    _no_leftovers(tmp_path, {"audio.m4a"})


def test_missing_output_directory(tmp_path, tiny_model, capsys):
    src = make_clip(tmp_path / "in.mp4", frames=2, audio=False)
    assert main(["--upscale", str(src), "-o", str(tmp_path / "no" / "out.mkv"), "--model", tiny_model]) == 2
    _one_error_line(capsys, "output directory does not exist")


def test_existing_output_needs_overwrite(tmp_path, tiny_model, capsys):
    src = make_clip(tmp_path / "in.mp4", frames=2, audio=False)
    out = tmp_path / "out.mkv"
    out.write_bytes(b"precious")
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model]) == 2
    _one_error_line(capsys, "output exists (pass --overwrite")
    assert out.read_bytes() == b"precious"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "--overwrite", "-q"]) == 0
    assert read_back(out)["frames"] == 2
    _no_leftovers(tmp_path, {"in.mp4", "out.mkv"})


def test_truncated_file_finishes_with_a_warning(tmp_path, tiny_model, capsys):
    """Policy: decode what is decodable, keep that output, warn on stderr, exit 0."""
    src = make_clip(tmp_path / "full.y4m", size=(64, 48), frames=10, vcodec="rawvideo", audio=False, tags=False)
    data = src.read_bytes()
    cut = tmp_path / "cut.y4m"
    header = data.index(b"\n") + 1
    frame = len(b"FRAME\n") + 64 * 48 * 3 // 2
    cut.write_bytes(data[: header + 6 * frame + frame // 2])  # 6 whole frames and half of the 7th
    out = tmp_path / "out.mkv"
    assert main(["--upscale", str(cut), "-o", str(out), "--model", tiny_model, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"warning: input is truncated or damaged (ends mid-frame ({frame // 2} bytes" in err
    assert "output holds the 6 frames that decoded" in err
    assert read_back(out)["frames"] == 6


def test_truncated_mkv_keeps_decodable_frames(tmp_path, tiny_model, capsys):
    src = make_clip(tmp_path / "full.mkv", size=(64, 48), frames=20, vcodec="ffv1", audio=False)
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.mkv"
    assert main(["--upscale", str(cut), "-o", str(out), "--model", tiny_model, "--quiet"]) == 0
    n = read_back(out)["frames"]
    assert 3 <= n < 20
    assert f"the {n} frames that decoded" in capsys.readouterr().err


def _start(args, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # a shell that started us in the background may have set SIGINT to "ignore", and nohup SIGHUP,
    # which children inherit (and vsr-transcode respects); a user's signals arrive with the default
    # disposition, so restore it
    def default_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)

    return subprocess.Popen(CLI + args, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_signals)


@pytest.mark.parametrize("sig,code,message", [(signal.SIGINT, 130, "interrupted; no output written"),
                                              (signal.SIGTERM, 143, "stopped by SIGTERM; no output written"),
                                              (signal.SIGHUP, 129, "stopped by SIGHUP; no output written")])
def test_signals_exit_with_their_code_and_leave_nothing(tmp_path, tiny_model, sig, code, message):
    src = make_clip(tmp_path / "in.mp4", size=(320, 240), frames=250, audio=True)
    proc = _start(["--upscale", str(src), "-o", str(tmp_path / "out.mkv"), "--model", tiny_model, "--batch", "1"],
                  tmp_path)
    # wait until frames are flowing and the partial output exists
    deadline = time.time() + 120
    while time.time() < deadline:
        if any(p.name.startswith(".out.") for p in tmp_path.iterdir()):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == f"vsr-transcode: {message}" and "Traceback" not in err
    assert "terminate called" not in err
    _no_leftovers(tmp_path, {"in.mp4"})


def test_ctrl_c_during_start_up_is_one_line(tmp_path, tiny_model):
    """Ctrl-C while torch is still being imported: the same single line and exit 130."""
    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=5, audio=False)
    proc = _start(["--upscale", str(src), "-o", str(tmp_path / "out.mkv"), "--model", tiny_model], tmp_path)
    time.sleep(0.4)  # the interpreter is up, the heavy imports are not done
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["vsr-transcode: interrupted; no output written"], err
    _no_leftovers(tmp_path, {"in.mp4"})


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-v", "error", *args], check=True)


def _first_frame_hdr(path: Path):
    from vsr_plugin.media import _hdr_metadata

    with av.open(str(path)) as c:
        return _hdr_metadata(next(c.decode(video=0)))


_MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_hdr10_mastering_display_and_light_levels_survive(tmp_path, tiny_model, codec):
    src = tmp_path / "hdr.mkv"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.2", "-pix_fmt", "yuv420p10le",
            "-c:v", "libx265", "-x265-params", f"log-level=error:hdr10=1:master-display={_MASTERING}:max-cll=1000,400",
            "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", str(src))
    want = _first_frame_hdr(src)
    assert want.green == (0.265, 0.69) and want.max_luminance == 1000.0 and (want.max_cll, want.max_fall) == (1000, 400)
    out = tmp_path / "up.mkv"
    assert main(["--upscale", str(src), "-o", str(out), "--model", tiny_model, "--codec", codec, "-q"]) == 0
    assert _first_frame_hdr(out) == want  # x264/x265 store the same units ffmpeg reads: exact


def test_text_subtitles_convert_between_mp4_and_mkv_and_fonts_come_along(tmp_path, tiny_model, capsys):
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,200\nhello world\n\n"
                   "2\n00:00:00,240 --> 00:00:00,360\nsecond, ünïcode\n")
    font = tmp_path / "font.ttf"
    font.write_bytes(bytes(range(256)) * 12)
    video = make_clip(tmp_path / "v.mp4", size=(64, 48), frames=10)
    mp4 = tmp_path / "in.mp4"
    _ffmpeg("-i", str(video), "-i", str(srt), "-map", "0", "-map", "1", "-c:v", "copy", "-c:s", "mov_text",
            "-metadata:s:s:0", "language=fra", str(mp4))

    def subtitles(path: Path) -> str:
        import imageio_ffmpeg

        return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path),
                               "-map", "0:s", "-f", "srt", "-"], capture_output=True, text=True, check=True).stdout

    want = subtitles(mp4)
    assert "second, ünïcode" in want
    mkv = tmp_path / "up.mkv"
    assert main(["--upscale", str(mp4), "-o", str(mkv), "--model", tiny_model, "-q"]) == 0
    assert "from mov_text to subrip (.mkv cannot hold mov_text)" in capsys.readouterr().err
    assert subtitles(mkv) == want
    with av.open(str(mkv)) as c:
        assert c.streams.subtitles[0].codec_context.name in ("srt", "subrip")
        assert c.streams.subtitles[0].metadata.get("language") == "fra"
    back = tmp_path / "back.mp4"  # and back: srt -> mov_text
    assert main(["--upscale", str(mkv), "-o", str(back), "--model", tiny_model, "-q"]) == 0
    assert subtitles(back) == want
    # a font attached to an mkv goes along, byte for byte; an mp4 output says it cannot hold it
    rich = tmp_path / "rich.mkv"
    _ffmpeg("-i", str(mkv), "-map", "0", "-c", "copy", "-attach", str(font), "-metadata:s:t", "mimetype=font/ttf",
            str(rich))
    up = tmp_path / "rich_up.mkv"
    assert main(["--upscale", str(rich), "-o", str(up), "--model", tiny_model, "-q"]) == 0
    with av.open(str(up)) as c:
        (a,) = c.streams.attachments
        assert (a.name, a.mimetype, bytes(a.data)) == ("font.ttf", "font/ttf", font.read_bytes())
    capsys.readouterr()
    assert main(["--upscale", str(rich), "-o", str(tmp_path / "rich_up.mp4"), "--model", tiny_model, "-q"]) == 0
    assert "dropping 1 attached file(s) (e.g. fonts): .mp4 cannot hold them" in capsys.readouterr().err


def test_a_damaged_base_layer_restores_the_rest(tmp_path, tiny_pair, capsys):
    """A .vsr.mkv with one video packet's bytes overwritten in place (tags intact): restored, counted."""
    down, up, folder = tiny_pair
    src = make_clip(tmp_path / "in.mp4", size=(96, 64), frames=60)
    base = tmp_path / "in.vsr.mkv"
    assert main([str(src), "-o", str(base), "--down-model", down, "--up-model", up, "--resolution", "half", "-q"]) == 0
    with av.open(str(base)) as c:
        payload = [bytes(p) for p in c.demux(video=0) if p.size][20]
    data = bytearray(base.read_bytes())
    at = data.find(payload)
    assert at > 0 and data.count(payload) == 1
    data[at:at + 4] = b"\x00\x00\x10\x00"  # the NAL length: the packet cannot be parsed
    base.write_bytes(bytes(data))
    out = tmp_path / "restored.mkv"
    assert main([str(base), "-o", str(out), "--weights-dir", folder, "-q"]) == 0
    frames = read_back(out)["frames"]
    assert 50 <= frames <= 59, frames
    err = capsys.readouterr().err
    assert "damaged video packet(s) skipped" in err and f"output holds {frames} frames" in err
    _no_leftovers(tmp_path, {"in.mp4", "in.vsr.mkv", "restored.mkv"})


def test_threads_caps_the_network_and_the_encoder(tmp_path, tiny_model):
    """--threads N reaches x264 (its settings string in the stream says so) and torch (the engine
    runs in the same process: its thread count is printed by a child that imports the CLI)."""
    src = make_clip(tmp_path / "in.mp4", size=(320, 180), frames=4)
    for n in (1, 2):
        out = tmp_path / f"t{n}.mkv"
        done = subprocess.run(CLI + ["--upscale", str(src), "--model", tiny_model, "--threads", str(n), "-o", str(out),
                                     "-q"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert f" threads={n} ".encode() in out.read_bytes()  # x264's SEI: "... threads=N lookahead_threads=..."
    probe = subprocess.run([sys.executable, "-c", "import torch, sys; from vsr_plugin.cli import _apply_threads, "
                            "build_parser; _apply_threads(build_parser().parse_args(['x', '--threads', '1'])); "
                            "print(torch.get_num_threads())"], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "1"
    bad = subprocess.run(CLI + ["--upscale", str(src), "--threads", "0", "-o", str(tmp_path / "bad.mkv")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["vsr-transcode: error: --threads must be >= 1, got 0"]
    assert not (tmp_path / "bad.mkv").exists()
