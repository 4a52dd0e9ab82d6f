"""Starting ffmpeg where the project needs it (tests, benchmarks, sample generation).

Commands are built with ffmpeg-python and run with imageio-ffmpeg's bundled binary (ffmpeg 9 with
libx264, libx265, SVT-AV1 and libvmaf), so no system ffmpeg is needed. The main media path does
not use this: it runs in-process through PyAV.
"""

from __future__ import annotations

import functools
import subprocess

import ffmpeg


@functools.cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def command(stream, *, overwrite: bool = True, quiet: bool = True) -> list[str]:
    """The argv of an ffmpeg-python output ``stream``, with the bundled binary."""
    if overwrite:
        stream = stream.overwrite_output()
    if quiet:
        stream = stream.global_args("-hide_banner", "-nostats", "-loglevel", "error")
    return stream.compile(cmd=ffmpeg_exe())


def run(stream, **kwargs) -> subprocess.CompletedProcess:
    """Run to completion; raise RuntimeError with ffmpeg's last stderr lines on failure."""
    proc = subprocess.run(command(stream, **kwargs), capture_output=True)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError("ffmpeg failed: " + " | ".join(tail))
    return proc
