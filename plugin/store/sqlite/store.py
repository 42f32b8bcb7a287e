"""`SQLiteStore`: every repository over one embedded SQLite file."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from ..protocols import (
    AlertRepository,
    ClaimRepository,
    CursorRepository,
    KeyValue,
    LeaseRepository,
    OutboxRepository,
    ReplicaRepository,
    TicketRepository,
)
from ..records import Liveness
from .alerts import SQLiteAlerts
from .claims import SQLiteClaims
from .engine import SQLiteEngine, SQLiteRepository
from .outbox import SQLiteOutbox
from .schema import MIGRATIONS
from .settings import LocalReplicas, SQLiteCursors, SQLiteKeyValue, SQLiteLeases
from .tickets import SQLiteTickets


class SQLiteStore:
    """`Store` on an embedded SQLite file, which it assumes to be its own: opening it voids the
    leases of an earlier run."""

    #: One process at a time (the file is locked while open).
    shared = False

    def __init__(self, path: str | Path, *, liveness: Liveness | None = None) -> None:
        self.engine = SQLiteEngine(path)
        if liveness is not None:
            self.engine.liveness = liveness
        self.liveness = self.engine.liveness
        claims = SQLiteClaims(self.engine)
        cursors = SQLiteCursors(self.engine)
        kv = SQLiteKeyValue(self.engine)
        leases = SQLiteLeases(self.engine)
        outbox = SQLiteOutbox(self.engine)
        tickets = SQLiteTickets(self.engine)
        alerts = SQLiteAlerts(self.engine)
        self.claims: ClaimRepository = claims
        self.cursors: CursorRepository = cursors
        self.kv: KeyValue = kv
        self.leases: LeaseRepository = leases
        self.outbox: OutboxRepository = outbox
        self.tickets: TicketRepository = tickets
        self.alerts: AlertRepository = alerts
        self.replicas: ReplicaRepository = LocalReplicas()
        self._repositories: tuple[SQLiteRepository, ...] = (
            claims, cursors, kv, leases, outbox, tickets, alerts)

    @property
    def path(self) -> str:
        return self.engine.path

    @property
    def schema_version(self) -> int:
        return len(MIGRATIONS)

    async def open(self) -> None:
        def prepare(db: sqlite3.Connection) -> None:
            for repository in self._repositories:
                repository.on_open(db)

        await self.engine.open(prepare)

    async def close(self) -> None:
        await self.engine.close()

    def barrier(self) -> Callable[[], Awaitable[None]]:
        return self.engine.barrier()

    @contextlib.asynccontextmanager
    async def locked(self, name: str) -> AsyncIterator[None]:
        """The embedded store serves one process, which serializes itself: nothing to hold."""
        yield

    async def prune(self, older_than: float) -> int:
        # One request for all: pruning costs one round trip and one commit.
        def go(db: sqlite3.Connection) -> int:
            return sum(r.prune_rows(db, older_than) for r in self._repositories)

        return await self.engine.run(go)
