"""The three-stage pipeline: a stopped run hands back control only once the stages that hold
libav objects are out of them (files), or after the grace (pipes, whose stages may block for good)."""

import threading
import time

import pytest

from vsr_plugin import pipeline
from vsr_plugin.pipeline import Pipeline


def _interrupted_run(stop_grace_s, monkeypatch):
    """Interrupt (from the caller's thread, as Ctrl-C does) while the encode stage is inside a
    0.6 s sink call; returns (sink call finished when run() raised, run() raised after seconds)."""
    monkeypatch.setattr(pipeline, "STOP_GRACE_S", 0.05)
    in_sink, sink_done = threading.Event(), threading.Event()

    def sink(item) -> None:
        in_sink.set()
        time.sleep(0.6)
        sink_done.set()

    def tick(stats) -> None:
        if in_sink.is_set():
            raise KeyboardInterrupt

    run = Pipeline(iter(range(10)), lambda frames: frames, sink, stop_grace_s=stop_grace_s)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run.run(on_tick=tick, tick_s=0.0)
    finished = sink_done.is_set()
    elapsed = time.perf_counter() - t0
    sink_done.wait(2)  # leave no stage running into the next test
    return finished, elapsed


def test_a_stopped_file_run_waits_for_the_encoder_to_leave_its_call(monkeypatch):
    finished, _ = _interrupted_run(pipeline.FILE_STOP_GRACE_S, monkeypatch)
    assert finished  # the caller may now close the output container


def test_a_stopped_pipe_run_gives_up_after_the_grace(monkeypatch):
    finished, elapsed = _interrupted_run(0.05, monkeypatch)
    assert not finished and elapsed < 0.5


def test_a_stage_error_reaches_the_caller_after_all_stages_end():
    def sink(item) -> None:
        if item == 3:
            raise ValueError("disk full")

    run = Pipeline(iter(range(100)), lambda frames: frames, sink, depth=2)
    with pytest.raises(ValueError, match="disk full"):
        run.run()
    assert not pipeline.stages_alive()
