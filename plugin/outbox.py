"""The outbox: requests to outside systems, durable until they are done.

A request is written to the store before anyone is told it was accepted; a worker then carries it
out, retrying with backoff while the outside system is down. Executors are registered per kind and
drive an entry through its states themselves (`queued` → `filed` → `done`, or `failed`), so a
request interrupted at any point resumes at the right step after a restart.

Each entry's run logs under the subject its payload names (see `subject_of`), so every line about
a ticket's filing carries the chat post it came from and every line about an alert its key.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable

from . import logs
from .store import OutboxEntry, Store

log = logging.getLogger("switchboard.outbox")

Executor = Callable[[OutboxEntry], Awaitable[None]]


class Retry(Exception):
    """The request may succeed later; the message says why it did not now.

    Any exception whose `retryable` attribute is true (a tracker or Mattermost that is down)
    counts as a Retry too; every other exception fails the entry for good."""


def subject_of(payload: dict[str, object]) -> tuple[str, str]:
    """(post id, alert key) an entry concerns ("" where none): its payload's `post_id`, and
    its `alert_key` or else `source:key` (how the alerts feature names an incident)."""
    post = payload.get("post_id")
    alert = payload.get("alert_key")
    if not alert:
        source, key = payload.get("source"), payload.get("key")
        alert = f"{source}:{key}" if source and key else ""
    return (str(post) if post else "", str(alert) if alert else "")


class Outbox:
    def __init__(self, store: Store, *, concurrency: int = 16, retry_initial: float = 5.0,
                 retry_max: float = 300.0, lease: float = 120.0) -> None:
        self.store = store
        self.concurrency = concurrency
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.lease = lease
        #: Seconds to wait after a wake-up so that one read of the store serves a burst.
        self.coalesce = 0.005
        self._executors: dict[str, Executor] = {}
        self._on_retry: dict[str, Callable[[OutboxEntry, str], Awaitable[None]]] = {}
        self._kick = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._releases: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        #: The worker runs: a new entry may start at once, without waiting for a read.
        self._working = False
        #: The worker's last look found no free slot for what may be due: an entry ending
        #: wakes it (otherwise nothing is owed to a free slot).
        self._full = False
        self._context = contextvars.copy_context()

    def register(self, kind: str, executor: Executor,
                 on_retry: Callable[[OutboxEntry, str], Awaitable[None]] | None = None) -> None:
        """`executor` carries out entries of `kind`; `on_retry` hears of each retryable failure."""
        self._executors[kind] = executor
        if on_retry is not None:
            self._on_retry[kind] = on_retry

    async def put(self, key: str, kind: str, payload: dict[str, object], *,
                  due_at: float | None = None) -> bool:
        """Durably queue a request (once per key) and start it, or wake the worker when it is
        busy; one `due_at` a time to come is carried out then (to within a second)."""
        if kind not in self._executors:
            raise ValueError(f"no executor for outbox entries of kind {kind!r}")
        if due_at is not None and due_at > time.time():
            return await self.store.outbox.put(key, kind, payload, due_at=due_at)
        if self._working and len(self._running) < self.concurrency * 2:
            # Written leased to this run and started from here: no read of the store, no
            # wait for the worker's next turn.
            entry = await self.store.outbox.put_leased(key, kind, payload, self.lease)
            if entry is not None:
                # In the worker's context, as if it had read the entry: nothing of the caller's
                # (its language, its log subject, what its requests wait for) comes along.
                self._start(entry, self._context)
            return entry is not None
        inserted = await self.store.outbox.put(key, kind, payload)
        self._kick.set()
        return inserted

    def running(self) -> list[str]:
        """The entries being worked on here (their leases are renewed while they run)."""
        return list(self._running)

    def kick(self) -> None:
        """Wake the worker: something was queued behind its back (e.g. re-queued)."""
        self._kick.set()

    def backoff(self, attempts: int) -> float:
        delay: float = min(self.retry_initial * 2.0 ** attempts, self.retry_max)
        return delay * (0.8 + 0.4 * random.random())

    async def run(self, stopping: asyncio.Event) -> None:
        """Work until `stopping` is set; in-flight entries finish or resume after a restart."""
        async def relay() -> None:  # stopping wakes the worker like any kick
            await stopping.wait()
            self._kick.set()

        relay_task = asyncio.create_task(relay(), name="outbox-stopping")
        self._context = contextvars.copy_context()
        self._working = True
        try:
            await self._work(stopping)
        finally:
            self._working = False
            relay_task.cancel()
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=5)
        if self._running:
            # Cut short, as a crash would: each resumes (looking first) wherever it is
            # taken up again, and none runs on here once this replica says it is gone.
            left = list(self._running.values())
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    async def _work(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self._kick.clear()
            free = self.concurrency * 2 - len(self._running)
            self._full = free <= 0
            if free > 0:
                try:
                    due = await self.store.outbox.due(time.time(), self.lease, free)
                except Exception:
                    log.exception("cannot read the outbox")
                    due = []
                for entry in due:
                    if entry.key in self._running:
                        # Queued again while its last run is ending (a re-render): the read
                        # leased it, so release it once that run is over.
                        self._again.add(entry.key)
                    else:
                        self._start(entry)
                if len(due) >= free:
                    await asyncio.sleep(0)
                    continue
            try:
                async with asyncio.timeout(1.0):  # entries retried later come due meanwhile
                    await self._kick.wait()
            except TimeoutError:
                continue
            if not stopping.is_set():
                # Requests come in bursts: gather a few before reading the store again.
                await asyncio.sleep(self.coalesce)

    def _start(self, entry: OutboxEntry, context: contextvars.Context | None = None) -> None:
        key = entry.key
        task = asyncio.create_task(self._process(entry), name=f"outbox-{key}",
                                   context=None if context is None else context.copy())
        self._running[key] = task

        def forget(_: asyncio.Task[None]) -> None:
            self._running.pop(key, None)
            if key in self._again:
                self._again.discard(key)
                release = asyncio.ensure_future(self._release(key))
                self._releases.add(release)
                release.add_done_callback(self._releases.discard)
            if self._full:
                self._kick.set()  # a slot is free for what waited

        task.add_done_callback(forget)

    async def _release(self, key: str) -> None:
        try:
            await self.store.outbox.update(key, release=True)  # due again at once
        except Exception:
            log.exception("cannot release outbox entry %s", key)
        self._kick.set()

    async def _process(self, entry: OutboxEntry) -> None:
        # Runs as a task of its own: the subject stays with this entry's run.
        logs.set_subject(*subject_of(entry.payload))
        executor = self._executors.get(entry.kind)
        if executor is None:
            log.error("outbox entry %s has unknown kind %s", entry.key, entry.kind)
            await self.store.outbox.update(entry.key, state="failed", error="unknown kind")
            return
        async with self._slots:
            try:
                log.debug("%s %s: attempt %d", entry.kind, entry.key, entry.attempts + 1)
                await executor(entry)
            except Exception as exc:
                if not isinstance(exc, Retry) and not getattr(exc, "retryable", False):
                    log.exception("%s %s failed", entry.kind, entry.key)
                    await self.store.outbox.update(entry.key, state="failed", error=str(exc))
                    return
                delay = self.backoff(entry.attempts)
                log.warning("%s %s not done (%s); retrying in %.0f s", entry.kind, entry.key,
                            exc, delay)
                await self.store.outbox.update(entry.key, retry_at=time.time() + delay,
                                               error=str(exc))
                hook = self._on_retry.get(entry.kind)
                if hook is not None:
                    try:
                        await hook(entry, str(exc))
                    except Exception:
                        log.exception("retry notice for %s failed", entry.key)
