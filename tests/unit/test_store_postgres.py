"""The PostgreSQL store where several replicas share one database: a post is claimed once, an
outbox entry is leased to one replica at a time, a lease has one owner until it lapses, and
replicas opening together migrate the schema once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest

from plugin.store import (
    Liveness,
    ReplicaInfo,
    StoreError,
    StoreInUse,
    change_setting,
    open_store,
    read_setting,
    shown,
)
from plugin.store.postgres import MIGRATIONS, PostgresStore
from tests.servers.postgres import PostgresServer, empty_schema


@pytest.fixture
async def replicas(postgres_server: PostgresServer) -> AsyncIterator[list[PostgresStore]]:
    await empty_schema(postgres_server.dsn)
    stores = [PostgresStore(postgres_server.dsn, liveness=Liveness(f"r{n}", dead_after=0.5))
              for n in range(3)]
    # Opened together: one of them migrates, the others wait for it under the lock.
    await asyncio.gather(*(s.open() for s in stores))
    for store in stores:  # each seen running, as a replica says every second
        await store.replicas.beat(ReplicaInfo(store.liveness.owner, "standby", "1", "", 0, 0))
    yield stores
    for s in stores:
        await s.close()


async def test_a_post_is_claimed_by_one_replica(replicas: list[PostgresStore]) -> None:
    for n in range(20):
        won = await asyncio.gather(*(s.claims.claim(f"post{n}", "c") for s in replicas))
        assert sorted(won) == [False, False, True]


async def test_due_entries_are_leased_to_one_replica_at_a_time(
        replicas: list[PostgresStore]) -> None:
    for n in range(30):
        assert await replicas[0].outbox.put(f"job{n}", "ticket", {"n": n})
    now = time.time()
    taken = await asyncio.gather(*(s.outbox.due(now, 60, 12) for s in replicas))
    keys = [e.key for batch in taken for e in batch]
    assert len(keys) == 30 and len(set(keys)) == 30
    assert await replicas[0].outbox.due(now, 60, 30) == []  # all leased
    # A released entry is due again, to whoever asks first.
    await replicas[1].outbox.update(keys[0], release=True)
    assert [e.key for e in await replicas[2].outbox.due(time.time(), 60, 30)] == [keys[0]]


async def test_a_lease_has_one_owner_until_it_lapses(replicas: list[PostgresStore]) -> None:
    a, b, _ = replicas
    assert await a.leases.take("watch", "replica-a", 0.5)
    assert not await b.leases.take("watch", "replica-b", 0.5)
    assert await a.leases.take("watch", "replica-a", 0.5)  # renewed by its owner
    await asyncio.sleep(0.6)
    assert await b.leases.take("watch", "replica-b", 10)  # taken over once lapsed
    assert not await a.leases.take("watch", "replica-a", 10)


async def test_a_schema_one_newer_is_run_on_and_a_newer_one_refused(
        postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture) -> None:
    await empty_schema(postgres_server.dsn)
    store = PostgresStore(postgres_server.dsn)
    await store.open()
    await store.close()

    async def newer(version: int) -> None:
        conn = await asyncpg.connect(postgres_server.dsn)
        try:
            await conn.execute("INSERT INTO switchboard_schema(version) VALUES ($1)", version)
        finally:
            await conn.close()

    # A rolling upgrade: the first new replica migrated; an old one still runs on it.
    await newer(len(MIGRATIONS) + 1)
    old = PostgresStore(postgres_server.dsn)
    await old.open()
    assert await old.claims.claim("during-the-upgrade", "c")
    await old.close()
    assert "one newer than this Switchboard's" in caplog.text
    await newer(len(MIGRATIONS) + 2)
    with pytest.raises(StoreError, match="newer than this Switchboard understands"):
        await PostgresStore(postgres_server.dsn).open()


async def test_an_unreachable_database_is_a_store_error(postgres_server: PostgresServer) -> None:
    wrong = postgres_server.dsn.replace(f":{postgres_server.port}/", ":1/")
    with pytest.raises(StoreError, match="cannot open the PostgreSQL state store"):
        await PostgresStore(wrong).open()


async def test_settings_are_read_and_changed_beside_running_replicas(
        replicas: list[PostgresStore], postgres_server: PostgresServer) -> None:
    dsn = postgres_server.dsn
    assert await read_setting(dsn, "tokens") is None
    await change_setting(dsn, "tokens", lambda old: f"{old}+1")
    assert await replicas[0].kv.get("tokens") == "None+1"
    await replicas[1].kv.put("tokens", "from a replica")
    assert await read_setting(dsn, "tokens") == "from a replica"


async def test_a_gone_replicas_claims_and_leases_are_taken_over_by_one(
        replicas: list[PostgresStore]) -> None:
    a, b, c = replicas
    assert await a.claims.claim("p1", "c")
    assert await a.outbox.put_leased("job", "ticket", {}, 120) is not None
    # While `a` is seen, nobody takes what it holds.
    assert await b.claims.pending() == []
    assert await b.outbox.due(time.time(), 60, 10) == []
    await asyncio.sleep(0.6)
    # `b` and `c` beat on, as replicas do every second: each sees the other running.
    for store in (b, c, b):
        await store.replicas.beat(ReplicaInfo(store.liveness.owner, "standby", "1", "", 0, 0))
    # `a` is gone: its claim is pending for the others, and one of them takes it.
    assert [p.post_id for p in await b.claims.pending()] == ["p1"]
    assert await a.claims.pending() == []  # never its own
    taken = await asyncio.gather(b.claims.reclaim("p1"), c.claims.reclaim("p1"))
    assert sorted(taken) == [0, 2]
    # Its outbox entry too, long before its lease runs out, counted as a further attempt.
    due = await asyncio.gather(*(s.outbox.due(time.time(), 60, 10) for s in (b, c)))
    entries = [e for batch in due for e in batch]
    assert [(e.key, e.attempts) for e in entries] == [("job", 1)]


async def test_leases_of_running_entries_are_renewed_by_their_owner(
        replicas: list[PostgresStore]) -> None:
    a, b, _ = replicas
    await a.replicas.beat(ReplicaInfo("r0", "leader", "1", "", 0, 0))
    await b.replicas.beat(ReplicaInfo("r1", "standby", "1", "", 0, 0))
    assert await a.outbox.put_leased("job", "ticket", {}, 0.3) is not None
    await b.outbox.renew(["job"], 60)  # not its lease: nothing changes
    await a.outbox.renew(["job"], 0.3)
    await asyncio.sleep(0.2)
    await a.outbox.renew(["job"], 0.3)
    await a.replicas.beat(ReplicaInfo("r0", "leader", "1", "", 0, 0))
    await b.replicas.beat(ReplicaInfo("r1", "standby", "1", "", 0, 0))
    await asyncio.sleep(0.2)
    assert await b.outbox.due(time.time(), 60, 10) == []  # renewed: still a's
    await asyncio.sleep(0.2)
    assert [e.key for e in await b.outbox.due(time.time(), 60, 10)] == ["job"]


async def test_a_lease_is_released_and_its_holder_known(replicas: list[PostgresStore]) -> None:
    a, b, _ = replicas
    assert await a.leases.take("stream", "r0", 30)
    assert (await b.leases.holder("stream") or ("", 0))[0] == "r0"
    await b.leases.release("stream", "r1")  # not its own: still held
    assert not await b.leases.take("stream", "r1", 30)
    await a.leases.release("stream", "r0")
    assert await b.leases.holder("stream") is None
    assert await b.leases.take("stream", "r1", 30)


async def test_a_restarted_database_is_waited_for(postgres_server: PostgresServer) -> None:
    await empty_schema(postgres_server.dsn)
    store = PostgresStore(postgres_server.dsn)
    await store.open()
    try:
        assert await store.claims.claim("before", "c")
        postgres_server.restart(down_for=1.0)
        # Cut connections, a refused one while it starts: the request waits and succeeds.
        assert await store.claims.claim("after", "c")
        async with store.locked("ticket|glpi|1"):
            pass
        assert await store.claims.is_handled("before")
    finally:
        await store.close()


def test_the_location_picks_the_store_and_hides_the_password() -> None:
    assert isinstance(open_store("postgresql://sb:s3cret@db:5432/switchboard"), PostgresStore)
    assert not isinstance(open_store("./state/switchboard.db"), PostgresStore)
    assert shown("postgresql://sb:s3cret@db:5432/switchboard") == \
        "postgresql://sb:***@db:5432/switchboard"
    assert shown("postgres://db/switchboard") == "postgres://db/switchboard"
    assert shown("./state/switchboard.db") == "./state/switchboard.db"


async def test_a_named_lock_is_held_by_one_replica_at_a_time(
        replicas: list[PostgresStore]) -> None:
    order: list[str] = []

    async def work(store: PostgresStore, who: str) -> None:
        async with store.locked("alert|am|disk"):
            order.append(f"{who} in")
            await asyncio.sleep(0.2)
            order.append(f"{who} out")

    await asyncio.gather(work(replicas[0], "a"), work(replicas[1], "b"),
                         work(replicas[2], "c"))
    # Never two inside at once: each "in" is followed by its own "out".
    assert [x.split()[1] for x in order] == ["in", "out"] * 3
    assert all(order[i].split()[0] == order[i + 1].split()[0] for i in range(0, 6, 2))
    # Other names do not wait for it.
    async with replicas[0].locked("alert|am|disk"):
        async with asyncio.timeout(1):
            async with replicas[1].locked("alert|am|cpu"):
                pass


async def test_a_bot_of_the_release_before_replicas_is_waited_for(
        postgres_server: PostgresServer) -> None:
    """That release ran alone, holding an advisory lock: a replica does not start beside it
    (each would take the other's claims for those of a replica gone)."""
    await empty_schema(postgres_server.dsn)
    alone = await asyncpg.connect(postgres_server.dsn)
    try:
        assert await alone.fetchval("SELECT pg_try_advisory_lock($1)", 0x73776272)
        with pytest.raises(StoreInUse, match="release before replicas"):
            await PostgresStore(postgres_server.dsn).open()
    finally:
        await alone.close()
    store = PostgresStore(postgres_server.dsn)  # once it stopped
    await store.open()
    await store.close()


async def test_a_claim_asked_again_after_its_answer_was_lost_is_still_won(
        replicas: list[PostgresStore], monkeypatch: pytest.MonkeyPatch) -> None:
    """A request cut after its commit is asked again: the claim it made must not look like
    another's (the post would be dropped as a duplicate)."""
    a, b, _ = replicas
    monkeypatch.setattr("plugin.store.postgres.basics.secrets.token_hex", lambda n: "call-1")
    assert await a.claims.claim("p1", "c")
    assert await a.claims.claim("p1", "c")  # the same call, again
    monkeypatch.setattr("plugin.store.postgres.basics.secrets.token_hex", lambda n: "call-2")
    assert not await b.claims.claim("p1", "c")  # another call: taken
    assert not await a.claims.claim("p1", "c")
