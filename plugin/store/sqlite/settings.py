"""`CursorRepository`, `KeyValue` and `LeaseRepository` on SQLite: the `cursors`, `kv` and
`leases` tables; and `ReplicaRepository`, which an embedded file serving one process keeps in
memory."""

from __future__ import annotations

import sqlite3
import time

from ..records import ReplicaInfo
from .engine import SQLiteRepository, transaction


class SQLiteCursors(SQLiteRepository):
    async def load(self) -> dict[str, int]:
        rows = await self._engine.run(lambda db: db.execute(
            "SELECT channel_id, last_create_at FROM cursors").fetchall())
        return {cid: int(at) for cid, at in rows}

    async def save(self, cursors: dict[str, int]) -> None:
        if not cursors:
            return
        items = list(cursors.items())

        def go(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany(
                    "INSERT INTO cursors(channel_id, last_create_at) VALUES (?, ?) "
                    "ON CONFLICT(channel_id) DO UPDATE SET last_create_at = "
                    "max(last_create_at, excluded.last_create_at)", items)

        await self._engine.run(go)


class SQLiteKeyValue(SQLiteRepository):
    async def get(self, key: str) -> str | None:
        row = await self._engine.run(lambda db: db.execute(
            "SELECT value FROM kv WHERE key = ?", (key,)).fetchone())
        return None if row is None else str(row[0])

    async def put(self, key: str, value: str) -> None:
        await self._engine.run(lambda db: db.execute(
            "INSERT INTO kv(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value)))


class SQLiteLeases(SQLiteRepository):
    async def take(self, name: str, owner: str, seconds: float) -> bool:
        now = time.time()
        # Not waited onto the disk: the file's leases are void at the next opening anyway.
        return await self._engine.run(lambda db: db.execute(
            "INSERT INTO leases(name, owner, until) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, until = excluded.until "
            "WHERE leases.until < ? OR leases.owner = excluded.owner",
            (name, owner, now + seconds, now)).rowcount == 1, durable=False)

    async def release(self, name: str, owner: str) -> None:
        await self._engine.run(lambda db: db.execute(
            "DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner)), durable=False)

    async def holder(self, name: str) -> tuple[str, float] | None:
        row = await self._engine.run(lambda db: db.execute(
            "SELECT owner, until FROM leases WHERE name = ? AND until >= ?",
            (name, time.time())).fetchone(), durable=False)
        return None if row is None else (str(row[0]), float(row[1]))

    def on_open(self, db: sqlite3.Connection) -> None:
        # An embedded store serves one process: leases held by an earlier run are void.
        db.execute("DELETE FROM leases")


class LocalReplicas:
    """The one replica an embedded store serves: this process (the file lock keeps out any
    other), known in memory."""

    def __init__(self) -> None:
        self._me: ReplicaInfo | None = None

    async def beat(self, replica: ReplicaInfo) -> None:
        self._me = ReplicaInfo(replica.id, replica.role, replica.version, replica.listener,
                               replica.started_at, time.time())

    async def listed(self) -> list[ReplicaInfo]:
        return [] if self._me is None else [self._me]

    async def forget(self, replica_id: str) -> None:
        if self._me is not None and self._me.id == replica_id:
            self._me = None
