"""Regenerate samples/bbb_480x270.mp4 from the Big Buck Bunny clip in ../shared/data/video.

    .venv/bin/python samples/make_sample.py [--source PATH]

First 72 frames (2.88 s at 25 fps) of the 1280x720 BBB clip, downscaled to 480x270 with Lanczos,
x264 CRF 20 (BT.709 tags), plus a generated stereo tone as the audio track (the shared copy has
no audio). Uses imageio-ffmpeg's ffmpeg through ffmpeg-python, like every ffmpeg call in vsr.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ffmpeg

from vsr_plugin.ffmpeg_tools import run

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "data" / "video" / "bigbuckbunny_1280x720_132f.mp4"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--out", type=Path, default=HERE / "bbb_480x270.mp4")
    args = ap.parse_args()
    video = ffmpeg.input(str(args.source)).video.filter("trim", end_frame=72).filter("setpts", "PTS-STARTPTS")
    video = video.filter("scale", 480, 270, flags="lanczos")
    audio = ffmpeg.input("sine=frequency=220:sample_rate=48000:duration=2.88", f="lavfi")
    audio2 = ffmpeg.input("sine=frequency=330:sample_rate=48000:duration=2.88", f="lavfi")
    audio = ffmpeg.filter([audio, audio2], "amerge", inputs=2).filter("volume", 0.3)
    out = ffmpeg.output(video, audio, str(args.out), vcodec="libx264", crf=20, preset="slow", pix_fmt="yuv420p",
                        color_primaries="bt709", color_trc="bt709", colorspace="bt709", color_range="tv",
                        acodec="aac", audio_bitrate="64k", movflags="+faststart", shortest=None,
                        map_metadata=-1, **{"bsf:v": "filter_units=remove_types=6"})
    run(out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
