"""`ClaimRepository`, `CursorRepository`, `KeyValue`, `LeaseRepository` and
`ReplicaRepository` on PostgreSQL: the `handled`, `cursors`, `kv`, `leases` and `replicas`
tables."""

from __future__ import annotations

import secrets
import time

from ..records import PendingClaim, ReplicaInfo
from .engine import Connection, PostgresRepository, rowcount

#: How long a replica not seen is still listed (`ReplicaRepository.listed`).
REPLICAS_LISTED_FOR = 600.0


async def seen_since(conn: Connection, since: float) -> list[ReplicaInfo]:
    """The replicas seen after `since`, first started first."""
    rows = await conn.fetch(
        "SELECT id, role, version, listener, started_at, seen_at FROM replicas "
        "WHERE seen_at > $1 ORDER BY started_at, id", since)
    return [ReplicaInfo(r[0], r[1], r[2], r[3], float(r[4]), float(r[5])) for r in rows]


class PostgresClaims(PostgresRepository):
    async def claim(self, post_id: str, channel_id: str, *, durable: bool = True) -> bool:
        # One row per post, whichever replica inserts it first: the others find it taken. The
        # token is this call's: asked again after its answer was lost with a connection, the
        # claim finds the row it made (and only that one) and is still won.
        token = secrets.token_hex(8)
        won = await self._engine.one(lambda c: c.fetchval(
            "INSERT INTO handled(post_id, channel_id, state, claimed_at, owner, token) "
            "VALUES ($1, $2, 'pending', $3, $4, $5) ON CONFLICT (post_id) DO UPDATE "
            "SET token = EXCLUDED.token WHERE handled.token = EXCLUDED.token RETURNING TRUE",
            post_id, channel_id, time.time(), self._engine.liveness.owner, token))
        return bool(won)

    async def reclaim(self, post_id: str) -> int:
        live = self._engine.liveness
        token = secrets.token_hex(8)
        # Taken from the run that is gone by one replica only: the first to change its owner
        # (PostgreSQL checks `owner` again on a row another transaction changed meanwhile, and
        # the others find it owned by a replica that runs); asked again, the token finds it.
        value = await self._engine.one(lambda c: c.fetchval(
            "UPDATE handled SET attempts = attempts + 1 - (token = $4)::int, owner = $2, "
            "token = $4 WHERE post_id = $1 AND state = 'pending' "
            "AND (owner = ANY($3::text[]) OR token = $4) RETURNING attempts",
            post_id, live.owner, live.gone, token))
        return int(value or 0)

    async def complete(self, post_id: str) -> None:
        await self._engine.one(lambda c: c.execute(
            "UPDATE handled SET state = 'done', done_at = $1 WHERE post_id = $2",
            time.time(), post_id))

    async def is_handled(self, post_id: str) -> bool:
        return bool(await self._engine.one(lambda c: c.fetchval(
            "SELECT EXISTS (SELECT 1 FROM handled WHERE post_id = $1)", post_id)))

    async def pending(self) -> list[PendingClaim]:
        rows = await self._engine.one(lambda c: c.fetch(
            "SELECT post_id, channel_id, attempts, claimed_at FROM handled "
            "WHERE state = 'pending' AND owner = ANY($1::text[]) ORDER BY claimed_at",
            self._engine.liveness.gone))
        return [PendingClaim(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    async def prune_rows(self, conn: Connection, older_than: float) -> int:
        return rowcount(await conn.execute(
            "DELETE FROM handled WHERE state = 'done' AND claimed_at < $1", older_than))


class PostgresCursors(PostgresRepository):
    async def load(self) -> dict[str, int]:
        rows = await self._engine.one(lambda c: c.fetch(
            "SELECT channel_id, last_create_at FROM cursors"))
        return {r[0]: int(r[1]) for r in rows}

    async def save(self, cursors: dict[str, int]) -> None:
        if not cursors:
            return
        await self._engine.one(lambda c: c.executemany(
            "INSERT INTO cursors(channel_id, last_create_at) VALUES ($1, $2) "
            "ON CONFLICT (channel_id) DO UPDATE SET last_create_at = "
            "greatest(cursors.last_create_at, EXCLUDED.last_create_at)",
            [(cid, int(at)) for cid, at in cursors.items()]))


class PostgresKeyValue(PostgresRepository):
    async def get(self, key: str) -> str | None:
        value = await self._engine.one(lambda c: c.fetchval(
            "SELECT value FROM kv WHERE key = $1", key))
        return None if value is None else str(value)

    async def put(self, key: str, value: str) -> None:
        await self._engine.one(lambda c: c.execute(
            "INSERT INTO kv(key, value) VALUES ($1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", key, value))


class PostgresLeases(PostgresRepository):
    """Leases shared by the replicas: one owner at a time; a lease not renewed in time is
    taken over. (Unlike the embedded store, opening voids nobody's lease.)"""

    async def take(self, name: str, owner: str, seconds: float) -> bool:
        now = time.time()
        status = await self._engine.one(lambda c: c.execute(
            "INSERT INTO leases(name, owner, until) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, until = EXCLUDED.until "
            "WHERE leases.until < $4 OR leases.owner = EXCLUDED.owner",
            name, owner, now + seconds, now))
        return rowcount(status) == 1

    async def release(self, name: str, owner: str) -> None:
        await self._engine.one(lambda c: c.execute(
            "DELETE FROM leases WHERE name = $1 AND owner = $2", name, owner))

    async def holder(self, name: str) -> tuple[str, float] | None:
        row = await self._engine.one(lambda c: c.fetchrow(
            "SELECT owner, until FROM leases WHERE name = $1 AND until >= $2",
            name, time.time()))
        return None if row is None else (str(row[0]), float(row[1]))


class PostgresReplicas(PostgresRepository):
    async def beat(self, replica: ReplicaInfo) -> None:
        live = self._engine.liveness

        async def go(c: Connection) -> list[str]:
            now = time.time()
            await c.execute(
                "INSERT INTO replicas(id, role, version, listener, started_at, seen_at) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET "
                "role = EXCLUDED.role, version = EXCLUDED.version, "
                "listener = EXCLUDED.listener, seen_at = EXCLUDED.seen_at", replica.id,
                replica.role, replica.version, replica.listener, replica.started_at, now)
            cutoff = live.cutoff(now)
            if cutoff is None:
                return []
            return [r[0] for r in await c.fetch(
                "SELECT id FROM replicas WHERE seen_at <= $1", cutoff)]

        live.learn(await self._engine.run(go))

    async def listed(self) -> list[ReplicaInfo]:
        return await self._engine.one(
            lambda c: seen_since(c, time.time() - REPLICAS_LISTED_FOR))

    async def forget(self, replica_id: str) -> None:
        # Kept, as gone: what it still owns is taken over at once.
        await self._engine.one(lambda c: c.execute(
            "UPDATE replicas SET seen_at = 0, role = 'standby' WHERE id = $1", replica_id))

    async def prune_rows(self, conn: Connection, older_than: float) -> int:
        # A replica gone long ago is forgotten once nothing it owned is left to take over.
        return rowcount(await conn.execute(
            "DELETE FROM replicas r WHERE seen_at < $1 AND NOT EXISTS (SELECT 1 FROM handled "
            "h WHERE h.state = 'pending' AND h.owner = r.id) AND NOT EXISTS (SELECT 1 FROM "
            "outbox o WHERE o.state IN ('queued', 'filed') AND o.owner = r.id)",
            time.time() - REPLICAS_LISTED_FOR))
