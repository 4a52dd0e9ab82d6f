"""--resolution auto|half|full on real files: the decision, the tags, and the restore of both kinds."""

import dataclasses
import json
import math
import shutil
from pathlib import Path

import av
import pytest

from tests.conftest import REPO
from tests.media_helpers import make_clip, read_back, textured_clip
from vsr_plugin.baselayer import BaseLayerError, parse_tags
from vsr_plugin.cli import main
from vsr_plugin.resolution import (Decision, Point, _needs_second, choose, clip_kbps, LayerEstimate, keyframes_in, layer_crf_offset,
                                   lead_out_frames, probe_segments, segment_frames)


def _tags(path: Path) -> dict:
    with av.open(str(path)) as c:
        return dict(c.metadata)


def _video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


# --- the pieces ----------------------------------------------------------------------------------

def test_probe_segments_spread_over_the_clip():
    # each segment: 1 s measured, then 0.5 s of lead-out where the clip has it
    assert segment_frames(48, 24) == (24, 12) and segment_frames(30, 24) == (24, 6) and segment_frames(5, 25) == (5, 0)
    # a clip the segments would cover half of or more is probed whole, without lead-out
    assert probe_segments(48, 24) == [(0, 48)] and lead_out_frames([(0, 48)], 48, 24) == 0  # 2 s
    assert probe_segments(72, 24) == [(0, 72)]  # 3 s: one 1.5 s block would be half of it
    assert probe_segments(73, 24) == [(18, 36)] and lead_out_frames([(18, 36)], 73, 24) == 12  # one block
    assert probe_segments(5, 25) == [(0, 5)]  # shorter than a segment: all of it
    long = probe_segments(24 * 600, 24)  # 10 minutes: 2% of the frames, at most 6 segments
    assert len(long) == 6 and all(n == 36 for _, n in long)
    starts = [s for s, _ in long]
    assert starts == sorted(starts) and starts[0] > 0 and starts[-1] + 36 < 24 * 600
    gaps = {b - a for a, b in zip(starts, starts[1:])}
    assert max(gaps) - min(gaps) <= 1  # evenly spread
    assert probe_segments(24 * 60, 24) == [(702, 36)]  # 1 minute: 29 measured frames -> 1 segment
    assert probe_segments(24 * 120, 24) == [(702, 36), (2142, 36)]  # 2 minutes: 58 frames -> 2 segments


def test_probe_rate_spreads_keyframes_over_the_clip():
    point = {"bytes": 10_000 + 24 * 1_000, "key_bytes": 10_000, "keyframes": 1}  # one 25-frame segment
    # a 500-frame clip at 25 fps has 2 GOPs of 250: 1000 B per frame + 2 keyframes of 10 kB per 500 frames
    assert clip_kbps(point, 25, 500, 25.0, "libx264") == pytest.approx(8 * (1_000 + 20_000 / 500) * 25 / 1000)
    assert keyframes_in(500, 25.0, "libx264") == 2 and keyframes_in(500, 25.0, "libsvtav1") == 4
    assert layer_crf_offset("libx264") == 9 and layer_crf_offset("libx265") == 11
    assert layer_crf_offset("libx264", "two-thirds") == 4 and layer_crf_offset("libx265", "two-thirds") == 4


def test_a_second_half_probe_only_when_the_first_cannot_decide():
    target = 1000.0
    assert not _needs_second(Point(30, 1050, 80), 75, target)  # within 10% of the target
    assert not _needs_second(Point(30, 700, 70), 75, target)  # below the target and losing: loses there too
    assert not _needs_second(Point(30, 1400, 80), 75, target)  # above the target and winning: wins there too
    assert _needs_second(Point(30, 700, 80), 75, target)  # wins below the target: may not at it
    assert _needs_second(Point(30, 1400, 70), 75, target)
    # with the lead the 2x layer needs: a small win below the target settles nothing more than a loss
    assert not _needs_second(Point(30, 700, 75.3), 75, target, lead=0.5)
    assert _needs_second(Point(30, 1400, 75.3), 75, target, lead=0.5)  # above and short of the lead
    # beside another layer, a winner's quality at the target is needed too (to rank the layers)
    assert _needs_second(Point(30, 1400, 80), 75, target, rivals=True)
    assert not _needs_second(Point(30, 700, 70), 75, target, rivals=True)  # cannot win: settled
    assert not _needs_second(Point(30, 1050, 80), 75, target, rivals=True)  # within 10%


