"""The PostgreSQL engine under every repository: a pool of connections, one transaction per
request. Replicas share the database: the schema is brought up to date under an advisory lock
(one replica migrates, the others wait and find it done), and nothing at opening assumes the
database is this process's alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from ..records import StoreError, StoreInUse
from .schema import MIGRATIONS

log = logging.getLogger("switchboard.store")

T = TypeVar("T")
Connection = Any  # asyncpg.Connection (its stubs are not typed)

#: The advisory lock key that serializes migrations between replicas ("swbd").
_MIGRATION_LOCK = 0x73776264
#: The advisory lock an exclusive run holds for as long as it runs ("swbr").
RUN_LOCK = 0x73776272


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
    transaction, under an advisory lock; a database newer than `MIGRATIONS` is refused."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS switchboard_schema "
                           "(version INTEGER NOT NULL)")
        current = await conn.fetchval("SELECT max(version) FROM switchboard_schema") or 0
        if current > len(MIGRATIONS):
            raise StoreError(
                f"the database has schema version {current}, newer than this Switchboard "
                f"understands ({len(MIGRATIONS)}); upgrade Switchboard or use another database")
        for version in range(current, len(MIGRATIONS)):
            await conn.execute(MIGRATIONS[version])
            await conn.execute("INSERT INTO switchboard_schema(version) VALUES ($1)",
                               version + 1)


class PostgresEngine:
    """The pool, and requests run each in a transaction of its own."""

    def __init__(self, dsn: str, *, max_connections: int = 8, exclusive: bool = True) -> None:
        self.dsn = dsn
        self.max_connections = max_connections
        #: Whether this run must be the database's only one (until the other parts of the bot
        #: are safe with replicas): a second is refused at opening.
        self.exclusive = exclusive
        self._pool: Any = None
        self._holder: Any = None
        #: The connection holding this process's advisory locks (`locked`), and its turn.
        self._locks: Any = None
        self._locks_in_use = asyncio.Lock()

    async def open(self) -> None:
        try:
            if self.exclusive:
                self._holder = await asyncpg.connect(self.dsn)
                if not await self._holder.fetchval("SELECT pg_try_advisory_lock($1)",
                                                   RUN_LOCK):
                    raise StoreInUse(
                        "the PostgreSQL state store is in use by another running Switchboard; "
                        "one database serves one running bot for now: stop the other one, or "
                        "give this one a database of its own")
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.max_connections, command_timeout=30)
            async with self._pool.acquire() as conn:
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
        for attr in ("_holder", "_locks"):
            conn = getattr(self, attr)
            setattr(self, attr, None)
            if conn is not None:
                await conn.close()  # its locks go with it (the run's, any left held)

    @contextlib.asynccontextmanager
    async def locked(self, name: str) -> AsyncIterator[None]:
        """Hold the advisory lock of `name` (a 64-bit hash of it) while the block runs. One
        connection of its own holds this process's locks; taking one is tried, not waited on
        (a wait would hold that connection from every other lock and unlock), again and again
        until it is free."""
        if self._pool is None:
            raise RuntimeError("the state store is not open")
        if self._locks is None:
            self._locks = await asyncpg.connect(self.dsn)
        delay = 0.005
        while True:
            async with self._locks_in_use:
                if await self._locks.fetchval(
                        "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", name):
                    break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        try:
            yield
        finally:
            async with self._locks_in_use:
                await self._locks.fetchval(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))", name)

    async def run(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """`fn(connection)` in a transaction of its own; committed (and durable) when it
        returns."""
        if self._pool is None:
            raise RuntimeError("the state store is not open")
        async with self._pool.acquire() as conn, conn.transaction():
            return await fn(conn)


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
