"""The encoder side: in.mp4 -> in.vsr.mkv (half size, tagged, audio kept) -> restored original size."""

import subprocess

import av
import ffmpeg
import numpy as np
import pytest

from tests.media_helpers import make_clip, read_back
from vsr_plugin.cli import main
from vsr_plugin.ffmpeg_tools import command, run
from vsr_plugin.models import DEFAULT_PAIR, pair_names, shipped_models


def _encode(src, out, pair, *extra):
    down, up, _ = pair
    return main([str(src), "-o", str(out), "--down-model", down, "--up-model", up, "--resolution", "half", "-q",
                 *extra])


def test_base_layer_round_trip_restores_odd_size_frames_and_audio(tmp_path, tiny_pair, capsys):
    src = make_clip(tmp_path / "in.mkv", size=(333, 199), frames=6, vcodec="ffv1", audio=True)
    base = tmp_path / "in.vsr.mkv"
    down, up, folder = tiny_pair
    # default name next to the input
    assert main([str(src), "--down-model", down, "--up-model", up, "--resolution", "half"]) == 0
    assert "x smaller); restore with: vsr-transcode" in capsys.readouterr().err
    b = read_back(base)
    assert (b["width"], b["height"], b["frames"]) == (168, 100, 6)  # ceil(333/2) padded to even
    assert len(b["audio"]) == 1
    with av.open(str(base)) as c:
        tags = {k.upper(): v for k, v in c.metadata.items()}
    assert tags["VSR_FORMAT"] == "vsr-base-layer" and tags["VSR_FORMAT_VERSION"] == "1"
    assert (tags["VSR_WIDTH"], tags["VSR_HEIGHT"], tags["VSR_SCALE"]) == ("333", "199", "2")
    assert tags["VSR_UPSAMPLER"] == "pair-up" and len(tags["VSR_UPSAMPLER_SHA256"]) == 64
    # plays as an ordinary video in plain ffmpeg
    proc = subprocess.run(command(ffmpeg.input(str(base)).output("-", format="null")), capture_output=True)
    assert proc.returncode == 0, proc.stderr
    restored = tmp_path / "in.restored.mkv"
    assert main([str(base), "--weights-dir", folder]) == 0
    assert "restoring the odd size 333x199 with libsvtav1" in capsys.readouterr().err
    r, a = read_back(restored), read_back(src)
    assert (r["width"], r["height"], r["frames"]) == (333, 199, 6)
    assert r["times"] == pytest.approx(a["times"], abs=1e-3)
    assert r["audio"][0][1] == pytest.approx(a["audio"][0][1], abs=0.03)


def encoder_settings(path) -> str:
    """The settings line x264 and x265 write into the stream (an SEI of the first picture; in
    Matroska x265's lies in the codec's extradata)."""
    with av.open(str(path)) as c:
        data = bytes(c.streams.video[0].codec_context.extradata or b"") + bytes(next(c.demux(video=0)))
    start = data.find(b"options: ")
    assert start >= 0, "no encoder settings in the stream"
    return data[start:data.find(b"\0", start)].decode(errors="replace")


@pytest.mark.parametrize("codec,tuned,untuned", [("libx264", (" psy=0 ", " aq=1:0.00"), (" psy=1 ", " aq=1:1.00")),
                                                  ("libx265", (" psy-rd=0.00 ", " aq-strength=0.00 "),
                                                   (" psy-rd=2.00 ", " aq-strength=1.00 "))])
def test_tune_reaches_the_encoder_of_every_layer(tmp_path, tiny_pair, capsys, codec, tuned, untuned):
    """--tune psnr turns the encoders' psycho-visual tools off (x264: psy-rd, AQ strength; x265 the same)
    in a 2x layer, a full-resolution one and --resolution auto's encode; without it they stay on."""
    # 128 px wide: x265 (this build) corrupts the heap closing an encoder of pictures 40-48 px wide
    # (MALLOC_CHECK_=3 catches it every time), which a 96-px clip's 2x layer would be
    src = make_clip(tmp_path / "in.mp4", size=(128, 64), frames=3, audio=False)
    down, up, _ = tiny_pair
    for resolution in ("half", "full", "auto"):
        for tune in ("psnr", None):
            out = tmp_path / f"{resolution}-{tune}.vsr.mkv"
            assert main([str(src), "-o", str(out), "--down-model", down, "--up-model", up, "--codec", codec,
                         "--crf", "30", "--resolution", resolution, "-q", *(["--tune", tune] if tune else [])]) == 0
            settings = encoder_settings(out)
            for s in (tuned if tune else untuned):
                assert s in settings, (resolution, tune, settings)
    # a tune the codec lacks is one line, and nothing is written
    assert _encode(src, tmp_path / "bad.vsr.mkv", tiny_pair, "--codec", "libsvtav1", "--tune", "psnr") == 2
    assert capsys.readouterr().err.strip().splitlines() == ["vsr-transcode: error: libsvtav1 takes no tune, got 'psnr'"]
    assert not (tmp_path / "bad.vsr.mkv").exists()


