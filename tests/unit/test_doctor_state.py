"""`doctor` on the state store: a file or a database, new, in use, unreadable, or too new; and
the replicas running on a database."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from plugin.config import Settings
from plugin.doctor.report import Report, SettingNames
from plugin.doctor.state import check_replicas, check_store
from plugin.store import MIGRATIONS, Liveness, ReplicaInfo, SQLiteStore
from plugin.store.postgres import MIGRATIONS as PG_MIGRATIONS
from plugin.store.postgres import PostgresStore
from tests.servers.postgres import PostgresServer, empty_schema


async def report_on(path: str, check: Any = check_store) -> list[str]:
    lines: list[str] = []
    settings = Settings.model_validate({"state": {"path": path}})
    await check(Report(lines.append, ["pw-secret"]), settings,
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
    running = [PostgresStore(dsn) for _ in range(2)]
    for store in running:
        await store.open()
        await store.replicas.beat(ReplicaInfo(store.liveness.owner, "standby", "1", "", 0, 0))
    try:
        assert await report_on(dsn) == [
            f"[  ok] the state store is the PostgreSQL database {dsn} (schema up to date); 2 "
            "replicas run on it"]
        # A rolling upgrade: the first new replica migrated; this version is one behind.
        await running[0].engine.run(lambda c: c.execute(
            "INSERT INTO switchboard_schema(version) VALUES ($1)", len(PG_MIGRATIONS) + 1))
        (upgrading,) = await report_on(dsn)
        assert upgrading.startswith(f"[warn] the PostgreSQL database {dsn} has schema version "
                                    f"{len(PG_MIGRATIONS) + 1}, one newer than")
        await running[0].engine.run(lambda c: c.execute(
            "INSERT INTO switchboard_schema(version) VALUES ($1)", len(PG_MIGRATIONS) + 2))
        (too_new,) = await report_on(dsn)
        assert too_new.startswith("[FAIL]") and "newer than this Switchboard" in too_new
    finally:
        for store in running:
            await store.close()
    (away,) = await report_on("postgresql://sb:pw-secret@127.0.0.1:1/sb")
    assert away.startswith("[FAIL] the state store postgresql://sb:***@127.0.0.1:1/sb cannot "
                           "be read: cannot reach the PostgreSQL state store")
    assert "fix: check the database's address" in away and "pw-secret" not in away


class Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "role": "leader"}).encode()
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


async def test_the_replicas_on_a_database_their_leader_listeners_and_versions(
        postgres_server: PostgresServer) -> None:
    await empty_schema(postgres_server.dsn)
    dsn = postgres_server.dsn
    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    listening = f"http://127.0.0.1:{server.server_address[1]}"
    store = PostgresStore(dsn, liveness=Liveness("doctor-test"))
    await store.open()
    try:
        assert await report_on(dsn, check_replicas) == [
            "[  ok] no replica runs on the database now"]
        # A leader whose listener answers, a standby of a newer version out of reach, and
        # one not seen for a while.
        await store.replicas.beat(ReplicaInfo("host-a:1:aa", "leader", "1.4.0", listening,
                                              time.time() - 60, 0))
        await store.replicas.beat(ReplicaInfo("host-b:2:bb", "standby", "1.5.0",
                                              "http://127.0.0.1:1", time.time(), 0))
        await store.replicas.beat(ReplicaInfo("host-c:3:cc", "standby", "1.4.0", "", 0, 0))
        await store.engine.run(lambda c: c.execute(
            "UPDATE replicas SET seen_at = seen_at - 40 WHERE id = 'host-c:3:cc'"))
        lines = await report_on(dsn, check_replicas)
        text = "\n".join(lines)
        assert "[warn] replica host-c:3:cc was last seen 40 s ago: it is gone" in text
        assert "[  ok] replica host-a:1:aa (leader, version 1.4.0, seen" in text
        assert "/healthz ok" in text
        assert "[warn] replica host-b:2:bb (standby, version 1.5.0" in text
        assert "does not answer from here" in text
        assert "[warn] the replicas run different versions (1.4.0, 1.5.0)" in text
        assert lines[-1] == "[  ok] 2 replica(s) run on the database; host-a:1:aa leads"
        # Without a leader running, nobody reads the stream.
        await store.engine.run(lambda c: c.execute(
            "UPDATE replicas SET role = 'standby' WHERE id = 'host-a:1:aa'"))
        text = "\n".join(await report_on(dsn, check_replicas))
        assert "[FAIL] no running replica leads: nobody reads Mattermost's event stream" in text
    finally:
        await store.close()
        server.shutdown()
