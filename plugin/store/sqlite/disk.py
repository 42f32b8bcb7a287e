"""The store's disk thread: flushes of the write-ahead log, and checkpoints.

The engine commits on the event loop without waiting for the disk (`synchronous=NORMAL`: a commit
is written to the log, not flushed). An answer that must be durable is given only after the log
was flushed to disk (`fsync`) up to the last commit its request could have seen. That flush runs
here, off the loop, and one flush serves every answer waiting when it starts: under a burst, many
commits share one disk round trip.

The log keeps commits in order, so a flush covers every commit written before it; after a power
cut, SQLite replays the log up to the last whole commit and nothing after a lost commit survives.

Checkpoints (copying the log back into the database file, so that the log can start over) run here
too, on the engine's connection while the engine holds its commits back: with no write under way,
the whole log is copied and the next commit starts it over, so it stays small. (A checkpoint on a
second connection, beside a writer that never pauses, can never catch the log whole: the log
would grow without bound.) SQLite flushes the log before a checkpoint and the database file after
it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("switchboard.store")

#: Answers that wait for the disk: (future, ok, value) each, settled on their loop.
Answers = list[tuple["asyncio.Future[Any]", bool, Any]]
#: A flush request: the commit it must cover, its answers, their loop.
_Flush = tuple[int, Answers, asyncio.AbstractEventLoop]


class _Checkpoint:
    """A checkpoint request: the connection (held back by the engine meanwhile), and what to
    call on the loop when it is done."""

    def __init__(self, db: sqlite3.Connection, done: Callable[[], None],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.db, self.done, self.loop = db, done, loop


class StoreDiskError(OSError):
    """The state file could not be flushed to disk; what was asked may not be durable."""


class DiskThread:
    """Flushes the log of the database at `path` on request, and checkpoints it."""

    def __init__(self, path: str, settle: Callable[[Answers], None]) -> None:
        self.path = path
        self._settle = settle
        self._requests: queue.SimpleQueue[_Flush | _Checkpoint | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._wal: int | None = None
        #: The last commit known to be on disk (written by the thread, read by the loop).
        self.synced = 0

    def start(self) -> None:
        """Serve requests."""
        self._thread = threading.Thread(target=self._work, name="store-disk", daemon=True)
        self._thread.start()

    def flush(self, mark: int, answers: Answers, loop: asyncio.AbstractEventLoop) -> None:
        """Settle `answers` once commits up to `mark` are on disk."""
        self._requests.put((mark, answers, loop))

    def checkpoint(self, db: sqlite3.Connection, done: Callable[[], None],
                   loop: asyncio.AbstractEventLoop) -> None:
        """Copy the log of `db` back into the database file, then call `done` on `loop`; the
        caller leaves `db` alone until then."""
        self._requests.put(_Checkpoint(db, done, loop))

    def stop(self) -> None:
        """Finish what was asked, then stop (blocking: call it off the loop)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._requests.put(_STOP)
            thread.join()
        if self._wal is not None:
            os.close(self._wal)
            self._wal = None

    def _work(self) -> None:
        while True:
            waiting = [self._requests.get()]
            while True:
                try:
                    waiting.append(self._requests.get_nowait())
                except queue.Empty:
                    break
            flushes = [w for w in waiting if isinstance(w, tuple)]
            if flushes:
                self._flush(flushes)
            for w in waiting:
                if isinstance(w, _Checkpoint):
                    self._checkpoint(w)
            if any(w is _STOP for w in waiting):
                return

    def _flush(self, flushes: list[_Flush]) -> None:
        top = max(mark for mark, _, _ in flushes)
        error: StoreDiskError | None = None
        try:
            self._fsync()
        except OSError as exc:
            log.error("cannot flush the state file %s to disk: %s", self.path, exc)
            error = StoreDiskError(exc.errno, f"cannot flush the state file to disk: "
                                              f"{exc.strerror or exc}")
        else:
            self.synced = max(self.synced, top)
        for _, answers, loop in flushes:
            if error is not None:
                answers = [(future, False, error) for future, _, _ in answers]
            try:
                loop.call_soon_threadsafe(self._settle, answers)
            except RuntimeError:  # that loop is closed: nobody waits for these answers
                pass

    def _fsync(self) -> None:
        if self._wal is None:
            try:
                self._wal = os.open(self.path + "-wal", os.O_RDONLY)
            except FileNotFoundError:
                return  # nothing was ever written to the log
            # The log's name in its folder must survive a power cut too.
            folder = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        os.fdatasync(self._wal)  # the data and the size: what replaying the log needs

    def _checkpoint(self, request: _Checkpoint) -> None:
        try:
            request.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("checkpoint of the state file %s failed (tried again later): %s",
                        self.path, exc)
        finally:
            try:
                request.loop.call_soon_threadsafe(request.done)
            except RuntimeError:  # that loop is closed
                pass


_STOP = object()