def test_a_layer_needs_a_lead_on_the_probes():
    assert choose(80.0, {"half": 80.3}, "vmaf") == "half" and choose(80.0, {"half": 80.2}, "vmaf") == "full"
    assert choose(30.0, {"half": 30.06}, "psnr") == "half" and choose(30.0, {"half": 30.04}, "psnr") == "full"
    assert choose(80.0, {"half": 80.3, "two-thirds": 80.9}, "vmaf") == "two-thirds"
    assert choose(80.0, {"half": 81.3, "two-thirds": 80.9}, "vmaf") == "half"
    assert choose(80.0, {"half": 79.3, "two-thirds": 80.2}, "vmaf") == "full"
    half = LayerEstimate("half", (Point(23, 1474.2, 87.6),), 88.81, 25.0)
    close = Decision(choice="full", metric="vmaf", target_kbps=1563.5, full=(Point(32, 1563.5, 88.7),) * 2,
                     full_quality=88.7, layers=(half,), segments=[(12, 24)], probe_frames=24, probe_s=14.2)
    assert "full 88.70, half 88.81 VMAF (half +0.11, short of the 0.25 lead it needs)" in close.summary()
    assert close.layer_crf is None and close.encodes == 3
    # docs/probe_cost.py reads the summary line back (it missed this form once)
    from docs.probe_cost import DECISION
    wins = dataclasses.replace(close, choice="half", layers=(dataclasses.replace(half, quality=89.9, crf=27.5),))
    assert wins.layer_crf == 27.5
    assert DECISION.search(close.summary()).groups() == ("full", None, "+0.11", "1", "24", None, "3", "14.2")
    assert DECISION.search(wins.summary()).groups() == ("half", "27.5", "+1.20", "1", "24", None, "3", "14.2")
    whole = dataclasses.replace(close, segments=[(0, 48)], probe_frames=48)  # a 2 s clip, probed whole
    assert "; the whole clip (48 frames), 3 probe encodes in 14.2 s" in whole.summary()
    assert DECISION.search(whole.summary()).groups() == ("full", None, "+0.11", None, None, "48", "3", "14.2")
    thirds = LayerEstimate("two-thirds", (Point(28, 1700.0, 89.1), Point(29.5, 1500.0, 88.9)), 89.0, 29.1)
    three = dataclasses.replace(wins, choice="two-thirds", layers=(thirds, dataclasses.replace(half, quality=88.6)))
    line = three.summary()
    assert line.startswith("resolution auto: two-thirds (2/3 layer, CRF 29.1) — at 1564 kbps on the probes, full "
                           "88.70, two-thirds 89.00, half 88.60 VMAF (two-thirds +0.30); ")
    assert DECISION.search(line).groups() == ("two-thirds", "29.1", "+0.30", "1", "24", None, "5", "14.2")
    alone = dataclasses.replace(close, layers=(dataclasses.replace(thirds, quality=88.2),), unprobed=("half",))
    line = alone.summary()  # the 2/3 layer lost: the 2x layer, which loses by more, was not probed
    assert "full 88.70, two-thirds 88.20 VMAF (two-thirds -0.50, half not probed); " in line
    assert DECISION.search(line).groups() == ("full", None, "-0.50", "1", "24", None, "4", "14.2")


def test_full_resolution_tags_are_checked():
    good = {"VSR_FORMAT": "vsr-base-layer", "VSR_FORMAT_VERSION": "2", "VSR_SCALE": "1", "VSR_WIDTH": "33",
            "VSR_HEIGHT": "20"}
    tags = parse_tags(good, base_width=34, base_height=20, source="f")
    assert tags.full_resolution and (tags.width, tags.height, tags.upsampler) == (33, 20, "")
    with pytest.raises(BaseLayerError, match="scale 1 is format version 2"):
        parse_tags({**good, "VSR_FORMAT_VERSION": "1"}, base_width=34, base_height=20, source="f")
    with pytest.raises(BaseLayerError, match="VSR_SCALE 3 is not supported"):
        parse_tags({**good, "VSR_SCALE": "3"}, base_width=12, base_height=8, source="f")


# --- whole runs ------------------------------------------------------------------------------------

