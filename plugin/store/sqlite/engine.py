"""The SQLite engine under every repository: one connection, used on the event loop.

Requests made during one turn of the event loop are committed together at the end of that turn,
in one transaction; when one of them fails, the turn runs again with each request in a savepoint
of its own, so a failing request changes nothing and fails alone (a request's function touches
only the connection, so it may run twice, the first run undone). The statements are small (a row
or a few, by key) and run on the loop itself: no thread hand-off per request. The disk is never
waited for on the loop: a commit is written to the write-ahead log (`synchronous=NORMAL`), and
the flush to disk runs on the store's disk thread (`disk.py`), one flush for every commit
waiting.

Durability is chosen per request. A durable request (the default) hears back only once the log is
on disk up to the last commit it could have seen: what it wrote, and what it read. A request made
with `durable=False`, and a write made with `later`, record what a later run finds again (a claim
marked done, an outbox entry marked filed whose ticket the tracker finds by its reference): they
are answered at once and reach the disk with the next flush. A request made with `at_once` runs
as soon as it is made, in the turn's transaction (begun then), and answers without waiting for
the turn's end: what the caller does next in the same turn (the request a claimed post leads to)
shares its commit. A crash of the process loses no
commit (the operating system has it); a power cut loses only commits not yet flushed, which no
durable answer depended on.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..records import Liveness, StoreInUse
from .disk import Answers, DiskThread
from .schema import MIGRATIONS

log = logging.getLogger("switchboard.store")

T = TypeVar("T")

#: A request: what to run on the connection, where its answer goes (None: nobody waits for it),
#: and whether that answer waits for the disk.
_Job = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any] | None", bool]


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


class StoreTurnLost(sqlite3.OperationalError):
    """A turn's transaction could not be committed: what its requests run at once wrote is
    lost."""


def _settle(answers: Answers) -> None:
    for future, ok, value in answers:
        if future.cancelled():
            continue
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
    """The connection, the turn's requests, and the disk thread that makes them durable."""

    #: Longest a write nobody waits for (`later`) waits for a request to travel with.
    linger = 0.05
    #: Commits after which the log is copied back into the database file.
    checkpoint_every = 500

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        #: This run: the owner its claims are written with (the file serves it alone).
        self.liveness = Liveness()
        self._db: sqlite3.Connection | None = None
        self._disk: DiskThread | None = None
        #: The thread whose event loop uses the connection.
        self._owner = 0
        #: Requests of the current turn, and writes nobody waits for; whether the turn's
        #: commit is scheduled, and the timer of the writes.
        self._turn: list[_Job] = []
        self._behind: list[_Job] = []
        self._soon = False
        self._timer: asyncio.TimerHandle | None = None
        #: The descriptor holding the state file's lock while open.
        self._lock: int | None = None
        #: Commits made, and the count at the last checkpoint; while one runs, commits wait
        #: (the disk thread has the connection) and this is set when it is over.
        self._written = 0
        self._checkpointed = 0
        self._checkpoint: asyncio.Future[None] | None = None
        #: The turn's transaction, when a request run `at_once` began it: those requests (run
        #: again should the turn be redone), the change count before them, and the future of
        #: the turn's commit (made when a barrier has to wait for it).
        self._open = False
        self._ran: list[_Job] = []
        self._changes = 0
        self._committed: asyncio.Future[None] | None = None

    async def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Connect, migrate, run `prepare` on the connection, then start serving requests."""
        def connect() -> sqlite3.Connection:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                # Opening is flushed as it goes; from then on the disk thread flushes.
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA busy_timeout=5000")
                migrate(db)
                prepare(db)
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA wal_autocheckpoint=0")
            except BaseException:
                db.close()
                raise
            return db

        self._lock = await asyncio.get_running_loop().run_in_executor(None, self._take_lock)
        try:
            self._db = await asyncio.get_running_loop().run_in_executor(None, connect)
        except BaseException:
            self._release_lock()
            raise
        self._owner = threading.get_ident()
        self._written = self._checkpointed = 0
        self._disk = DiskThread(self.path, _settle)
        self._disk.start()

    async def close(self) -> None:
        if self._db is None:
            return
        if self._checkpoint is not None:
            await asyncio.shield(self._checkpoint)
        self._commit()  # what is left, its durable answers flushed before they are given
        disk, self._disk = self._disk, None
        if disk is not None:
            await asyncio.get_running_loop().run_in_executor(None, disk.stop)
        self._db.close()
        self._db = None
        self._release_lock()

    def _take_lock(self) -> int | None:
        """Hold `<file>.lock` for as long as the engine is open (the system lets it go when
        the process ends, however it ends); `StoreInUse`, naming the holder, when another
        process holds it."""
        if self.path == ":memory:":
            return None
        lock_path = Path(self.path + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise StoreInUse(
                f"the state file {self.path} is in use by another running Switchboard"
                f"{f' (process {holder})' if holder.isdigit() else ''}; one state file serves "
                f"one running bot: stop the other one, or give this one its own SWITCHBOARD_DB"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _release_lock(self) -> None:
        fd, self._lock = self._lock, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor lets the lock go

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run `fn` on the connection, in this turn's transaction (it may run twice, see
        `_execute`: it must touch nothing but the connection); its answer comes once the turn
        is committed (and flushed to disk, when `durable`)."""
        future: asyncio.Future[T] = self._loop().create_future()
        self._turn.append((fn, future, durable))
        return await future

    async def at_once(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` (one statement: it changes all or nothing) now, in the turn's transaction,
        and answer at once; committed at the turn's end, not waited onto the disk (as
        `durable=False`). `barrier` covers it. During a checkpoint it waits like `run`."""
        db = self._db
        if self._checkpoint is not None or db is None:
            return await self.run(fn, durable=False)
        self._loop()  # the turn's commit is scheduled
        if not self._open:
            self._changes = db.total_changes
            db.execute("BEGIN IMMEDIATE")
            self._open = True
        try:
            value = fn(db)
        except Exception:
            # Whatever the failure left of the transaction is undone; what ran before runs again.
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.execute("BEGIN IMMEDIATE")
            self._again(db, self._ran)
            raise
        self._ran.append((fn, None, False))
        return value

    async def write(self, fn: Callable[[sqlite3.Connection], object], *,
                    durable: bool = True) -> None:
        """A write with no answer: waited for (until it is on disk) when `durable`, else
        handed to `later`."""
        if durable:
            await self.run(fn)
        else:
            self.later(fn)

    def barrier(self) -> Callable[[], Awaitable[None]]:
        """A waiter that returns once everything committed so far is on disk (at once when it
        already is): for an effect that must not get ahead of a write made without waiting."""
        mark = self._written + (1 if self._open else 0)

        async def on_disk() -> None:
            disk = self._disk
            if disk is None or disk.synced >= mark:
                return
            if mark > self._written:
                # The turn that ran it is not committed yet.
                if self._committed is None:
                    self._committed = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._committed)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            disk.flush(mark, [(future, True, None)], asyncio.get_running_loop())
            await future

        return on_disk

    def later(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        """Queue a write whose caller does not wait for it and which needs no flush of its own
        (what a later run finds again if it is lost): it is committed with the next request's
        turn, or on its own after `linger` seconds. A failure is logged."""
        loop = self._loop(soon=False)
        self._behind.append((fn, None, False))
        if self._timer is None:
            self._timer = loop.call_later(self.linger, self._commit)

    def _loop(self, soon: bool = True) -> asyncio.AbstractEventLoop:
        if self._db is None or self._disk is None:
            raise RuntimeError("the state store is not open")
        if threading.get_ident() != self._owner:
            raise RuntimeError("the state store is used from its event loop's thread only")
        loop = asyncio.get_running_loop()
        if soon and not self._soon:
            # Once per turn: what this turn asks is committed together at its end.
            self._soon = True
            loop.call_soon(self._commit)
        return loop

    def _commit(self) -> None:
        self._soon = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._checkpoint is not None:
            return  # committed when the checkpoint is over
        jobs = self._behind + self._turn if self._behind else self._turn
        self._turn, self._behind = [], []
        db, disk = self._db, self._disk
        opened, ran, self._open, self._ran = self._open, self._ran, False, []
        committed, self._committed = self._committed, None
        if (not jobs and not opened) or db is None or disk is None:
            return
        before = self._changes if opened else db.total_changes
        results, kept = self._execute(db, jobs, ran if opened else None)
        if db.total_changes != before:
            self._written += 1
        if committed is not None and not committed.done():
            if kept:
                committed.set_result(None)
            else:  # what ran at once is lost: nothing may act as if it were written
                committed.set_exception(StoreTurnLost("the state store could not commit"))
        # What a durable answer could have seen is on disk before it is given.
        mark, now, waiting = self._written, [], []
        durable_ok = disk.synced >= mark
        for (_, future, durable), (ok, value) in zip(jobs, results, strict=True):
            if future is None:
                if not ok:
                    log.error("a write of the state store failed: %s", value)
            elif durable and not durable_ok:
                waiting.append((future, ok, value))
            else:
                now.append((future, ok, value))
        _settle(now)
        loop = asyncio.get_running_loop()
        if waiting:
            disk.flush(mark, waiting, loop)
        if self._written - self._checkpointed >= self.checkpoint_every:
            self._checkpointed = self._written
            self._checkpoint = loop.create_future()
            disk.checkpoint(db, self._checkpoint_over, loop)

    def _checkpoint_over(self) -> None:
        done, self._checkpoint = self._checkpoint, None
        if done is not None and not done.done():
            done.set_result(None)
        self._commit()  # what waited meanwhile

    @staticmethod
    def _execute(db: sqlite3.Connection, jobs: list[_Job], ran: list[_Job] | None = None,
                 ) -> tuple[list[tuple[bool, Any]], bool]:
        """Run the turn's requests in one transaction (already begun, with `ran` run in it,
        when requests ran at once); the answers, and whether the transaction was kept. They
        run side by side first; when one fails, the transaction is rolled back and they run
        again, each in a savepoint, so that one failing request fails alone. (A request's
        function touches nothing but the connection: running it twice, the first run undone,
        is running it once.)"""
        try:
            if ran is None:
                db.execute("BEGIN IMMEDIATE")
            try:
                results: list[tuple[bool, Any]] = [(True, fn(db)) for fn, _, _ in jobs]
            except Exception as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if len(jobs) == 1 and not ran:
                    return [(False, exc)], True
                db.execute("BEGIN IMMEDIATE")
                SQLiteEngine._again(db, ran or [])
                results = [SQLiteEngine._alone(db, fn) for fn, _, _ in jobs]
            db.execute("COMMIT")
        except Exception as exc:  # the transaction itself failed: nothing of it was kept
            if db.in_transaction:
                db.execute("ROLLBACK")
            return [(False, exc)] * len(jobs), False
        return results, True

    @staticmethod
    def _again(db: sqlite3.Connection, ran: list[_Job]) -> None:
        """Run again, each alone, the requests that ran at once in a transaction rolled back
        (their answers were given: a failure now is logged)."""
        for fn, _, _ in ran:
            ok, value = SQLiteEngine._alone(db, fn)
            if not ok:
                log.error("a write of the state store failed when run again: %s", value)

    @staticmethod
    def _alone(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]
               ) -> tuple[bool, Any]:
        """One request in a savepoint of its own: undone alone when it fails."""
        db.execute("SAVEPOINT request")
        try:
            value = fn(db)
        except Exception as exc:
            db.execute("ROLLBACK TO request")
            db.execute("RELEASE request")
            return (False, exc)
        db.execute("RELEASE request")
        return (True, value)


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
