"""The adaptive limiter of requests in flight (bridge/limiter.py): the ramp against a simulated
tracker that serves 16 at once, the back-offs, the ceiling, first come first served, and
cancellation; then the trackers and sources built from settings, each on its own limiter.

The simulations run on an event loop whose clock is simulated: a sleep takes no real time, and
every figure is the same on every run, however loaded the machine."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest

from bridge.glpi import GLPITracker
from bridge.limiter import Limiter
from bridge.redmine import RedmineTracker
from bridge.tickets import TrackerUnavailable
from plugin.config import AlertSettings, Settings
from plugin.metrics import Metrics
from plugin.monitoring import SOURCE_MAX_IN_FLIGHT, build_sources
from plugin.sandbox.glpi import GLPISimulator
from plugin.trackers import build_trackers

T = TypeVar("T")


# --- simulated time ----------------------------------------------------------------------------


class _Skipping(selectors.DefaultSelector):
    """Never waits: the time it was asked to wait is added to the loop's clock instead."""

    def __init__(self, loop: SimulatedLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("nothing left to happen: the simulation is stuck")
        self._loop.now += max(0.0, timeout)
        return super().select(0)


class SimulatedLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time, starting at 0."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_Skipping(self))

    def time(self) -> float:
        return self.now


def simulate(main: Callable[[SimulatedLoop], Coroutine[Any, Any, T]]) -> T:
    loop = SimulatedLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


@dataclass
class Tracker:
    """A tracker that works on `capacity` requests at once for `service` seconds each; the
    others queue, first come first served. `service` and `capacity` may change mid-run."""

    capacity: int = 16
    service: float = 0.05
    busy: int = 0
    queue: list[asyncio.Future[None]] = field(default_factory=list)

    async def serve(self) -> None:
        if self.busy >= self.capacity:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.queue.append(turn)
            await turn
        else:
            self.busy += 1
        try:
            await asyncio.sleep(self.service)
        finally:
            self.busy -= 1
            while self.queue and self.busy < self.capacity:
                self.busy += 1
                self.queue.pop(0).set_result(None)


@dataclass
class Trace:
    """What the client saw: (time, limit) after every answer, and the most in flight."""

    limits: list[tuple[float, int]] = field(default_factory=list)
    peak: int = 0
    finished: float = 0.0

    def first_time_at(self, limit: int) -> float:
        return next(t for t, seen in self.limits if seen >= limit)

    def since(self, limit: int) -> list[int]:
        """The limits seen from the first answer at `limit` or more on."""
        first = next(i for i, (_, seen) in enumerate(self.limits) if seen >= limit)
        return [seen for _, seen in self.limits[first:]]

    def highest_after(self, moment: float) -> int:
        return max(seen for t, seen in self.limits if t >= moment)


async def burst(loop: SimulatedLoop, limiter: Limiter, tracker: Tracker, requests: int,
                callers: int = 200, during: Callable[[float], None] | None = None) -> Trace:
    """`requests` requests from `callers` concurrent callers, each through the limiter."""
    trace = Trace()
    todo = iter(range(requests))
    began = loop.time()

    async def caller() -> None:
        for _ in todo:
            started = await limiter.acquire()
            trace.peak = max(trace.peak, limiter.in_flight)
            await tracker.serve()
            limiter.answered(started)
            trace.limits.append((loop.time(), limiter.limit))
            if during is not None:
                during(loop.time())

    await asyncio.gather(*(caller() for _ in range(callers)))
    trace.finished = loop.time() - began
    return trace


# --- the ramp ----------------------------------------------------------------------------------


def test_the_default_limiter_finds_a_tracker_that_serves_16_at_once() -> None:
    async def main(loop: SimulatedLoop) -> tuple[Limiter, Trace]:
        limiter = Limiter(32, clock=loop.time)  # the configuration's default ceiling
        return limiter, await burst(loop, limiter, Tracker(capacity=16, service=0.05), 2000)

    limiter, trace = simulate(main)
    assert trace.limits[0][1] == 4  # it starts low
    assert trace.first_time_at(16) <= 0.5  # ten round trips at most
    # It stays there, with no more than a few requests queued at the tracker.
    assert min(trace.since(16)) >= 16 and max(trace.since(16)) <= 20
    assert trace.peak <= 20
    # 2,000 requests at 16 per 50 ms take 6.25 s at the very least.
    assert trace.finished <= 6.25 * 1.05
    assert limiter.baseline == pytest.approx(0.05)
    assert limiter.in_flight == 0 and limiter.waiting == 0


def test_the_limiter_never_passes_its_ceiling() -> None:
    async def main(loop: SimulatedLoop) -> tuple[Trace, Trace]:
        ten = await burst(loop, Limiter(10, clock=loop.time), Tracker(capacity=100), 600)
        one = await burst(loop, Limiter(1, clock=loop.time), Tracker(capacity=100), 30)
        return ten, one

    ten, one = simulate(main)
    assert max(seen for _, seen in ten.limits) == 10 and ten.peak == 10
    # A ceiling of 1 is strictly one at a time, from the first request.
    assert {seen for _, seen in one.limits} == {1} and one.peak == 1
    assert one.finished == pytest.approx(30 * 0.05)


def test_a_tracker_that_loses_capacity_is_followed_down_and_up_again() -> None:
    tracker = Tracker(capacity=16, service=0.05)

    def capacity(now: float) -> None:
        tracker.capacity = 4 if 3.0 <= now < 6.0 else 16

    async def main(loop: SimulatedLoop) -> Trace:
        return await burst(loop, Limiter(32, clock=loop.time), tracker, 3000, during=capacity)

    trace = simulate(main)
    assert trace.highest_after(2.0) >= 16
    # The latency rose past twice the baseline: cut, and cut again while that helped.
    settled = [seen for t, seen in trace.limits if 4.5 <= t < 6.0]
    assert max(settled) <= 4 + 5 and min(settled) >= 4
    # Capacity back: the limit climbs back to it.
    assert trace.highest_after(6.0) >= 16


def test_a_latency_that_rises_whatever_the_client_does_is_cut_once() -> None:
    tracker = Tracker(capacity=1000, service=0.05)

    def slower(now: float) -> None:
        tracker.service = 0.25 if now >= 2.0 else 0.05

    async def main(loop: SimulatedLoop) -> tuple[Limiter, Trace]:
        limiter = Limiter(12, clock=loop.time)
        return limiter, await burst(loop, limiter, tracker, 1200, during=slower)

    limiter, trace = simulate(main)
    assert trace.limits[0][1] == 4 and trace.highest_after(0) == 12
    # The cut did not bring the latency down, so it is not this client's queue: no more cuts,
    # and the client is not starved.
    assert {seen for t, seen in trace.limits if t >= 2.0} == {12, 8}
    assert limiter.limit == 8


# --- back-offs ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def fill(limiter: Limiter, count: int) -> list[float]:
    return [await limiter.acquire() for _ in range(count)]


async def test_429_and_503_cut_the_limit_once_per_round_trip() -> None:
    clock = Clock()
    limiter = Limiter(32, initial=20, clock=clock)
    sent = await fill(limiter, 20)
    clock.now += 0.05
    limiter.overloaded(sent[0])
    assert limiter.limit == 14  # 20 × 0.7
    # The others were sent before the cut: they say nothing new.
    for started in sent[1:10]:
        limiter.overloaded(started)
    assert limiter.limit == 14
    for started in sent[10:]:
        limiter.answered(started)  # sent before the cut: not a sample of the new limit
    assert limiter.latency == 0.0
    # A request sent after the cut that is refused too cuts again.
    again = await limiter.acquire()
    clock.now += 0.05
    limiter.overloaded(again)
    assert limiter.limit == 9
    for _ in range(10):
        started = await limiter.acquire()
        clock.now += 0.01
        limiter.overloaded(started)
    assert limiter.limit == 1  # never below one
    assert limiter.in_flight == 0


def answering(status: int | Exception) -> Callable[..., Awaitable[httpx.Response]]:
    async def send(*args: Any, **kwargs: Any) -> httpx.Response:
        if isinstance(status, Exception):
            raise status
        return httpx.Response(status)
    return send


@pytest.mark.parametrize("outcome, cut", [
    (200, False), (302, False), (404, False), (500, False), (429, True), (503, True),
    (504, True), (httpx.ConnectError("refused"), True), (httpx.ReadTimeout("slow"), True),
    (httpx.RemoteProtocolError("closed"), False),
])
async def test_which_outcomes_are_overload(outcome: int | Exception, cut: bool) -> None:
    limiter = Limiter(32, initial=10, clock=Clock())
    if isinstance(outcome, Exception):
        with pytest.raises(type(outcome)):
            await limiter.call(answering(outcome), "GET", "/")
    else:
        assert (await limiter.call(answering(outcome), "GET", "/")).status_code == outcome
    assert limiter.limit == (7 if cut else 10)
    assert limiter.in_flight == 0


async def test_a_cancelled_request_gives_its_slot_back_without_a_verdict() -> None:
    limiter = Limiter(4, clock=Clock())
    hanging = asyncio.Event()

    async def never(*args: Any, **kwargs: Any) -> httpx.Response:
        hanging.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    task = asyncio.ensure_future(limiter.call(never))
    await hanging.wait()
    assert limiter.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.in_flight == 0 and limiter.limit == 4


# --- waiting for a slot ------------------------------------------------------------------------


async def test_slots_go_first_come_first_served() -> None:
    limiter = Limiter(1, clock=Clock())
    order: list[int] = []
    first = await limiter.acquire()

    async def take(n: int) -> None:
        started = await limiter.acquire()
        order.append(n)
        await asyncio.sleep(0)
        limiter.answered(started)

    waiting = [asyncio.ensure_future(take(n)) for n in range(5)]
    await asyncio.sleep(0)
    assert limiter.waiting == 5
    limiter.answered(first)
    # A newcomer after the slot was freed still queues behind those already waiting.
    late = asyncio.ensure_future(take(99))
    await asyncio.gather(*waiting, late)
    assert order == [0, 1, 2, 3, 4, 99]
    assert limiter.in_flight == 0 and limiter.waiting == 0


async def test_a_caller_cancelled_while_waiting_takes_nothing() -> None:
    limiter = Limiter(2, initial=2, clock=Clock())
    held = await fill(limiter, 2)
    got: list[str] = []

    async def take(name: str) -> None:
        await limiter.acquire()
        got.append(name)

    a, b, c = (asyncio.ensure_future(take(n)) for n in "abc")
    await asyncio.sleep(0)
    b.cancel()
    await asyncio.sleep(0)
    assert b.cancelled() and limiter.waiting == 2 and limiter.in_flight == 2
    limiter.dropped()
    limiter.answered(held[1])
    await asyncio.gather(a, c)
    assert got == ["a", "c"] and limiter.in_flight == 2 and limiter.waiting == 0


async def test_a_slot_handed_to_a_caller_as_it_is_cancelled_goes_to_the_next() -> None:
    limiter = Limiter(1, clock=Clock())
    held = await limiter.acquire()
    got: list[str] = []

    async def take(name: str) -> None:
        await limiter.acquire()
        got.append(name)

    a, b = asyncio.ensure_future(take("a")), asyncio.ensure_future(take("b"))
    await asyncio.sleep(0)
    limiter.answered(held)  # the slot is a's now...
    a.cancel()  # ...but a is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await a
    await b
    assert got == ["b"] and limiter.in_flight == 1 and limiter.waiting == 0


def test_nonsense_settings_are_refused() -> None:
    for bad in ({"ceiling": 0}, {"ceiling": 4, "initial": 0}, {"ceiling": 4, "backoff": 1.0},
                {"ceiling": 4, "tolerance": 1.0}, {"ceiling": 4, "queue_low": 5.0}):
        with pytest.raises(ValueError):
            Limiter(**bad)


# --- the clients on it -------------------------------------------------------------------------


async def test_redmine_requests_go_through_its_limiter() -> None:
    in_flight = peak = 0
    refuse = True

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return httpx.Response(429 if refuse else 404)

    tracker = RedmineTracker(url="http://redmine.test", api_key="k", project="p",
                             max_in_flight=6, transport=httpx.MockTransport(handler))
    try:
        assert tracker.limiter.ceiling == 6 and tracker.limiter.limit == 4
        results = await asyncio.gather(*(tracker.get(str(n)) for n in range(1, 13)),
                                       return_exceptions=True)
        assert all(isinstance(r, TrackerUnavailable) for r in results)
        assert peak <= 4 and tracker.limiter.limit < 4  # 429: backed off
        assert tracker.limiter.in_flight == 0
    finally:
        await tracker.aclose()


async def test_glpi_requests_go_through_its_limiter() -> None:
    sim = GLPISimulator(user_token="tok")
    await sim.start()
    tracker = GLPITracker(url=sim.api_url, user_token="tok", max_in_flight=32)
    try:
        assert tracker.limiter.ceiling == 32 and tracker.limiter.limit == 4
        sim.latency_s = 0.01
        await asyncio.gather(*(tracker.get("1") for _ in range(12)), return_exceptions=True)
        assert 1 <= sim.peak_in_flight <= 4  # the limiter's start, not the ceiling
        await sim.set_down(True, refuse=False)  # 503 to everything
        with pytest.raises(TrackerUnavailable, match="503"):
            await tracker.get("1")
        assert tracker.limiter.limit < 4
    finally:
        await tracker.aclose()
        await sim.stop()


async def test_max_in_flight_1_is_strictly_one_at_a_time() -> None:
    sim = GLPISimulator(user_token="tok")
    await sim.start()
    tracker = build_trackers(Settings.model_validate({"trackers": {"glpi": {
        "kind": "glpi", "url": sim.api_url, "user_token": "tok", "max_in_flight": 1}}}))["glpi"]
    try:
        sim.latency_s = 0.005
        await asyncio.gather(*(tracker.get("1") for _ in range(10)), return_exceptions=True)
        assert sim.peak_in_flight == 1
    finally:
        await tracker.aclose()
        await sim.stop()


async def test_each_tracker_and_source_shows_its_limit_on_the_metrics() -> None:
    trackers = build_trackers(Settings.model_validate({"trackers": {
        "desk": {"kind": "redmine", "url": "http://redmine.test", "api_key": "k" * 40,
                 "project": "helpdesk"},
        "glpi": {"kind": "glpi", "url": "http://glpi.test/apirest.php", "user_token": "t",
                 "max_in_flight": 2}}}))
    sources = build_sources(AlertSettings.model_validate({"sources": {
        "zabbix": {"url": "http://zabbix.test", "api_token": "z" * 64}}}))
    try:
        assert trackers["desk"].limiter.ceiling == 32  # type: ignore[attr-defined]
        assert sources["zabbix"].limiter.ceiling == SOURCE_MAX_IN_FLIGHT  # type: ignore[attr-defined]
        metrics = Metrics()
        assert metrics.registry.get_sample_value(
            "switchboard_upstream_limit", {"system": "desk", "kind": "tracker"}) == 4
        assert metrics.registry.get_sample_value(
            "switchboard_upstream_limit", {"system": "glpi", "kind": "tracker"}) == 2
        assert metrics.registry.get_sample_value(
            "switchboard_upstream_limit_max", {"system": "glpi", "kind": "tracker"}) == 2
        assert metrics.registry.get_sample_value(
            "switchboard_upstream_limit", {"system": "zabbix", "kind": "source"}) == 4
        assert metrics.registry.get_sample_value(
            "switchboard_upstream_in_flight", {"system": "generic", "kind": "source"}) == 0
        trackers["desk"].limiter.limit = 17  # type: ignore[attr-defined]
        assert metrics.registry.get_sample_value(
            "switchboard_upstream_limit", {"system": "desk", "kind": "tracker"}) == 17
    finally:
        for tracker in trackers.values():
            await tracker.aclose()
        for source in sources.values():
            await source.aclose()
