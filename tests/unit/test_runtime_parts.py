"""Cursor holding, the dispatcher's ordering and concurrency, log redaction."""

from __future__ import annotations

import asyncio
import io
import logging

from plugin.cursors import CursorTracker
from plugin.dispatch import Dispatcher
from plugin.logs import setup


def test_cursor_is_held_before_unclaimed_posts() -> None:
    c = CursorTracker()
    c.gap(set())
    c.observe("a", 100)
    c.hold("a", "p", 90)
    c.observe("a", 120)
    assert c.take_dirty() == {"a": 89}
    c.release("a", "p")
    assert c.take_dirty() == {"a": 120}
    assert c.take_dirty() == {}
    c.observe("a", 110)  # older: not a change
    assert c.take_dirty() == {}
    assert c.newest == 120


def test_cursors_stay_frozen_until_the_gap_is_read() -> None:
    c = CursorTracker()
    c.observe("a", 100)
    assert c.take_dirty() == {}  # at start: nothing is saved before the first backfill
    c.gap({"a", "b"})
    c.observe("b", 50)
    assert c.take_dirty() == {}
    c.filled("a")
    assert c.take_dirty() == {"a": 100}
    c.freeze_all()  # the stream dropped
    c.observe("a", 300)
    c.filled("b")
    assert c.take_dirty() == {}
    c.gap({"a"})
    assert c.take_dirty() == {"b": 50}
    c.filled("a")
    assert c.take_dirty() == {"a": 300}


async def test_dispatcher_keeps_order_per_key_and_bounds_concurrency() -> None:
    d = Dispatcher(concurrency=3)
    running = 0
    peak = 0
    order: dict[str, list[int]] = {"a": [], "b": [], "c": [], "d": []}

    def job(key: str, n: int) -> object:
        async def run() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.001 * (5 - n % 5))
            order[key].append(n)
            running -= 1
        return run

    for n in range(20):
        for key in order:
            d.submit(key, job(key, n))  # type: ignore[arg-type]
    assert await d.join(10)
    assert all(v == list(range(20)) for v in order.values())
    assert peak == 3
    assert d.queued == 0


async def test_a_failing_job_does_not_stop_its_conversation() -> None:
    d = Dispatcher(concurrency=2)
    done: list[int] = []

    async def boom() -> None:
        raise RuntimeError("x")

    async def ok() -> None:
        done.append(1)

    d.submit("k", boom)
    d.submit("k", ok)
    assert await d.join(5)
    assert done == [1]


def test_secrets_are_masked_in_logs() -> None:
    out = io.StringIO()
    setup("INFO", "text", ["tok-SECRET-123"], stream=out)
    log = logging.getLogger("t")
    log.info("token is %s", "tok-SECRET-123")
    try:
        raise ValueError("bad tok-SECRET-123")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    assert "tok-SECRET-123" not in text
    assert text.count("[redacted]") == 3
    setup("INFO", "json", [], stream=io.StringIO())
