"""`switchboard store migrate`: an SQLite state file copied into a PostgreSQL database, for a bot
that moves to PostgreSQL. Cursors, handled posts, settings, ticket links and their seen
follow-ups, incidents and their unposted notes, and the outbox's unfinished entries go across;
finished outbox entries and leases stay behind (they are history, or the old run's). Running it
again copies nothing twice: a row already there is kept (a cursor moves forward only)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from .postgres.engine import connect, migrate
from .records import StoreError
from .sqlite import SQLiteStore

#: What goes across: (table, its columns, what decides a row is there already, the SQLite
#: rows taken). The columns are the same in both schemas.
_TABLES: list[tuple[str, tuple[str, ...], str, str]] = [
    ("cursors", ("channel_id", "last_create_at"),
     "(channel_id) DO UPDATE SET last_create_at = "
     "greatest(cursors.last_create_at, EXCLUDED.last_create_at)", ""),
    ("kv", ("key", "value"), "(key) DO NOTHING", ""),
    ("handled", ("post_id", "channel_id", "state", "attempts", "claimed_at", "done_at"),
     "(post_id) DO NOTHING", ""),
    ("tickets", ("tracker", "ticket_id", "channel_id", "root_id", "requester_id", "requester",
                 "title", "url", "status", "status_changes", "open", "created_at",
                 "watch_until", "origin", "triage"), "(tracker, ticket_id) DO NOTHING", ""),
    ("seen_comments", ("tracker", "ticket_id", "comment_id"), "DO NOTHING", ""),
    ("alerts", ("source", "key", "channel_id", "post_id", "state", "revision", "created_at",
                "updated_at"), "(source, key) DO NOTHING", ""),
    ("outbox", ("key", "kind", "payload", "state", "attempts", "next_at", "notified", "result",
                "last_error", "created_at"), "(key) DO NOTHING",
     "WHERE state IN ('queued', 'filed')"),
]
#: Columns the SQLite file keeps as 0/1 that PostgreSQL keeps as booleans.
_BOOLEAN = {("tickets", "open"), ("outbox", "notified")}


async def copy_to_postgres(path: str, dsn: str) -> dict[str, int]:
    """Copy the state file at `path` into the database at `dsn` (its schema made or brought up
    to date first); the rows read per table."""
    if not Path(path).exists():
        raise StoreError(f"there is no state file {path}")
    # Opened once the usual way: an older file is brought up to this version's schema, and a
    # running bot holding it is found (`StoreInUse`) before anything is copied.
    sqlite_store = SQLiteStore(path)
    await sqlite_store.open()
    await sqlite_store.close()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {t: _rows(db, t, cols, where) for t, cols, _c, where in _TABLES}
        notes = db.execute("SELECT source, key, text FROM alert_notes WHERE posted = 0 "
                           "ORDER BY id").fetchall()
    finally:
        db.close()
    conn = await connect(dsn)
    try:
        await migrate(conn)
        async with conn.transaction():
            for table, columns, conflict, _where in _TABLES:
                marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
                await conn.executemany(
                    f"INSERT INTO {table}({', '.join(columns)}) VALUES ({marks}) "
                    f"ON CONFLICT {conflict}", tables[table])
            # Notes have no key of their own: those of an incident already there are not copied
            # again.
            await conn.executemany(
                "INSERT INTO alert_notes(source, key, text) SELECT $1, $2, $3 WHERE NOT EXISTS "
                "(SELECT 1 FROM alert_notes WHERE source = $1 AND key = $2 AND text = $3)",
                notes)
    except asyncpg.PostgresError as exc:
        raise StoreError(f"the PostgreSQL state store refused the copy: {exc}") from exc
    finally:
        await conn.close()
    counts = {table: len(rows) for table, rows in tables.items()}
    counts["alert_notes"] = len(notes)
    return counts


def _rows(db: sqlite3.Connection, table: str, columns: tuple[str, ...],
          where: str) -> list[tuple[Any, ...]]:
    rows = db.execute(f"SELECT {', '.join(columns)} FROM {table} {where}").fetchall()
    flags = [i for i, c in enumerate(columns) if (table, c) in _BOOLEAN]
    if not flags:
        return [tuple(r) for r in rows]
    out = []
    for row in rows:
        values = list(row)
        for i in flags:
            values[i] = bool(values[i])
        out.append(tuple(values))
    return out
