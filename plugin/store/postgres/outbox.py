"""`OutboxRepository` on PostgreSQL: the `outbox` table. Replicas read due entries with
`FOR UPDATE SKIP LOCKED`: an entry is leased to one of them at a time, and taken over from a
replica that is gone (see `Liveness`) without waiting for its lease to run out."""

from __future__ import annotations

import json
import time
from typing import Any

from ..records import OutboxEntry
from ..rows import OUTBOX_COLUMNS, outbox_entry
from .engine import Connection, PostgresRepository, rowcount


class PostgresOutbox(PostgresRepository):
    async def put(self, key: str, kind: str, payload: dict[str, Any], *,
                  due_at: float | None = None) -> bool:
        now = time.time()
        status = await self._engine.one(lambda c: c.execute(
            "INSERT INTO outbox(key, kind, payload, state, next_at, created_at) "
            "VALUES ($1, $2, $3, 'queued', $4, $5) ON CONFLICT (key) DO NOTHING",
            key, kind, json.dumps(payload), now if due_at is None else due_at, now))
        return rowcount(status) == 1

    async def put_leased(self, key: str, kind: str, payload: dict[str, Any],
                         lease: float) -> OutboxEntry | None:
        now = time.time()
        body = json.dumps(payload)
        status = await self._engine.one(lambda c: c.execute(
            "INSERT INTO outbox(key, kind, payload, state, next_at, created_at, lease_until, "
            "owner) VALUES ($1, $2, $3, 'queued', $4, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
            key, kind, body, now, now + lease, self._engine.liveness.owner))
        if rowcount(status) != 1:
            return None
        return OutboxEntry(key, kind, json.loads(body), "queued", 0, False, {}, now)

    async def get(self, key: str) -> OutboxEntry | None:
        row = await self._engine.one(lambda c: c.fetchrow(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE key = $1", key))
        return None if row is None else outbox_entry(row)

    async def due(self, now: float, lease: float, limit: int) -> list[OutboxEntry]:
        live = self._engine.liveness
        # A lease still running when the entry is read again was never released: the run that
        # held it died (or overran it), so this is a further attempt. `owner = ANY(...)` is
        # checked again on an entry another replica took meanwhile: one of them gets it.
        rows = await self._engine.one(lambda c: c.fetch(
            "UPDATE outbox SET lease_until = $2, owner = $4, "
            "attempts = attempts + (lease_until > 0)::int WHERE key IN (SELECT key "
            "FROM outbox WHERE state IN ('queued', 'filed') AND next_at <= $1 "
            "AND (lease_until <= $1 OR owner = ANY($5::text[])) "
            "ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {OUTBOX_COLUMNS}, next_at", now, now + lease, limit, live.owner,
            live.gone))
        rows = sorted(rows, key=lambda r: float(r[-1]))
        return [outbox_entry(tuple(r)[:-1]) for r in rows]

    async def renew(self, keys: list[str], lease: float) -> None:
        if keys:
            await self._engine.one(lambda c: c.execute(
                "UPDATE outbox SET lease_until = $1 WHERE key = ANY($2::text[]) AND owner = $3 "
                "AND lease_until > 0", time.time() + lease, keys,
                self._engine.liveness.owner))

    async def update(self, key: str, *, state: str | None = None,
                     result: dict[str, Any] | None = None, retry_at: float | None = None,
                     error: str | None = None, notified: bool | None = None,
                     release: bool = False, durable: bool = True) -> None:
        sets: list[str] = ["lease_until = 0"] if release or retry_at is not None else []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if state is not None:
            sets.append(f"state = {arg(state)}")
        if result is not None:
            sets.append(f"result = {arg(json.dumps(result))}")
        if retry_at is not None:
            sets.append(f"next_at = {arg(retry_at)}")
            sets.append("attempts = attempts + 1")
        if error is not None:
            sets.append(f"last_error = {arg(error[:500])}")
        if notified is not None:
            sets.append(f"notified = {arg(notified)}")
        if not sets:
            return
        sql = f"UPDATE outbox SET {', '.join(sets)} WHERE key = {arg(key)}"
        await self._engine.one(lambda c: c.execute(sql, *args))

    async def counts(self) -> dict[str, int]:
        rows = await self._engine.one(lambda c: c.fetch(
            "SELECT state, count(*) FROM outbox GROUP BY state"))
        return {r[0]: int(r[1]) for r in rows}

    async def backlog(self) -> list[tuple[str, str, int, float]]:
        rows = await self._engine.one(lambda c: c.fetch(
            "SELECT kind, state, count(*), min(created_at) FROM outbox "
            "WHERE state IN ('queued', 'filed') GROUP BY kind, state"))
        return [(str(r[0]), str(r[1]), int(r[2]), float(r[3])) for r in rows]

    async def open(self, kind: str, since: float = 0.0) -> list[OutboxEntry]:
        rows = await self._engine.one(lambda c: c.fetch(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE kind = $1 "
            "AND state IN ('queued', 'filed') AND created_at >= $2 ORDER BY created_at",
            kind, since))
        return [outbox_entry(r) for r in rows]

    async def requeue(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        now = time.time()
        await self._engine.one(lambda c: c.execute(
            "INSERT INTO outbox(key, kind, payload, state, next_at, created_at) "
            "VALUES ($1, $2, $3, 'queued', $4, $4) ON CONFLICT (key) DO UPDATE SET "
            "payload = EXCLUDED.payload, next_at = least(outbox.next_at, EXCLUDED.next_at), "
            "state = 'queued', attempts = 0, last_error = ''", key, kind, json.dumps(payload),
            now))

    async def finish(self, key: str, revision: int) -> bool:
        # Released either way; done unless queued again for a later revision meanwhile.
        done = await self._engine.one(lambda c: c.fetchval(
            "UPDATE outbox SET lease_until = 0, state = CASE WHEN "
            "coalesce((payload::jsonb ->> 'revision')::bigint, 0) <= $2 THEN 'done' "
            "ELSE state END WHERE key = $1 RETURNING state = 'done'", key, revision))
        return bool(done)

    async def prune_rows(self, conn: Connection, older_than: float) -> int:
        return rowcount(await conn.execute(
            "DELETE FROM outbox WHERE state IN ('done', 'failed') AND created_at < $1",
            older_than))
