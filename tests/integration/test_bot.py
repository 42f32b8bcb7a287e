"""The Bot in-process with handlers of the test's own, against the simulator over real sockets:
failing and slow handlers, ordering within a thread, what the bot ignores."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin import filters as F
from plugin.app import Bot
from plugin.config import load
from plugin.context import Context
from plugin.handlers import default_routers
from plugin.router import Router
from plugin.sandbox.mattermost import MattermostSimulator, SimulatorThread
from tests.e2e.harness import BOT_TOKEN, SECRET, free_port, write_config

seen: list[tuple[str, str]] = []
router = Router("test")


@router.message(F.Keyword("boom"))
async def boom(text: str) -> None:
    raise RuntimeError("handler bug " + text)


@router.message(F.Keyword("slow"))
async def slow(ctx: Context, text: str) -> None:
    await asyncio.sleep(float(text or "3"))
    await ctx.reply("slow done")


@router.message(F.Keyword("order"))
async def order(ctx: Context, text: str, post: Any) -> None:
    # Later messages sleep less: only the per-thread queue keeps them in order.
    n = int(text)
    await asyncio.sleep(0.01 * (10 - n))
    seen.append((post.root_id or post.id, text))


@router.message(F.Regex(r"^echo (?P<word>\w+)$"))
async def echo(ctx: Context, word: str) -> None:
    await ctx.reply(f"echo: {word}")


#: Threads whose replies matter, decided by the handler of their first message.
linked: set[str] = set()


@router.message(lambda msg: msg.post.root_id in linked)
async def in_linked_thread(ctx: Context, text: str) -> None:
    await ctx.reply(f"noted: {text}")


@router.message(F.Keyword("slowlink"))
async def slowlink(ctx: Context, post: Any) -> None:
    await asyncio.sleep(0.5)  # a tracker taking its time before the thread is linked
    linked.add(post.id)


def running(st: SimulatorThread) -> MattermostSimulator:
    """The running simulator of a started thread."""
    assert st.simulator is not None, "the simulator has not started"
    return st.simulator


@pytest.fixture
def st() -> Iterator[SimulatorThread]:
    thread = SimulatorThread(bot_token=BOT_TOKEN)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
async def bot(st: SimulatorThread, tmp_path: Path) -> AsyncIterator[Bot]:
    env = {"MM_URL": running(st).url, "MM_BOT_TOKEN": BOT_TOKEN, "SWITCHBOARD_SECRET": SECRET,
           "SWITCHBOARD_LISTEN": f"127.0.0.1:{free_port()}",
           "SWITCHBOARD_DB": str(tmp_path / "state.db")}
    config = load(write_config(tmp_path, {"dispatch": {"concurrency": 4}}), env)
    b = Bot(config, [router, *default_routers()])
    task = asyncio.create_task(b.run())
    await until(lambda: b.stream.connected, 10, "the stream")
    yield b
    b.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 15)


async def until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return value


async def post(st: SimulatorThread, channel: str, text: str, user: str = "alice",
               root_id: str = "") -> dict[str, Any]:
    return await asyncio.to_thread(st.call, running(st).post_as(user, channel, text,
                                                           root_id=root_id))


def replies(sim: MattermostSimulator, root: str) -> list[str]:
    return [p["message"] for p in sim.posts()
            if p.get("root_id") == root and p["user_id"] == sim.bot_id]


async def test_failing_handler_apologises_and_the_stream_goes_on(
        st: SimulatorThread, bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    p = await post(st, "helpdesk", "boom now")
    await until(lambda: replies(running(st), p["id"]), 10, "the apology")
    assert replies(running(st), p["id"]) == [bot.runtime.apology()]
    assert "Traceback" not in replies(running(st), p["id"])[0]
    assert any(p["id"] in r.getMessage() and r.exc_info for r in caplog.records)
    q = await post(st, "helpdesk", "echo again")
    await until(lambda: replies(running(st), q["id"]), 10, "the next reply")
    assert replies(running(st), q["id"]) == ["echo: again"]


async def test_a_slow_handler_blocks_nobody(st: SimulatorThread, bot: Bot) -> None:
    s = await post(st, "helpdesk", "slow 3")
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    quick = [await post(st, "helpdesk", f"echo w{i}") for i in range(5)]
    await until(lambda: all(replies(running(st), q["id"]) for q in quick), 10, "quick replies")
    assert time.monotonic() - t0 < 2.5
    assert replies(running(st), s["id"]) == []
    await until(lambda: replies(running(st), s["id"]), 10, "the slow reply")


async def test_order_is_kept_within_a_thread(st: SimulatorThread, bot: Bot) -> None:
    seen.clear()
    root = await post(st, "helpdesk", "order 0")
    for n in range(1, 10):
        await post(st, "helpdesk", f"order {n}", root_id=root["id"])
    await until(lambda: len(seen) == 10, 10, "all ten")
    assert [t for _, t in seen] == [str(n) for n in range(10)]


async def test_the_bot_ignores_itself_other_bots_and_edits(st: SimulatorThread,
                                                           bot: Bot) -> None:
    sim = running(st)
    own = await bot.api.create_post(sim.channel_id("helpdesk"), "echo mine")
    other_bot = await asyncio.to_thread(st.call, sim.post_as(
        "bob", "helpdesk", "echo botty", props={"from_bot": "true"}))
    hook = await asyncio.to_thread(st.call, sim.post_as(
        "bob", "helpdesk", "echo hooky", props={"from_webhook": "true"}))
    edited = await post(st, "helpdesk", "plain words")
    await asyncio.to_thread(st.call, sim.edit_as("alice", edited["id"], "echo edited"))
    marker = await post(st, "helpdesk", "echo marker")
    await until(lambda: replies(sim, marker["id"]), 10, "the marker's reply")
    for p in (own, other_bot, hook, edited):
        assert replies(sim, p["id"]) == []


async def test_a_reply_while_its_thread_is_being_linked_is_not_lost(st: SimulatorThread,
                                                                    bot: Bot) -> None:
    sim = running(st)
    root = await post(st, "helpdesk", "slowlink printer")
    reply = await post(st, "helpdesk", "it is on floor 2", root_id=root["id"])
    await until(lambda: [r for r in replies(sim, root["id"]) if "noted" in r], 10,
                "the reply to be noted")
    assert replies(sim, root["id"]) == ["noted: it is on floor 2"]
    assert reply["root_id"] == root["id"]


async def test_a_backfill_does_not_take_an_edited_post_for_a_request(st: SimulatorThread,
                                                                    bot: Bot) -> None:
    # Seen live as "plain words", edited into a trigger, then read again by a backfill (which
    # sees posts as they are now): still not a request.
    sim = running(st)
    edited = await post(st, "helpdesk", "plain words again")
    marker = await post(st, "helpdesk", "echo marker")
    await until(lambda: replies(sim, marker["id"]), 10, "the marker's reply")
    await asyncio.to_thread(st.call, sim.edit_as("alice", edited["id"], "echo edited"))
    await bot.backfill.run()
    late = await post(st, "helpdesk", "echo late")
    await until(lambda: replies(sim, late["id"]), 10, "the late marker's reply")
    assert replies(sim, edited["id"]) == []


dialogs: list[dict[str, Any]] = []


@router.dialog("feedback")
async def feedback(submission: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    dialogs.append(submission | data)
    return {}


async def test_dialog_submissions_must_carry_a_signed_state(bot: Bot) -> None:
    import json

    import httpx
    url = f"{bot.runtime.public_url}/dialogs"
    body = {"type": "dialog_submission", "callback_id": "feedback", "user_id": "u1",
            "channel_id": "c1", "team_id": "t1", "submission": {"text": "hi"},
            "cancelled": False}
    async with httpx.AsyncClient() as http:
        forged = await http.post(url, json=body | {"state": '{"action":"feedback"}'})
        assert forged.status_code == 403 and dialogs == []
        other = bot.runtime.signer.pack("otherdialog", "", {})
        wrong = await http.post(url, json=body | {"state": json.dumps(other)})
        assert wrong.status_code == 403
        good = bot.runtime.signer.pack("feedback", "ticket:7", {"ticket": "7"})
        ok = await http.post(url, json=body | {"state": json.dumps(good)})
        assert ok.status_code == 200 and ok.json() == {}
    assert dialogs == [{"text": "hi", "ticket": "7"}]


async def test_buttons_in_one_post_have_distinct_valid_ids(bot: Bot) -> None:
    ctx = Context(bot.runtime, key="k", user_id="u", channel_id="c")
    buttons = [ctx.button(f"{h} h", "snooze", "alert7", {"h": str(h)}) for h in (1, 4, 24)]
    ids = [b["id"] for b in buttons]
    assert len(set(ids)) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9]+", i) for i in ids)


def test_the_bots_own_posts_are_told_without_decoding_them(bot: Bot) -> None:
    import json
    me = bot.api.bot_id
    assert me
    own = {"id": "p1", "create_at": 1, "user_id": me, "channel_id": "c", "message": "hi"}
    assert bot.pipeline._own({"post": json.dumps(own, separators=(",", ":"))})
    # Someone else's post that names the bot's id in its text or its props is not the bot's.
    other = {"id": "p2", "create_at": 1, "user_id": "u" * 26, "channel_id": "c",
             "message": f'"user_id":"{me}"', "props": {"user_id": me}}
    assert not bot.pipeline._own({"post": json.dumps(other, separators=(",", ":"))})
    assert not bot.pipeline._own({"post": json.dumps(dict(own, user_id=me + "x"))})
    assert not bot.pipeline._own(None) and not bot.pipeline._own({"post": 5})


async def test_malformed_events_are_skipped(st: SimulatorThread, bot: Bot) -> None:
    import json
    for data in ({"post": json.dumps({"id": "p", "channel_id": "c", "user_id": "u",
                                      "create_at": "not a number"})},
                 {"post": "{"}, None, {"post": json.dumps({"id": 5})}):
        bot.pipeline.on_frame({"event": "posted", "data": data})
    p = await post(st, "helpdesk", "echo still")
    await until(lambda: replies(running(st), p["id"]), 10, "the reply")


async def test_membership_by_user_channel_and_team(st: SimulatorThread, bot: Bot) -> None:
    from plugin.access import Membership
    from plugin.config import StaffSettings
    sim = running(st)
    assert sim is not None
    alice, bob = sim.user_id("alice"), sim.user_id("bob")
    by_channel = Membership(bot.api, StaffSettings(channels=["ops"]))
    assert await by_channel.includes(alice) and not await by_channel.includes(bob)
    by_team = Membership(bot.api, StaffSettings(teams=["sandbox"]))
    assert await by_team.includes(bob)
    by_name = Membership(bot.api, StaffSettings(users=["@carol"]))
    assert await by_name.includes(sim.user_id("carol")) and not await by_name.includes(bob)
    assert Membership(bot.api, StaffSettings()).anyone
