"""`switchboard store migrate`: an SQLite state file copied into the real PostgreSQL, rows of
every kind, twice without doubling anything; what a bot on PostgreSQL then finds."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from bridge.alerts import Alert, AlertStatus, Severity
from plugin.store import SQLiteStore, TicketLink
from plugin.store.alert_state import AlertState
from plugin.store.postgres import PostgresStore
from tests.servers.postgres import PostgresServer, empty_schema

ROOT = Path(__file__).resolve().parents[2]


async def filled(path: Path) -> None:
    s = SQLiteStore(path)
    await s.open()
    try:
        await s.cursors.save({"chan": 1_700_000_000_123})
        await s.kv.put("initialized", "1700000000000")
        assert await s.claims.claim("done-post", "chan")
        await s.claims.complete("done-post")
        assert await s.claims.claim("pending-post", "chan")
        await s.tickets.link(TicketLink("glpi", "7", "chan", "root", "u1", "alice", "Printer",
                                        "http://glpi/7", "new", 0, True))
        await s.tickets.mark_comments_seen("glpi", "7", ["c1", "c2"])
        await s.tickets.save_triage("glpi", "7", {"ref": "it/support", "post": "p1"})
        alert = Alert("am", "k1", AlertStatus.FIRING, Severity.CRITICAL, "Disk full")
        await s.alerts.save("am", "k1", "chan", AlertState(alert, first_seen=1.0),
                            ["a note"])
        assert await s.outbox.put("ticket:pending-post", "ticket", {"text": "printer"})
        assert await s.outbox.put("comment:old", "comment", {"text": "x"})
        await s.outbox.update("comment:old", state="done")
    finally:
        await s.close()


def migrate(state: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plugin.cli", "store", "migrate",
                           "--from", str(state)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "SWITCHBOARD_DB_TARGET": dsn})


def test_a_state_file_moves_to_postgresql_once(tmp_path: Path,
                                               postgres_server: PostgresServer) -> None:
    state = tmp_path / "state.db"
    asyncio.run(filled(state))
    asyncio.run(empty_schema(postgres_server.dsn))
    for _ in range(2):  # again: nothing doubled
        done = migrate(state, postgres_server.dsn)
        assert done.returncode == 0, done.stderr
        assert "2 handled" in done.stdout and "1 outbox" in done.stdout
        assert "postgres@" in done.stdout

    async def found() -> None:
        pg = PostgresStore(postgres_server.dsn)
        await pg.open()
        try:
            assert await pg.cursors.load() == {"chan": 1_700_000_000_123}
            assert await pg.kv.get("initialized") == "1700000000000"
            assert [c.post_id for c in await pg.claims.pending()] == ["pending-post"]
            assert await pg.claims.is_handled("done-post")
            link = await pg.tickets.get("glpi", "7")
            assert link is not None and link.title == "Printer" and link.open
            assert await pg.tickets.seen_comments("glpi", "7") == {"c1", "c2"}
            assert (await pg.tickets.triage("glpi", "7"))["post"] == "p1"
            rec = await pg.alerts.get("am", "k1")
            assert rec is not None and rec.incident.alert.title == "Disk full"
            assert [t for _, t in await pg.alerts.notes("am", "k1")] == ["a note"]
            open_entries = await pg.outbox.open("ticket")
            assert [e.payload for e in open_entries] == [{"text": "printer"}]
            assert await pg.outbox.get("comment:old") is None  # finished: left behind
        finally:
            await pg.close()

    asyncio.run(found())


def test_no_target_or_no_file_is_a_clear_refusal(tmp_path: Path,
                                                 postgres_server: PostgresServer) -> None:
    nothing = subprocess.run([sys.executable, "-m", "plugin.cli", "store", "migrate",
                              "--from", str(tmp_path / "s.db")], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert nothing.returncode == 2 and "needs --to postgresql://" in nothing.stderr
    missing = migrate(tmp_path / "nowhere.db", postgres_server.dsn)
    assert missing.returncode == 4 and "there is no state file" in missing.stderr
