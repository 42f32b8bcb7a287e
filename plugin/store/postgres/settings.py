"""Settings (the `kv` table) of a PostgreSQL state store read or changed from a command-line
tool, beside running replicas."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]

from ..records import StoreError
from .engine import RUN_LOCK, connect, migrate


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


async def probe(dsn: str) -> tuple[int, bool]:
    """The database's schema version (0: none yet), and whether a running bot holds it."""
    conn = await connect(dsn)
    try:
        version = 0
        if await conn.fetchval("SELECT to_regclass('switchboard_schema') IS NOT NULL"):
            version = await conn.fetchval(
                "SELECT coalesce(max(version), 0) FROM switchboard_schema")
        held = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
            "AND objid = $1 AND granted)", RUN_LOCK)
        return int(version or 0), bool(held)
    finally:
        await conn.close()
