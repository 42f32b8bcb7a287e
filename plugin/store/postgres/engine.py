"""The PostgreSQL engine under every repository: a pool of connections, one transaction per
request. Replicas share the database: the schema is brought up to date under an advisory lock
(one replica migrates, the others wait and find it done), and nothing at opening assumes the
database is this process's alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import asyncpg  # type: ignore[import-untyped]

from ..records import Liveness, StoreError, StoreInUse
from .schema import MIGRATIONS

log = logging.getLogger("switchboard.store")

T = TypeVar("T")
Connection = Any  # asyncpg.Connection (its stubs are not typed)

#: The advisory lock key that serializes migrations between replicas ("swbd").
_MIGRATION_LOCK = 0x73776264
#: The advisory lock a bot of the release before replicas held while it ran, alone ("swbr").
_ALONE_LOCK = 0x73776272



def is_outage(exc: BaseException) -> bool:
    """Whether `exc` is the database going away: its connections cut (a restart, a failover),
    refused while it starts or stops, or out of reach. A request that meets one may be tried
    again."""
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc)  # the pool's connection was cut; others are misuse
    if isinstance(exc, asyncpg.QueryCanceledError):
        return False  # a statement timeout: the database answers, the request was too slow
    # A connection the server cut while a request was on its way is left in a state it cannot
    # leave ("cannot switch to state …"): nothing more was sent on it.
    return isinstance(exc, (OSError, TimeoutError, asyncpg.PostgresConnectionError,
                            asyncpg.exceptions.OperatorInterventionError,
                            asyncpg.InternalClientError))


def rowcount(status: str) -> int:
    """The rows a command changed, from its status (`INSERT 0 1`, `UPDATE 3`, `DELETE 0`)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def connect(dsn: str) -> Connection:
    """A connection of its own (a command-line tool's); `StoreError` when out of reach."""
    try:
        return await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StoreError(f"cannot reach the PostgreSQL state store: {exc}") from exc


async def migrate(conn: Connection) -> None:
    """Bring the schema (`switchboard_schema.version`) up to date, one migration per
    transaction, under an advisory lock. Migrations only add (tables, columns with defaults),
    so a replica runs on a schema one version newer than its own, as in a rolling upgrade
    where the first new replica migrated; a database newer still is refused."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS switchboard_schema "
                           "(version INTEGER NOT NULL)")
        current = await conn.fetchval("SELECT max(version) FROM switchboard_schema") or 0
        if current > len(MIGRATIONS) + 1:
            raise StoreError(
                f"the database has schema version {current}, newer than this Switchboard "
                f"understands ({len(MIGRATIONS)}, or one more during a rolling upgrade); "
                "upgrade Switchboard or use another database")
        if current > len(MIGRATIONS):
            log.warning("the database has schema version %d, one newer than this "
                        "Switchboard's (%d): running on it until this replica is upgraded",
                        current, len(MIGRATIONS))
        for version in range(current, len(MIGRATIONS)):
            await conn.execute(MIGRATIONS[version])
            await conn.execute("INSERT INTO switchboard_schema(version) VALUES ($1)",
                               version + 1)


async def _kept(conn: Connection) -> None:
    """A connection goes back to the pool as it is: requests leave no session state behind (no
    settings, cursors, listeners or advisory locks: `locked` has a connection of its own), so
    the pool's reset query, a round trip per request, has nothing to undo."""


