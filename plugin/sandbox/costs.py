"""What each request costs a real Mattermost 5.36 server, paid in real CPU by the simulator.

The figures come from a real 5.36.1 Team Edition server with PostgreSQL 15 on a 2-core machine
shared by the server, its database, the bot and the load generator (rate limiting off), measured
during a burst of 1,000 user posts and 1,000 bot replies in their threads:

* Creating a post: about 2.5 ms of server CPU and 4 ms of database CPU (12.6–16.8 CPU-seconds
  for the 2,000 posts, about 25 database transactions each). Measured. The simulator's own
  handling of a post (parsing, storing, the websocket event, the answer) is part of that server
  CPU and is already spent on its event loop: about 1 ms a post, measured in the helpdesk
  benchmark (1.8–2.0 CPU-seconds of the simulator's process for 2,000 posts). So the workers
  burn the rest: 1.5 ms + 4 ms. (Tuned: burning the full 2.5 ms on top put the bare reference
  bot of the benchmark above the real server's range.)
* Editing a post: the same save path plus an edit-history row, so it is costed as a creation.
  Derived, not measured.
* A database transaction: 4 ms / 25 ≈ 0.16 ms. Every figure below that is not measured is a
  number of transactions at that price, plus a modest amount of server CPU:
  - deleting a post (the post, its replies, its file rows, about 10): 1.0 ms + 1.6 ms;
  - another write (a reaction, a status, a channel viewed, a membership, about 5): 0.5 ms +
    0.8 ms;
  - a read (one object or one page, 1–3 queries): 0.3 ms + 0.3 ms.
* A link preview (the fetch, parsing the page, one `LinkMetadata` row): 0.5 ms + 0.3 ms, on top
  of the creation. The fetch's own wait is real (the simulator fetches the page).
* The websocket (upgrade, frames) is costed at nothing: its share is inside a post's figure.

The cost is real CPU work, not a sleep: `CpuServer` runs it in a small pool of worker processes
(one per core by default) that are not pinned, so they compete for the cores with the bot and
everything else on the machine, as the server and its database did. A request waits for its
work to be done before it is answered; when every worker is busy, requests queue in order, so a
saturated server does not finish more posts sooner because more are in flight.

Off by default (functional tests stay fast): `MattermostSimulator(cost_model=CostModel())`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import time
from dataclasses import dataclass, field

#: The CPU the simulator's own process spends on a post (see above), not burnt again.
SIMULATOR_OWN_POST_S = 0.0010
#: What `CostModel.cost` accepts.
KINDS = ("post_create", "post_edit", "post_delete", "write", "read", "link_preview")


@dataclass(frozen=True)
class Cost:
    """The CPU one request takes: the server's own and its database's (seconds)."""

    app_s: float
    db_s: float

    @property
    def total_s(self) -> float:
        return self.app_s + self.db_s


def _default_costs() -> dict[str, Cost]:
    return {
        "post_create": Cost(0.0025 - SIMULATOR_OWN_POST_S, 0.0040),
        "post_edit": Cost(0.0025 - SIMULATOR_OWN_POST_S, 0.0040),
        "post_delete": Cost(0.0010, 0.0016),
        "write": Cost(0.0005, 0.0008),
        "read": Cost(0.0003, 0.0003),
        "link_preview": Cost(0.0005, 0.0003),
    }


@dataclass(frozen=True)
class CostModel:
    """Per-kind CPU costs, and how many worker processes pay them (None: one per core).

    `cpus` are the cores the workers may run on (None: every core of the machine, whatever the
    process that starts them is pinned to)."""

    costs: dict[str, Cost] = field(default_factory=_default_costs)
    workers: int | None = None
    cpus: frozenset[int] | None = None

    def cost(self, kind: str) -> Cost:
        return self.costs[kind]

    @staticmethod
    def kind_of(method: str, path: str) -> str | None:
        """The cost kind of a REST request (None: free, as the websocket upgrade)."""
        if path == "/api/v4/websocket":
            return None
        if method == "GET":
            return "read"
        if path == "/api/v4/posts" and method == "POST":
            return "post_create"
        if path.startswith("/api/v4/posts/") and method == "PUT":
            return "post_edit"
        if path.startswith("/api/v4/posts/") and path.count("/") == 4 and method == "DELETE":
            return "post_delete"
        if path.startswith("/hooks/") and method == "POST":
            return "post_create"
        return "write"


def _all_cores() -> set[int]:
    return set(range(os.cpu_count() or 1))


def _worker_init(cpus: frozenset[int] | None) -> None:
    # A spawned process inherits its parent's pinning; the server's workers use every core.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, set(cpus) if cpus else _all_cores())


def burn(seconds: float) -> tuple[int, float]:
    """Spend `seconds` of this process's CPU time (not wall time) computing; returns the pid and
    the CPU time spent. Under contention it takes longer in wall time, as real work does."""
    clock = time.process_time
    start = clock()
    deadline = start + seconds
    x = 1
    while clock() < deadline:
        for _ in range(200):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return os.getpid(), clock() - start


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (0.0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class CpuServer:
    """The worker processes that pay a `CostModel`'s costs, and what they have paid."""

    def __init__(self, model: CostModel) -> None:
        self.model = model
        self.workers = model.workers or os.cpu_count() or 1
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        #: CPU seconds the workers report having spent, by kind.
        self.charged: dict[str, float] = {}
        #: Requests paid for, by kind.
        self.counts: dict[str, int] = {}
        #: The worker processes seen so far.
        self.pids: set[int] = set()

    async def start(self) -> None:
        """Start the workers, all of them, before the first request needs one."""
        self._pool = concurrent.futures.ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init, initargs=(self.model.cpus,))
        loop = asyncio.get_running_loop()
        # Enough concurrent warm-up jobs that every worker is spawned and has run one.
        for _ in range(10):
            jobs = [loop.run_in_executor(self._pool, burn, 0.002) for _ in range(self.workers)]
            for pid, _spent in await asyncio.gather(*jobs):
                self.pids.add(pid)
            if len(self.pids) >= self.workers:
                break

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)

    async def charge(self, kind: str) -> None:
        """Do the CPU work of one request of `kind`; returns once it is done (queued first when
        every worker is busy)."""
        if self._pool is None:
            return
        seconds = self.model.cost(kind).total_s
        if seconds <= 0:
            return
        pid, spent = await asyncio.get_running_loop().run_in_executor(self._pool, burn, seconds)
        self.pids.add(pid)
        self.charged[kind] = self.charged.get(kind, 0.0) + spent
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def worker_cpu_seconds(self) -> float:
        """CPU time the workers have used, as the kernel counts it (start-up included)."""
        return sum(process_cpu_seconds(pid) for pid in self.pids)