def test_fine_noise_at_a_high_rate_stays_at_full_resolution_and_restores_by_copying(tmp_path, capsys):
    src = textured_clip(tmp_path / "noise.mkv", noise=30, audio=True)
    layer, restored = tmp_path / "noise.vsr.mkv", tmp_path / "noise.restored.mkv"
    assert main([str(src), "--crf", "18", "--metric", "psnr"]) == 0
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "resolution auto:" in ln)
    assert "full (native)" in line and "probe encodes in" in line
    # the 2/3 layer reads below full size, so the 2x layer (further below) is not probed: 2 + 1 or 2 encodes
    assert ", two-thirds " in line and ", half not probed)" in line and line.count("half") == 1
    assert " 3 probe encodes in " in line or " 4 probe encodes in " in line
    assert "the whole clip (50 frames)" in line  # 2 s: probed whole
    tags = _tags(layer)
    assert (tags["VSR_RESOLUTION"], tags["VSR_SCALE"], tags["VSR_FORMAT_VERSION"]) == ("full", "1", "2")
    assert tags["VSR_DECISION"] == line.split("vsr-transcode: ", 1)[1]
    a = read_back(layer)
    assert (a["width"], a["height"], a["frames"]) == (320, 180, 50)
    assert main([str(layer)]) == 0
    assert "stream copy" in capsys.readouterr().err
    b, s = read_back(restored), read_back(src)
    assert (b["width"], b["height"], b["frames"]) == (320, 180, 50)
    assert b["times"] == pytest.approx(s["times"], abs=1e-3)
    assert b["audio"][0][1] == pytest.approx(s["audio"][0][1], abs=0.03)
    assert _video_packets(restored) == _video_packets(layer)  # untouched
    assert not any(k.upper().startswith("VSR_") for k in _tags(restored))


def test_smooth_content_at_a_low_rate_goes_half_and_restores_to_the_original_size(tmp_path, capsys):
    src = textured_clip(tmp_path / "smooth.mkv", noise=0, audio=True, blur=3)
    layer = tmp_path / "smooth.vsr.mkv"
    assert main([str(src), "--crf", "46"]) == 0  # VMAF, the default metric
    err = capsys.readouterr().err
    assert "resolution auto: half (2x layer, CRF " in err and "VMAF" in err
    line = next(ln for ln in err.splitlines() if "resolution auto:" in ln)
    assert ", two-thirds " in line and ", half " in line  # every size's score at the target rate
    tags = _tags(layer)
    assert (tags["VSR_RESOLUTION"], tags["VSR_SCALE"], tags["VSR_FORMAT_VERSION"]) == ("half", "2", "1")
    a = read_back(layer)
    assert (a["width"], a["height"], a["frames"]) == (160, 90, 50)
    restored = tmp_path / "smooth.restored.mkv"
    assert main([str(layer)]) == 0
    b, s = read_back(restored), read_back(src)
    assert (b["width"], b["height"], b["frames"]) == (320, 180, 50)
    assert b["times"] == pytest.approx(s["times"], abs=1e-3)
    assert b["audio"][0][1] == pytest.approx(s["audio"][0][1], abs=0.03)


def test_forced_sides_skip_the_probes_and_odd_sizes_restore_exactly(tmp_path, capsys):
    src = make_clip(tmp_path / "odd.mkv", size=(161, 91), frames=10, audio=False, vcodec="ffv1")  # odd: testsrc
    full, restored = tmp_path / "odd.vsr.mkv", tmp_path / "odd.restored.mkv"
    assert main([str(src), "--resolution", "full", "--crf", "20"]) == 0
    err = capsys.readouterr().err
    assert "resolution auto" not in err
    a = read_back(full)
    assert (a["width"], a["height"]) == (162, 92)  # padded to even for H.264
    assert main([str(full), "--codec", "libsvtav1", "--preset", "12"]) == 0  # cropped: re-encoded
    b = read_back(restored)
    assert (b["width"], b["height"], b["frames"]) == (161, 91, 10)
    half = tmp_path / "half.vsr.mkv"
    assert main([str(src), "-o", str(half), "--resolution", "half", "--crf", "20", "--quiet"]) == 0
    assert _tags(half)["VSR_RESOLUTION"] == "half" and "VSR_DECISION" not in _tags(half)


def test_auto_needs_a_lossy_codec(tmp_path, capsys):
    src = textured_clip(tmp_path / "in.mkv", frames=5)
    assert main([str(src), "--codec", "ffv1"]) == 2
    assert "is lossless (use --resolution half or full)" in capsys.readouterr().err
    assert not (tmp_path / "in.vsr.mkv").exists()


