"""The state store: what must survive a restart.

One small interface (`Store`) so that a second implementation (PostgreSQL, for replicas) is all that
scale-out needs. Every "handle this once" decision is a claim here — insert-if-absent — never an
in-memory set. The SQLite implementation runs every statement on one dedicated thread, so the event
loop never waits on disk, and commits (WAL, synchronous=FULL) before it answers: state is durable
before the caller acts on it. Requests that arrive while the thread is busy are committed together
in one transaction (each inside a savepoint of its own, so one failing request changes nothing and
fails alone): one disk flush serves a burst.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

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
    # The outbox (requests to outside systems, durable until done), ticket ↔ thread links, the
    # tracker comments already shown in (or written from) chat, and leases for periodic work.
    """
    CREATE TABLE outbox (
        key TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'filed', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        lease_until REAL NOT NULL DEFAULT 0,
        notified INTEGER NOT NULL DEFAULT 0,
        result TEXT NOT NULL DEFAULT '{}',
        last_error TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL
    );
    CREATE INDEX outbox_due ON outbox(state, next_at);
    CREATE TABLE tickets (
        tracker TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        root_id TEXT NOT NULL,
        requester_id TEXT NOT NULL,
        requester TEXT NOT NULL,
        title TEXT NOT NULL,
        url TEXT NOT NULL,
        status TEXT NOT NULL,
        status_changes INTEGER NOT NULL DEFAULT 0,
        open INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL,
        PRIMARY KEY (tracker, ticket_id)
    );
    CREATE INDEX tickets_root ON tickets(root_id);
    CREATE INDEX tickets_requester ON tickets(requester_id);
    CREATE TABLE seen_comments (
        tracker TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        comment_id TEXT NOT NULL,
        PRIMARY KEY (tracker, ticket_id, comment_id)
    );
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until REAL NOT NULL
    );
    """,
    # Alerts: the current state of each incident and its post, and the notes for its thread.
    """
    CREATE TABLE alerts (
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        post_id TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        revision INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (source, key)
    );
    CREATE INDEX alerts_channel_created ON alerts(channel_id, created_at);
    CREATE TABLE alert_notes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        text TEXT NOT NULL,
        posted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX alert_notes_pending ON alert_notes(source, key, posted);
    """,
]


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """All or nothing: BEGIN IMMEDIATE … COMMIT, or a savepoint inside an open transaction;
    rolled back on any error, so the connection is never left inside a transaction (which
    would swallow every later write)."""
    if db.in_transaction:
        db.execute("SAVEPOINT part")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK TO part")
            db.execute("RELEASE part")
            raise
        db.execute("RELEASE part")
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_Job = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


@dataclass(frozen=True)
class PendingClaim:
    """A post whose handler started but never finished (the bot stopped mid-way)."""

    post_id: str
    channel_id: str
    attempts: int
    claimed_at: float


@dataclass(frozen=True)
class OutboxEntry:
    """A request to an outside system, kept until it is done."""

    key: str
    kind: str
    payload: dict[str, Any]
    state: str
    attempts: int
    notified: bool
    result: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class TicketLink:
    """A ticket and the chat thread that follows it."""

    tracker: str
    ticket_id: str
    channel_id: str
    root_id: str
    requester_id: str
    requester: str
    title: str
    url: str
    status: str
    status_changes: int
    open: bool


@dataclass(frozen=True)
class AlertRecord:
    """An incident's durable state: where its post is, and everything shown on it."""

    source: str
    key: str
    channel_id: str
    post_id: str
    state: dict[str, Any]
    revision: int
    created_at: float


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
    async def outbox_put(self, key: str, kind: str, payload: dict[str, Any]) -> bool: ...
    async def outbox_get(self, key: str) -> OutboxEntry | None: ...
    async def outbox_due(self, now: float, lease: float, limit: int) -> list[OutboxEntry]: ...
    async def outbox_update(self, key: str, *, state: str | None = None,
                            result: dict[str, Any] | None = None, retry_at: float | None = None,
                            error: str | None = None, notified: bool | None = None) -> None: ...
    async def outbox_counts(self) -> dict[str, int]: ...
    async def outbox_open(self, kind: str) -> list[OutboxEntry]: ...
    async def link_ticket(self, link: TicketLink) -> None: ...
    async def ticket_by_root(self, root_id: str) -> TicketLink | None: ...
    async def ticket(self, tracker: str, ticket_id: str) -> TicketLink | None: ...
    async def tickets(self, *, open_only: bool = True,
                      requester_id: str | None = None) -> list[TicketLink]: ...
    async def linked_roots(self) -> set[str]: ...
    async def set_ticket_status(self, tracker: str, ticket_id: str, status: str,
                                is_open: bool) -> int: ...
    async def mark_comments_seen(self, tracker: str, ticket_id: str,
                                 comment_ids: list[str]) -> None: ...
    async def seen_comments(self, tracker: str, ticket_id: str) -> set[str]: ...
    async def take_lease(self, name: str, owner: str, seconds: float) -> bool: ...
    async def outbox_requeue(self, key: str, kind: str, payload: dict[str, Any]) -> None: ...
    async def outbox_finish(self, key: str, revision: int) -> bool: ...
    async def alert(self, source: str, key: str) -> AlertRecord | None: ...
    async def save_alert(self, source: str, key: str, channel_id: str, state: dict[str, Any],
                         notes: list[str] = ...) -> AlertRecord: ...
    async def set_alert_post(self, source: str, key: str, post_id: str) -> None: ...
    async def alert_notes(self, source: str, key: str) -> list[tuple[int, str]]: ...
    async def note_posted(self, note_id: int) -> None: ...
    async def mark_notes_posted(self, source: str, key: str) -> None: ...
    async def alerts_created_since(self, channel_id: str, since: float) -> int: ...


