"""Settings (the `kv` table) of a state file read or changed from another process, such as a
command-line tool, while a running bot may hold the file open."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..records import StoreError
from .schema import MIGRATIONS
from .store import SQLiteStore


def read_setting(path: str, key: str) -> str | None:
    """A setting's value; None when the file, or the setting, does not exist (yet)."""
    if path == ":memory:" or not Path(path).exists():
        return None
    db = sqlite3.connect(path, timeout=10)
    try:
        row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error:  # a state file from before the kv table: nothing stored
        return None
    finally:
        db.close()
    return None if row is None else str(row[0])


async def change_setting(path: str, key: str, change: Callable[[str | None], str]) -> None:
    """Set a setting to `change(its current value)`, in one short transaction, which SQLite
    serialises with a running bot's writes; raises `StoreError` when the file refuses.

    `SQLiteStore.open` assumes it is the file's only user (it voids the leases of unfinished
    work), so it is used only to create a state file that does not exist yet."""
    try:
        fresh = not Path(path).exists()
        if not fresh:
            probe = sqlite3.connect(path, timeout=10)
            try:
                fresh = probe.execute("PRAGMA user_version").fetchone()[0] == 0
            finally:
                probe.close()
        if fresh:
            store = SQLiteStore(path)
            await store.open()
            await store.close()
        db = sqlite3.connect(path, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
                value = change(None if row is None else str(row[0]))
                db.execute("INSERT INTO kv(key, value) VALUES (?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           (key, value))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from exc


def probe(path: str) -> tuple[int, int, bool]:
    """The file's schema version (0: no file yet, made at first start), this version's, and
    whether a running bot holds it (its lock file is locked)."""
    if path == ":memory:" or not Path(path).exists():
        return 0, len(MIGRATIONS), False
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"the state file {path} cannot be read: {exc}") from exc
    held = False
    lock = Path(path + ".lock")
    if lock.exists():
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        finally:
            os.close(fd)
    return version, len(MIGRATIONS), held
