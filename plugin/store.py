"""The state store: what must survive a restart.

One small interface (`Store`) so that a second implementation (PostgreSQL, for replicas) is all that
scale-out needs. Every "handle this once" decision is a claim here — insert-if-absent — never an
in-memory set. The SQLite implementation runs every statement on one dedicated thread, so the event
loop never waits on disk, and commits (WAL, synchronous=FULL) before it answers: state is durable
before the caller acts on it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")

#: Each entry upgrades the schema by one version; never edit a released entry, append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE cursors (
        channel_id TEXT PRIMARY KEY,
        last_create_at INTEGER NOT NULL
    );
    CREATE TABLE handled (
        post_id TEXT PRIMARY KEY,
        channel_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'done')),
        attempts INTEGER NOT NULL DEFAULT 1,
        claimed_at REAL NOT NULL,
        done_at REAL
    );
    CREATE INDEX handled_pending ON handled(state) WHERE state = 'pending';
    CREATE INDEX handled_claimed_at ON handled(claimed_at);
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
]


@dataclass(frozen=True)
class PendingClaim:
    """A post whose handler started but never finished (the bot stopped mid-way)."""

    post_id: str
    channel_id: str
    attempts: int
    claimed_at: float


class Store(Protocol):
    """What the runtime needs from durable state."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def claim(self, post_id: str, channel_id: str) -> bool: ...
    async def reclaim(self, post_id: str) -> int: ...
    async def complete(self, post_id: str) -> None: ...
    async def is_handled(self, post_id: str) -> bool: ...
    async def pending(self) -> list[PendingClaim]: ...
    async def cursors(self) -> dict[str, int]: ...
    async def save_cursors(self, cursors: dict[str, int]) -> None: ...
    async def get(self, key: str) -> str | None: ...
    async def put(self, key: str, value: str) -> None: ...
    async def prune(self, older_than: float) -> int: ...


class SQLiteStore:
    """`Store` on an embedded SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def job() -> T:
            if self._db is None:
                raise RuntimeError("the state store is not open")
            return fn(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    @property
    def schema_version(self) -> int:
        return len(MIGRATIONS)

    async def open(self) -> None:
        def connect() -> None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            self._migrate(db)
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._pool, connect)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        current = db.execute("PRAGMA user_version").fetchone()[0]
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"the state file has schema version {current}, newer than this Switchboard "
                f"understands ({len(MIGRATIONS)}); upgrade Switchboard or use another file")
        for version in range(current, len(MIGRATIONS)):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={version + 1}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)

    async def claim(self, post_id: str, channel_id: str) -> bool:
        """Claim a post for handling; False when it was claimed before (by anyone, ever)."""
        now = time.time()
        return await self._run(lambda db: db.execute(
            "INSERT OR IGNORE INTO handled(post_id, channel_id, state, claimed_at) "
            "VALUES (?, ?, 'pending', ?)", (post_id, channel_id, now)).rowcount == 1)

    async def reclaim(self, post_id: str) -> int:
        """Take over a pending claim left by a stopped run; returns the attempt number (0: gone)."""
        def go(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "UPDATE handled SET attempts = attempts + 1 "
                "WHERE post_id = ? AND state = 'pending' RETURNING attempts", (post_id,))
            row = cur.fetchone()
            return int(row[0]) if row else 0

        return await self._run(go)

    async def complete(self, post_id: str) -> None:
        now = time.time()
        await self._run(lambda db: db.execute(
            "UPDATE handled SET state = 'done', done_at = ? WHERE post_id = ?", (now, post_id)))

    async def is_handled(self, post_id: str) -> bool:
        return await self._run(lambda db: db.execute(
            "SELECT 1 FROM handled WHERE post_id = ?", (post_id,)).fetchone() is not None)

    async def pending(self) -> list[PendingClaim]:
        rows = await self._run(lambda db: db.execute(
            "SELECT post_id, channel_id, attempts, claimed_at FROM handled "
            "WHERE state = 'pending' ORDER BY claimed_at").fetchall())
        return [PendingClaim(*row) for row in rows]

    async def cursors(self) -> dict[str, int]:
        rows = await self._run(lambda db: db.execute(
            "SELECT channel_id, last_create_at FROM cursors").fetchall())
        return {cid: int(at) for cid, at in rows}

    async def save_cursors(self, cursors: dict[str, int]) -> None:
        """Advance cursors; a cursor never moves backwards."""
        if not cursors:
            return
        items = list(cursors.items())

        def go(db: sqlite3.Connection) -> None:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO cursors(channel_id, last_create_at) VALUES (?, ?) "
                "ON CONFLICT(channel_id) DO UPDATE SET last_create_at = "
                "max(last_create_at, excluded.last_create_at)", items)
            db.execute("COMMIT")

        await self._run(go)

    async def get(self, key: str) -> str | None:
        row = await self._run(lambda db: db.execute(
            "SELECT value FROM kv WHERE key = ?", (key,)).fetchone())
        return None if row is None else str(row[0])

    async def put(self, key: str, value: str) -> None:
        await self._run(lambda db: db.execute(
            "INSERT INTO kv(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value)))

    async def prune(self, older_than: float) -> int:
        """Forget finished claims older than a point in time (seconds since the epoch)."""
        return await self._run(lambda db: db.execute(
            "DELETE FROM handled WHERE state = 'done' AND claimed_at < ?",
            (older_than,)).rowcount)
