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
    stores = [PostgresStore(postgres_server.dsn, exclusive=False) for _ in range(3)]
    # Opened together: one of them migrates, the others wait for it under the lock.
    await asyncio.gather(*(s.open() for s in stores))
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


async def test_a_newer_schema_is_refused(postgres_server: PostgresServer) -> None:
    await empty_schema(postgres_server.dsn)
    store = PostgresStore(postgres_server.dsn)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        await conn.execute("INSERT INTO switchboard_schema(version) VALUES ($1)",
                           len(MIGRATIONS) + 1)
    finally:
        await conn.close()
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


async def test_a_second_exclusive_run_is_refused(postgres_server: PostgresServer) -> None:
    await empty_schema(postgres_server.dsn)
    first = PostgresStore(postgres_server.dsn)
    await first.open()
    try:
        with pytest.raises(StoreInUse, match="in use by another running Switchboard"):
            await PostgresStore(postgres_server.dsn).open()
    finally:
        await first.close()
    again = PostgresStore(postgres_server.dsn)  # its lock went with the first run
    await again.open()
    await again.close()


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
