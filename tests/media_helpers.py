"""Test clips made with ffmpeg (through ffmpeg-python and the bundled binary) and read back with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import ffmpeg

from vsr_plugin.ffmpeg_tools import run
from vsr_plugin.media import planes_of


def make_clip(path: Path, *, size=(64, 48), frames=10, rate=25, pix_fmt="yuv420p", vcodec="libx264",
              audio=True, tags=True, vfr=False, rotation=None, sar=None) -> Path:
    w, h = size
    # testsrc keeps odd sizes (testsrc2 rounds them to even)
    video = ffmpeg.input(f"testsrc=size={w}x{h}:rate={rate}", f="lavfi", t=frames / rate).video
    if vfr:  # uneven gaps: 40, 60, 40, 60, ... ms
        video = video.filter("setpts", "(N*0.05 - 0.01*mod(N+1,2) + 0.01)/TB")
    if sar:
        video = video.filter("setsar", sar)
    if tags:  # tag the frames; encoders write what the frames carry
        video = video.filter("setparams", color_primaries="bt709", color_trc="bt709", colorspace="bt709", range="tv")
    streams = [video]
    if audio:
        streams.append(ffmpeg.input(f"sine=frequency=440:sample_rate=48000:duration={frames / rate}", f="lavfi").audio)
    kwargs = {"vcodec": vcodec, "pix_fmt": pix_fmt}
    if vcodec == "libx264":
        kwargs.update(crf=18, preset="veryfast")
    if audio:
        kwargs.update(acodec="aac" if path.suffix != ".mkv" else "flac")
    if vfr:
        kwargs["fps_mode"] = "passthrough"
    if rotation is not None:
        tmp = path.with_name("norot_" + path.name)
        run(ffmpeg.output(*streams, str(tmp), **kwargs))
        run(ffmpeg.input(str(tmp), display_rotation=rotation).output(str(path), c="copy"))
        tmp.unlink()
    else:
        run(ffmpeg.output(*streams, str(path), **kwargs))
    return path


def textured_clip(path: Path, *, size=(320, 180), frames=50, rate=25, noise=12, blur=0.0, audio=False) -> Path:
    """testsrc2 (moving shapes, gradients, text) with temporal noise of strength ``noise`` (content that
    costs an encoder about what camera footage does) or blurred by ``blur`` (smooth content), losslessly
    stored (FFV1 in Matroska)."""
    w, h = size
    video = ffmpeg.input(f"testsrc2=size={w}x{h}:rate={rate}", f="lavfi", t=frames / rate).video
    if blur:
        video = video.filter("gblur", sigma=blur)
    if noise:
        video = video.filter("noise", alls=noise, allf="t+u")
    video = video.filter("setparams", color_primaries="bt709", color_trc="bt709", colorspace="bt709", range="tv")
    streams = [video]
    kwargs = {"vcodec": "ffv1", "pix_fmt": "yuv420p"}
    if audio:
        streams.append(ffmpeg.input(f"sine=frequency=440:sample_rate=48000:duration={frames / rate}", f="lavfi").audio)
        kwargs["acodec"] = "flac"
    run(ffmpeg.output(*streams, str(path), **kwargs))
    return path


def read_back(path: Path) -> dict:
    """Everything the surface tests compare: geometry, frames, timestamps (s), tags, audio."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        frames = list(c.decode(v))
        info = {
            "width": cc.width, "height": cc.height, "frames": len(frames),
            "times": [float(f.pts * f.time_base) for f in frames],
            "pix_fmt": frames[0].format.name, "colorspace": cc.colorspace, "primaries": cc.color_primaries,
            "trc": cc.color_trc, "range": cc.color_range, "rotation": frames[0].rotation,
            "sar": v.sample_aspect_ratio, "first": planes_of(frames[0])[0],
        }
        audio = [s for s in c.streams if s.type == "audio"]
        info["audio"] = [(a.codec_context.name, float(a.duration * a.time_base) if a.duration else None) for a in audio]
    if info["audio"] and info["audio"][0][1] is None:  # Matroska: measure from packets
        with av.open(str(path)) as c:
            a = c.streams.audio[0]
            last = max((p.pts + (p.duration or 0)) * p.time_base for p in c.demux(a) if p.pts is not None)
            info["audio"] = [(a.codec_context.name, float(last))]
    return info


def rate_of(path: Path) -> Fraction:
    with av.open(str(path)) as c:
        return c.streams.video[0].average_rate


def damage_packet(src: Path, dst: Path, index: int, first_bytes: bytes = b"\x00\x00\x10\x00") -> None:
    """Re-mux ``src`` into ``dst`` with video packet ``index``'s first bytes replaced (for H.264 in
    mp4/mkv: a NAL length that points past the packet, so that packet fails to decode)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for k, packet in enumerate(p for p in inp.demux(vin) if p.size):
            if k == index:
                data = bytearray(bytes(packet))
                data[: len(first_bytes)] = first_bytes
                damaged = av.Packet(bytes(data))
                damaged.pts, damaged.dts, damaged.time_base = packet.pts, packet.dts, packet.time_base
                damaged.is_keyframe = packet.is_keyframe
                packet = damaged
            packet.stream = vout
            out.mux(packet)
