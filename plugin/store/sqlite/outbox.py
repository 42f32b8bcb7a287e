"""`OutboxRepository` on SQLite: the `outbox` table (payloads and results as JSON text)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from ..records import OutboxEntry
from ..rows import OUTBOX_COLUMNS, outbox_entry
from .engine import SQLiteRepository, transaction


class SQLiteOutbox(SQLiteRepository):
    async def put(self, key: str, kind: str, payload: dict[str, Any], *,
                  due_at: float | None = None) -> bool:
        now = time.time()
        body = json.dumps(payload)
        due = now if due_at is None else due_at
        return await self._engine.run(lambda db: db.execute(
            "INSERT OR IGNORE INTO outbox(key, kind, payload, state, next_at, created_at) "
            "VALUES (?, ?, ?, 'queued', ?, ?)", (key, kind, body, due, now)).rowcount == 1)

    async def put_leased(self, key: str, kind: str, payload: dict[str, Any],
                         lease: float) -> OutboxEntry | None:
        now = time.time()
        body = json.dumps(payload)
        inserted = await self._engine.run(lambda db: db.execute(
            "INSERT OR IGNORE INTO outbox(key, kind, payload, state, next_at, created_at, "
            "lease_until) VALUES (?, ?, ?, 'queued', ?, ?, ?)",
            (key, kind, body, now, now, now + lease)).rowcount == 1)
        if not inserted:
            return None
        return OutboxEntry(key, kind, json.loads(body), "queued", 0, False, {}, now)

    async def get(self, key: str) -> OutboxEntry | None:
        row = await self._engine.run(lambda db: db.execute(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE key = ?", (key,)).fetchone())
        return None if row is None else outbox_entry(row)

    async def due(self, now: float, lease: float, limit: int) -> list[OutboxEntry]:
        def go(db: sqlite3.Connection) -> list[OutboxEntry]:
            with transaction(db):
                rows = db.execute(
                    f"SELECT {OUTBOX_COLUMNS} FROM outbox "
                    "WHERE state IN ('queued', 'filed') AND next_at <= ? AND lease_until <= ? "
                    "ORDER BY next_at LIMIT ?", (now, now, limit)).fetchall()
                db.executemany("UPDATE outbox SET lease_until = ? WHERE key = ?",
                               [(now + lease, r[0]) for r in rows])
            return [outbox_entry(r) for r in rows]

        return await self._engine.run(go, durable=False)

    async def update(self, key: str, *, state: str | None = None,
                     result: dict[str, Any] | None = None, retry_at: float | None = None,
                     error: str | None = None, notified: bool | None = None,
                     release: bool = False, durable: bool = True) -> None:
        sets: list[str] = ["lease_until = 0"] if release or retry_at is not None else []
        args: list[Any] = []
        if state is not None:
            sets.append("state = ?")
            args.append(state)
        if result is not None:
            sets.append("result = ?")
            args.append(json.dumps(result))
        if retry_at is not None:
            sets.append("next_at = ?")
            sets.append("attempts = attempts + 1")
            args.append(retry_at)
        if error is not None:
            sets.append("last_error = ?")
            args.append(error[:500])
        if notified is not None:
            sets.append("notified = ?")
            args.append(int(notified))
        if not sets:
            return
        args.append(key)
        sql = f"UPDATE outbox SET {', '.join(sets)} WHERE key = ?"
        await self._engine.write(lambda db: db.execute(sql, args), durable=durable)

    async def counts(self) -> dict[str, int]:
        rows = await self._engine.run(lambda db: db.execute(
            "SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        return {state: int(n) for state, n in rows}

    async def backlog(self) -> list[tuple[str, str, int, float]]:
        rows = await self._engine.run(lambda db: db.execute(
            "SELECT kind, state, count(*), min(created_at) FROM outbox "
            "WHERE state IN ('queued', 'filed') GROUP BY kind, state").fetchall(),
            durable=False)
        return [(str(kind), str(state), int(n), float(oldest)) for kind, state, n, oldest in rows]

    async def open(self, kind: str, since: float = 0.0) -> list[OutboxEntry]:
        rows = await self._engine.run(lambda db: db.execute(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE kind = ? "
            "AND state IN ('queued', 'filed') AND created_at >= ? ORDER BY created_at",
            (kind, since)).fetchall())
        return [outbox_entry(r) for r in rows]

    async def requeue(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        now = time.time()
        body = json.dumps(payload)
        await self._engine.run(lambda db: db.execute(
            "INSERT INTO outbox(key, kind, payload, state, next_at, created_at) "
            "VALUES (?, ?, ?, 'queued', ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "payload = excluded.payload, next_at = min(outbox.next_at, excluded.next_at), "
            "state = 'queued', attempts = 0, last_error = ''", (key, kind, body, now, now)))

    async def finish(self, key: str, revision: int) -> bool:
        def go(db: sqlite3.Connection) -> bool:
            with transaction(db):
                done = db.execute(
                    "UPDATE outbox SET state = 'done', lease_until = 0 WHERE key = ? AND "
                    "coalesce(json_extract(payload, '$.revision'), 0) <= ?",
                    (key, revision)).rowcount == 1
                if not done:
                    db.execute("UPDATE outbox SET lease_until = 0 WHERE key = ?", (key,))
            return done

        return await self._engine.run(go)

    async def renew(self, keys: list[str], lease: float) -> None:
        until = time.time() + lease
        if keys:
            await self._engine.run(lambda db: db.executemany(
                "UPDATE outbox SET lease_until = ? WHERE key = ? AND lease_until > 0",
                [(until, key) for key in keys]), durable=False)

    def on_open(self, db: sqlite3.Connection) -> None:
        # An embedded store serves one process: leases held by an earlier run are void, and
        # what that run held and never released was cut short (its executor looks first).
        db.execute("UPDATE outbox SET lease_until = 0, attempts = attempts + 1 "
                   "WHERE lease_until > 0 AND state IN ('queued', 'filed')")
        db.execute("UPDATE outbox SET lease_until = 0 WHERE lease_until > 0")

    def prune_rows(self, db: sqlite3.Connection, older_than: float) -> int:
        return db.execute("DELETE FROM outbox WHERE state IN ('done', 'failed') "
                          "AND created_at < ?", (older_than,)).rowcount
