"""vsr-bench rd on tiny clips: the metric path against itself and a lossless encode, and the ladders."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from encoder.benchmarks.bench import main
from encoder.benchmarks.clips import ClipSpec, make_clip
from vsr_plugin.measure.ladder import LadderConfig, LadderRunner, native
from vsr_plugin.measure.metrics import PSNR_CAP_DB, frame_quality
from vsr_plugin.measure.video import decode, encode, encode_y4m, read_clip, stream_bits, write_y4m
from vsr_plugin.measure.vmaf import MetricError, check_psnr, libvmaf
from tests.conftest import smooth_rgb
from tests.media_helpers import make_clip as ffmpeg_clip, textured_clip
from vsr_plugin.media import EncodeOptions


@pytest.fixture(scope="module")
def natural_clip(tmp_path_factory):
    """A 64x48, 4-frame pan over a smooth photo (make-clip), as y4m."""
    d = tmp_path_factory.mktemp("rdclip")
    Image.fromarray(smooth_rgb(300, 400, seed=3)).save(d / "photo.png")
    return make_clip([d / "photo.png"], d / "pan.y4m", ClipSpec(width=64, height=48, frames=4))["output"]


def test_vmaf_and_psnr_of_a_clip_against_itself(natural_clip):
    clip = read_clip(natural_clip)
    r = libvmaf(natural_clip, natural_clip, rate=clip.rate, colorimetry=clip.colorimetry, bits=8)
    assert r.vmaf >= 99 and len(r.frames) == 4
    assert r.psnr_y == [60.0] * 4  # libvmaf's cap at 8 bits: identical pictures inside the graph
    q = [frame_quality(f, f) for f in clip.frames]
    assert all(x["psnr_y"] == PSNR_CAP_DB and x["ssim_y"] == pytest.approx(1.0) for x in q)
    check_psnr(r, [x["psnr_y"] for x in q], "self")


def test_lossless_x264_encode_measures_like_the_original(natural_clip, tmp_path):
    clip = read_clip(natural_clip)
    stream = tmp_path / "lossless.mkv"
    encode(clip.frames, stream, clip.rate, EncodeOptions(codec="libx264", crf=0, preset="veryfast"))
    back = decode(stream)
    assert len(back) == len(clip.frames) and all(a.equals(b) for a, b in zip(clip.frames, back))
    assert stream_bits(stream).picture_bytes > 0
    dist = tmp_path / "back.y4m"
    write_y4m(dist, back, clip.rate)
    r = libvmaf(dist, natural_clip, rate=clip.rate, colorimetry=clip.colorimetry, bits=8)
    r_self = libvmaf(natural_clip, natural_clip, rate=clip.rate, colorimetry=clip.colorimetry, bits=8)
    assert r.frames == r_self.frames and r.psnr_y == r_self.psnr_y
    assert [frame_quality(a, b)["psnr_y"] for a, b in zip(clip.frames, back)] == [PSNR_CAP_DB] * 4


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_measured_encode_of_a_tagged_sd_clip_is_not_converted(tmp_path, codec):
    """A BT.709-tagged 320x180 clip through the ffmpeg encode of the measurements, losslessly: ffmpeg 9
    takes an untagged y4m below HD for BT.601 and converted it to the BT.709 asked of the output (-15
    code values on average on colour bars) until the input was tagged alike."""
    clip = read_clip(textured_clip(tmp_path / "in.mkv", noise=0))
    assert clip.colorimetry.matrix == 1 and clip.width < 1280
    y4m, out = tmp_path / "in.y4m", tmp_path / "out.mkv"
    write_y4m(y4m, clip.frames, clip.rate)
    lossless = {"libx264": EncodeOptions(codec=codec, crf=0, preset="ultrafast"),
                "libx265": EncodeOptions(codec=codec, crf=0, preset="ultrafast")}[codec]
    encode_y4m(y4m, out, lossless, clip.colorimetry)
    back = decode(out)
    assert back[0].colorimetry.matrix == 1
    if codec == "libx264":  # x264 at CRF 0 is lossless
        assert all(a.equals(b) for a, b in zip(clip.frames, back))
    else:
        assert min(frame_quality(a, b)["psnr_y"] for a, b in zip(clip.frames, back)) > 45


def test_psnr_check_catches_a_graph_that_saw_other_pictures(natural_clip, tmp_path):
    clip = read_clip(natural_clip)
    shifted = [f.with_planes(np.roll(f.y, 1, axis=1), f.u, f.v) for f in clip.frames]
    dist = tmp_path / "shifted.y4m"
    write_y4m(dist, shifted, clip.rate)
    r = libvmaf(dist, natural_clip, rate=clip.rate, colorimetry=clip.colorimetry, bits=8)
    with pytest.raises(MetricError, match="PSNR-Y"):
        check_psnr(r, [PSNR_CAP_DB] * 4, "mislabelled")  # claims identical pictures: the graph disagrees
    check_psnr(r, [frame_quality(a, b)["psnr_y"] for a, b in zip(clip.frames, shifted)], "true")


def test_lead_out_frames_are_encoded_but_neither_counted_nor_measured(natural_clip, tmp_path):
    """Probe segments of 2 frames, the second a lead-out: the point covers frames 0 and 2 only,
    with exactly the bytes those frames have in the same encode measured whole."""
    clip = read_clip(natural_clip)
    opts = EncodeOptions(codec="libx264", crf=30, preset="medium")
    points = {}
    for lead in (0, 1):
        config = LadderConfig(codec="libx264", preset="medium", ssim=False, keyframes_every=2, lead_out=lead)
        runner = LadderRunner(clip, config, tmp_path)
        base, size, _ = runner.prepare(native())
        points[lead] = runner.point(native(), opts, base, size)
        assert runner.measured == ([0, 1, 2, 3] if lead == 0 else [0, 2])
    whole, counted = points[0], points[1]
    assert counted["per_frame"]["bytes"] == whole["per_frame"]["bytes"][::2]
    assert counted["bytes"] == sum(whole["per_frame"]["bytes"][::2]) and counted["keyframes"] == 2
    assert counted["key_bytes"] == counted["bytes"]  # both counted frames are the segments' keyframes
    assert counted["per_frame"]["psnr_y"] == whole["per_frame"]["psnr_y"][::2]
    # (VMAF's motion feature compares each frame with the one before it in the measured sequence, so
    # only the first frame's score is the same: segments join there as they do in any probe clip)
    assert len(counted["per_frame"]["vmaf"]) == 2 and counted["per_frame"]["vmaf"][0] == whole["per_frame"]["vmaf"][0]
    assert counted["kbps"] == pytest.approx(8 * counted["bytes"] / (2 / float(clip.rate)) / 1000)
    with pytest.raises(ValueError, match="lead_out 2 needs segments"):
        LadderConfig(keyframes_every=2, lead_out=2)


def test_x264_sei_is_not_counted(natural_clip, tmp_path):
    clip = read_clip(natural_clip)
    stream = tmp_path / "a.mkv"
    encode(clip.frames, stream, clip.rate, EncodeOptions(codec="libx264", crf=30, preset="medium"))
    bits = stream_bits(stream)
    assert 300 < bits.packet_bytes - bits.picture_bytes < 2000  # x264's version SEI, removed
    assert bits.packets == 4
    # the keyframe is counted though the SEI filter takes each packet (the probes' rate model needs it)
    assert bits.keyframes == 1 and bits.key_picture_bytes == bits.frame_bytes[0]
    assert 0 < bits.key_picture_bytes < bits.picture_bytes


def test_rd_ladders_on_tiny_clips(natural_clip, tiny_model, tmp_path, capsys, monkeypatch):
    import encoder.benchmarks.rd

    shipped = encoder.benchmarks.rd._shipped  # as if no downsampler were shipped: vsr is skipped with a note
    monkeypatch.setattr(encoder.benchmarks.rd, "_shipped",
                        lambda kind, **kw: None if kind == "downsampler" else shipped(kind, **kw))
    odd = ffmpeg_clip(tmp_path / "odd.mkv", size=(65, 49), frames=3, vcodec="ffv1", audio=False)
    out = tmp_path / "out"
    argv = ["rd", natural_clip, str(odd), "--pipelines", "native,bicubic,lanczos,sr,vsr", "--model", tiny_model,
            "--device", "cpu", "--crf-full", "20,30,40", "--crf-half", "14,24,34", "--out", str(out),
            "--name", "t"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "pipeline vsr skipped: no learned downsampler" in err and "24/24" in err
    data = json.loads((out / "t.json").read_text())
    assert data["skipped"].keys() == {"vsr"} and set(data["pipelines"]) == {"native", "bicubic", "lanczos", "sr"}
    for clip, (w, h), (bw, bh) in zip(data["clips"], ((64, 48), (65, 49)), ((32, 24), (33, 25))):
        assert (clip["width"], clip["height"], clip["base_width"], clip["base_height"]) == (w, h, bw, bh)
        assert clip["lossless_check"]["identical_planes"] and clip["lossless_check"]["psnr_y"] == PSNR_CAP_DB
        for name in data["pipelines"]:
            pts = [p for p in clip["points"] if p["pipeline"] == name]
            assert len(pts) == 3 and [p["crf"] for p in pts] == sorted(p["crf"] for p in pts)
            kbps = [p["kbps"] for p in pts]
            assert kbps[0] > kbps[1] > kbps[2] > 0, (clip["name"], name, kbps)  # higher CRF, fewer bits
            for p in pts:
                assert all(math.isfinite(p[k]) for k in ("psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "ssim_y", "vmaf"))
                assert 0 < p["ssim_y"] <= 1 and 0 <= p["vmaf"] <= 100 and p["kbps_with_sei"] > p["kbps"]
                assert len(p["per_frame"]["vmaf"]) == clip["frames"]
        sr_native = clip["bd"]["psnr_y"]["vs native"]["sr"]
        assert set(sr_native["bd_rate"]) == {"pchip", "akima"} and "crossovers" in sr_native
        assert "native" not in clip["bd"]["vmaf"]["vs bicubic"]
        # every anchor present is compared with the pipelines after it (native, bicubic, lanczos, sr)
        present = [a for a in ("native", "bicubic", "lanczos", "sr") if a in data["pipelines"]]
        for i, anchor in enumerate(present):
            assert set(clip["bd"]["vmaf"][f"vs {anchor}"]) == set(data["pipelines"]) - set(present[:i + 1])
    # sr encodes the very same base layers as bicubic (bit-exact encodes), then restores them differently
    pts = data["clips"][0]["points"]
    sr, bic = ([p for p in pts if p["pipeline"] == n] for n in ("sr", "bicubic"))
    assert [p["bytes"] for p in sr] == [p["bytes"] for p in bic]
    assert [p["psnr_y"] for p in sr] != [p["psnr_y"] for p in bic]
    md = (out / "t.md").read_text()
    assert "**skipped**" in md and "| native | 20 |" in md and "BD on VMAF" in md
    for clip in ("pan", "odd"):
        for metric in ("psnr_y", "ssim_y", "psnr_yuv", "vmaf"):
            png = out / f"t_{clip}_{metric}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"({png.name})" in md


@pytest.mark.parametrize("argv,message", [
    (["rd", "missing.y4m"], "no such clip: missing.y4m"),
    (["rd", "CLIP", "--crf-full", "20,x"], "bad CRF ladder"),
    (["rd", "CLIP", "--crf-half", "20"], "needs at least two values"),
    (["rd", "CLIP", "--crf-full", "20,60"], "CRF must be within 0..51"),
    (["rd", "CLIP", "--pipelines", "native,bogus"], "unknown pipeline 'bogus'"),
    (["rd", "CLIP", "--model", "no/such/weights"], "no model"),
])
def test_rd_user_errors_are_one_line(natural_clip, tmp_path, capsys, argv, message):
    argv = [natural_clip if a == "CLIP" else a for a in argv] + ["--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vsr-bench: error: ") and message in err[0]
    assert not (tmp_path / "o").exists()


def test_rd_accepts_mp4_and_frame_limit(tmp_path):
    src = ffmpeg_clip(tmp_path / "in.mp4", size=(64, 48), frames=5, audio=True)
    out = tmp_path / "o"
    assert main(["rd", str(src), "--pipelines", "native,bicubic", "--frames", "2", "--crf-full", "24,36",
                 "--crf-half", "18,30", "--no-plots", "--no-lossless-check", "--quiet", "--out", str(out)]) == 0
    data = json.loads((out / "rd_libx264.json").read_text())
    assert data["clips"][0]["frames"] == 2 and len(data["clips"][0]["points"]) == 4
    assert not list(out.glob("*.png"))
    assert Fraction(data["clips"][0]["rate"]) == 25


def test_rd_tune_codes_every_pipeline_alike_and_is_checked_on_reuse(tmp_path, capsys):
    src = ffmpeg_clip(tmp_path / "in.mp4", size=(64, 48), frames=2, audio=False)
    out = tmp_path / "o"
    common = [str(src), "--pipelines", "native,bicubic", "--crf-full", "24,36", "--crf-half", "18,30", "--no-plots",
              "--no-lossless-check", "--quiet", "--out", str(out)]
    assert main(["rd", *common, "--tune", "psnr", "--name", "tuned"]) == 0
    tuned = json.loads((out / "tuned.json").read_text())
    assert tuned["tune"] == "psnr" and {p["tune"] for p in tuned["clips"][0]["points"]} == {"psnr"}
    assert (out / "tuned.md").read_text().startswith("# vsr-bench rd — libx264 preset medium, tune psnr")
    assert main(["rd", *common, "--name", "plain"]) == 0
    plain = json.loads((out / "plain.json").read_text())
    assert plain["tune"] is None
    # the same encodes with and without the tune differ (x264's psy-rd and AQ are off in one)
    assert [p["bytes"] for p in plain["clips"][0]["points"]] != [p["bytes"] for p in tuned["clips"][0]["points"]]
    capsys.readouterr()
    assert main(["rd", *common, "--reuse", str(out / "tuned.json"), "--name", "again"]) == 2
    assert "was measured with tune 'psnr', this run uses None" in capsys.readouterr().err
    assert main(["rd", *common, "--tune", "film", "--codec", "libsvtav1", "--name", "bad"]) == 2
    assert "libsvtav1 takes no tune, got 'film'" in capsys.readouterr().err


def test_vsr_pipeline_runs_a_learned_pair(tmp_path):
    """A downsampler named '...-down' brings its '...-up' upsampler along; odd sizes work."""
    import torch

    from tests.integration.conftest import save_tiny_pair
    from vsr_plugin.models import save_downsampler

    down = save_tiny_pair(tmp_path)
    src = ffmpeg_clip(tmp_path / "odd.mkv", size=(65, 49), frames=2, vcodec="ffv1", audio=False)
    out = tmp_path / "o"
    assert main(["rd", str(src), "--pipelines", "bicubic,vsr", "--down-model", str(tmp_path / "pair-down"),
                 "--device", "cpu", "--crf-half", "16,30", "--no-plots", "--no-lossless-check", "--quiet",
                 "--out", str(out)]) == 0
    data = json.loads((out / "rd_libx264.json").read_text())
    assert data["skipped"] == {} and data["models"]["vsr"]["upsampler_weights"] == str(tmp_path / "pair-up")
    vsr = [p for p in data["clips"][0]["points"] if p["pipeline"] == "vsr"]
    assert [(p["base_width"], p["base_height"]) for p in vsr] == [(33, 25)] * 2 and vsr[0]["kbps"] > vsr[1]["kbps"]
    cmp = data["clips"][0]["bd"]["vmaf"]["vs bicubic"]["vsr"]
    assert set(cmp["bd_rate"]) == {"pchip", "akima"} and set(cmp["bd_quality"]) == {"pchip", "akima"}

    # --reuse: the earlier report's bicubic and vsr points stand in; only native is measured anew
    first = out / "rd_libx264.json"
    common = ["--device", "cpu", "--crf-half", "16,30", "--no-plots", "--no-lossless-check", "--quiet"]
    again = tmp_path / "again"
    assert main(["rd", str(src), "--pipelines", "native,bicubic,vsr", "--down-model", str(tmp_path / "pair-down"),
                 "--reuse", str(first), "--out", str(again)] + common) == 0
    data2 = json.loads((again / "rd_libx264.json").read_text())
    assert data2["clips"][0]["reused"] == ["bicubic", "vsr"] and data2["reused_from"] == str(first)
    old_pts = data["clips"][0]["points"]
    assert [p for p in data2["clips"][0]["points"] if p["pipeline"] != "native"] == old_pts
    assert len([p for p in data2["clips"][0]["points"] if p["pipeline"] == "native"]) == len(data2["ladders"]["full"])
    assert "were reused from" in (again / "rd_libx264.md").read_text()
    # other weights (same file name, new content) are measured again, never reused
    torch.nn.init.normal_(down.tail.weight, std=0.02)
    save_downsampler(tmp_path / "pair-down", down)
    assert main(["rd", str(src), "--pipelines", "bicubic,vsr", "--down-model", str(tmp_path / "pair-down"),
                 "--reuse", str(first), "--out", str(tmp_path / "third")] + common) == 0
    assert json.loads((tmp_path / "third" / "rd_libx264.json").read_text())["clips"][0]["reused"] == ["bicubic"]
    # a report measured on another ladder cannot stand in
    assert main(["rd", str(src), "--pipelines", "bicubic", "--crf-half", "16,31", "--reuse", str(first),
                 "--quiet", "--out", str(tmp_path / "fourth")]) == 2
    # nor one measured on other pictures under the same file name (a re-rendered clip), nor one that
    # does not say which pictures it measured (reports made before the content hash)
    assert data["clips"][0]["content_sha256"] == data2["clips"][0]["content_sha256"]
    import ffmpeg

    from vsr_plugin.ffmpeg_tools import run

    negated = tmp_path / "negated.mkv"
    run(ffmpeg.input(str(src)).video.filter("negate").output(str(negated), vcodec="ffv1"))
    original = src.read_bytes()
    negated.replace(src)
    assert main(["rd", str(src), "--pipelines", "bicubic", "--reuse", str(first), "--out", str(tmp_path / "fifth")]
                + common) == 0
    clip = json.loads((tmp_path / "fifth" / "rd_libx264.json").read_text())["clips"][0]
    assert "reused" not in clip and len([p for p in clip["points"] if p["pipeline"] == "bicubic"]) == 2
    unmarked = tmp_path / "unmarked.json"
    for c in data2["clips"]:
        del c["content_sha256"]
    unmarked.write_text(json.dumps(data2))
    src.write_bytes(original)
    assert main(["rd", str(src), "--pipelines", "bicubic", "--reuse", str(unmarked), "--out", str(tmp_path / "sixth")]
                + common) == 0
    clip = json.loads((tmp_path / "sixth" / "rd_libx264.json").read_text())["clips"][0]
    assert "reused" not in clip and len([p for p in clip["points"] if p["pipeline"] == "bicubic"]) == 2


def test_rd_refine_refines_the_vsr_base_layer_and_is_never_reused_for_a_plain_one(tmp_path, capsys):
    from tests.integration.conftest import save_tiny_pair

    save_tiny_pair(tmp_path)
    src = ffmpeg_clip(tmp_path / "odd.mkv", size=(65, 49), frames=2, vcodec="ffv1", audio=False)
    common = [str(src), "--down-model", str(tmp_path / "pair-down"), "--device", "cpu", "--crf-half", "16,30",
              "--no-plots", "--no-lossless-check", "--quiet"]
    assert main(["rd", *common, "--pipelines", "vsr", "--out", str(tmp_path / "plain")]) == 0
    assert main(["rd", *common, "--pipelines", "vsr", "--refine", "5", "--reuse", str(tmp_path / "plain" / "rd_libx264.json"),
                 "--out", str(tmp_path / "refined")]) == 0
    plain = json.loads((tmp_path / "plain" / "rd_libx264.json").read_text())
    refined = json.loads((tmp_path / "refined" / "rd_libx264.json").read_text())
    assert "refined 5 steps" in refined["pipelines"]["vsr"] and "refined" not in plain["pipelines"]["vsr"]
    assert "reused" not in refined["clips"][0]  # the unrefined points do not stand in
    pts = [(p["base_width"], p["base_height"]) for p in refined["clips"][0]["points"]]
    assert pts == [(33, 25)] * 2
    assert [p["bytes"] for p in refined["clips"][0]["points"]] != [p["bytes"] for p in plain["clips"][0]["points"]]
    capsys.readouterr()
    assert main(["rd", *common, "--pipelines", "native,vsr,auto", "--refine", "5", "--out", str(tmp_path / "x")]) == 2
    assert "auto stands for vsr-transcode, which does not refine" in capsys.readouterr().err
    assert main(["rd", *common, "--pipelines", "vsr", "--refine=-2", "--out", str(tmp_path / "y")]) == 2
    assert "refinement steps must be >= 0" in capsys.readouterr().err


def test_docs_layer_scale_trial_measures_a_two_thirds_layer_against_a_report(natural_clip, tiny_pair, tmp_path,
                                                                             monkeypatch, capsys):
    import sys

    from docs.layer_scale_trial import layer_size, main as trial_main

    assert layer_size(1080, 1920, Fraction(2, 3)) == (720, 1280) and layer_size(48, 64, Fraction(2, 3)) == (32, 42)
    down, up, _ = tiny_pair
    out = tmp_path / "o"
    assert main(["rd", natural_clip, "--pipelines", "native,vsr", "--down-model", down, "--vsr-up-model", up,
                 "--crf-full", "20,30,40", "--crf-half", "14,24,34", "--no-plots", "--no-lossless-check", "--quiet",
                 "--out", str(out), "--name", "r"]) == 0
    monkeypatch.setattr(sys, "argv", ["layer_scale_trial", natural_clip, "--model", up, "--crf", "20,30,40",
                                      "--dtype", "fp32", "--reuse", str(out / "r.json"), "--reuse-neg", "",
                                      "--out", str(out), "--name", "t"])
    assert trial_main() == 0
    data = json.loads((out / "t.json").read_text())
    (clip,) = data["clips"]
    assert (clip["layer_width"], clip["layer_height"]) == (42, 32)
    kbps = [p["kbps"] for p in clip["points"]]
    assert kbps[0] > kbps[1] > kbps[2] > 0
    assert all(0 <= p["vmaf_neg"] <= 100 and 10 < p["psnr_y"] < 60 for p in clip["points"])
    assert set(clip["bd"]) == {"vmaf", "psnr_y"}  # no NEG report given
    assert set(clip["bd"]["vmaf"]) == {"layer vs native", "layer vs 2x layer", "best of native and 2x vs native",
                                       "best of all three vs native"}
    assert "| layer vs native |" in (out / "t.md").read_text()
    # a report that never measured the clip is refused
    other = json.loads((out / "r.json").read_text())
    other["clips"][0]["content_sha256"] = "0" * 64
    (out / "other.json").write_text(json.dumps(other))
    monkeypatch.setattr(sys, "argv", ["layer_scale_trial", natural_clip, "--model", up, "--crf", "20,30",
                                      "--reuse", str(out / "other.json"), "--reuse-neg", "", "--out", str(out)])
    with pytest.raises(SystemExit, match="did not measure"):
        trial_main()


def test_rd_measures_the_two_thirds_layer_and_a_three_way_auto(tmp_path, tiny_pair):
    """vsr23 is the 2/3 layer vsr-transcode makes (Lanczos-3 to 2/3, x2 network, bicubic to the original
    size); auto with vsr23 listed chooses among native, vsr23 and vsr on its probes, and every auto point
    is checked against all three curves."""
    down, up, _ = tiny_pair
    src = ffmpeg_clip(tmp_path / "in.mkv", size=(96, 64), frames=6, vcodec="ffv1", audio=False)
    out = tmp_path / "o"
    assert main(["rd", str(src), "--pipelines", "native,vsr,lanczos23,vsr23,auto", "--down-model", down,
                 "--vsr-up-model", up,
                 "--device", "cpu", "--crf-full", "30,44", "--crf-half", "20,34", "--crf-two-thirds", "26,40",
                 "--auto-metric", "psnr", "--no-plots", "--no-lossless-check", "--quiet", "--out", str(out)]) == 0
    data = json.loads((out / "rd_libx264.json").read_text())
    assert data["ladders"] == {"full": [30, 44], "half": [20, 34], "two_thirds": [26, 40]}
    assert data["models"]["vsr23"]["upsampler_weights"] == up
    points = data["clips"][0]["points"]
    layer = [p for p in points if p["pipeline"] == "vsr23"]
    assert [(p["crf"], p["base_width"], p["base_height"]) for p in layer] == [(26, 64, 42), (40, 64, 42)]
    plain = [p for p in points if p["pipeline"] == "lanczos23"]  # its base layer restored by Lanczos-3 alone
    assert [p["bytes"] for p in plain] == [p["bytes"] for p in layer]
    auto = [p for p in points if p["pipeline"] == "auto"]
    assert [p["full_crf"] for p in auto] == [30, 44]
    for p, check in zip(auto, data["clips"][0]["auto"]):
        d = p["decision"]  # the 2x layer is probed unless the 2/3 layer reads below full size
        probed = {"half", "two-thirds"} if d["layers"]["two-thirds"]["quality"] > d["full_quality"] else {"two-thirds"}
        assert set(d["layers"]) == probed and set(d["unprobed"]) == {"half", "two-thirds"} - probed
        assert set(d["probes"]) == {"full"} | probed
        side = {"full": "native", "half": "vsr", "two-thirds": "vsr23"}[p["resolution"]]
        assert check[side] == check["quality"] == p["psnr_y"] and {"native", "vsr", "vsr23"} <= set(check)
        if p["resolution"] == "two-thirds":
            assert p["crf"] == p["decision"]["layer_crf"] and p["base_width"] == 64
    assert set(data["clips"][0]["bd"]["vmaf"]["vs vsr"]) == {"lanczos23", "vsr23", "auto"}  # against the 2x layer
    md = (out / "rd_libx264.md").read_text()
    assert "| vsr23 there |" in md and "against the best of `native`, `vsr` and `vsr23`" in md
    # another decoder for the same 2/3 layers (--two-thirds-up-model): the same encodes, other pictures
    assert main(["rd", str(src), "--pipelines", "native,vsr23", "--two-thirds-up-model", "x2-fast", "--device", "cpu",
                 "--crf-full", "30,44", "--crf-two-thirds", "26,40", "--no-plots", "--no-lossless-check", "--quiet",
                 "--out", str(out), "--name", "other"]) == 0
    other = json.loads((out / "other.json").read_text())
    assert other["models"]["vsr23"]["upsampler_weights"] == "x2-fast"
    again = [p for p in other["clips"][0]["points"] if p["pipeline"] == "vsr23"]
    assert [p["bytes"] for p in again] == [p["bytes"] for p in layer]
    assert [p["psnr_y"] for p in again] != [p["psnr_y"] for p in layer]
