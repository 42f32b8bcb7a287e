"""`TicketRepository` on PostgreSQL: the `tickets` and `seen_comments` tables."""

from __future__ import annotations

import json
import time
from typing import Any

from ..records import TicketLink
from ..rows import TICKET_COLUMNS, ticket_link
from .engine import Connection, PostgresRepository, rowcount


class PostgresTickets(PostgresRepository):
    async def link(self, link: TicketLink, *, durable: bool = True) -> None:
        await self._engine.one(lambda c: c.execute(
            f"INSERT INTO tickets({TICKET_COLUMNS}, created_at, watch_until) VALUES ($1, $2, $3, "
            "$4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING",
            link.tracker, link.ticket_id, link.channel_id, link.root_id, link.requester_id,
            link.requester, link.title, link.url, link.status, link.status_changes, link.open,
            link.origin, time.time(), None if link.open else 0.0))

    async def by_root(self, root_id: str) -> TicketLink | None:
        row = await self._engine.one(lambda c: c.fetchrow(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE root_id = $1 "
            "ORDER BY created_at DESC LIMIT 1", root_id))
        return None if row is None else ticket_link(row)

    async def get(self, tracker: str, ticket_id: str) -> TicketLink | None:
        row = await self._engine.one(lambda c: c.fetchrow(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE tracker = $1 AND ticket_id = $2",
            tracker, ticket_id))
        return None if row is None else ticket_link(row)

    async def find(self, *, open_only: bool = True,
                   requester_id: str | None = None) -> list[TicketLink]:
        rows = await self._engine.one(lambda c: c.fetch(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE ($1 = FALSE OR open) "
            "AND ($2::text IS NULL OR requester_id = $2) ORDER BY created_at",
            open_only, requester_id))
        return [ticket_link(r) for r in rows]

    async def watched(self, now: float) -> list[TicketLink]:
        rows = await self._engine.one(lambda c: c.fetch(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE open OR watch_until > $1 "
            "ORDER BY created_at", now))
        return [ticket_link(r) for r in rows]

    async def linked_roots(self, since: float = 0.0) -> set[str]:
        rows = await self._engine.one(lambda c: c.fetch(
            "SELECT root_id FROM tickets WHERE origin = 'chat' AND created_at >= $1", since))
        return {r[0] for r in rows}

    async def set_status(self, tracker: str, ticket_id: str, status: str, is_open: bool, *,
                         watch_until: float = 0.0) -> int:
        value = await self._engine.one(lambda c: c.fetchval(
            "UPDATE tickets SET status = $1, open = $2, status_changes = status_changes + 1, "
            "watch_until = $3 WHERE tracker = $4 AND ticket_id = $5 RETURNING status_changes",
            status, is_open, None if is_open else watch_until, tracker, ticket_id))
        return int(value or 0)

    async def triage(self, tracker: str, ticket_id: str) -> dict[str, Any]:
        value = await self._engine.one(lambda c: c.fetchval(
            "SELECT triage FROM tickets WHERE tracker = $1 AND ticket_id = $2",
            tracker, ticket_id))
        triage = json.loads(value) if value else {}
        return triage if isinstance(triage, dict) else {}

    async def save_triage(self, tracker: str, ticket_id: str, triage: dict[str, Any]) -> None:
        await self._engine.one(lambda c: c.execute(
            "UPDATE tickets SET triage = $1 WHERE tracker = $2 AND ticket_id = $3",
            json.dumps(triage, separators=(",", ":")), tracker, ticket_id))

    async def mark_comments_seen(self, tracker: str, ticket_id: str,
                                 comment_ids: list[str]) -> None:
        if comment_ids:
            await self._engine.one(lambda c: c.executemany(
                "INSERT INTO seen_comments(tracker, ticket_id, comment_id) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING", [(tracker, ticket_id, x) for x in comment_ids]))

    async def seen_comments(self, tracker: str, ticket_id: str) -> set[str]:
        rows = await self._engine.one(lambda c: c.fetch(
            "SELECT comment_id FROM seen_comments WHERE tracker = $1 AND ticket_id = $2",
            tracker, ticket_id))
        return {r[0] for r in rows}

    async def prune_rows(self, conn: Connection, older_than: float) -> int:
        # Once a ticket is no longer watched, its seen follow-ups serve nobody.
        return rowcount(await conn.execute(
            "DELETE FROM seen_comments s USING tickets t WHERE t.tracker = s.tracker "
            "AND t.ticket_id = s.ticket_id AND NOT t.open AND t.watch_until < $1", older_than))
