"""`CursorRepository`, `KeyValue` and `LeaseRepository` on SQLite: the `cursors`, `kv` and
`leases` tables."""

from __future__ import annotations

import sqlite3
import time

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
        return await self._engine.run(lambda db: db.execute(
            "INSERT INTO leases(name, owner, until) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, until = excluded.until "
            "WHERE leases.until < ? OR leases.owner = excluded.owner",
            (name, owner, now + seconds, now)).rowcount == 1)

    def on_open(self, db: sqlite3.Connection) -> None:
        # An embedded store serves one process: leases held by an earlier run are void.
        db.execute("DELETE FROM leases")
