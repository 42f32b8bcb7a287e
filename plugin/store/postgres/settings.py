"""Settings (the `kv` table) of a PostgreSQL state store read or changed from a command-line
tool, beside running replicas."""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]

from ..records import ReplicaInfo, StoreError
from .basics import seen_since
from .engine import connect, migrate


async def read_setting(dsn: str, key: str) -> str | None:
    """A setting's value; None when it (or the schema) does not exist yet."""
    conn = await connect(dsn)
    try:
        return await conn.fetchval("SELECT value FROM kv WHERE key = $1", key)  # type: ignore
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()


async def change_setting(dsn: str, key: str, change: Callable[[str | None], str]) -> None:
    """Set a setting to `change(its current value)`, in one transaction that holds the row
    (the schema is made first when the database is new)."""
    conn = await connect(dsn)
    try:
        await migrate(conn)
        async with conn.transaction():
            await conn.execute("INSERT INTO kv(key, value) VALUES ($1, '') "
                               "ON CONFLICT (key) DO NOTHING", key)
            current = await conn.fetchval("SELECT value FROM kv WHERE key = $1 FOR UPDATE", key)
            await conn.execute("UPDATE kv SET value = $2 WHERE key = $1", key,
                               change(current or None))
    except asyncpg.PostgresError as exc:
        raise StoreError(f"the PostgreSQL state store refused the change: {exc}") from exc
    finally:
        await conn.close()


#: A replica seen this recently is running (it says so every second or so).
RUNNING_WITHIN = 15.0


async def probe(dsn: str) -> tuple[int, int]:
    """The database's schema version (0: none yet), and how many replicas run on it."""
    conn = await connect(dsn)
    try:
        version = running = 0
        if await conn.fetchval("SELECT to_regclass('switchboard_schema') IS NOT NULL"):
            version = await conn.fetchval(
                "SELECT coalesce(max(version), 0) FROM switchboard_schema")
        if await conn.fetchval("SELECT to_regclass('replicas') IS NOT NULL"):
            running = await conn.fetchval("SELECT count(*) FROM replicas WHERE seen_at > $1",
                                          time.time() - RUNNING_WITHIN)
        return int(version or 0), int(running or 0)
    finally:
        await conn.close()


async def replicas(dsn: str, within: float) -> list[ReplicaInfo]:
    """The replicas seen in the last `within` seconds, first started first."""
    conn = await connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass('replicas') IS NOT NULL"):
            return []
        return await seen_since(conn, time.time() - within)
    finally:
        await conn.close()