@pytest.mark.skipif(pair_names(DEFAULT_PAIR)[1] not in shipped_models(), reason="no shipped pair")
def test_shipped_pair_is_the_default_both_ways(tmp_path):
    """No model flags: the default pair encodes, and restore finds its upsampler by the tags."""
    src = make_clip(tmp_path / "in.mp4", size=(96, 64), frames=3, audio=False)
    assert main([str(src), "--resolution", "half", "-q"]) == 0
    with av.open(str(tmp_path / "in.vsr.mkv")) as c:
        tags = {k.upper(): v for k, v in c.metadata.items()}
    assert (tags["VSR_DOWNSAMPLER"], tags["VSR_UPSAMPLER"]) == pair_names(DEFAULT_PAIR)
    assert main([str(tmp_path / "in.vsr.mkv"), "-q"]) == 0
    r = read_back(tmp_path / "in.restored.mkv")
    assert (r["width"], r["height"], r["frames"]) == (96, 64, 3)


def test_restore_needs_the_named_upsampler(tmp_path, tiny_pair, capsys):
    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=2, audio=False)
    base = tmp_path / "b.vsr.mkv"
    assert _encode(src, base, tiny_pair) == 0
    assert main([str(base), "-q"]) == 2  # the pair is not shipped and no --weights-dir given
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs upsampler 'pair-up'" in err[0] and "which is not installed" in err[0]
    _no_file(tmp_path, "b.restored.mkv")


def _retag(src, dst, **tags):
    run(ffmpeg.input(str(src)).output(str(dst), c="copy", **{f"metadata:g:{i}": f"{k}={v}"
                                                            for i, (k, v) in enumerate(tags.items())}))


def _no_file(folder, name):
    assert not (folder / name).exists()