class SQLiteStore:
    """`Store` on an embedded SQLite file."""

    #: Most requests committed in one transaction.
    batch = 256

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None:
            raise RuntimeError("the state store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, future, loop))
        return await future

    def _work(self) -> None:
        """The store's thread: run queued requests, a burst at a time, one commit each."""
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch, stop = [first], False
            while len(batch) < self.batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._execute(batch)
            if stop:
                return

    def _execute(self, batch: list[_Job]) -> None:
        db = self._db
        assert db is not None
        results: list[tuple[bool, Any]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for fn, _, _ in batch:
                db.execute("SAVEPOINT request")
                try:
                    value = fn(db)
                except Exception as exc:
                    db.execute("ROLLBACK TO request")
                    results.append((False, exc))
                else:
                    results.append((True, value))
                db.execute("RELEASE request")
            db.execute("COMMIT")
        except Exception as exc:  # the transaction itself failed: nothing of it was kept
            if db.in_transaction:
                db.execute("ROLLBACK")
            results = [(False, exc)] * len(batch)
        # Answers go out only after the commit: what was answered is on disk.
        for (_, future, loop), (ok, value) in zip(batch, results, strict=True):
            loop.call_soon_threadsafe(_settle, future, ok, value)

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
            # An embedded store serves one process: leases held by an earlier run are void.
            db.execute("UPDATE outbox SET lease_until = 0 WHERE lease_until > 0")
            db.execute("DELETE FROM leases")
            self._db = db

        await asyncio.get_running_loop().run_in_executor(None, connect)
        self._thread = threading.Thread(target=self._work, name="store", daemon=True)
        self._thread.start()

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        current = db.execute("PRAGMA user_version").fetchone()[0]
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"the state file has schema version {current}, newer than this Switchboard "
                f"understands ({len(MIGRATIONS)}); upgrade Switchboard or use another file")
        for version in range(current, len(MIGRATIONS)):
            with _transaction(db):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={version + 1}")

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        if self._db is not None:
            self._db.close()
            self._db = None

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
            with _transaction(db):
                db.executemany(
                    "INSERT INTO cursors(channel_id, last_create_at) VALUES (?, ?) "
                    "ON CONFLICT(channel_id) DO UPDATE SET last_create_at = "
                    "max(last_create_at, excluded.last_create_at)", items)

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
        """Forget finished work older than a point in time (seconds since the epoch): claims,
        outbox entries, incidents resolved (and storm digests whose alerts all resolved) with
        nothing pending, the notes already posted of incidents not updated since, and the
        follow-ups seen on closed tickets."""
        def go(db: sqlite3.Connection) -> int:
            n = db.execute("DELETE FROM handled WHERE state = 'done' AND claimed_at < ?",
                           (older_than,)).rowcount
            n += db.execute("DELETE FROM outbox WHERE state IN ('done', 'failed') "
                            "AND created_at < ?", (older_than,)).rowcount
            n += db.execute(
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
            # The watcher polls open tickets only: a closed one's seen follow-ups serve nobody.
            n += db.execute(
                "DELETE FROM seen_comments WHERE EXISTS (SELECT 1 FROM tickets t WHERE "
                "t.tracker = seen_comments.tracker AND t.ticket_id = seen_comments.ticket_id "
                "AND t.open = 0 AND t.created_at < ?)", (older_than,)).rowcount
            n += db.execute(
                "DELETE FROM alert_notes WHERE posted = 1 AND EXISTS (SELECT 1 FROM alerts a "
                "WHERE a.source = alert_notes.source AND a.key = alert_notes.key "
                "AND a.updated_at < ?)", (older_than,)).rowcount
            return n

        return await self._run(go)

    # --- outbox -------------------------------------------------------------------------------
    async def outbox_put(self, key: str, kind: str, payload: dict[str, Any]) -> bool:
        """Queue a request once; False when the key was queued before."""
        now = time.time()
        body = json.dumps(payload)
        return await self._run(lambda db: db.execute(
            "INSERT OR IGNORE INTO outbox(key, kind, payload, state, next_at, created_at) "
            "VALUES (?, ?, ?, 'queued', ?, ?)", (key, kind, body, now, now)).rowcount == 1)

    _OUTBOX_COLUMNS = "key, kind, payload, state, attempts, notified, result, created_at"

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> OutboxEntry:
        key, kind, payload, state, attempts, notified, result, created_at = row
        return OutboxEntry(key, kind, json.loads(payload), state, int(attempts), bool(notified),
                           json.loads(result), float(created_at))

    async def outbox_get(self, key: str) -> OutboxEntry | None:
        row = await self._run(lambda db: db.execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM outbox WHERE key = ?", (key,)).fetchone())
        return None if row is None else self._entry(row)

    async def outbox_due(self, now: float, lease: float, limit: int) -> list[OutboxEntry]:
        """Entries whose time has come, leased to the caller for `lease` seconds."""
        def go(db: sqlite3.Connection) -> list[OutboxEntry]:
            with _transaction(db):
                rows = db.execute(
                    f"SELECT {self._OUTBOX_COLUMNS} FROM outbox "
                    "WHERE state IN ('queued', 'filed') AND next_at <= ? AND lease_until <= ? "
                    "ORDER BY next_at LIMIT ?", (now, now, limit)).fetchall()
                db.executemany("UPDATE outbox SET lease_until = ? WHERE key = ?",
                               [(now + lease, r[0]) for r in rows])
            return [self._entry(r) for r in rows]

        return await self._run(go)

    async def outbox_update(self, key: str, *, state: str | None = None,
                            result: dict[str, Any] | None = None, retry_at: float | None = None,
                            error: str | None = None, notified: bool | None = None) -> None:
        sets: list[str] = ["lease_until = 0"]
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
        args.append(key)
        sql = f"UPDATE outbox SET {', '.join(sets)} WHERE key = ?"
        await self._run(lambda db: db.execute(sql, args))

    async def outbox_open(self, kind: str) -> list[OutboxEntry]:
        """Entries of a kind not done yet (queued or half-way)."""
        rows = await self._run(lambda db: db.execute(
            f"SELECT {self._OUTBOX_COLUMNS} FROM outbox WHERE kind = ? "
            "AND state IN ('queued', 'filed') ORDER BY created_at", (kind,)).fetchall())
        return [self._entry(r) for r in rows]

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self._run(lambda db: db.execute(
            "SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        return {state: int(n) for state, n in rows}

    # --- tickets ------------------------------------------------------------------------------
    _LINK_COLUMNS = ("tracker, ticket_id, channel_id, root_id, requester_id, requester, title, "
                     "url, status, status_changes, open")

    @staticmethod
    def _link(row: tuple[Any, ...]) -> TicketLink:
        values = list(row)
        values[-1] = bool(values[-1])
        return TicketLink(*values)

    async def link_ticket(self, link: TicketLink) -> None:
        now = time.time()
        await self._run(lambda db: db.execute(
            f"INSERT OR IGNORE INTO tickets({self._LINK_COLUMNS}, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (link.tracker, link.ticket_id, link.channel_id, link.root_id, link.requester_id,
             link.requester, link.title, link.url, link.status, link.status_changes,
             int(link.open), now)))

    async def ticket_by_root(self, root_id: str) -> TicketLink | None:
        row = await self._run(lambda db: db.execute(
            f"SELECT {self._LINK_COLUMNS} FROM tickets WHERE root_id = ? "
            "ORDER BY created_at DESC LIMIT 1", (root_id,)).fetchone())
        return None if row is None else self._link(row)

    async def ticket(self, tracker: str, ticket_id: str) -> TicketLink | None:
        row = await self._run(lambda db: db.execute(
            f"SELECT {self._LINK_COLUMNS} FROM tickets WHERE tracker = ? AND ticket_id = ?",
            (tracker, ticket_id)).fetchone())
        return None if row is None else self._link(row)

    async def tickets(self, *, open_only: bool = True,
                      requester_id: str | None = None) -> list[TicketLink]:
        sql = f"SELECT {self._LINK_COLUMNS} FROM tickets WHERE 1 = 1"
        args: list[Any] = []
        if open_only:
            sql += " AND open = 1"
        if requester_id is not None:
            sql += " AND requester_id = ?"
            args.append(requester_id)
        rows = await self._run(lambda db: db.execute(sql + " ORDER BY created_at",
                                                     args).fetchall())
        return [self._link(r) for r in rows]

    async def linked_roots(self) -> set[str]:
        rows = await self._run(lambda db: db.execute("SELECT root_id FROM tickets").fetchall())
        return {r[0] for r in rows}

    async def set_ticket_status(self, tracker: str, ticket_id: str, status: str,
                                is_open: bool) -> int:
        """Record a new status; returns how many changes the ticket has had."""
        def go(db: sqlite3.Connection) -> int:
            row = db.execute(
                "UPDATE tickets SET status = ?, open = ?, status_changes = status_changes + 1 "
                "WHERE tracker = ? AND ticket_id = ? RETURNING status_changes",
                (status, int(is_open), tracker, ticket_id)).fetchone()
            return int(row[0]) if row else 0

        return await self._run(go)

    async def mark_comments_seen(self, tracker: str, ticket_id: str,
                                 comment_ids: list[str]) -> None:
        if comment_ids:
            await self._run(lambda db: db.executemany(
                "INSERT OR IGNORE INTO seen_comments(tracker, ticket_id, comment_id) "
                "VALUES (?, ?, ?)", [(tracker, ticket_id, c) for c in comment_ids]))

    async def seen_comments(self, tracker: str, ticket_id: str) -> set[str]:
        rows = await self._run(lambda db: db.execute(
            "SELECT comment_id FROM seen_comments WHERE tracker = ? AND ticket_id = ?",
            (tracker, ticket_id)).fetchall())
        return {r[0] for r in rows}

    async def take_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Hold a named lease (for periodic work) unless another owner holds it."""
        now = time.time()
        return await self._run(lambda db: db.execute(
            "INSERT INTO leases(name, owner, until) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, until = excluded.until "
            "WHERE leases.until < ? OR leases.owner = excluded.owner",
            (name, owner, now + seconds, now)).rowcount == 1)

    async def outbox_requeue(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        """Queue a request, or queue it again (now, fresh) when it was queued before."""
        now = time.time()
        body = json.dumps(payload)
        await self._run(lambda db: db.execute(
            "INSERT INTO outbox(key, kind, payload, state, next_at, created_at) "
            "VALUES (?, ?, ?, 'queued', ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "payload = excluded.payload, next_at = min(outbox.next_at, excluded.next_at), "
            "state = 'queued', attempts = 0, last_error = ''", (key, kind, body, now, now)))

    # --- alerts -------------------------------------------------------------------------------
    _ALERT_COLUMNS = "source, key, channel_id, post_id, state, revision, created_at"

    @staticmethod
    def _alert(row: tuple[Any, ...]) -> AlertRecord:
        source, key, channel_id, post_id, state, revision, created_at = row
        return AlertRecord(source, key, channel_id, post_id, json.loads(state), int(revision),
                           float(created_at))

    async def alert(self, source: str, key: str) -> AlertRecord | None:
        row = await self._run(lambda db: db.execute(
            f"SELECT {self._ALERT_COLUMNS} FROM alerts WHERE source = ? AND key = ?",
            (source, key)).fetchone())
        return None if row is None else self._alert(row)

    async def save_alert(self, source: str, key: str, channel_id: str, state: dict[str, Any],
                         notes: list[str] | None = None) -> AlertRecord:
        """Store an incident's new state (revision + 1) and its new thread notes, at once."""
        now = time.time()
        body = json.dumps(state)

        def go(db: sqlite3.Connection) -> AlertRecord:
            with _transaction(db):
                db.execute(
                    "INSERT INTO alerts(source, key, channel_id, state, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(source, key) DO UPDATE SET "
                    "state = excluded.state, revision = alerts.revision + 1, "
                    "updated_at = excluded.updated_at",
                    (source, key, channel_id, body, now, now))
                db.executemany("INSERT INTO alert_notes(source, key, text) VALUES (?, ?, ?)",
                               [(source, key, n) for n in notes or []])
                row = db.execute(
                    f"SELECT {self._ALERT_COLUMNS} FROM alerts WHERE source = ? AND key = ?",
                    (source, key)).fetchone()
            return self._alert(row)

        return await self._run(go)

    async def set_alert_post(self, source: str, key: str, post_id: str) -> None:
        await self._run(lambda db: db.execute(
            "UPDATE alerts SET post_id = ? WHERE source = ? AND key = ?", (post_id, source, key)))

    async def alert_notes(self, source: str, key: str) -> list[tuple[int, str]]:
        """Notes not yet posted in the incident's thread, oldest first."""
        rows = await self._run(lambda db: db.execute(
            "SELECT id, text FROM alert_notes WHERE source = ? AND key = ? AND posted = 0 "
            "ORDER BY id", (source, key)).fetchall())
        return [(int(i), str(t)) for i, t in rows]

    async def note_posted(self, note_id: int) -> None:
        await self._run(lambda db: db.execute(
            "UPDATE alert_notes SET posted = 1 WHERE id = ?", (note_id,)))

    async def alerts_created_since(self, channel_id: str, since: float) -> int:
        row = await self._run(lambda db: db.execute(
            "SELECT count(*) FROM alerts WHERE channel_id = ? AND created_at >= ?",
            (channel_id, since)).fetchone())
        return int(row[0])

    async def outbox_finish(self, key: str, revision: int) -> bool:
        """Mark a re-queueable entry done, unless it was queued again for a later revision
        meanwhile (then it is released to run again); True when done."""
        def go(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                done = db.execute(
                    "UPDATE outbox SET state = 'done', lease_until = 0 WHERE key = ? AND "
                    "coalesce(json_extract(payload, '$.revision'), 0) <= ?",
                    (key, revision)).rowcount == 1
                if not done:
                    db.execute("UPDATE outbox SET lease_until = 0 WHERE key = ?", (key,))
            return done

        return await self._run(go)

    async def mark_notes_posted(self, source: str, key: str) -> None:
        """For incidents without a post of their own (grouped into a digest)."""
        await self._run(lambda db: db.execute(
            "UPDATE alert_notes SET posted = 1 WHERE source = ? AND key = ?", (source, key)))
