"""A progress line on stderr: frames, fps, ETA. Redrawn in place on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total: int | None, *, label: str = "", enabled: bool = True, stream: TextIO | None = None,
                 line_every_s: float = 5.0) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.line_every_s = line_every_s
        self._last_line = 0.0
        self._drawn = False

    def update(self, frames: int, elapsed_s: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not self.tty and now - self._last_line < self.line_every_s:
            return
        self._last_line = now
        fps = frames / elapsed_s if elapsed_s > 0 else 0.0
        text = f"{self.label}frame {frames}"
        if self.total:
            text += f"/{self.total} ({100 * min(frames, self.total) / self.total:.0f}%)"
        text += f"  {fps:.1f} fps  elapsed {_clock(elapsed_s)}"
        if self.total and fps > 0 and frames < self.total:
            text += f"  ETA {_clock((self.total - frames) / fps)}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
