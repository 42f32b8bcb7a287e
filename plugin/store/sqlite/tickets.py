"""`TicketRepository` on SQLite: the `tickets` and `seen_comments` tables."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from ..records import TicketLink
from ..rows import TICKET_COLUMNS, ticket_link
from .engine import SQLiteRepository


class SQLiteTickets(SQLiteRepository):
    async def link(self, link: TicketLink, *, durable: bool = True) -> None:
        now = time.time()
        await self._engine.write(lambda db: db.execute(
            f"INSERT OR IGNORE INTO tickets({TICKET_COLUMNS}, created_at, watch_until) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (link.tracker, link.ticket_id, link.channel_id, link.root_id, link.requester_id,
             link.requester, link.title, link.url, link.status, link.status_changes,
             int(link.open), link.origin, now, None if link.open else 0)), durable=durable)

    async def by_root(self, root_id: str) -> TicketLink | None:
        row = await self._engine.run(lambda db: db.execute(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE root_id = ? "
            "ORDER BY created_at DESC LIMIT 1", (root_id,)).fetchone())
        return None if row is None else ticket_link(row)

    async def get(self, tracker: str, ticket_id: str) -> TicketLink | None:
        row = await self._engine.run(lambda db: db.execute(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE tracker = ? AND ticket_id = ?",
            (tracker, ticket_id)).fetchone())
        return None if row is None else ticket_link(row)

    async def find(self, *, open_only: bool = True,
                   requester_id: str | None = None) -> list[TicketLink]:
        sql = f"SELECT {TICKET_COLUMNS} FROM tickets WHERE 1 = 1"
        args: list[Any] = []
        if open_only:
            sql += " AND open = 1"
        if requester_id is not None:
            sql += " AND requester_id = ?"
            args.append(requester_id)
        rows = await self._engine.run(lambda db: db.execute(sql + " ORDER BY created_at",
                                                            args).fetchall())
        return [ticket_link(r) for r in rows]

    async def watched(self, now: float) -> list[TicketLink]:
        rows = await self._engine.run(lambda db: db.execute(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE open = 1 OR watch_until > ? "
            "ORDER BY created_at", (now,)).fetchall())
        return [ticket_link(r) for r in rows]

    async def linked_roots(self, since: float = 0.0) -> set[str]:
        rows = await self._engine.run(lambda db: db.execute(
            "SELECT root_id FROM tickets WHERE origin = 'chat' AND created_at >= ?",
            (since,)).fetchall())
        return {r[0] for r in rows}

    async def set_status(self, tracker: str, ticket_id: str, status: str, is_open: bool, *,
                         watch_until: float = 0.0) -> int:
        def go(db: sqlite3.Connection) -> int:
            row = db.execute(
                "UPDATE tickets SET status = ?, open = ?, status_changes = status_changes + 1, "
                "watch_until = ? WHERE tracker = ? AND ticket_id = ? RETURNING status_changes",
                (status, int(is_open), None if is_open else watch_until, tracker,
                 ticket_id)).fetchone()
            return int(row[0]) if row else 0

        return await self._engine.run(go)

    async def triage(self, tracker: str, ticket_id: str) -> dict[str, Any]:
        row = await self._engine.run(lambda db: db.execute(
            "SELECT triage FROM tickets WHERE tracker = ? AND ticket_id = ?",
            (tracker, ticket_id)).fetchone())
        value = json.loads(row[0]) if row else {}
        return value if isinstance(value, dict) else {}

    async def save_triage(self, tracker: str, ticket_id: str, triage: dict[str, Any]) -> None:
        body = json.dumps(triage, separators=(",", ":"))
        await self._engine.run(lambda db: db.execute(
            "UPDATE tickets SET triage = ? WHERE tracker = ? AND ticket_id = ?",
            (body, tracker, ticket_id)))

    async def mark_comments_seen(self, tracker: str, ticket_id: str,
                                 comment_ids: list[str]) -> None:
        if comment_ids:
            await self._engine.run(lambda db: db.executemany(
                "INSERT OR IGNORE INTO seen_comments(tracker, ticket_id, comment_id) "
                "VALUES (?, ?, ?)", [(tracker, ticket_id, c) for c in comment_ids]))

    async def seen_comments(self, tracker: str, ticket_id: str) -> set[str]:
        rows = await self._engine.run(lambda db: db.execute(
            "SELECT comment_id FROM seen_comments WHERE tracker = ? AND ticket_id = ?",
            (tracker, ticket_id)).fetchall())
        return {r[0] for r in rows}

    def prune_rows(self, db: sqlite3.Connection, older_than: float) -> int:
        # Once a ticket is no longer watched, its seen follow-ups serve nobody.
        return db.execute(
            "DELETE FROM seen_comments WHERE EXISTS (SELECT 1 FROM tickets t WHERE "
            "t.tracker = seen_comments.tracker AND t.ticket_id = seen_comments.ticket_id "
            "AND t.open = 0 AND t.watch_until < ?)", (older_than,)).rowcount
