"""This replica among those sharing the store: its signs of life, and who leads.

Every replica says it runs every `replicas.heartbeat` seconds (`ReplicaRepository.beat`), and
renews the leases of the outbox entries it is working on. One of them, the leader, holds the
`stream` lease: it reads Mattermost's event stream (or, in webhook-only mode, catches up over
REST), saves the channels' cursors, recovers the posts claimed by replicas that are gone, and
prunes. The others stand by: they serve the listener (clicks, dialogs, slash commands,
webhooks, alerts) and work the outbox like the leader. When the leader is gone, its lease runs
out after `replicas.takeover_after` seconds and the first standby to look takes it.

Two leaders for a moment (one cut off from the store while another took over) do no harm:
every post is claimed in the store before it is handled, so it is handled once whoever reads
it. The old leader steps down at its next beat, when it finds the lease taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .config import ReplicaSettings
from .store import ReplicaInfo, Store

log = logging.getLogger("switchboard.replicas")

#: The lease the leader holds.
LEADER_LEASE = "stream"
#: Seconds a leader stepping down waits for its stream to close before cancelling it.
STEP_DOWN_GRACE = 5.0
#: A leader with no stream for this many times `takeover_after` gives the lead up to another
#: replica, which may reach Mattermost.
STREAM_LOST_AFTER = 5


class Replica:
    """This replica: `run` beats until the bot's work is done, and runs `lead()` while it
    leads. A failure of the leading work (a token Mattermost refused) is `failure`, and sets
    `failed`: the bot then stops."""

    def __init__(self, store: Store, settings: ReplicaSettings, *, version: str,
                 lead: Callable[[], Coroutine[Any, Any, None]], stop_leading: Callable[[], bool],
                 rounds: Callable[[], Awaitable[None]], running: Callable[[], list[str]],
                 lease: float, stream_down: Callable[[], float] = lambda: 0.0) -> None:
        self.store = store
        self.settings = settings
        self.version = version
        self.id = store.liveness.owner
        #: `leader` or `standby`.
        self.role = "standby"
        #: The leader as last seen from here (this replica's id when it leads; "" unknown).
        self.leader = ""
        #: Where this replica's own listener is reached (known once it listens).
        self.listener = ""
        self.started_at = time.time()
        #: When this replica began to lead (wall clock), and its last beat that reached the
        #: store (monotonic; 0: none yet).
        self.leading_since = 0.0
        self.last_beat = 0.0
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()
        self._lead = lead
        self._stop_leading = stop_leading
        self._rounds_of = rounds
        self._running = running
        self._lease = lease
        self._stream_down = stream_down
        self._task: asyncio.Task[None] | None = None
        self._rounds: asyncio.Task[None] | None = None
        self._leaving: set[asyncio.Task[None]] = set()
        #: Not leading again before this (monotonic): it gave the lead up for a stream it could
        #: not keep up.
        self._rest_until = 0.0
        self._finished = asyncio.Event()

    @property
    def alive(self) -> bool:
        """Whether this replica's signs of life reach the store (the others count it in)."""
        return bool(self.last_beat) and \
            time.monotonic() - self.last_beat < self.settings.takeover_after

    async def run(self, stopping: asyncio.Event) -> None:
        """Beat until `stopping` (or the leading work failed), leading when this replica may.
        Then it hands the leadership over at once and goes on saying it runs, standing by,
        until `finish`: the work it still finishes (handlers, outbox entries) is not taken
        over meanwhile. Gone at the end, whatever happened."""
        try:
            while not stopping.is_set() and not self.failed.is_set():
                await self.beat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.settings.heartbeat)
            await self.resign()
            while not self._finished.is_set():
                try:
                    await self.announce()
                    await self.store.outbox.renew(self._running(), self._lease)
                except Exception as exc:
                    log.warning("cannot reach the state store for this replica's heartbeat: "
                                "%s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finished.wait(), self.settings.heartbeat)
        finally:
            # Gone: whatever it still held is taken over at once.
            try:
                await self.store.replicas.forget(self.id)
            except Exception as exc:
                log.warning("could not tell the other replicas this one stopped: %s", exc)

    def finish(self) -> None:
        """The stopping replica's work is done: `run` stops beating and says it is gone."""
        self._finished.set()

    async def announce(self) -> None:
        """Say this replica runs, before it claims or leases anything, and at each beat."""
        await self.store.replicas.beat(ReplicaInfo(
            self.id, self.role, self.version, self.listener, self.started_at, 0.0))
        self.last_beat = time.monotonic()

    async def beat(self) -> None:
        """One sign of life, first and never held up by other work: then the leases of what
        is being worked on, the leadership taken, kept or given up, and the leader's rounds
        started (in a task of their own)."""
        self._check_lead()
        try:
            await self.announce()
            await self.store.outbox.renew(self._running(), self._lease)
            may_lead = time.monotonic() >= self._rest_until and not self.failed.is_set()
            leads = may_lead and await self.store.leases.take(
                LEADER_LEASE, self.id, self.settings.takeover_after)
            if leads and self.role != "leader":
                await self._take_lead()
            elif not leads and self.role == "leader":
                log.warning("another replica leads now; this one stands by")
                self._step_down()
            if not leads:
                held = await self.store.leases.holder(LEADER_LEASE)
                self.leader = held[0] if held else ""
            elif await self._stream_lost():
                self._step_down()
                await self.store.leases.release(LEADER_LEASE, self.id)
            elif self._rounds is None or self._rounds.done():
                self._rounds = asyncio.create_task(self._do_rounds(), name="leader-rounds")
        except Exception as exc:
            # The store out of reach: the work goes on, and nobody here is judged gone
            # until everyone had time to be seen again.
            self.store.liveness.outage()
            log.warning("cannot reach the state store for this replica's heartbeat: %s", exc)

    async def _do_rounds(self) -> None:
        try:
            await self._rounds_of()
        except Exception:
            log.exception("the leader's rounds failed")

    async def _stream_lost(self) -> bool:
        """Whether this leader has had no stream for long while another replica runs: it
        gives the lead up (and rests a while), since that one may reach Mattermost."""
        down = self._stream_down()
        if down < self.settings.takeover_after * STREAM_LOST_AFTER:
            return False
        now = time.time()
        others = [r for r in await self.store.replicas.listed() if r.id != self.id
                  and now - r.seen_at < self.settings.takeover_after]
        if not others:
            return False
        log.warning("no event stream for %.0f s: this replica gives the lead up to another",
                    down)
        self._rest_until = time.monotonic() + self.settings.takeover_after * 3
        return True

    async def _take_lead(self) -> None:
        previous = await self._previous_leader()
        self.role, self.leader, self.leading_since = "leader", self.id, time.time()
        if previous:
            log.info("this replica leads now (took over from %s): reading Mattermost's events",
                     previous)
        else:
            log.info("this replica leads: reading Mattermost's events")
        self._task = asyncio.create_task(self._lead(), name="leading")

    async def _previous_leader(self) -> str:
        others = [r for r in await self.store.replicas.listed()
                  if r.id != self.id and r.role == "leader"]
        return others[-1].id if others else ""

    def _check_lead(self) -> None:
        """The leading work ended by itself: a failure stops the bot, an end leads again."""
        task = self._task
        if task is None or not task.done():
            return
        self._task = None
        self.role, self.leading_since = "standby", 0.0
        if not task.cancelled() and task.exception() is not None:
            self.failure = task.exception()
            self.failed.set()

    def _step_down(self) -> None:
        """Stand by: the leading work is told to stop, and cancelled if it has not within
        `STEP_DOWN_GRACE`; the beat does not wait for it."""
        self.role, self.leading_since = "standby", 0.0
        task, self._task = self._task, None
        if task is None:
            return
        graceful = self._stop_leading()

        async def leave() -> None:
            if graceful:
                await asyncio.wait({task}, timeout=STEP_DOWN_GRACE)
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if not task.cancelled() and task.exception() is not None:
                log.warning("leading ended with %r", task.exception())

        leaving = asyncio.create_task(leave(), name="stepping-down")
        self._leaving.add(leaving)
        leaving.add_done_callback(self._leaving.discard)

    async def resign(self) -> None:
        """Stop leading, and let another replica lead at once."""
        self._check_lead()
        self._step_down()
        if self._leaving:
            await asyncio.gather(*self._leaving, return_exceptions=True)
        try:
            await self.store.leases.release(LEADER_LEASE, self.id)
        except Exception as exc:
            log.warning("could not hand the leadership over: %s", exc)
