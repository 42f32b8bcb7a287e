"""`AlertRepository` on PostgreSQL: the `alerts` and `alert_notes` tables (state as JSON text,
read with PostgreSQL's JSON operators)."""

from __future__ import annotations

import json
import time

from ..alert_state import DIGEST_SOURCE, AlertState, DigestState
from ..records import AlertRecord
from ..rows import ALERT_COLUMNS, alert_record
from .engine import Connection, PostgresRepository, rowcount


class PostgresAlerts(PostgresRepository):
    async def get(self, source: str, key: str) -> AlertRecord | None:
        row = await self._engine.one(lambda c: c.fetchrow(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE source = $1 AND key = $2", source, key))
        return None if row is None else alert_record(row)

    async def by_identity(self, source: str, identity: str) -> AlertRecord | None:
        row = await self._engine.one(lambda c: c.fetchrow(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE source = $1 "
            "AND (state::jsonb #>> '{alert,identity}') = $2 "
            "ORDER BY created_at DESC LIMIT 1", source, identity))
        return None if row is None else alert_record(row)

    async def in_digest(self, digest_key: str) -> list[AlertRecord]:
        rows = await self._engine.one(lambda c: c.fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE (state::jsonb ->> 'digest') = $1 "
            "ORDER BY created_at", digest_key))
        return [alert_record(r) for r in rows]

    async def save(self, source: str, key: str, channel_id: str,
                   state: AlertState | DigestState,
                   notes: list[str] | None = None) -> AlertRecord:
        now = time.time()
        body = json.dumps(state.to_json())

        async def go(c: Connection) -> AlertRecord:
            row = await c.fetchrow(
                "INSERT INTO alerts(source, key, channel_id, state, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (source, key) DO UPDATE SET "
                "state = EXCLUDED.state, revision = alerts.revision + 1, "
                f"updated_at = EXCLUDED.updated_at RETURNING {ALERT_COLUMNS}",
                source, key, channel_id, body, now)
            if notes:
                await c.executemany(
                    "INSERT INTO alert_notes(source, key, text) VALUES ($1, $2, $3)",
                    [(source, key, n) for n in notes])
            return alert_record(row)

        return await self._engine.run(go)

    async def set_post(self, source: str, key: str, post_id: str) -> None:
        await self._engine.one(lambda c: c.execute(
            "UPDATE alerts SET post_id = $1 WHERE source = $2 AND key = $3",
            post_id, source, key))

    async def notes(self, source: str, key: str) -> list[tuple[int, str]]:
        rows = await self._engine.one(lambda c: c.fetch(
            "SELECT id, text FROM alert_notes WHERE source = $1 AND key = $2 AND NOT posted "
            "ORDER BY id", source, key))
        return [(int(r[0]), str(r[1])) for r in rows]

    async def note_posted(self, note_id: int) -> None:
        await self._engine.one(lambda c: c.execute(
            "UPDATE alert_notes SET posted = TRUE WHERE id = $1", note_id))

    async def mark_notes_posted(self, source: str, key: str) -> None:
        await self._engine.one(lambda c: c.execute(
            "UPDATE alert_notes SET posted = TRUE WHERE source = $1 AND key = $2",
            source, key))

    async def created_since(self, channel_id: str, since: float) -> int:
        return int(await self._engine.one(lambda c: c.fetchval(
            "SELECT count(*) FROM alerts WHERE channel_id = $1 AND created_at >= $2",
            channel_id, since)))

    async def by_state(self, now: float) -> list[tuple[str, str, int]]:
        rows = await self._engine.one(lambda c: c.fetch(
            "SELECT source, CASE "
            "WHEN (state::jsonb #>> '{alert,status}') = 'resolved' THEN 'resolved' "
            "WHEN (state::jsonb #>> '{silence,until}')::double precision > $1 "
            "THEN 'silenced' "
            "WHEN (state::jsonb ->> 'ack') IS NOT NULL THEN 'acknowledged' "
            "ELSE 'firing' END AS st, count(*) FROM alerts WHERE source != $2 "
            "GROUP BY source, st", now, DIGEST_SOURCE))
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def prune_rows(self, conn: Connection, older_than: float) -> int:
        # An incident whose post still has an edit queued in the outbox (the chat was down) is
        # kept until that edit is done: the edit needs the incident.
        n = rowcount(await conn.execute(
            "DELETE FROM alerts WHERE updated_at < $1 AND (state::jsonb ->> 'pending') IS NULL "
            "AND ((source != 'digest' AND (state::jsonb #>> '{alert,status}') = 'resolved') "
            "OR (source = 'digest' AND (state::jsonb ->> 'count')::numeric <= "
            "(state::jsonb ->> 'resolved')::numeric)) AND NOT EXISTS (SELECT 1 FROM outbox o "
            "WHERE o.state IN ('queued', 'filed') AND (o.payload::jsonb ->> 'source') = "
            "alerts.source AND (o.payload::jsonb ->> 'key') = alerts.key)", older_than))
        n += rowcount(await conn.execute(
            "DELETE FROM alert_notes n WHERE NOT EXISTS (SELECT 1 FROM alerts a "
            "WHERE a.source = n.source AND a.key = n.key)"))
        n += rowcount(await conn.execute(
            "DELETE FROM alert_notes n USING alerts a WHERE n.posted AND a.source = n.source "
            "AND a.key = n.key AND a.updated_at < $1", older_than))
        return n
