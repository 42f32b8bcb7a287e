"""The state store: each repository through its protocol, the store-wide prune, the SQLite engine
(batched commits, migrations), the state file shared with command-line tools, and the rule that
no SQL lives outside the store package."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.alerts import Alert, AlertStatus, Severity
from plugin.store import (
    MIGRATIONS,
    AlertRepository,
    ClaimRepository,
    CursorRepository,
    KeyValue,
    LeaseRepository,
    OutboxRepository,
    ReplicaInfo,
    SQLiteStore,
    StoreError,
    TicketLink,
    TicketRepository,
)
from plugin.store.alert_state import AlertState, DigestState
from plugin.store.postgres import PostgresStore
from plugin.store.records import StoreInUse
from plugin.store.sqlite import change_setting, read_setting
from plugin.store.sqlite.disk import StoreDiskError
from tests.servers.postgres import empty_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.servers)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """Each implementation of the store: the tests that take this fixture are the contract
    both keep (PostgreSQL's from an empty schema each time)."""
    if request.param == "sqlite":
        s: Any = SQLiteStore(tmp_path / "state" / "s.db")
    else:
        server = request.getfixturevalue("postgres_server")
        await empty_schema(server.dsn)
        s = PostgresStore(server.dsn)
    await s.open()
    yield s
    await s.close()


def incident(status: str = "firing", pending: str | None = None) -> AlertState:
    alert = Alert("am", "k", AlertStatus(status), Severity.WARNING, "Disk full")
    return AlertState(alert, first_seen=1.0, pending=pending)


def link(ticket_id: str, *, root: str = "", is_open: bool = True,
         requester_id: str = "u1") -> TicketLink:
    return TicketLink("glpi", ticket_id, "c", root or f"r{ticket_id}", requester_id, "alice",
                      "Printer", f"http://x/{ticket_id}", "new" if is_open else "closed", 0,
                      is_open)


# --- claims -------------------------------------------------------------------------------------
async def test_claim_is_once_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SQLiteStore(path)
    await s.open()
    claims: ClaimRepository = s.claims
    assert await claims.claim("p1", "c1") is True
    assert await claims.claim("p1", "c1") is False
    await s.close()
    s2 = SQLiteStore(path)
    await s2.open()
    claims = s2.claims
    assert await claims.claim("p1", "c1") is False
    assert await claims.is_handled("p1")
    assert not await claims.is_handled("p2")
    await s2.close()


async def later_run(store: Any) -> Any:
    """Another run on the same store, after `store`'s stopped (a database's replica says so:
    it counts as gone at once)."""
    if isinstance(store, SQLiteStore):
        await store.close()
        later: Any = SQLiteStore(store.path)
        await later.open()
        return later
    owner = store.liveness.owner
    await store.replicas.beat(ReplicaInfo(owner, "leader", "1", "", 0, 0))
    await store.replicas.forget(owner)
    later = PostgresStore(store.engine.dsn)
    await later.open()
    await later.replicas.beat(ReplicaInfo(later.liveness.owner, "leader", "1", "", 0, 0))
    return later


async def test_pending_claims_of_a_run_gone_are_taken_over_once(store: Any) -> None:
    claims: ClaimRepository = store.claims
    await claims.claim("a", "c")
    await claims.claim("b", "c")
    await claims.complete("a")
    assert await claims.pending() == []  # a run's own claims are never pending for it
    assert await claims.reclaim("b") == 0
    later = await later_run(store)
    try:
        pending = await later.claims.pending()
        assert [(p.post_id, p.channel_id, p.attempts) for p in pending] == [("b", "c", 1)]
        assert await later.claims.reclaim("b") == 2
        assert await later.claims.reclaim("b") == 0  # taken: this run's own now
        assert await later.claims.reclaim("a") == 0  # done: nothing to take over
        await later.claims.complete("b")
        assert await later.claims.pending() == []
    finally:
        await later.close()


async def test_claims_prune_only_finished_claims(store: SQLiteStore) -> None:
    claims: ClaimRepository = store.claims
    await claims.claim("old", "c")
    await claims.complete("old")
    await claims.claim("open", "c")
    assert await claims.prune(older_than=0) == 0  # nothing is old enough yet
    assert await claims.prune(older_than=10**12) == 1
    assert not await claims.is_handled("old")
    assert await claims.is_handled("open")


# --- cursors, settings, leases ------------------------------------------------------------------
async def test_cursors_never_move_backwards(store: SQLiteStore) -> None:
    cursors: CursorRepository = store.cursors
    assert await cursors.load() == {}
    await cursors.save({"c1": 100, "c2": 50})
    await cursors.save({"c1": 90, "c2": 60})
    await cursors.save({})
    assert await cursors.load() == {"c1": 100, "c2": 60}


async def test_kv_and_prune(store: SQLiteStore) -> None:
    kv: KeyValue = store.kv
    assert await kv.get("k") is None
    await kv.put("k", "v1")
    await kv.put("k", "v2")
    assert await kv.get("k") == "v2"
    await store.claims.claim("old", "c")
    await store.claims.complete("old")
    await store.claims.claim("open", "c")
    assert await store.prune(older_than=10**12) == 1  # only finished claims go
    assert not await store.claims.is_handled("old")
    assert await store.claims.is_handled("open")
    assert await kv.get("k") == "v2"  # settings are never pruned


async def test_a_lease_is_held_by_one_owner_and_dies_with_the_run(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SQLiteStore(path)
    await s.open()
    leases: LeaseRepository = s.leases
    assert await leases.take("w", "me", 60)
    assert not await leases.take("w", "other", 60)
    assert await leases.take("w", "me", 60)  # renewed by its owner
    assert await leases.take("expired", "me", -1)
    assert await leases.take("expired", "other", 60)  # run out: anyone may take it
    await s.close()
    again = SQLiteStore(path)
    await again.open()
    assert await again.leases.take("w", "other", 60)
    await again.close()


# --- outbox -------------------------------------------------------------------------------------
async def test_outbox_entries_are_queued_once_leased_and_updated(store: SQLiteStore) -> None:
    outbox: OutboxRepository = store.outbox
    assert await outbox.put("a", "job", {"x": 1})
    assert not await outbox.put("a", "job", {"x": 2})
    await outbox.put("b", "other", {})
    assert [e.key for e in await outbox.due(10**12, 600, 1)] == ["a"]
    assert [e.key for e in await outbox.due(10**12, 600, 10)] == ["b"]  # "a" is leased
    await outbox.update("a", retry_at=0, error="x" * 600)  # releases the lease, counts a try
    (again,) = await outbox.due(10**12, 600, 10)
    assert (again.key, again.attempts, again.payload) == ("a", 1, {"x": 1})
    await outbox.update("a", state="filed", result={"id": 7}, notified=True)
    entry = await outbox.get("a")
    assert entry is not None
    assert (entry.state, entry.result, entry.notified) == ("filed", {"id": 7}, True)
    assert [e.key for e in await outbox.open("job")] == ["a"]
    assert [e.key for e in await outbox.open("job", since=entry.created_at)] == ["a"]
    assert await outbox.open("job", since=entry.created_at + 1) == []
    await outbox.update("a", state="done")
    assert await outbox.open("job") == []
    assert await outbox.get("missing") is None
    assert await outbox.counts() == {"done": 1, "queued": 1}


async def test_progress_keeps_the_lease_and_release_frees_it(store: SQLiteStore) -> None:
    """Recording a step (filed, notified) while the entry's run goes on keeps the run's lease,
    so the worker does not lease the entry again behind its back; a release makes it due."""
    outbox: OutboxRepository = store.outbox
    await outbox.put("t", "ticket", {})
    assert [e.key for e in await outbox.due(10**12, 600, 5)] == ["t"]
    await outbox.update("t", state="filed", result={"id": 7})
    await outbox.update("t", notified=True)
    assert await outbox.due(10**12, 600, 5) == []
    await outbox.update("t", release=True)
    (entry,) = await outbox.due(10**12, 600, 5)
    assert (entry.key, entry.state, entry.result, entry.attempts) == ("t", "filed", {"id": 7}, 0)


async def test_outbox_requeue_and_finish_follow_the_latest_revision(store: SQLiteStore) -> None:
    outbox: OutboxRepository = store.outbox
    await outbox.requeue("render", "alert-render", {"revision": 1})
    await outbox.due(10**12, 600, 10)
    # Queued again for a later revision while revision 1 is being carried out.
    await outbox.requeue("render", "alert-render", {"revision": 2})
    assert not await outbox.finish("render", 1)
    entry = await outbox.get("render")
    assert entry is not None and entry.state == "queued" and entry.payload == {"revision": 2}
    assert [e.key for e in await outbox.due(10**12, 600, 10)] == ["render"]  # released
    assert await outbox.finish("render", 2)
    entry = await outbox.get("render")
    assert entry is not None and entry.state == "done"


async def test_outbox_prune_keeps_unfinished_entries(store: SQLiteStore) -> None:
    outbox: OutboxRepository = store.outbox
    for key in ("done", "failed", "queued"):
        await outbox.put(key, "job", {})
    await outbox.update("done", state="done")
    await outbox.update("failed", state="failed")
    assert await outbox.prune(older_than=0) == 0
    assert await outbox.prune(older_than=10**12) == 2
    assert await outbox.counts() == {"queued": 1}


# --- tickets ------------------------------------------------------------------------------------
async def test_ticket_links_statuses_and_seen_comments(store: SQLiteStore) -> None:
    tickets: TicketRepository = store.tickets
    first = link("7", root="root")
    await tickets.link(first)
    await tickets.link(link("7", root="elsewhere"))  # a linked ticket keeps its thread
    await tickets.link(link("8", requester_id="u2"))
    assert await tickets.by_root("root") == first
    assert await tickets.by_root("nowhere") is None
    assert await tickets.get("glpi", "7") == first
    assert await tickets.get("redmine", "7") is None
    assert await tickets.linked_roots() == {"root", "r8"}
    assert await tickets.linked_roots(since=time.time() - 60) == {"root", "r8"}
    assert await tickets.linked_roots(since=time.time() + 60) == set()
    assert await tickets.set_status("glpi", "7", "solved", False) == 1
    assert await tickets.set_status("glpi", "404", "solved", False) == 0
    assert [t.ticket_id for t in await tickets.find()] == ["8"]
    (solved,) = await tickets.find(open_only=False, requester_id="u1")
    assert (solved.status, solved.open, solved.status_changes) == ("solved", False, 1)
    await tickets.mark_comments_seen("glpi", "7", ["1", "2"])
    await tickets.mark_comments_seen("glpi", "7", ["2"])
    await tickets.mark_comments_seen("glpi", "7", [])
    assert await tickets.seen_comments("glpi", "7") == {"1", "2"}
    assert await tickets.seen_comments("glpi", "8") == set()
    # Only the follow-ups of tickets no longer watched go: open ones are always watched.
    await tickets.mark_comments_seen("glpi", "8", ["3"])
    assert await tickets.prune(older_than=10**12) == 2
    assert await tickets.seen_comments("glpi", "7") == set()
    assert await tickets.seen_comments("glpi", "8") == {"3"}
    assert await tickets.get("glpi", "7") == solved  # the link itself stays


async def test_solved_tickets_stay_watched_for_a_while(store: SQLiteStore) -> None:
    tickets: TicketRepository = store.tickets
    await tickets.link(link("1"))
    await tickets.link(link("2"))
    await tickets.link(dataclasses.replace(link("3", root="alertpost"), origin="alert"))
    assert [t.ticket_id for t in await tickets.watched(1000.0)] == ["1", "2", "3"]
    # A ticket opened from an alert is watched, but its post's replies are not the ticket's.
    assert await tickets.linked_roots() == {"r1", "r2"}
    assert (await tickets.get("glpi", "3")).origin == "alert"  # type: ignore[union-attr]
    await tickets.set_status("glpi", "1", "solved", False, watch_until=2000.0)
    await tickets.set_status("glpi", "2", "closed", False)  # gone: no longer watched
    assert [t.ticket_id for t in await tickets.watched(1000.0)] == ["1", "3"]
    assert [t.ticket_id for t in await tickets.watched(2500.0)] == ["3"]
    # Reopened: watched as an open ticket again, whatever the time.
    await tickets.set_status("glpi", "1", "in progress", True)
    assert [t.ticket_id for t in await tickets.watched(10**12)] == ["1", "3"]
    # What was seen of a solved ticket is kept while it is watched.
    await tickets.set_status("glpi", "1", "solved", False, watch_until=2000.0)
    await tickets.mark_comments_seen("glpi", "1", ["a"])
    assert await tickets.prune(older_than=1500.0) == 0
    assert await tickets.prune(older_than=2500.0) == 1


# --- alerts -------------------------------------------------------------------------------------
async def test_alerts_keep_state_revisions_and_notes(store: SQLiteStore) -> None:
    alerts: AlertRepository = store.alerts
    assert await alerts.get("am", "k") is None
    first = await alerts.save("am", "k", "c", incident("firing"), ["one", "two"])
    assert (first.revision, first.post_id, first.state) == (1, "", incident("firing"))
    await alerts.set_post("am", "k", "post1")
    second = await alerts.save("am", "k", "c", incident("resolved"), ["three"])
    assert (second.revision, second.post_id, second.created_at) == (2, "post1",
                                                                     first.created_at)
    assert await alerts.get("am", "k") == second
    notes = await alerts.notes("am", "k")
    assert [t for _, t in notes] == ["one", "two", "three"]
    await alerts.note_posted(notes[0][0])
    assert [t for _, t in await alerts.notes("am", "k")] == ["two", "three"]
    await alerts.mark_notes_posted("am", "k")
    assert await alerts.notes("am", "k") == []
    await alerts.save("am", "other", "c2", incident())
    assert await alerts.created_since("c", 0) == 1
    assert await alerts.created_since("c", second.created_at + 3600) == 0


# --- the store as a whole -----------------------------------------------------------------------
async def test_prune_forgets_resolved_incidents_and_closed_tickets_follow_ups(
        store: SQLiteStore) -> None:
    alerts: AlertRepository = store.alerts
    await alerts.save("am", "gone", "c", incident("resolved"), ["resolved note"])
    await alerts.save("am", "firing", "c", incident("firing"), ["note"])
    await alerts.save("am", "acting", "c", incident("resolved", pending="ack"))
    # Resolved, but its post has not been edited yet (Mattermost was down): kept for that.
    await alerts.save("am", "unrendered", "c", incident("resolved"))
    await store.outbox.requeue("alert-render:am:unrendered", "alert-render",
                               {"source": "am", "key": "unrendered", "revision": 1})
    await alerts.save("digest", "all-resolved", "c", DigestState("am", count=3, resolved=3))
    await alerts.save("digest", "some-firing", "c", DigestState("am", count=3, resolved=1))
    for tid, is_open in (("1", False), ("2", True)):
        await store.tickets.link(link(tid, is_open=is_open))
        await store.tickets.mark_comments_seen("glpi", tid, ["a", "b"])
    # Nothing is old enough yet.
    assert await store.prune(older_than=0) == 0
    assert await alerts.get("am", "gone") is not None
    # The incident, its note, the digest and the closed ticket's two follow-ups.
    assert await store.prune(older_than=10**12) == 5
    assert await alerts.get("am", "gone") is None
    assert await alerts.notes("am", "gone") == []
    assert await alerts.get("digest", "all-resolved") is None
    for kept in (("am", "firing"), ("am", "acting"), ("am", "unrendered"),
                 ("digest", "some-firing")):
        assert await alerts.get(*kept) is not None, kept
    assert [t for _, t in await alerts.notes("am", "firing")] == ["note"]
    assert await store.tickets.seen_comments("glpi", "1") == set()
    assert await store.tickets.seen_comments("glpi", "2") == {"a", "b"}


async def test_prune_drops_posted_notes_of_incidents_not_updated_since(
        store: SQLiteStore) -> None:
    await store.alerts.save("am", "firing", "c", incident("firing"),
                            ["shown", "waiting"])
    shown, _ = await store.alerts.notes("am", "firing")
    await store.alerts.note_posted(shown[0])
    assert await store.alerts.prune(older_than=10**12) == 1
    assert [t for _, t in await store.alerts.notes("am", "firing")] == ["waiting"]


async def test_each_call_is_one_round_trip(store: SQLiteStore,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine serves one request per call, the store-wide prune included."""
    requests = 0
    # Every request of the PostgreSQL engine, in a transaction of ours or not, goes through
    # `_attempt`.
    name = "_attempt" if hasattr(store.engine, "_attempt") else "run"
    run = getattr(store.engine, name)

    async def counting(fn: Callable[[sqlite3.Connection], Any], *args: Any,
                       **options: Any) -> Any:
        nonlocal requests
        requests += 1
        return await run(fn, *args, **options)

    monkeypatch.setattr(store.engine, name, counting)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.claims.claim("p", "c"), lambda: store.claims.reclaim("p"),
        lambda: store.claims.pending(), lambda: store.cursors.save({"c": 1}),
        lambda: store.kv.put("k", "v"), lambda: store.leases.take("l", "me", 1),
        lambda: store.outbox.put("o", "job", {}), lambda: store.outbox.due(10**12, 1, 5),
        lambda: store.outbox.finish("o", 1),
        lambda: store.tickets.mark_comments_seen("glpi", "1", ["a", "b"]),
        lambda: store.alerts.save("am", "k", "c", incident(), ["n1", "n2"]),
        lambda: store.prune(10**12)]
    for call in calls:
        before = requests
        await call()
        assert requests == before + 1, call


async def test_a_burst_is_committed_together_and_a_failure_fails_alone(
        tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SQLiteStore(path)
    await s.open()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO kv(key, value) VALUES ('half', 'done')")
        raise ValueError("boom")

    results = await asyncio.gather(
        *(s.claims.claim(f"p{i}", "c") for i in range(200)),
        s.engine.run(broken), s.kv.put("k", "v"), return_exceptions=True)
    assert results[:200] == [True] * 200
    assert isinstance(results[200], ValueError)
    assert await s.kv.get("k") == "v"
    assert await s.kv.get("half") is None  # the failing request left nothing behind
    await s.close()
    # What was answered is on disk.
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM handled").fetchone()[0] == 200
    db.close()


async def test_one_turn_of_the_loop_is_one_transaction(tmp_path: Path) -> None:
    """What is asked during one turn reaches the thread together and is committed together;
    a request made after an answer came back is a transaction of its own."""
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    commits: list[int] = []
    s.engine._db.set_trace_callback(  # type: ignore[union-attr]
        lambda sql: commits.append(1) if sql == "COMMIT" else None)
    await asyncio.gather(*(s.claims.claim(f"p{i}", "c") for i in range(50)))
    assert len(commits) == 1
    await s.claims.claim("q", "c")
    await s.kv.put("k", "v")
    assert len(commits) == 3
    await s.close()


def count_flushes(s: SQLiteStore) -> list[int]:
    """The disk flushes of `s`'s log, counted as they happen."""
    disk = s.engine._disk
    assert disk is not None
    flushes: list[int] = []
    fsync = disk._fsync

    def counted() -> None:
        fsync()
        flushes.append(1)

    disk._fsync = counted  # type: ignore[method-assign]
    return flushes


async def test_durable_answers_wait_for_the_disk_and_share_a_flush(tmp_path: Path) -> None:
    """A durable request hears back after a flush of the log that covers everything it could
    have seen; requests made together share one flush; lazy ones and reads of flushed state
    wait for none."""
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    flushes = count_flushes(s)
    assert await s.claims.claim("p", "c")
    assert len(flushes) == 1
    assert all(await asyncio.gather(*(s.claims.claim(f"p{i}", "c") for i in range(100))))
    assert len(flushes) == 2  # one for the hundred
    assert await s.kv.get("nothing") is None  # everything it could see is on disk already
    assert len(flushes) == 2
    # A completion, a lease and a step marked durable=False are answered without a flush...
    await s.claims.complete("p")
    assert await s.outbox.put("o", "job", {})
    assert len(flushes) == 3
    assert [e.key for e in await s.outbox.due(10**12, 60, 5)] == ["o"]
    await s.outbox.update("o", state="filed", durable=False)
    assert len(flushes) == 3
    # ...but a durable request that could have seen them waits until they are on disk.
    assert (await s.outbox.get("o")).state == "filed"  # type: ignore[union-attr]
    assert len(flushes) == 4
    await s.close()


async def test_a_lazy_claim_is_answered_before_the_disk_and_a_barrier_waits_for_it(
        tmp_path: Path) -> None:
    """A claim made with durable=False is answered with no flush; the barrier taken after it
    waits for one flush that covers it (and for none once it is on disk); a durable request
    made after it carries it to the disk too."""
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    flushes = count_flushes(s)
    assert await s.claims.claim("p", "c", durable=False)
    assert not await s.claims.claim("p", "c", durable=False)  # once, lazily or not
    assert len(flushes) == 0
    on_disk = s.barrier()
    await on_disk()
    assert len(flushes) == 1
    await on_disk()  # satisfied: no second flush
    await s.barrier()()
    assert len(flushes) == 1
    # A durable write after a lazy claim: one flush covers both, and the barrier is then free.
    assert await s.claims.claim("q", "c", durable=False)
    after_q = s.barrier()
    assert await s.outbox.put("ticket:q", "ticket", {})
    assert len(flushes) == 2
    await after_q()
    assert len(flushes) == 2
    await s.close()


async def test_a_lazy_claim_shares_the_commit_of_what_follows_it(tmp_path: Path) -> None:
    """A lazy claim is answered at once, inside the turn's transaction: the request made next
    in the same turn commits with it. A request run at once that fails leaves nothing and
    takes nothing else with it; a barrier taken before the commit waits for it and its flush."""
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    flushes = count_flushes(s)
    commits: list[int] = []
    s.engine._db.set_trace_callback(  # type: ignore[union-attr]
        lambda sql: commits.append(1) if sql == "COMMIT" else None)

    async def claim_then_queue(post: str) -> bool:
        claimed = await s.claims.claim(post, "c", durable=False)
        on_disk = s.barrier()
        assert claimed
        assert await s.outbox.put(f"ticket:{post}", "ticket", {})
        await on_disk()
        return claimed

    assert await claim_then_queue("p")
    assert (len(commits), len(flushes)) == (1, 1)

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO kv(key, value) VALUES ('half', 'done')")
        raise ValueError("boom")

    assert await s.claims.claim("q", "c", durable=False)
    with pytest.raises(ValueError, match="boom"):
        await s.engine.at_once(broken)
    waiting = s.barrier()
    assert not await s.claims.claim("q", "c", durable=False)  # the first one still stands
    await waiting()
    assert (len(commits), len(flushes)) == (2, 2)
    assert await s.kv.get("half") is None
    assert await s.claims.is_handled("q")
    await s.close()


async def test_a_barrier_fails_when_the_disk_does(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    disk = s.engine._disk
    assert disk is not None
    assert await s.claims.claim("p", "c", durable=False)

    def broken() -> None:
        raise OSError(5, "Input/output error")

    disk._fsync = broken  # type: ignore[method-assign]
    with pytest.raises(StoreDiskError, match="cannot flush the state file to disk"):
        await s.barrier()()
    await s.close()


async def test_a_failed_flush_fails_the_durable_answers(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    disk = s.engine._disk
    assert disk is not None

    def broken() -> None:
        raise OSError(5, "Input/output error")

    disk._fsync = broken  # type: ignore[method-assign]
    with pytest.raises(StoreDiskError, match="cannot flush the state file to disk"):
        await s.claims.claim("p", "c")
    await s.close()


async def test_the_log_is_copied_back_and_does_not_grow_without_bound(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    s.engine.checkpoint_every = 50
    await s.open()
    wal = tmp_path / "s.db-wal"
    for i in range(2000):
        await s.claims.claim(f"p{i}", "c")
    # Without checkpoints, 2,000 commits leave at least 2,000 pages (8 MB) in the log.
    assert wal.stat().st_size < 2 * 1024 * 1024
    await s.close()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT count(*) FROM handled").fetchone()[0] == 2000
    db.close()


async def test_a_second_opening_of_one_state_file_is_refused(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "s.db")
    await first.open()
    second = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(StoreInUse, match=rf"in use by another running Switchboard "
                                         rf"\(process {os.getpid()}\)"):
        await second.open()
    await first.close()
    await second.open()  # free again once the first is closed
    await second.kv.put("k", "v")
    await second.close()


async def test_the_store_is_used_from_its_loop_only(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()

    def elsewhere() -> None:
        asyncio.run(s.kv.get("k"))

    with pytest.raises(RuntimeError, match="event loop's thread only"):
        await asyncio.get_running_loop().run_in_executor(None, elsewhere)
    await s.close()


async def test_a_write_nobody_waits_for_travels_with_the_next_request(tmp_path: Path) -> None:
    """`later` writes go ahead of the next request (which sees them), or on their own after
    `linger`; closing the store writes what is left; a failing one is logged."""
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    commits: list[int] = []
    s.engine._db.set_trace_callback(  # type: ignore[union-attr]
        lambda sql: commits.append(1) if sql == "COMMIT" else None)
    await s.claims.claim("p", "c")
    await s.claims.claim("q", "c")
    assert len(commits) == 2
    await s.claims.complete("p")
    assert len(commits) == 2  # not yet written
    assert await s.claims.is_handled("q")
    assert len(commits) == 3  # together with the read
    assert s.engine._db.execute(  # type: ignore[union-attr]
        "SELECT state FROM handled WHERE post_id = 'p'").fetchone() == ("done",)
    await s.claims.complete("q")
    await asyncio.sleep(s.engine.linger * 2)
    assert len(commits) == 4  # on its own, after a while
    s.engine.later(lambda db: db.execute("INSERT INTO kv(key, value) VALUES ('a', '1')"))
    await s.close()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT value FROM kv WHERE key = 'a'").fetchone() == ("1",)
    db.close()
    await s.close()


async def test_a_closed_store_refuses_requests(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(RuntimeError, match="not open"):
        await s.kv.get("k")


# --- schema -------------------------------------------------------------------------------------
async def test_schema_is_versioned_and_newer_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    s = SQLiteStore(path)
    assert s.schema_version == len(MIGRATIONS)
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


async def test_an_older_file_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO kv(key, value) VALUES ('initialized', '1')")
    db.execute("INSERT INTO cursors(channel_id, last_create_at) VALUES ('c', 42)")
    db.execute("INSERT INTO handled(post_id, channel_id, state, claimed_at) "
               "VALUES ('p', 'c', 'pending', 1)")
    db.execute("PRAGMA user_version=1")
    db.close()
    s = SQLiteStore(path)
    await s.open()
    try:
        assert await s.kv.get("initialized") == "1"
        assert await s.cursors.load() == {"c": 42}
        assert [p.post_id for p in await s.claims.pending()] == ["p"]
        assert await s.outbox.put("o", "job", {})  # the later tables exist
        assert await s.alerts.created_since("c", 0) == 0
    finally:
        await s.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()


# --- the state file, from another process -------------------------------------------------------
async def test_settings_of_a_state_file_are_read_and_changed_beside_a_running_store(
        tmp_path: Path) -> None:
    path = str(tmp_path / "new" / "s.db")
    assert read_setting(path, "k") is None  # no file yet
    assert read_setting(":memory:", "k") is None
    await change_setting(path, "k", lambda old: f"{old}+1")  # creates the file
    assert read_setting(path, "k") == "None+1"
    running = SQLiteStore(path)
    await running.open()
    try:
        await change_setting(path, "k", lambda old: f"{old}+2")
        assert await running.kv.get("k") == "None+1+2"
        await running.kv.put("k", "from the bot")
        assert read_setting(path, "k") == "from the bot"
    finally:
        await running.close()


async def test_a_state_file_that_is_no_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database, and long enough to look like a header" * 4)
    assert read_setting(str(path), "k") is None
    with pytest.raises(StoreError):
        await change_setting(str(path), "k", lambda old: "v")


def test_a_file_without_settings_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sqlite3.connect(path).close()
    assert read_setting(str(path), "k") is None


# --- the store's boundary -----------------------------------------------------------------------
SQL = re.compile(r"^\s*(import sqlite3|from sqlite3 )|\b(SELECT \S.*\bFROM|INSERT (OR \w+ )?INTO|"
                 r"UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX)|PRAGMA \w+)\b")


def test_no_sql_outside_the_store_package() -> None:
    store_package = ROOT / "plugin" / "store"
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for folder in ("plugin", "bridge") for path in sorted((ROOT / folder).rglob("*.py"))
        if store_package not in path.parents
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SQL.search(line)]
    assert offenders == []


def test_the_boundary_check_sees_sql() -> None:
    for line in ('import sqlite3', 'db.execute("SELECT value FROM kv WHERE key = ?")',
                 '"INSERT OR IGNORE INTO handled(post_id) VALUES (?)"',
                 '"UPDATE outbox SET lease_until = 0"', '"DELETE FROM leases"',
                 '"CREATE TABLE t (x)"', '"PRAGMA user_version"'):
        assert SQL.search(line), line
    for line in ("# select a team, then insert the token", "from .store import Store",
                 "SELECT the channel you want"):
        assert not SQL.search(line), line
