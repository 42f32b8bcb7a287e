"""`PostgresStore`: every repository over one PostgreSQL database, which replicas may share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

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
from .alerts import PostgresAlerts
from .basics import (
    PostgresClaims,
    PostgresCursors,
    PostgresKeyValue,
    PostgresLeases,
    PostgresReplicas,
)
from .engine import Connection, PostgresEngine, PostgresRepository
from .outbox import PostgresOutbox
from .schema import MIGRATIONS
from .tickets import PostgresTickets


async def _on_disk() -> None:
    """PostgreSQL answers a commit once its log is on disk: nothing is left to wait for."""


class PostgresStore:
    """`Store` on a PostgreSQL database (`postgresql://user@host:port/database`), shared by any
    number of replicas."""

    shared = True

    def __init__(self, dsn: str, *, liveness: Liveness | None = None) -> None:
        self.engine = PostgresEngine(dsn, liveness=liveness)
        self.liveness = self.engine.liveness
        claims, cursors = PostgresClaims(self.engine), PostgresCursors(self.engine)
        kv, leases = PostgresKeyValue(self.engine), PostgresLeases(self.engine)
        outbox, tickets = PostgresOutbox(self.engine), PostgresTickets(self.engine)
        alerts = PostgresAlerts(self.engine)
        replicas = PostgresReplicas(self.engine)
        self.claims: ClaimRepository = claims
        self.cursors: CursorRepository = cursors
        self.kv: KeyValue = kv
        self.leases: LeaseRepository = leases
        self.outbox: OutboxRepository = outbox
        self.tickets: TicketRepository = tickets
        self.alerts: AlertRepository = alerts
        self.replicas: ReplicaRepository = replicas
        self._repositories: tuple[PostgresRepository, ...] = (
            claims, cursors, kv, leases, outbox, tickets, alerts, replicas)

    @property
    def schema_version(self) -> int:
        return len(MIGRATIONS)

    async def open(self) -> None:
        await self.engine.open()

    async def close(self) -> None:
        await self.engine.close()

    def barrier(self) -> Callable[[], Awaitable[None]]:
        return _on_disk

    def locked(self, name: str) -> AbstractAsyncContextManager[None]:
        return self.engine.locked(name)

    async def prune(self, older_than: float) -> int:
        async def go(conn: Connection) -> int:
            return sum([await r.prune_rows(conn, older_than) for r in self._repositories])

        return await self.engine.run(go)
