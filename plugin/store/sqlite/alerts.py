"""`AlertRepository` on SQLite: the `alerts` and `alert_notes` tables (state as JSON text)."""

from __future__ import annotations

import json
import sqlite3
import time

from ..alert_state import DIGEST_SOURCE, AlertState, DigestState
from ..records import AlertRecord
from ..rows import ALERT_COLUMNS, alert_record
from .engine import SQLiteRepository, transaction


class SQLiteAlerts(SQLiteRepository):
    async def get(self, source: str, key: str) -> AlertRecord | None:
        row = await self._engine.run(lambda db: db.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE source = ? AND key = ?",
            (source, key)).fetchone())
        return None if row is None else alert_record(row)

    async def by_identity(self, source: str, identity: str) -> AlertRecord | None:
        row = await self._engine.run(lambda db: db.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE source = ? "
            "AND json_extract(state, '$.alert.identity') = ? "
            "ORDER BY created_at DESC LIMIT 1", (source, identity)).fetchone())
        return None if row is None else alert_record(row)

    async def in_digest(self, digest_key: str) -> list[AlertRecord]:
        rows = await self._engine.run(lambda db: db.execute(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE json_extract(state, '$.digest') = ? "
            "ORDER BY created_at", (digest_key,)).fetchall())
        return [alert_record(row) for row in rows]

    async def save(self, source: str, key: str, channel_id: str,
                   state: AlertState | DigestState,
                   notes: list[str] | None = None) -> AlertRecord:
        now = time.time()
        body = json.dumps(state.to_json())

        def go(db: sqlite3.Connection) -> AlertRecord:
            with transaction(db):
                db.execute(
                    "INSERT INTO alerts(source, key, channel_id, state, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(source, key) DO UPDATE SET "
                    "state = excluded.state, revision = alerts.revision + 1, "
                    "updated_at = excluded.updated_at",
                    (source, key, channel_id, body, now, now))
                db.executemany("INSERT INTO alert_notes(source, key, text) VALUES (?, ?, ?)",
                               [(source, key, n) for n in notes or []])
                row = db.execute(
                    f"SELECT {ALERT_COLUMNS} FROM alerts WHERE source = ? AND key = ?",
                    (source, key)).fetchone()
            return alert_record(row)

        return await self._engine.run(go)

    async def set_post(self, source: str, key: str, post_id: str) -> None:
        await self._engine.run(lambda db: db.execute(
            "UPDATE alerts SET post_id = ? WHERE source = ? AND key = ?", (post_id, source, key)))

    async def notes(self, source: str, key: str) -> list[tuple[int, str]]:
        rows = await self._engine.run(lambda db: db.execute(
            "SELECT id, text FROM alert_notes WHERE source = ? AND key = ? AND posted = 0 "
            "ORDER BY id", (source, key)).fetchall())
        return [(int(i), str(t)) for i, t in rows]

    async def note_posted(self, note_id: int) -> None:
        await self._engine.run(lambda db: db.execute(
            "UPDATE alert_notes SET posted = 1 WHERE id = ?", (note_id,)))

    async def mark_notes_posted(self, source: str, key: str) -> None:
        await self._engine.run(lambda db: db.execute(
            "UPDATE alert_notes SET posted = 1 WHERE source = ? AND key = ?", (source, key)))

    async def created_since(self, channel_id: str, since: float) -> int:
        row = await self._engine.run(lambda db: db.execute(
            "SELECT count(*) FROM alerts WHERE channel_id = ? AND created_at >= ?",
            (channel_id, since)).fetchone())
        return int(row[0])

    async def by_state(self, now: float) -> list[tuple[str, str, int]]:
        # Counted in SQL from the stored state, no row read into Python.
        rows = await self._engine.run(lambda db: db.execute(
            "SELECT source, CASE "
            "WHEN json_extract(state, '$.alert.status') = 'resolved' THEN 'resolved' "
            "WHEN json_extract(state, '$.silence.until') > ? THEN 'silenced' "
            "WHEN json_extract(state, '$.ack') IS NOT NULL THEN 'acknowledged' "
            "ELSE 'firing' END AS st, count(*) FROM alerts WHERE source != ? "
            "GROUP BY source, st", (now, DIGEST_SOURCE)).fetchall(), durable=False)
        return [(str(source), str(state), int(n)) for source, state, n in rows]

    def prune_rows(self, db: sqlite3.Connection, older_than: float) -> int:
        # An incident whose post still has an edit queued in the outbox (the chat was down) is
        # kept until that edit is done: the edit needs the incident.
        n: int = db.execute(
            "DELETE FROM alerts WHERE updated_at < ? AND json_extract(state, '$.pending') "
            "IS NULL AND ((source != 'digest' AND json_extract(state, '$.alert.status') = "
            "'resolved') OR (source = 'digest' AND json_extract(state, '$.count') <= "
            "json_extract(state, '$.resolved'))) AND NOT EXISTS (SELECT 1 FROM outbox o "
            "WHERE o.state IN ('queued', 'filed') AND json_extract(o.payload, '$.source') "
            "= alerts.source AND json_extract(o.payload, '$.key') = alerts.key)",
            (older_than,)).rowcount
        n += db.execute(
            "DELETE FROM alert_notes WHERE NOT EXISTS (SELECT 1 FROM alerts a "
            "WHERE a.source = alert_notes.source AND a.key = alert_notes.key)").rowcount
        n += db.execute(
            "DELETE FROM alert_notes WHERE posted = 1 AND EXISTS (SELECT 1 FROM alerts a "
            "WHERE a.source = alert_notes.source AND a.key = alert_notes.key "
            "AND a.updated_at < ?)", (older_than,)).rowcount
        return n
