"""Runs handlers off the receive loop: bounded concurrency, order kept within one conversation.

Each submitted job carries a key (the thread's root post id). Jobs with the same key run one after
another in submission order; jobs with different keys run concurrently, at most `concurrency` at a
time. The receive loop only appends to a queue, so a slow handler never holds up the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger("switchboard.dispatch")

Job = Callable[[], Awaitable[None]]


class Dispatcher:
    def __init__(self, concurrency: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.queued = 0

    def submit(self, key: str, job: Job) -> None:
        """Queue a job; never blocks."""
        self.queued += 1
        self._idle.clear()
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        task = asyncio.create_task(self._drain(key), name=f"conversation-{key}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def busy(self, key: str) -> bool:
        """Whether a job of this conversation is queued or running."""
        return key in self._queues

    def spawn(self, coro: Awaitable[None], name: str = "background") -> asyncio.Task[None]:
        """Track a background task so shutdown can wait for it."""
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s failed", name)

        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job = queue[0]
                async with self._slots:
                    try:
                        await job()
                    except Exception:
                        # Jobs report their own failures; this only guards the conversation.
                        log.exception("job for %s failed", key)
                queue.popleft()
                self.queued -= 1
        finally:
            self._queues.pop(key, None)

    async def join(self, timeout: float) -> bool:
        """Wait until nothing is queued or running; False when the timeout ran out first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
