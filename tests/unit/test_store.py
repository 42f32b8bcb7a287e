"""The SQLite state store: claims, recovery of unfinished work, cursors, migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from plugin.store import MIGRATIONS, SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "state" / "s.db")
    await s.open()
    yield s  # type: ignore[misc]
    await s.close()


async def test_claim_is_once_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SQLiteStore(path)
    await s.open()
    assert await s.claim("p1", "c1") is True
    assert await s.claim("p1", "c1") is False
    await s.close()
    s2 = SQLiteStore(path)
    await s2.open()
    assert await s2.claim("p1", "c1") is False
    assert await s2.is_handled("p1")
    assert not await s2.is_handled("p2")
    await s2.close()


async def test_pending_claims_are_recovered_and_completed(store: SQLiteStore) -> None:
    await store.claim("a", "c")
    await store.claim("b", "c")
    await store.complete("a")
    pending = await store.pending()
    assert [p.post_id for p in pending] == ["b"]
    assert await store.reclaim("b") == 2
    assert await store.reclaim("a") == 0  # done: nothing to take over
    await store.complete("b")
    assert await store.pending() == []


async def test_cursors_never_move_backwards(store: SQLiteStore) -> None:
    await store.save_cursors({"c1": 100, "c2": 50})
    await store.save_cursors({"c1": 90, "c2": 60})
    assert await store.cursors() == {"c1": 100, "c2": 60}


async def test_kv_and_prune(store: SQLiteStore) -> None:
    assert await store.get("k") is None
    await store.put("k", "v1")
    await store.put("k", "v2")
    assert await store.get("k") == "v2"
    await store.claim("old", "c")
    await store.complete("old")
    await store.claim("open", "c")
    assert await store.prune(older_than=10**12) == 1  # only finished claims go
    assert not await store.is_handled("old")
    assert await store.is_handled("open")


async def test_schema_is_versioned_and_newer_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SQLiteStore(path)
    await s.open()
    await s.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    s2 = SQLiteStore(path)
    with pytest.raises(RuntimeError, match="newer than this Switchboard"):
        await s2.open()
    await s2.close()


async def test_a_burst_is_committed_together_and_a_failure_fails_alone(
        tmp_path: Path) -> None:
    import asyncio
    path = tmp_path / "s.db"
    s = SQLiteStore(path)
    await s.open()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO kv(key, value) VALUES ('half', 'done')")
        raise ValueError("boom")

    results = await asyncio.gather(
        *(s.claim(f"p{i}", "c") for i in range(200)),
        s._run(broken), s.put("k", "v"), return_exceptions=True)
    assert results[:200] == [True] * 200
    assert isinstance(results[200], ValueError)
    assert await s.get("k") == "v"
    assert await s.get("half") is None  # the failing request left nothing behind
    await s.close()
    # What was answered is on disk.
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM handled").fetchone()[0] == 200
    db.close()


async def test_prune_forgets_resolved_incidents_and_closed_tickets_follow_ups(
        store: SQLiteStore) -> None:
    from plugin.store import TicketLink

    def incident(status: str, pending: str | None = None) -> dict[str, object]:
        return {"alert": {"status": status}, "pending": pending}

    await store.save_alert("am", "gone", "c", incident("resolved"), ["resolved note"])
    await store.save_alert("am", "firing", "c", incident("firing"), ["note"])
    await store.save_alert("am", "acting", "c", incident("resolved", pending="ack"))
    # Resolved, but its post has not been edited yet (Mattermost was down): kept for that.
    await store.save_alert("am", "unrendered", "c", incident("resolved"))
    await store.outbox_requeue("alert-render:am:unrendered", "alert-render",
                               {"source": "am", "key": "unrendered", "revision": 1})
    await store.save_alert("digest", "all-resolved", "c", {"count": 3, "resolved": 3})
    await store.save_alert("digest", "some-firing", "c", {"count": 3, "resolved": 1})
    for tid, is_open in (("1", False), ("2", True)):
        await store.link_ticket(TicketLink("glpi", tid, "c", f"r{tid}", "u", "alice", "t",
                                           "url", "closed" if not is_open else "new", 0,
                                           is_open))
        await store.mark_comments_seen("glpi", tid, ["a", "b"])
    # Nothing is old enough yet.
    await store.prune(older_than=0)
    assert await store.alert("am", "gone") is not None
    await store.prune(older_than=10**12)
    assert await store.alert("am", "gone") is None
    assert await store.alert_notes("am", "gone") == []
    assert await store.alert("digest", "all-resolved") is None
    for kept in (("am", "firing"), ("am", "acting"), ("am", "unrendered"),
                 ("digest", "some-firing")):
        assert await store.alert(*kept) is not None, kept
    assert [t for _, t in await store.alert_notes("am", "firing")] == ["note"]
    assert await store.seen_comments("glpi", "1") == set()
    assert await store.seen_comments("glpi", "2") == {"a", "b"}
