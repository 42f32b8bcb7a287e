"""Where the state lives, as `settings.state.path` (`SWITCHBOARD_DB`) says: an SQLite file (the
embedded default), or a PostgreSQL database (`postgresql://user:password@host:port/database`)
shared by replicas. The PostgreSQL store is imported only when one is named."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .protocols import Store
from .records import ReplicaInfo, StoreError
from .sqlite import SQLiteStore
from .sqlite import change_setting as change_file_setting
from .sqlite import probe as probe_file
from .sqlite import read_setting as read_file_setting

#: URL schemes of a PostgreSQL database.
DATABASE_SCHEMES = ("postgresql", "postgres")
_PASSWORD = re.compile(r"^([a-z]+://[^:/@]*):[^@/]*@")


def is_database_url(path: str) -> bool:
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in DATABASE_SCHEMES


def shown(path: str) -> str:
    """The location as it may be shown: a database URL without its password."""
    return _PASSWORD.sub(r"\1:***@", path)


def open_store(path: str) -> Store:
    """The store for `path` (not opened yet)."""
    if is_database_url(path):
        from .postgres import PostgresStore
        return PostgresStore(path)
    return SQLiteStore(path)


async def read_setting(path: str, key: str) -> str | None:
    """A stored setting, read beside a running bot (None: not set)."""
    if is_database_url(path):
        from .postgres.settings import read_setting as read_database_setting
        return await read_database_setting(path, key)
    return read_file_setting(path, key)


async def change_setting(path: str, key: str, change: Callable[[str | None], str]) -> None:
    """A stored setting changed beside a running bot (`change(its current value)`)."""
    if is_database_url(path):
        from .postgres.settings import change_setting as change_database_setting
        await change_database_setting(path, key, change)
    else:
        await change_file_setting(path, key, change)


@dataclass(frozen=True)
class StoreProbe:
    """What the state store looks like from outside, for `doctor`."""

    #: "SQLite file" or "PostgreSQL database".
    kind: str
    #: The schema version found (0: none yet, made at first start) and this version's.
    version: int
    expected: int
    #: How many running bots use it (an SQLite file: 0 or 1; a database: its replicas).
    running: int


async def probe(path: str) -> StoreProbe:
    """Look at the state store without changing it (`StoreError` when it cannot be read)."""
    if is_database_url(path):
        import asyncpg  # type: ignore[import-untyped]

        from .postgres import MIGRATIONS as DATABASE_MIGRATIONS
        from .postgres.settings import probe as probe_database
        try:
            version, running = await probe_database(path)
        except asyncpg.PostgresError as exc:
            raise StoreError(f"the PostgreSQL state store cannot be read: {exc}") from exc
        return StoreProbe("PostgreSQL database", version, len(DATABASE_MIGRATIONS), running)
    version, expected, held = probe_file(path)
    return StoreProbe("SQLite file", version, expected, int(held))


async def replicas(path: str, within: float) -> list[ReplicaInfo]:
    """The replicas running on a shared store (seen in the last `within` seconds); an SQLite
    file has none to tell (one bot, which holds its lock)."""
    if not is_database_url(path):
        return []
    import asyncpg

    from .postgres.settings import replicas as database_replicas
    try:
        return await database_replicas(path, within)
    except asyncpg.PostgresError as exc:
        raise StoreError(f"the PostgreSQL state store cannot be read: {exc}") from exc
