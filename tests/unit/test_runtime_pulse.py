"""The pulse publishes every bit of progress: throttled beats trail, progress beats after the
engine applied the outcome, and nothing is scheduled after close (the pulse is removed then)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from ldirectord.runtime.pulse import FileWriter, Pulse
from ldirectord.runtime.sdnotify import Notifier

INTERVAL = 0.2  # the throttle, shortened; the waits below are generous multiples of it


def _pulse(tmp_path: Path, state: dict[str, int]) -> tuple[Pulse, FileWriter, list[int]]:
    writer = FileWriter(lambda path, exc: None)
    rendered: list[int] = []

    def render(wall: float) -> bytes:
        rendered.append(state["up"])  # the content is taken when the beat happens
        return f"{state['up']} up".encode()

    pulse = Pulse(
        str(tmp_path / "x.pulse"),
        writer=writer,
        notifier=Notifier(env={}),
        render=render,
        min_interval=INTERVAL,
    )
    return pulse, writer, rendered


async def _until(cond: Callable[[], bool], limit: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond() and loop.time() < end:
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_a_throttled_beat_trails_with_the_newest_content(tmp_path: Path) -> None:
    state = {"up": 0}
    pulse, writer, rendered = _pulse(tmp_path, state)
    assert pulse.beat(force=True)  # the start-up beat: "0 up"
    state["up"] = 2
    for _ in range(50):  # a burst of progress within the throttle: one trailing beat
        assert not pulse.beat()
    first = pulse.last_beat
    await _until(lambda: pulse.beats == 2)
    assert pulse.beats == 2 and rendered == [0, 2]
    assert pulse.last_beat - first >= INTERVAL * 0.99
    await asyncio.sleep(INTERVAL * 3)
    assert pulse.beats == 2  # nothing more was held back: no further beat
    assert writer.flush(5)
    assert (tmp_path / "x.pulse").read_bytes() == b"2 up"
    writer.close()


@pytest.mark.asyncio
async def test_progress_beats_after_the_caller_applied_the_outcome(tmp_path: Path) -> None:
    state = {"up": 0}
    pulse, writer, rendered = _pulse(tmp_path, state)
    pulse.progress()  # the engine tells us first...
    state["up"] = 1  # ...then applies the outcome in the same callback
    await _until(lambda: pulse.beats == 1)
    assert rendered == [1]
    pulse.progress()  # throttled now: trails at last_beat + INTERVAL
    state["up"] = 3
    pulse.progress()
    await _until(lambda: pulse.beats == 2)
    assert rendered == [1, 3] and pulse.scheduled == 2
    writer.close()


@pytest.mark.asyncio
async def test_a_forced_beat_takes_the_place_of_the_pending_one(tmp_path: Path) -> None:
    state = {"up": 0}
    pulse, writer, rendered = _pulse(tmp_path, state)
    pulse.beat(force=True)
    pulse.progress()  # pending: trailing
    state["up"] = 1
    pulse.beat(force=True)  # carries it: the pending beat is cancelled
    await asyncio.sleep(INTERVAL * 3)
    assert rendered == [0, 1] and pulse.beats == 2
    writer.close()


@pytest.mark.asyncio
async def test_close_cancels_the_pending_beat(tmp_path: Path) -> None:
    state = {"up": 0}
    pulse, writer, _ = _pulse(tmp_path, state)
    pulse.beat(force=True)
    assert not pulse.beat()  # a trailing beat is pending
    pulse.close()
    pulse.progress()
    await asyncio.sleep(INTERVAL * 3)
    assert pulse.beats == 1
    writer.close()


def test_the_writer_renders_callable_content_on_its_own_thread(tmp_path: Path) -> None:
    import threading

    threads: list[str] = []
    errors: list[tuple[str, OSError]] = []
    writer = FileWriter(lambda path, exc: errors.append((path, exc)))

    def render() -> bytes:
        threads.append(threading.current_thread().name)
        return b"rendered\n"

    def broken() -> bytes:
        raise ValueError("a bug")

    try:
        writer.submit(str(tmp_path / "state"), render)
        writer.submit(str(tmp_path / "bad"), broken)
        assert writer.flush(5)
    finally:
        writer.close()
    assert (tmp_path / "state").read_bytes() == b"rendered\n"
    assert threads == ["ldirectord-writer"]  # not the caller's (the event loop's) thread
    assert not (tmp_path / "bad").exists()
    assert [p for p, _ in errors] == [str(tmp_path / "bad")]
    assert "a bug" in str(errors[0][1])


def test_the_state_file_keeps_to_its_cpu_budget_and_forced_beats_always_write(
    tmp_path: Path,
) -> None:
    import time

    from ldirectord.runtime.pulse import STATE_BUDGET

    writer = FileWriter(lambda path, exc: None)
    encodings: list[float] = []
    cost = 0.03

    def render_state(wall: float) -> Callable[[], bytes]:
        def encode() -> bytes:
            time.sleep(cost)  # a big state file's JSON
            encodings.append(wall)
            return b"state\n"

        return encode

    pulse = Pulse(
        str(tmp_path / "x.pulse"),
        writer=writer,
        notifier=Notifier(env={}),
        render=lambda wall: b"pulse\n",
        state_path=str(tmp_path / "x.state"),
        render_state=render_state,
        min_interval=0.0,
    )
    try:
        assert pulse.beat(force=True)
        assert writer.flush(5)
        assert pulse.state_cost >= cost
        began = time.monotonic()
        while time.monotonic() - began < STATE_BUDGET * cost * 0.8:
            assert pulse.beat()  # the pulse always beats ...
            time.sleep(0.005)
        assert writer.flush(5)
        assert len(encodings) == 1 and pulse.state_skipped > 0  # ... the state waits its turn
        time.sleep(STATE_BUDGET * cost * 0.3)
        assert pulse.beat()
        assert writer.flush(5)
        assert len(encodings) == 2  # its budget allows the next one
        assert pulse.beat(force=True)
        assert writer.flush(5)
        assert len(encodings) == 3  # a forced beat (start, reload, stop) always writes it
        assert (tmp_path / "x.state").read_bytes() == b"state\n"
    finally:
        writer.close()