class PostgresEngine:
    """The pool, and requests run each in a transaction of its own."""

    def __init__(self, dsn: str, *, max_connections: int = 8, outage_grace: float = 60.0,
                 liveness: Liveness | None = None) -> None:
        self.dsn = dsn
        self.max_connections = max_connections
        #: How long a request waits for a database that went away (a restart, a failover)
        #: before it fails with `StoreError`.
        self.outage_grace = outage_grace
        #: This run among the replicas: the owner its claims and leases are written with.
        self.liveness = liveness or Liveness()
        self._pool: Any = None
        #: The connection holding this process's advisory locks (`locked`), and its turn.
        self._locks: Any = None
        self._locks_in_use = asyncio.Lock()

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=0, max_size=self.max_connections, command_timeout=30,
                reset=_kept)
            async with self._pool.acquire() as conn:
                if await conn.fetchval(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                        "AND classid = 0 AND objid = $1 AND granted)", _ALONE_LOCK):
                    # It would take this replica's claims and leases for its own, and this
                    # one its, as if it were gone.
                    raise StoreInUse(
                        "the PostgreSQL state store is in use by a Switchboard of the release "
                        "before replicas, which runs alone: stop it, then start this one")
                await migrate(conn)
        except (OSError, asyncpg.PostgresError) as exc:
            await self.close()
            raise StoreError(f"cannot open the PostgreSQL state store: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        conn, self._locks = self._locks, None
        if conn is not None:
            await conn.close()  # its locks go with it (any left held)

    @contextlib.asynccontextmanager
    async def locked(self, name: str) -> AsyncIterator[None]:
        """Hold the advisory lock of `name` (a 64-bit hash of it) while the block runs. One
        connection of its own holds this process's locks; taking one is tried, not waited on
        (a wait would hold that connection from every other lock and unlock), again and again
        until it is free."""
        if self._pool is None:
            raise RuntimeError("the state store is not open")
        deadline = time.monotonic() + self.outage_grace
        delay = 0.005
        while True:
            async with self._locks_in_use:
                try:
                    if self._locks is None or self._locks.is_closed():
                        self._locks = await asyncpg.connect(self.dsn, timeout=10)
                    if await self._locks.fetchval(
                            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", name):
                        break
                except Exception as exc:
                    if not is_outage(exc) or time.monotonic() > deadline:
                        raise StoreError(f"cannot lock {name!r} in the PostgreSQL state "
                                         f"store: {type(exc).__name__}: {exc}") from exc
                    self._locks = None  # cut: its locks went with it; a new one is made
                    self.liveness.outage()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        try:
            yield
        finally:
            async with self._locks_in_use:
                try:
                    if self._locks is not None:  # None: cut, and the lock went with it
                        await self._locks.fetchval(
                            "SELECT pg_advisory_unlock(hashtextextended($1, 0))", name)
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    self._locks = None  # the lock went with the connection

    async def run(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """`fn(connection)` in a transaction of its own; committed (and durable) when it
        returns. A database that goes away meanwhile (restarted, failed over) is waited for,
        up to `outage_grace` seconds, and the transaction run again from the start: nothing
        of a transaction cut short was committed."""
        return await self._attempt(fn, True)

    async def one(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """`run` for a request of one statement, which PostgreSQL runs as a transaction of its
        own: no BEGIN and COMMIT of ours, two round trips fewer."""
        return await self._attempt(fn, False)

    async def _attempt(self, fn: Callable[[Connection], Awaitable[T]], transaction: bool) -> T:
        if self._pool is None:
            raise RuntimeError("the state store is not open")
        deadline = time.monotonic() + self.outage_grace
        delay = 0.05
        while True:
            committed, result = False, cast(T, None)
            pool = self._pool
            if pool is None:
                raise StoreError("the PostgreSQL state store was closed")
            try:
                async with pool.acquire() as conn:
                    if transaction:
                        async with conn.transaction():
                            result = await fn(conn)
                    else:
                        result = await fn(conn)
                    committed = True
                return result
            except Exception as exc:
                if committed:
                    # Done; only handing the connection back to the pool failed (cut after
                    # the commit): the answer stands, and must not be asked again.
                    log.debug("a connection was lost after its commit: %s", exc)
                    return result
                if not is_outage(exc):
                    raise
                if self._pool is None or time.monotonic() + delay > deadline:
                    raise StoreError(f"the PostgreSQL state store is out of reach: "
                                     f"{type(exc).__name__}: {exc}") from exc
                self.liveness.outage()
                if delay == 0.05:
                    log.warning("the PostgreSQL state store went away (%s: %s); trying again",
                                type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)


class PostgresRepository:
    """A repository over the engine: its public methods are one request (one transaction)
    each; `prune_rows` is its step of the store-wide pruning."""

    def __init__(self, engine: PostgresEngine) -> None:
        self._engine = engine

    async def prune_rows(self, conn: Connection, older_than: float) -> int:
        """Delete this repository's finished rows from before `older_than`; how many went."""
        return 0

    async def prune(self, older_than: float) -> int:
        return await self._engine.run(lambda conn: self.prune_rows(conn, older_than))
