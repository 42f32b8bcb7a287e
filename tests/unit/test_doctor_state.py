"""`doctor` on the state store: a file or a database, new, in use, unreadable, or too new."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from plugin.config import Settings
from plugin.doctor.report import Report, SettingNames
from plugin.doctor.state import check_store
from plugin.store import MIGRATIONS, SQLiteStore
from plugin.store.postgres import PostgresStore
from tests.servers.postgres import PostgresServer, empty_schema


async def report_on(path: str) -> list[str]:
    lines: list[str] = []
    settings = Settings.model_validate({"state": {"path": path}})
    await check_store(Report(lines.append, ["pw-secret"]), settings,
                      SettingNames({"settings.state.path": "SWITCHBOARD_DB"}))
    return lines


async def test_a_state_file_new_in_use_unreadable_or_too_new(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    assert await report_on(path) == [
        f"[  ok] the state store is the SQLite file {path}; it is made at first start"]
    running = SQLiteStore(path)
    await running.open()
    try:
        assert await report_on(path) == [
            f"[  ok] the state store is the SQLite file {path} (schema up to date); a running "
            "bot holds it"]
    finally:
        await running.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()
    (too_new,) = await report_on(path)
    assert too_new.startswith("[FAIL] the SQLite file") and "newer than this" in too_new
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all, long enough to look like a header" * 4)
    (unreadable,) = await report_on(str(junk))
    assert unreadable.startswith(f"[FAIL] the state store {junk} cannot be read")
    assert "fix: restore the state file from a backup" in unreadable


async def test_a_database_reached_in_use_or_out_of_reach(
        postgres_server: PostgresServer) -> None:
    await empty_schema(postgres_server.dsn)
    dsn = postgres_server.dsn
    assert await report_on(dsn) == [
        f"[  ok] the state store is the PostgreSQL database {dsn}; it is made at first start"]
    running = PostgresStore(dsn)
    await running.open()
    try:
        assert await report_on(dsn) == [
            f"[  ok] the state store is the PostgreSQL database {dsn} (schema up to date); a "
            "running bot holds it"]
    finally:
        await running.close()
    (away,) = await report_on("postgresql://sb:pw-secret@127.0.0.1:1/sb")
    assert away.startswith("[FAIL] the state store postgresql://sb:***@127.0.0.1:1/sb cannot "
                           "be read: cannot reach the PostgreSQL state store")
    assert "fix: check the database's address" in away and "pw-secret" not in away
