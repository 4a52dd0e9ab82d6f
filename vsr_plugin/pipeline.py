"""Decode -> network -> encode in three threads joined by bounded queues.

The slowest stage sets the pace: while the network works on one batch, the decoder fills the
next and the encoder drains the last. Decoding (libavcodec), the network (torch) and encoding
(x264 & co.) all release the GIL, so the threads truly overlap. Any stage's exception stops the
others and is re-raised in the caller's thread; so is Ctrl-C.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .media import TimedFrame

_END = object()
_POLL_S = 0.1


class _Stop(Exception):
    """Raised inside a stage when another stage failed or the run was interrupted."""


@dataclass
class StageStats:
    """Seconds each stage spent working (not waiting on its queues), and frames through."""

    decode_s: float = 0.0
    network_s: float = 0.0
    encode_s: float = 0.0
    frames_in: int = 0
    frames_out: int = 0
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames_out / self.wall_s if self.wall_s > 0 else 0.0


# How long an interrupted run waits for a stage blocked on a pipe (a read from stdin that never
# delivers, a write to a reader that stopped reading); the caller then ends the process without it.
STOP_GRACE_S = 5.0
# The same for files, whose stages are each inside one bounded read or write: long enough for that
# on a machine loaded many times over, short enough that a FIFO given as a file cannot hang the stop.
FILE_STOP_GRACE_S = 60.0


def join_stopped(threads: list[threading.Thread], grace_s: float = STOP_GRACE_S) -> None:
    """Join stopping threads for up to ``grace_s``, a second Ctrl-C or signal included: a thread
    left running into interpreter exit can abort the process (see :func:`stages_alive`)."""
    deadline = time.monotonic() + grace_s
    for t in threads:
        while t.is_alive() and time.monotonic() < deadline:
            try:
                t.join(min(_POLL_S, max(0.0, deadline - time.monotonic())))
            except BaseException:  # noqa: BLE001 - a repeated interrupt: keep joining until the deadline
                continue


def stages_alive() -> bool:
    """Whether a pipeline stage thread is still running. At interpreter exit a thread inside torch
    or libav that needs the GIL is ended from under its C++ frames, which aborts the process
    ("terminate called without an active exception"), so the CLI then exits at once instead."""
    return any(t.name.startswith("vsr-") and t.is_alive() for t in threading.enumerate())


class Pipeline:
    """Run ``source`` -> ``process`` (batches of frames) -> ``sink`` concurrently.

    Args:
        source: yields :class:`TimedFrame` values and pass-through items (e.g. packets to copy).
        process: maps a batch of frames of one size to output frames (same order, same length).
        sink: consumes every output item in order (frames and pass-through items).
        batch: frames per ``process`` call.
        depth: queue capacity between stages, in items.
        stop_grace_s: how long a stopped run waits for the decode and encode stages to end before
            the exception reaches the caller, who then closes the containers those stages use (so
            they must have ended: libav aborts on a container closed under a running call): for
            files :data:`FILE_STOP_GRACE_S`, for pipes (whose stages can block for good)
            :data:`STOP_GRACE_S`. The network stage holds no container and is waited for at most
            :data:`STOP_GRACE_S` (or this grace, if shorter).
    """

    def __init__(self, source: Iterable, process: Callable[[list[TimedFrame]], list[TimedFrame]],
                 sink: Callable[[object], None], *, batch: int = 4, depth: int = 8,
                 stop_grace_s: float = FILE_STOP_GRACE_S) -> None:
        self.source, self.process, self.sink = source, process, sink
        self.batch = batch
        self.stop_grace_s = stop_grace_s
        self.q_in: queue.Queue = queue.Queue(maxsize=max(depth, batch + 1))
        self.q_out: queue.Queue = queue.Queue(maxsize=max(depth, batch + 1))
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.stats = StageStats()

    # queue helpers that give up when the run is stopping
    def _put(self, q: queue.Queue, item) -> None:
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue):
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except _Stop:
                pass
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                self.errors.append(e)
                self.stop.set()
        return run

    def _decode(self) -> None:
        it = iter(self.source)
        while True:
            t = time.perf_counter()
            item = next(it, _END)
            self.stats.decode_s += time.perf_counter() - t
            if isinstance(item, TimedFrame):
                self.stats.frames_in += 1
            self._put(self.q_in, item)
            if item is _END:
                return

    def _network(self) -> None:
        pending: list[TimedFrame] = []

        def flush() -> None:
            if pending:
                t = time.perf_counter()
                out = self.process(list(pending))
                self.stats.network_s += time.perf_counter() - t
                if len(out) != len(pending):
                    raise RuntimeError(f"process returned {len(out)} frames for {len(pending)}")
                for item in out:
                    self._put(self.q_out, item)
                pending.clear()

        while True:
            item = self._get(self.q_in)
            if item is _END:
                flush()
                self._put(self.q_out, _END)
                return
            if not isinstance(item, TimedFrame):
                self._put(self.q_out, item)  # pass-through: the muxer interleaves by timestamp
                continue
            if pending and item.frame.y.shape != pending[0].frame.y.shape:
                flush()
            pending.append(item)
            if len(pending) >= self.batch:
                flush()

    def _encode(self) -> None:
        while True:
            item = self._get(self.q_out)
            if item is _END:
                return
            t = time.perf_counter()
            self.sink(item)
            self.stats.encode_s += time.perf_counter() - t
            if isinstance(item, TimedFrame):
                self.stats.frames_out += 1

    def run(self, *, on_tick: Callable[[StageStats], None] | None = None, tick_s: float = 0.25) -> StageStats:
        """Run to completion; calls ``on_tick`` from this thread every ``tick_s`` seconds."""
        threads = [threading.Thread(target=self._guard(f), name=f"vsr-{f.__name__.strip('_')}", daemon=True)
                   for f in (self._decode, self._network, self._encode)]
        start = time.perf_counter()
        try:
            for t in threads:
                t.start()
            last = start
            while any(t.is_alive() for t in threads):
                threads[-1].join(_POLL_S)
                now = time.perf_counter()
                if on_tick is not None and now - last >= tick_s:
                    self.stats.wall_s = now - start
                    on_tick(self.stats)
                    last = now
        except BaseException:
            self.stop.set()
            decode, network, encode = threads
            join_stopped([decode, encode], self.stop_grace_s)
            join_stopped([network], min(STOP_GRACE_S, self.stop_grace_s))
            raise
        finally:
            self.stats.wall_s = time.perf_counter() - start
        if self.errors:
            raise self.errors[0]
        return self.stats