@pytest.mark.parametrize("frames, tolerance", [(100, 0.1), (50, 0.03)])  # 4 s: one segment; 2 s: the whole clip (1.02 measured)
def test_probe_rate_is_close_to_the_whole_clip_rate(tmp_path, frames, tolerance):
    """What a probe says a CRF costs, against what the whole clip at that CRF costs."""
    from vsr_plugin.measure.ladder import native
    from vsr_plugin.resolution import ProbeOptions, decide

    src = textured_clip(tmp_path / "in.mkv", size=(320, 180), frames=frames, noise=8)
    dec = decide(src, native(), {"half": native()}, ProbeOptions(crf=28, metric="psnr"))  # only the full side matters
    from vsr_plugin.measure.video import encode_y4m, read_clip, stream_bits, write_y4m
    from vsr_plugin.media import EncodeOptions

    clip = read_clip(src)
    write_y4m(tmp_path / "in.y4m", clip.frames, clip.rate)
    encode_y4m(tmp_path / "in.y4m", tmp_path / "out.mkv", EncodeOptions(crf=28, preset="medium"), clip.colorimetry)
    whole = stream_bits(tmp_path / "out.mkv").kbps(clip.seconds)
    # 0.98 measured; 1.12 while the keyframes went uncounted (their bytes then counted per segment)
    assert math.isclose(dec.target_kbps, whole, rel_tol=tolerance), (dec.target_kbps, whole)


def test_read_segments_picks_the_planned_frames(tmp_path):
    from vsr_plugin.measure.video import read_clip, read_segments

    src = textured_clip(tmp_path / "in.mkv", frames=20)
    whole = read_clip(src).frames
    seen = []

    def plan(total, fps):
        seen.append((total, fps))
        return [(3, 4), (10, 2)]

    clip, segments, total = read_segments(src, plan)
    assert seen == [(20, 25.0)] and segments == [(3, 4), (10, 2)] and total == 20
    assert [f.y.tobytes() for f in clip.frames] == [f.y.tobytes() for f in whole[3:7] + whole[10:12]]
    clip, _, total = read_segments(src, lambda n, fps: [(0, n)], max_frames=6)
    assert total == 6 and len(clip.frames) == 6


@pytest.mark.parametrize("suffix,frames", [(".mp4", 60), (".mkv", 60), (".mkv", 57)])
def test_probe_segments_are_reached_by_seeking_and_equal_a_decode_from_the_start(tmp_path, suffix, frames):
    """Probes in the middle of a long file seek to the keyframe before them (x264, a keyframe every 8
    frames, B-frames); the frames must be the ones a decode from the start gives, the last segment
    reaching the clip's end (the decoder's delayed frames) included."""
    import ffmpeg

    from vsr_plugin.ffmpeg_tools import run
    from vsr_plugin.measure.video import read_clip, read_segments
    from vsr_plugin.media import VideoInput

    src = tmp_path / f"gop{suffix}"
    video = ffmpeg.input(f"testsrc2=size=96x64:rate=24", f="lavfi", t=frames / 24).video
    run(ffmpeg.output(video, str(src), vcodec="libx264", pix_fmt="yuv420p", g=8, bf=3, crf=20, preset="fast"))
    whole = read_clip(src).frames
    assert len(whole) == frames
    segments = [(5, 4), (21, 6), (frames - 7, 7)]
    with VideoInput(src) as inp:
        parts = [inp.decode_range(start, n) for start, n in segments]
    assert all(p is not None for p in parts)  # seeking was trusted on this file
    clip, _, _ = read_segments(src, lambda n, fps: segments)
    want = [f for start, n in segments for f in whole[start:start + n]]
    assert len(clip.frames) == len(want) and all(a.equals(b) for a, b in zip(clip.frames, want))


def test_y4m_probes_decode_from_the_start(tmp_path):
    from vsr_plugin.measure.video import read_clip, read_segments, write_y4m
    from vsr_plugin.media import VideoInput

    src = textured_clip(tmp_path / "in.mkv", frames=12)
    y4m = tmp_path / "in.y4m"
    whole = read_clip(src).frames
    write_y4m(y4m, whole, 25)
    with VideoInput(y4m) as inp:
        assert inp.decode_range(4, 3) is None  # no seeking in a y4m stream: the caller decodes instead
    clip, _, _ = read_segments(y4m, lambda n, fps: [(4, 3)])
    assert len(clip.frames) == 3
    assert all(pa.tobytes() == pb.tobytes() for a, b in zip(clip.frames, whole[4:7]) for pa, pb in zip(a.planes, b.planes))


