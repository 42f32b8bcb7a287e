"""The outbox: durable once-per-key requests, retries with backoff, resumption after a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from plugin.outbox import Outbox, Retry
from plugin.store import OutboxEntry, SQLiteStore, TicketLink


async def run_until(outbox: Outbox, cond: object, timeout: float = 5.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.run(stop))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not (await cond() if asyncio.iscoroutinefunction(cond) else cond()):  # type: ignore
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_put_is_once_and_entries_run_to_done(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    done: list[str] = []

    async def execute(entry: OutboxEntry) -> None:
        done.append(entry.key)
        await store.outbox.update(entry.key, state="done", result={"n": len(done)})

    box = Outbox(store, concurrency=4)
    box.register("job", execute)
    assert await box.put("a", "job", {"x": 1})
    assert not await box.put("a", "job", {"x": 2})
    await box.put("b", "job", {})
    await run_until(box, lambda: len(done) == 2)
    entry = await store.outbox.get("a")
    assert entry is not None and entry.state == "done" and entry.payload == {"x": 1}
    assert await store.outbox.counts() == {"done": 2}
    await store.close()


async def test_retry_backs_off_and_notifies_each_time(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    calls: list[int] = []
    notices: list[str] = []

    async def flaky(entry: OutboxEntry) -> None:
        calls.append(entry.attempts)
        if len(calls) < 3:
            raise Retry("down")
        await store.outbox.update(entry.key, state="done")

    async def notice(entry: OutboxEntry, reason: str) -> None:
        notices.append(reason)

    box = Outbox(store, retry_initial=0.05, retry_max=0.1)
    box.register("job", flaky, notice)
    await box.put("k", "job", {})
    await run_until(box, lambda: len(calls) == 3)
    assert calls == [0, 1, 2]
    assert notices == ["down", "down"]
    entry = await store.outbox.get("k")
    assert entry is not None and entry.state == "done"
    await store.close()


async def test_an_unexpected_error_fails_the_entry_and_leases_die_with_the_process(
        tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()

    async def broken(entry: OutboxEntry) -> None:
        raise KeyError("bug")

    box = Outbox(store)
    box.register("job", broken)
    await box.put("k", "job", {})
    async def failed() -> bool:
        entry = await store.outbox.get("k")
        return entry is not None and entry.state == "failed"

    await run_until(box, failed)
    # A lease taken by a run that died does not hold up the next run.
    await store.outbox.put("held", "job", {})
    assert [e.key for e in await store.outbox.due(10**12, 600, 10)] == ["held"]
    assert await store.outbox.due(10**12, 600, 10) == []
    await store.close()
    again = SQLiteStore(path)
    await again.open()
    assert [e.key for e in await again.outbox.due(10**12, 600, 10)] == ["held"]
    await again.close()


async def test_ticket_links_and_comments(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    link = TicketLink("glpi", "7", "c", "root", "u1", "alice", "Printer", "http://x/7", "new",
                      0, True)
    await store.tickets.link(link)
    await store.tickets.link(link)
    assert await store.tickets.by_root("root") == link
    assert await store.tickets.linked_roots() == {"root"}
    assert await store.tickets.set_status("glpi", "7", "solved", False) == 1
    assert await store.tickets.find(open_only=True) == []
    assert (await store.tickets.find(open_only=False, requester_id="u1"))[0].status == "solved"
    await store.tickets.mark_comments_seen("glpi", "7", ["1", "2"])
    await store.tickets.mark_comments_seen("glpi", "7", ["2"])
    assert await store.tickets.seen_comments("glpi", "7") == {"1", "2"}
    assert await store.leases.take("w", "me", 60)
    assert not await store.leases.take("w", "other", 60)
    assert await store.leases.take("w", "me", 60)
    await store.close()


async def test_an_entry_put_while_the_worker_runs_starts_at_once_in_the_workers_context(
        tmp_path: Path) -> None:
    """While the worker runs, a new entry is written leased and started by `put` itself (no
    read of the store, none of the caller's context); beyond the worker's capacity, entries
    wait for a free slot and are read then; a key queued before is not started again."""
    import contextvars

    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    caller = contextvars.ContextVar("caller", default="worker")
    seen: list[tuple[str, str]] = []
    gate = asyncio.Event()

    async def execute(entry: OutboxEntry) -> None:
        seen.append((entry.key, caller.get()))
        await gate.wait()
        await store.outbox.update(entry.key, state="done")

    box = Outbox(store, concurrency=1)  # at most two entries started at a time
    box.register("job", execute)
    reads = 0
    due = store.outbox.due

    async def counted(now: float, lease: float, limit: int) -> list[OutboxEntry]:
        nonlocal reads
        reads += 1
        return await due(now, lease, limit)

    store.outbox.due = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    worker = asyncio.create_task(box.run(stop))
    await asyncio.sleep(0.05)
    reads_before = reads
    caller.set("handler")
    assert await box.put("a", "job", {})
    assert not await box.put("a", "job", {})
    await asyncio.sleep(0.05)
    assert seen == [("a", "worker")] and reads == reads_before
    entry = await store.outbox.get("a")
    assert entry is not None and entry.state == "queued"
    assert not await store.outbox.due(time.time(), 60, 5)  # leased to this run
    assert await box.put("b", "job", {}) and await box.put("c", "job", {})
    await asyncio.sleep(0.05)
    assert sorted(box._running) == ["a", "b"]  # "c" waits for the worker to find a slot
    gate.set()
    deadline = asyncio.get_running_loop().time() + 5
    while await store.outbox.counts() != {"done": 3}:
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(worker, 5)
    assert sorted(seen) == [("a", "worker"), ("b", "worker"), ("c", "worker")]
    await store.close()
