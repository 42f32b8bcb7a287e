"""How many requests a client keeps on the wire at once to one outside system: found, not set.

Every tracker and monitoring client holds one `Limiter`. It starts low (`initial`, 4) and learns
from the answers how many requests the system serves at once without making them wait:

- Latency. Answers are counted in windows (at least `limit` answers each, and `min_window`). A
  window's mean latency, set against the best window mean seen (the `baseline`), estimates how
  many of this client's requests wait in the system's queue instead of being worked on:
  `limit × (1 − baseline / mean)`. While fewer than `queue_low` wait and the window used every
  slot, the limit rises by one (additive increase); while more than `queue_high` wait, it falls
  by one. When the latency, smoothed over windows (`smoothing`), passes `tolerance` × the
  baseline, the limit is cut to `backoff` × itself (multiplicative decrease), and cut again only
  while the cuts bring the latency down: a latency that stays up whatever this client does is
  not its queue.
- Start. Until the first window shows a queue, the limit grows by half at a time instead of by
  one, each step judged on the requests sent at the new limit only.
- Refusals. A 429, 503 or 504 answer, a timeout or a connection that could not be made cuts the
  limit the same way, at most once per round trip: what was sent before a cut says nothing new.

The limit never leaves 1..`ceiling` (the client's `max_in_flight`). At 1 this client has no
queue of its own, so the latency seen there becomes the new baseline, and the start is made
again: a system that became slower for good is learnt anew.

Callers wait for a slot first come, first served; a caller cancelled while waiting takes
nothing, and a slot handed to a caller just as it is cancelled goes to the next one. The clock
is injected (`clock=`), so a test can drive the limiter on simulated time. Per request it costs
a few arithmetic operations, and a queue entry when the caller has to wait.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import ParamSpec, Protocol, TypeVar

import httpx

__all__ = ["OVERLOAD_STATUSES", "Limiter"]

P = ParamSpec("P")


class _Answer(Protocol):
    @property
    def status_code(self) -> int: ...


R = TypeVar("R", bound=_Answer)

#: Answers that say "too many at once" (or that a proxy in front gave up waiting).
OVERLOAD_STATUSES = frozenset({429, 503, 504})
#: After a cut for latency, the latency must fall below this share of what it was for the cut
#: to count as helping (and another to be made).
_HELPED = 0.85


class Limiter:
    """An adaptive bound on requests in flight, between 1 and `ceiling`; see the module's text.

    `limit` is the bound now, `in_flight` the requests holding a slot, `waiting` the callers
    queued for one. `latency` is the windows' mean latency, smoothed, and `baseline` the best
    window mean seen (seconds; 0 before the first window)."""

    __slots__ = ("__weakref__", "_backoff", "_changed_at", "_clock", "_count", "_cut_at",
                 "_cut_latency", "_min_window", "_peak", "_queue_high", "_queue_low",
                 "_smoothing", "_starting", "_tolerance", "_total", "_waiters", "baseline",
                 "ceiling", "in_flight", "latency", "limit")

    def __init__(self, ceiling: int, *, initial: int = 4, min_window: int = 8,
                 tolerance: float = 2.0, queue_low: float = 2.0, queue_high: float = 4.0,
                 backoff: float = 0.7, smoothing: float = 0.3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ceiling < 1:
            raise ValueError("max_in_flight (the limiter's ceiling) must be at least 1")
        if initial < 1:
            raise ValueError("the initial limit must be at least 1")
        if not 0 < backoff < 1 or not 0 < smoothing <= 1:
            raise ValueError("backoff must be between 0 and 1, smoothing above 0 and at most 1")
        if tolerance <= 1 or queue_low > queue_high:
            raise ValueError("tolerance must exceed 1, and queue_low not exceed queue_high")
        self.ceiling = ceiling
        self.limit = min(initial, ceiling)
        self.in_flight = 0
        self.latency = 0.0
        self.baseline = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._clock = clock
        self._min_window = max(1, min_window)
        self._tolerance = tolerance
        self._queue_low = queue_low
        self._queue_high = queue_high
        self._backoff = backoff
        self._smoothing = smoothing
        self._count = 0
        self._total = 0.0
        self._peak = 0
        self._cut_at = -math.inf
        self._changed_at = -math.inf
        self._cut_latency = 0.0
        self._starting = True

    def __repr__(self) -> str:
        return (f"Limiter(limit={self.limit}, ceiling={self.ceiling}, "
                f"in_flight={self.in_flight}, waiting={self.waiting})")

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def pool_limits(self) -> httpx.Limits:
        """An HTTP pool sized to the ceiling: a connection for every request that may be on
        the wire at once, kept alive between them."""
        return httpx.Limits(max_connections=self.ceiling,
                            max_keepalive_connections=self.ceiling)

    # ------------------------------------------------------------------ slots

    async def acquire(self) -> float:
        """Wait for a slot (first come, first served); the moment it was taken, to give back to
        `answered`, `overloaded` or `dropped` — exactly one of them, once."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            if self.in_flight > self._peak:
                self._peak = self.in_flight
            return self._clock()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                try:
                    self._waiters.remove(waiter)
                except ValueError:  # already passed over by `_wake`
                    pass
            else:  # handed a slot in the same moment it was cancelled: the next one takes it
                self._free()
            raise
        return self._clock()

    def _free(self) -> None:
        self.in_flight -= 1
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.in_flight += 1
            if self.in_flight > self._peak:
                self._peak = self.in_flight
            waiter.set_result(None)

    def answered(self, started: float) -> None:
        """The request taken at `started` was answered: its latency counts."""
        now = self._clock()
        self._free()
        if started < self._changed_at:
            return  # sent before the last cut (or start-up step): it measured the old limit
        self._count += 1
        self._total += now - started
        if self._count >= self.limit and self._count >= self._min_window:
            self._close_window()

    def overloaded(self, started: float) -> None:
        """The request taken at `started` was refused for load (429, 503, 504), timed out or
        could not connect: the limit is cut, unless it already was since `started`."""
        now = self._clock()
        self._free()
        if started >= self._cut_at:
            self._cut(now)

    def dropped(self) -> None:
        """The slot is given back without a verdict (a cancelled request, another error)."""
        self._free()

    # ------------------------------------------------------------------ the limit

    def _close_window(self) -> None:
        mean = self._total / self._count
        saturated = self._peak >= self.limit
        self._count = 0
        self._total = 0.0
        self._peak = self.in_flight
        if mean <= 0:
            return
        if self.limit <= 1 or self.baseline <= 0:
            # Nothing of this client's own waits at one in flight: this is the system's latency.
            self.baseline = self.latency = mean
            self._starting = True
        else:
            self.baseline = min(self.baseline, mean)
            # Smoothed over windows: a stall of this process lasts a window or two, and must not
            # pass for a slower system.
            self.latency += self._smoothing * (mean - self.latency)
        if self.latency > self._tolerance * self.baseline:
            # Cut again only while cutting helps: a latency that did not fall after the last
            # cut is not this client's doing, and cutting further would only starve it.
            if self._cut_latency <= 0 or mean < _HELPED * self._cut_latency:
                self._cut_latency = mean
                self._cut(self._clock())
            return
        self._cut_latency = 0.0
        queued = self.limit * (1.0 - self.baseline / mean)
        if self._starting and queued < self._queue_low / 2:
            if saturated and self.limit < self.ceiling:
                # Starting: half as much again, judged on requests sent at the new limit only.
                self._set(min(self.ceiling, self.limit + max(1, self.limit // 2)))
                self._changed_at = self._clock()
            return
        self._starting = False
        if queued < self._queue_low:
            if saturated and self.limit < self.ceiling:
                self._set(self.limit + 1)
        elif queued > self._queue_high and self.limit > 1:
            self._set(self.limit - 1)

    def _set(self, limit: int) -> None:
        self.limit = limit
        if self._waiters:
            self._wake()

    def _cut(self, now: float) -> None:
        self._starting = False
        self.limit = max(1, min(self.limit - 1, int(self.limit * self._backoff)))
        self._cut_at = self._changed_at = now
        self._count = 0
        self._total = 0.0
        self._peak = self.in_flight

    # ------------------------------------------------------------------ for HTTP clients

    async def call(self, send: Callable[P, Awaitable[R]], *args: P.args,
                   **kwargs: P.kwargs) -> R:
        """`await send(*args, **kwargs)` in a slot, and its outcome told to the limiter: a 2xx or
        3xx answer is a latency sample; 429, 503 and 504, timeouts and failed connections are
        overload; anything else (another answer, another error, a cancellation) gives the slot
        back without a verdict. The answer is returned, the error raised, as they came."""
        started = await self.acquire()
        try:
            response = await send(*args, **kwargs)
        except (httpx.TimeoutException, httpx.ConnectError):
            self.overloaded(started)
            raise
        except BaseException:
            self.dropped()
            raise
        status = response.status_code
        if status < 400:
            self.answered(started)
        elif status in OVERLOAD_STATUSES:
            self.overloaded(started)
        else:
            self.dropped()
        return response
