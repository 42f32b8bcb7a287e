"""The SQLite engine under every repository: one connection, served by one thread.

Every statement runs on that dedicated thread, so the event loop never waits on disk, and is
committed (WAL, synchronous=FULL) before its caller hears back: state is durable before the caller
acts on it. Requests that arrive while the thread is busy are committed together in one
transaction, each inside a savepoint of its own, so one failing request changes nothing and fails
alone: one disk flush serves a burst.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .schema import MIGRATIONS

T = TypeVar("T")

#: A request: what to run on the connection, and where its answer goes.
_Job = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
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


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def migrate(db: sqlite3.Connection) -> None:
    """Bring the file's schema (`PRAGMA user_version`) up to date, one migration per
    transaction; a file newer than `MIGRATIONS` is refused."""
    current = db.execute("PRAGMA user_version").fetchone()[0]
    if current > len(MIGRATIONS):
        raise RuntimeError(
            f"the state file has schema version {current}, newer than this Switchboard "
            f"understands ({len(MIGRATIONS)}); upgrade Switchboard or use another file")
    for version in range(current, len(MIGRATIONS)):
        with transaction(db):
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={version + 1}")


class SQLiteEngine:
    """The connection and the thread that runs every request on it."""

    #: Most requests committed in one transaction.
    batch = 256

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None

    async def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Connect, migrate, run `prepare` on the connection, then start serving requests."""
        def connect() -> None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            migrate(db)
            prepare(db)
            self._db = db

        await asyncio.get_running_loop().run_in_executor(None, connect)
        self._thread = threading.Thread(target=self._work, name="store", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        if self._db is not None:
            self._db.close()
            self._db = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the store's thread, inside a savepoint of the current batch; its answer
        comes back once the batch is committed."""
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


class SQLiteRepository:
    """A repository over the engine: its public methods are one request each; `on_open` and
    `prune_rows` are steps of the store-wide requests (opening, pruning)."""

    def __init__(self, engine: SQLiteEngine) -> None:
        self._engine = engine

    def on_open(self, db: sqlite3.Connection) -> None:
        """Make the rows of an earlier run fit a new one (run once, before any request)."""

    def prune_rows(self, db: sqlite3.Connection, older_than: float) -> int:
        """Delete this repository's finished rows from before `older_than`; how many went."""
        return 0

    async def prune(self, older_than: float) -> int:
        return await self._engine.run(lambda db: self.prune_rows(db, older_than))