@pytest.mark.parametrize("tags,message", [
    ({"VSR_WIDTH": "999"}, "the tags do not belong to this stream"),
    ({"VSR_FORMAT_VERSION": "7"}, "base-layer format version '7' is not supported"),
    ({"VSR_FORMAT": "something-else"}, "not a vsr base layer"),
    ({"VSR_UPSAMPLER_SHA256": "0" * 64}, "which is not installed"),
    ({"VSR_UPSAMPLER_SHA256": "xyz"}, "missing or malformed"),
    ({"VSR_HEIGHT": "-5"}, "not a positive integer"),
])
def test_tampered_or_foreign_tags_are_clear_errors(tmp_path, tiny_pair, capsys, tags, message):
    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=2, audio=False)
    base = tmp_path / "b.vsr.mkv"
    assert _encode(src, base, tiny_pair) == 0
    bad = tmp_path / "bad.vsr.mkv"
    _retag(base, bad, **tags)
    assert main([str(bad), "--weights-dir", tiny_pair[2], "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    _no_file(tmp_path, "bad.restored.mkv")


def test_pipe_downscale(tmp_path, tiny_pair):
    import sys

    src = make_clip(tmp_path / "in.y4m", size=(66, 46), frames=3, vcodec="rawvideo", audio=False)
    proc = subprocess.run([sys.executable, "-m", "vsr_plugin.cli", "pipe", "--downscale", "--down-model",
                           tiny_pair[0]], input=src.read_bytes(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(b"YUV4MPEG2 W33 H23 ")
    header = proc.stdout.index(b"\n") + 1
    assert len(proc.stdout) == header + 3 * (6 + 33 * 23 + 2 * 17 * 12)


def test_vapoursynth_downscale_matches_the_engine(tmp_path, tiny_pair):
    vs = pytest.importorskip("vapoursynth")
    import vsr_plugin
    from vsr_plugin.engine import Downscaler
    from vsr_plugin.yuv import Frame

    src = make_clip(tmp_path / "in.mkv", size=(64, 48), frames=2, vcodec="ffv1", pix_fmt="yuv420p10le", audio=False)
    clip = vsr_plugin.source(str(src))
    small = vsr_plugin.downscale(clip, model=tiny_pair[0], device="cpu")
    assert (small.width, small.height, small.format.id) == (32, 24, vs.YUV420P10)
    f = clip.get_frame(1)
    frame = Frame(y=np.asarray(f[0]).copy(), u=np.asarray(f[1]).copy(), v=np.asarray(f[2]).copy(), bits=10)
    want = Downscaler(tiny_pair[0], device="cpu").downscale(frame)
    got = small.get_frame(1)
    for i in range(3):
        assert np.array_equal(np.asarray(got[i]), want.planes[i])
    assert dict(got.props) == dict(f.props)


def test_report_compares_with_native_at_the_same_bitrate(tmp_path, tiny_pair, capsys):
    import json

    src = make_clip(tmp_path / "in.mp4", size=(96, 64), frames=6, audio=False)
    down, up, _ = tiny_pair
    out = tmp_path / "r.json"
    assert main(["--report", str(src), "--down-model", down, "--up-model", up, "--crf", "26", "--preset", "fast",
                 "--resolution", "half", "--report-json", str(out), "-q"]) == 0
    table = capsys.readouterr().out
    assert "| vsr (pair: 2x down + upsampler) | CRF 26 |" in table and "| native (full resolution) |" in table
    data = json.loads(out.read_text())
    v, n = data["points"]["vsr"], data["points"]["native"]
    assert abs(n["kbps"] / v["kbps"] - 1) < 0.25  # rate-matched (tiny clips match loosely)
    assert len(data["native_crf_probes"]) >= 1
    assert data["tune"] is None and {p["tune"] for p in data["points"].values()} == {None}
    assert table.startswith(f"vsr-transcode --report {src}: 96x64, 6 frames, libx264 preset fast\n")
    for p in (v, n, data["points"]["bicubic"]):
        assert 10 < p["psnr_y"] < 60 and 0 < p["ssim_y"] <= 1 and 0 <= p["vmaf"] <= 100
    assert [q.name for q in tmp_path.iterdir()] and not any(q.suffix == ".mkv" for q in tmp_path.iterdir())
    dp, dv = v["psnr_y"] - n["psnr_y"], v["vmaf"] - n["vmaf"]
    verdict = next(line for line in table.splitlines() if line.startswith("Verdict: "))
    assert f"vsr {dp:+.2f} dB PSNR-Y, {dv:+.2f} VMAF" in verdict


@pytest.mark.parametrize("dp,dv,head", [(0.5, 2.0, "vsr wins on both"),
                                        (-0.5, -2.0, "native full-resolution encode wins"),
                                        (-0.5, 2.0, "mixed: vsr wins on VMAF, native on PSNR-Y"),
                                        (0.5, -2.0, "mixed: vsr wins on PSNR-Y, native on VMAF")])
def test_report_verdict_names_the_winner(dp, dv, head):
    from vsr_plugin.transcode_report import report_verdict

    native = {"psnr_y": 30.0, "vmaf": 80.0, "kbps": 500.0}
    text = report_verdict({"psnr_y": 30.0 + dp, "vmaf": 80.0 + dv, "kbps": 498.0}, native)
    assert head in text and f"{dp:+.2f} dB PSNR-Y, {dv:+.2f} VMAF" in text and "498 vs 500 kbps" in text


def test_stripped_base_layer_is_not_reduced_again(tmp_path, tiny_pair, capsys):
    down, up, _ = tiny_pair
    src = make_clip(tmp_path / "in.mp4", size=(64, 48), frames=4, audio=False)
    base = tmp_path / "in.vsr.mkv"
    assert main([str(src), "-o", str(base), "--down-model", down, "--up-model", up, "--resolution", "half", "-q"]) == 0
    stripped = tmp_path / "s.vsr.mkv"
    run(ffmpeg.input(str(base)).output(str(stripped), c="copy", map_metadata="-1"))
    assert main([str(stripped), "--down-model", down, "--up-model", up, "--resolution", "half", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "named as a vsr base layer but carries no vsr tags" in err[0]
    assert not (tmp_path / "s.vsr.vsr.mkv").exists()
    # asked for explicitly, it is reduced again
    assert main([str(stripped), "-o", str(tmp_path / "again.vsr.mkv"), "--down-model", down, "--up-model", up,
                 "--resolution", "half", "-q"]) == 0


@pytest.mark.skipif(pair_names(DEFAULT_PAIR)[0] not in shipped_models("downsampler"), reason="no shipped pair")
def test_default_base_layer_is_the_bicubic_reduction():
    """The default pair's downsampler has no learned part yet: its base layer is exactly the
    antialiased bicubic reduction, which any player shows as an ordinary picture."""
    import torch

    import kernels
    from tests.conftest import random_planes
    from vsr_plugin.engine import Downscaler

    y, u, v = random_planes(2, 37, 22, 10, seed=3)
    got = Downscaler(pair_names(DEFAULT_PAIR)[0], device="cpu").downscale_planes(y, u, v, bits=10)
    want = kernels.unpack_downscale(torch.zeros(2, 6, 10, 6), y, u, v, bits=10, backend="torch")
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_x265_is_refused_for_pictures_it_corrupts_memory_on(tmp_path, tiny_pair, capsys):
    """x265 (this build) corrupts its heap closing encoders of 40-48 px wide pictures: a 96-px clip's
    2x layer (48 px) is one clear line and no file; its 2/3 layer (64 px) is coded."""
    src = make_clip(tmp_path / "in.mp4", size=(96, 64), frames=3, audio=False)
    out = tmp_path / "in.vsr.mkv"
    assert _encode(src, out, tiny_pair, "--codec", "libx265") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vsr-transcode: error: libx265 is refused for pictures under 50 pixels wide (this one is 48): this "
                   "build of x265 corrupts memory on 40-48 px wide pictures; use --codec libx264 or libsvtav1"]
    assert not out.exists() and not list(tmp_path.glob(".*"))
    down, up, _ = tiny_pair
    assert main([str(src), "-o", str(out), "--down-model", down, "--up-model", up, "--resolution", "two-thirds",
                 "--codec", "libx265", "-q"]) == 0
    assert read_back(out)["width"] == 64


def test_report_with_auto_measures_the_layer_auto_chooses_at_its_crf(tmp_path, tiny_pair, capsys):
    """The default --resolution auto: the encode's probes decide; the report measures the chosen layer
    (at full size: the one closest on the probes) at the CRF the encode would use, and says so."""
    import json
    import re

    src = make_clip(tmp_path / "in.mp4", size=(96, 64), frames=6, audio=False)
    down, up, _ = tiny_pair
    out = tmp_path / "r.json"
    assert main(["--report", str(src), "--down-model", down, "--up-model", up, "--crf", "30", "--preset", "fast",
                 "--report-json", str(out)]) == 0
    got = capsys.readouterr()
    data = json.loads(out.read_text())
    decided = data["decision"]
    assert decided.startswith("resolution auto: ") and f"vsr-transcode: {decided}" in got.err
    first = got.out.splitlines()[0]
    assert first.startswith("`--resolution auto` codes this clip ") and decided in first
    assert data["layer"] in ("half", "two-thirds")
    if decided.startswith("resolution auto: full"):
        assert "at full resolution (the native encode)" in first
    else:
        crf = float(re.search(r"CRF ([0-9.]+)\)", decided).group(1))
        assert decided.startswith(f"resolution auto: {data['layer']} ") and data["points"]["vsr"]["crf"] == crf
    # at a bitrate: the probes decide at that rate and both sides are coded at it
    assert main(["--report", str(src), "--down-model", down, "--up-model", up, "--bitrate", "300k", "--preset", "fast",
                 "--report-json", str(out), "-q"]) == 0
    data = json.loads(out.read_text())
    assert " at 300 kbps on the probes" in data["decision"] and data["points"]["vsr"]["crf"] is None


def test_report_measures_the_two_thirds_layer_when_asked(tmp_path, tiny_pair, capsys):
    import json

    src = make_clip(tmp_path / "in.mp4", size=(96, 64), frames=6, audio=False)
    down, up, _ = tiny_pair
    out = tmp_path / "r.json"
    assert main(["--report", str(src), "--down-model", down, "--up-model", up, "--crf", "26", "--preset", "fast",
                 "--resolution", "two-thirds", "--report-json", str(out), "-q"]) == 0
    table = capsys.readouterr().out
    assert "| vsr (2/3 layer: Lanczos-3 down + upsampler x2 + reduction) | CRF 26 |" in table
    data = json.loads(out.read_text())
    v, n = data["points"]["vsr"], data["points"]["native"]
    assert data["layer"] == "two-thirds" and (v["base_width"], v["base_height"]) == (64, 42)
    assert abs(n["kbps"] / v["kbps"] - 1) < 0.25
    plain = data["points"]["lanczos23"]  # the same base layer, restored by Lanczos-3: the same encode
    assert plain["bytes"] == v["bytes"] and plain["base_width"] == 64
    assert "| Lanczos-3 2/3 down + Lanczos-3 up (the same base layer) | CRF 26 |" in table
    assert main(["--report", str(src), "--resolution", "full", "-q"]) == 2
    assert "--resolution full has no layer" in capsys.readouterr().err
