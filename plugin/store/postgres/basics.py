"""`ClaimRepository`, `CursorRepository`, `KeyValue` and `LeaseRepository` on PostgreSQL: the
`handled`, `cursors`, `kv` and `leases` tables."""

from __future__ import annotations

import time

from ..records import PendingClaim
from .engine import Connection, PostgresRepository, rowcount


class PostgresClaims(PostgresRepository):
    async def claim(self, post_id: str, channel_id: str, *, durable: bool = True) -> bool:
        # One row per post, whichever replica inserts it first: the others find it taken.
        status = await self._engine.run(lambda c: c.execute(
            "INSERT INTO handled(post_id, channel_id, state, claimed_at) "
            "VALUES ($1, $2, 'pending', $3) ON CONFLICT (post_id) DO NOTHING",
            post_id, channel_id, time.time()))
        return rowcount(status) == 1

    async def reclaim(self, post_id: str) -> int:
        value = await self._engine.run(lambda c: c.fetchval(
            "UPDATE handled SET attempts = attempts + 1 "
            "WHERE post_id = $1 AND state = 'pending' RETURNING attempts", post_id))
        return int(value or 0)

    async def complete(self, post_id: str) -> None:
        await self._engine.run(lambda c: c.execute(
            "UPDATE handled SET state = 'done', done_at = $1 WHERE post_id = $2",
            time.time(), post_id))

    async def is_handled(self, post_id: str) -> bool:
        return bool(await self._engine.run(lambda c: c.fetchval(
            "SELECT EXISTS (SELECT 1 FROM handled WHERE post_id = $1)", post_id)))

    async def pending(self) -> list[PendingClaim]:
        rows = await self._engine.run(lambda c: c.fetch(
            "SELECT post_id, channel_id, attempts, claimed_at FROM handled "
            "WHERE state = 'pending' ORDER BY claimed_at"))
        return [PendingClaim(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    async def prune_rows(self, conn: Connection, older_than: float) -> int:
        return rowcount(await conn.execute(
            "DELETE FROM handled WHERE state = 'done' AND claimed_at < $1", older_than))


class PostgresCursors(PostgresRepository):
    async def load(self) -> dict[str, int]:
        rows = await self._engine.run(lambda c: c.fetch(
            "SELECT channel_id, last_create_at FROM cursors"))
        return {r[0]: int(r[1]) for r in rows}

    async def save(self, cursors: dict[str, int]) -> None:
        if not cursors:
            return
        await self._engine.run(lambda c: c.executemany(
            "INSERT INTO cursors(channel_id, last_create_at) VALUES ($1, $2) "
            "ON CONFLICT (channel_id) DO UPDATE SET last_create_at = "
            "greatest(cursors.last_create_at, EXCLUDED.last_create_at)",
            [(cid, int(at)) for cid, at in cursors.items()]))


class PostgresKeyValue(PostgresRepository):
    async def get(self, key: str) -> str | None:
        value = await self._engine.run(lambda c: c.fetchval(
            "SELECT value FROM kv WHERE key = $1", key))
        return None if value is None else str(value)

    async def put(self, key: str, value: str) -> None:
        await self._engine.run(lambda c: c.execute(
            "INSERT INTO kv(key, value) VALUES ($1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", key, value))


class PostgresLeases(PostgresRepository):
    """Leases shared by the replicas: one owner at a time; a lease not renewed in time is
    taken over. (Unlike the embedded store, opening voids nobody's lease.)"""

    async def take(self, name: str, owner: str, seconds: float) -> bool:
        now = time.time()
        status = await self._engine.run(lambda c: c.execute(
            "INSERT INTO leases(name, owner, until) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until "
            "WHERE leases.until < $4 OR leases.owner = EXCLUDED.owner",
            name, owner, now + seconds, now))
        return rowcount(status) == 1
