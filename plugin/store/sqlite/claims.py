"""`ClaimRepository` on SQLite: the `handled` table."""

from __future__ import annotations

import sqlite3
import time

from ..records import PendingClaim
from .engine import SQLiteRepository


class SQLiteClaims(SQLiteRepository):
    async def claim(self, post_id: str, channel_id: str, *, durable: bool = True) -> bool:
        now = time.time()

        def go(db: sqlite3.Connection) -> bool:
            return db.execute(
                "INSERT OR IGNORE INTO handled(post_id, channel_id, state, claimed_at, owner) "
                "VALUES (?, ?, 'pending', ?, ?)",
                (post_id, channel_id, now, self._engine.liveness.owner)).rowcount == 1

        if durable:
            return await self._engine.run(go)
        # Answered at once: the request the post leads to commits with it.
        return await self._engine.at_once(go)

    async def reclaim(self, post_id: str) -> int:
        me = self._engine.liveness.owner

        def go(db: sqlite3.Connection) -> int:
            # The file serves this run alone: every other run is gone.
            row = db.execute(
                "UPDATE handled SET attempts = attempts + 1, owner = ? "
                "WHERE post_id = ? AND state = 'pending' AND owner <> ? RETURNING attempts",
                (me, post_id, me)).fetchone()
            return int(row[0]) if row else 0

        return await self._engine.run(go)

    async def complete(self, post_id: str) -> None:
        now = time.time()
        # Nobody waits for it: it travels with the store's next request.
        self._engine.later(lambda db: db.execute(
            "UPDATE handled SET state = 'done', done_at = ? WHERE post_id = ?", (now, post_id)))

    async def is_handled(self, post_id: str) -> bool:
        return await self._engine.run(lambda db: db.execute(
            "SELECT 1 FROM handled WHERE post_id = ?", (post_id,)).fetchone() is not None)

    async def pending(self) -> list[PendingClaim]:
        rows = await self._engine.run(lambda db: db.execute(
            "SELECT post_id, channel_id, attempts, claimed_at FROM handled "
            "WHERE state = 'pending' AND owner <> ? ORDER BY claimed_at",
            (self._engine.liveness.owner,)).fetchall())
        return [PendingClaim(*row) for row in rows]

    def prune_rows(self, db: sqlite3.Connection, older_than: float) -> int:
        return db.execute("DELETE FROM handled WHERE state = 'done' AND claimed_at < ?",
                          (older_than,)).rowcount