def test_recorded_decisions_back_skipping_the_2x_probes_when_the_2_3_layer_loses():
    """decide() stops probing after a layer that reads below full size: in every three-way decision the
    committed rd reports recorded (both layers probed), the 2x layer read below the 2/3 layer there."""
    checked = skipped = 0
    for report in sorted((REPO / "docs" / "results").glob("rd_*three_way*.json")):
        for clip in json.loads(report.read_text())["clips"]:
            for point in clip["points"]:
                d = point.get("decision") or {}
                layers = d.get("layers", {})
                if {"half", "two-thirds"} <= set(layers):
                    checked += 1
                    if layers["two-thirds"]["quality"] <= d["full_quality"]:
                        skipped += 1
                        assert layers["half"]["quality"] < layers["two-thirds"]["quality"], (report.name, clip["name"])
    assert checked >= 60 and skipped >= 10


def test_docs_auto_rate_reads_the_half_decisions_of_a_report():
    from docs.auto_rate import ratios
    report = {"clips": [{"name": "c", "points": [{"pipeline": "native", "crf": 36, "kbps": 1000.0},
                                                 {"pipeline": "native", "crf": 40, "kbps": 700.0},
                                                 {"pipeline": "vsr", "crf": 27, "kbps": 990.0}],
                         "auto": [{"full_crf": 36, "resolution": "half", "kbps": 1100.0},
                                  {"full_crf": 40, "resolution": "full", "kbps": 700.0}]}]}
    assert ratios(report) == [("c", 36, 1.1)]


def test_docs_probe_bias_reads_a_curve_in_log_rate_and_refuses_bad_usage(capsys):
    from docs.probe_bias import main as probe_bias, on_curve
    curve = [{"kbps": 400.0, "vmaf": 60.0}, {"kbps": 100.0, "vmaf": 40.0}, {"kbps": 200.0, "vmaf": 50.0}]
    assert on_curve(curve, 200.0, "vmaf") == 50.0
    assert on_curve(curve, 200.0 * 2 ** 0.5, "vmaf") == pytest.approx(55.0)  # halfway in log-rate
    assert on_curve(curve, 800.0, "vmaf") == pytest.approx(70.0)  # the top segment extended
    assert on_curve(curve, 50.0, "vmaf") == pytest.approx(30.0)
    assert probe_bias(["margins"]) == 2 and "probe_bias.py bytes" in capsys.readouterr().err


def test_docs_rerender_rd_recomputes_the_auto_tables_of_a_saved_report(tmp_path, capsys):
    from docs.rerender_rd import main as rerender
    report = tmp_path / "r.json"
    shutil.copy(REPO / "docs/results/rd_video_libx264_perceptual_auto.json", report)
    data = json.loads(report.read_text())
    for clip in data["clips"]:  # as an older report stored them
        for a in clip["auto"]:
            a.pop("vsr_chord", None)
    report.write_text(json.dumps(data))
    assert rerender([str(report)]) == 0
    again = json.loads(report.read_text())
    assert [p for c in again["clips"] for p in c["points"]] == [p for c in data["clips"] for p in c["points"]]
    half = [a for c in again["clips"] for a in c["auto"] if a["resolution"] == "half"]
    assert half and all(a["vsr"] == a["quality"] and "vsr_chord" in a for a in half)
    assert "| vsr chord |" in (tmp_path / "r.md").read_text()
    assert rerender([str(tmp_path / "missing.json")]) == 2 and "usage" in capsys.readouterr().err


def test_every_map_of_the_layers_names_the_same_sizes():
    """The layer names are keys in several maps, each for its own concern (format versions, probe order,
    messages, report labels, rd pipelines, training caches): all name the sizes baselayer defines."""
    from encoder.benchmarks.rd import AUTO_SIDES
    from encoder.training.codec_data import LAYERS as TRAINED
    from vsr_plugin import resolution, transcode_report
    from vsr_plugin.baselayer import RESOLUTIONS

    reduced = {word for word, scale in RESOLUTIONS.items() if scale != 1}
    assert reduced == {"half", "two-thirds"} and set(RESOLUTIONS) == set(AUTO_SIDES)
    for names in (resolution.LAYERS, resolution.LAYER_WORDS, transcode_report.LAYERS, TRAINED):
        assert set(names) == reduced
