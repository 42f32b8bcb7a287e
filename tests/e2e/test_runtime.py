"""End to end: the real `switchboard run` process against the Mattermost simulator.

Each test counts the bot's replies per message: zero lost and zero doubled is the bar.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugin.sandbox.mattermost import MattermostSimulator, RequestRecord, SimulatorThread
from plugin.store.postgres import PostgresStore
from tests.servers.postgres import PostgresServer, empty_schema

from .harness import BOT_TOKEN, SECRET, BotProcess, one_reply_each, replies_to, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim_thread() -> Iterator[SimulatorThread]:
    thread = SimulatorThread(bot_token=BOT_TOKEN, auth_deadline_s=1.0)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def sim(sim_thread: SimulatorThread) -> MattermostSimulator:
    assert sim_thread.simulator is not None
    return sim_thread.simulator


@pytest.fixture
def bot(sim: MattermostSimulator, tmp_path: Path) -> Iterator[BotProcess]:
    b = BotProcess(sim, tmp_path).start()
    b.wait_ready()
    yield b
    if b.proc is not None and b.proc.poll() is None:
        assert b.stop() == 0, b.log()


def dm(st: SimulatorThread, text: str, user: str = "alice") -> dict[str, Any]:
    return st.call(st.simulator.dm_as(user, text))  # type: ignore[union-attr,no-any-return]


def say(st: SimulatorThread, channel: str, text: str, user: str = "alice",
        root_id: str = "") -> dict[str, Any]:
    return st.call(st.simulator.post_as(user, channel, text, root_id=root_id))  # type: ignore


def test_a_message_gets_a_threaded_reply(sim_thread: SimulatorThread, sim: MattermostSimulator,
                                         bot: BotProcess) -> None:
    p = say(sim_thread, "helpdesk", "@switchboard ping")
    one_reply_each(sim, [p])
    reply = replies_to(sim, p["id"])[0]
    assert reply["message"].startswith("pong")
    assert reply["channel_id"] == sim.channel_id("helpdesk")
    assert reply["props"].get("from_bot") == "true"
    # Chatter that matches nothing gets no answer, in channels.
    quiet = say(sim_thread, "helpdesk", "just chatting")
    p2 = say(sim_thread, "helpdesk", "@switchboard ping")
    one_reply_each(sim, [p2])
    assert replies_to(sim, quiet["id"]) == []


def test_direct_help_lists_the_commands(sim_thread: SimulatorThread, sim: MattermostSimulator,
                                        bot: BotProcess) -> None:
    p = dm(sim_thread, "help")
    one_reply_each(sim, [p])
    text = replies_to(sim, p["id"])[0]["message"]
    for command in ("`help`", "`ping`", "`selftest`"):
        assert command in text
    unknown = dm(sim_thread, "make me a sandwich")
    one_reply_each(sim, [unknown])
    assert "help" in replies_to(sim, unknown["id"])[0]["message"]


def test_dropped_connection_loses_nothing(sim_thread: SimulatorThread,
                                          sim: MattermostSimulator, bot: BotProcess) -> None:
    before = sim.ws_connects
    posts = [dm(sim_thread, "ping")]
    one_reply_each(sim, posts)
    for round_ in range(3):
        sim_thread.call(sim.drop_connections(close_frame=False))
        # Posted while the bot is disconnected: only backfill can find these.
        posts.append(dm(sim_thread, f"ping {round_}"))
        posts.append(say(sim_thread, "helpdesk", f"@switchboard ping {round_}"))
        def reconnected(r: int = round_) -> bool:
            return sim.ws_connects >= before + r + 1
        wait_until(reconnected, 15, "a reconnect")
        posts.append(dm(sim_thread, f"ping after {round_}"))
    one_reply_each(sim, posts, timeout=30)
    assert "backfill" in bot.log()


def test_deaf_socket_is_replaced(sim_thread: SimulatorThread, sim: MattermostSimulator,
                                 bot: BotProcess) -> None:
    before = sim.ws_connects
    sim.set_deaf(True)
    p = dm(sim_thread, "ping while deaf")
    wait_until(lambda: sim.ws_connects > before, 20, "the bot to replace the deaf socket")
    sim.set_deaf(False)
    one_reply_each(sim, [p], timeout=20)
    assert "deaf" in bot.log()
    health = httpx.get(bot.url + "/healthz", timeout=2)
    wait_until(lambda: httpx.get(bot.url + "/healthz", timeout=2).status_code == 200, 10,
               "healthy again")
    assert health.headers["content-type"].startswith("application/json")


def test_bot_stopped_and_started_handles_each_message_once(
        sim_thread: SimulatorThread, sim: MattermostSimulator, bot: BotProcess,
        tmp_path: Path) -> None:
    handled = [dm(sim_thread, "ping one")]
    one_reply_each(sim, handled)
    assert bot.stop() == 0
    missed = [dm(sim_thread, "ping two"), say(sim_thread, "helpdesk", "@switchboard ping 3"),
              dm(sim_thread, "ping four", user="bob")]
    again = BotProcess(sim, tmp_path).start()
    try:
        again.wait_ready()
        one_reply_each(sim, handled + missed)
        later = [dm(sim_thread, "ping five")]
        one_reply_each(sim, later)
    finally:
        assert again.stop() == 0


def test_sigkill_and_restart_loses_and_doubles_nothing(
        sim_thread: SimulatorThread, sim: MattermostSimulator, bot: BotProcess,
        tmp_path: Path) -> None:
    posts = [dm(sim_thread, f"ping {i}", user=("alice", "bob", "carol")[i % 3])
             for i in range(30)]
    bot.kill()
    posts += [dm(sim_thread, f"ping late {i}") for i in range(5)]
    again = BotProcess(sim, tmp_path).start()
    try:
        again.wait_ready()
        one_reply_each(sim, posts, timeout=30)
    finally:
        assert again.stop() == 0


def test_bad_token_exits_with_a_readable_message(sim: MattermostSimulator,
                                                 tmp_path: Path) -> None:
    b = BotProcess(sim, tmp_path, token="wrong-token-abcdef").start()
    code = b.wait_exit(20)
    log = b.log()
    assert code == 3, log
    assert "rejected the bot's token" in log and "MM_BOT_TOKEN" in log
    assert "wrong-token-abcdef" not in log
    assert "Traceback" not in log


def test_a_taken_listener_port_exits_with_a_readable_message(sim: MattermostSimulator,
                                                            tmp_path: Path) -> None:
    b = BotProcess(sim, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", b.port))
        taken.listen()
        b.start()
        code = b.wait_exit(20)
    log = b.log()
    assert code == 1, log
    assert f"cannot listen on 127.0.0.1:{b.port}" in log and "SWITCHBOARD_LISTEN" in log
    assert "Traceback" not in log


def test_a_second_bot_on_the_same_state_file_is_refused(sim_thread: SimulatorThread,
                                                        sim: MattermostSimulator,
                                                        bot: BotProcess, tmp_path: Path) -> None:
    """Two processes on one state file would both answer every message: the second is refused
    at start, named by the holder's process id, and the first goes on alone."""
    assert bot.proc is not None
    (tmp_path / "second").mkdir()
    second = BotProcess(sim, tmp_path / "second",
                        env={"SWITCHBOARD_DB": bot.env["SWITCHBOARD_DB"]})
    second.start()
    code = second.wait_exit(20)
    log = second.log()
    assert code == 2, log
    assert f"in use by another running Switchboard (process {bot.proc.pid})" in log, log
    assert "SWITCHBOARD_DB" in log and "Traceback" not in log
    p = say(sim_thread, "helpdesk", "@switchboard ping")
    one_reply_each(sim, [p])


def test_a_database_url_of_an_unknown_kind_is_refused(sim: MattermostSimulator,
                                                      tmp_path: Path) -> None:
    b = BotProcess(sim, tmp_path, env={"SWITCHBOARD_DB": "mysql://sb:pw-secret@db/sb"})
    b.start()
    code = b.wait_exit(20)
    log = b.log()
    assert code == 2, log
    assert "mysql:// URL" in log and "pw-secret" not in log, log
    assert not (Path.cwd() / "mysql:").exists()


def test_an_unreachable_database_stops_the_start_clearly(sim: MattermostSimulator,
                                                         tmp_path: Path) -> None:
    b = BotProcess(sim, tmp_path, env={
        "SWITCHBOARD_DB": "postgresql://sb:pw-secret@127.0.0.1:1/sb"})
    b.start()
    code = b.wait_exit(30)
    log = b.log()
    assert code == 4, log
    assert "cannot open the PostgreSQL state store" in log, log
    assert "pw-secret" not in log and "Traceback" not in log, log


def test_the_bot_keeps_its_state_in_postgresql(sim_thread: SimulatorThread,
                                               sim: MattermostSimulator, tmp_path: Path,
                                               postgres_server: PostgresServer) -> None:
    asyncio.run(empty_schema(postgres_server.dsn))
    b = BotProcess(sim, tmp_path, env={"SWITCHBOARD_DB": postgres_server.dsn}).start()
    try:
        b.wait_ready()
        p = say(sim_thread, "helpdesk", "@switchboard ping")
        one_reply_each(sim, [p])
    finally:
        assert b.stop() == 0, b.log()

    async def handled() -> bool:
        store = PostgresStore(postgres_server.dsn)
        await store.open()
        try:
            return await store.claims.is_handled(p["id"]) and \
                await store.kv.get("initialized") is not None
        finally:
            await store.close()

    assert asyncio.run(handled())


def test_rate_limit_is_retried_after_retry_after(sim_thread: SimulatorThread,
                                                 sim: MattermostSimulator,
                                                 bot: BotProcess) -> None:
    sim.rate_limit(2, retry_after=1)
    p = dm(sim_thread, "ping under load")
    one_reply_each(sim, [p])
    limited = wait_until(lambda: [r for r in sim.request_log if r.status == 429], 5, "429s")
    assert len(limited) == 2
    for r in limited:
        # The same request, answered later, no sooner than Retry-After said.
        def retried(r: Any = r) -> list[Any]:
            return [x for x in sim.request_log
                    if (x.method, x.path, x.query) == (r.method, r.path, r.query)
                    and x.time > r.time and x.status < 400]
        again = wait_until(retried, 10, f"a retry of {r.method} {r.path}")
        assert again[0].time - r.time >= 0.95, again[0].time - r.time


def failed_creates(sim: MattermostSimulator) -> list[RequestRecord]:
    """The bot's `POST /posts` requests the simulator answered with 500."""
    return [r for r in sim.request_log
            if (r.method, r.path, r.status, r.user) == ("POST", "/api/v4/posts", 500,
                                                        "switchboard")]


def test_server_errors_on_create_post_are_retried(
        sim_thread: SimulatorThread, sim: MattermostSimulator, bot: BotProcess) -> None:
    # 500s before anything is stored: the reply comes through on a later attempt.
    sim.fail_next("POST", r"^/api/v4/posts$", 500, count=2)
    p = dm(sim_thread, "ping through errors")
    one_reply_each(sim, [p])
    assert len(failed_creates(sim)) == 2


def test_server_errors_on_create_post_do_not_double_the_reply(
        sim_thread: SimulatorThread, sim: MattermostSimulator, bot: BotProcess) -> None:
    # The server stores the reply, then answers 500: a blind retry would post it twice.
    sim.fail_next("POST", r"^/api/v4/posts$", 500, handled=True)
    p = dm(sim_thread, "ping through a late error")
    one_reply_each(sim, [p])
    assert len(failed_creates(sim)) == 1
    assert replies_to(sim, p["id"])[0]["message"].startswith("pong")


def test_listener_health_metrics_and_forged_clicks(sim_thread: SimulatorThread,
                                                   sim: MattermostSimulator,
                                                   bot: BotProcess) -> None:
    health = httpx.get(bot.url + "/healthz", timeout=2).json()
    assert health["status"] == "ok" and health["websocket"] == "connected"
    p = dm(sim_thread, "ping")
    one_reply_each(sim, [p])
    metrics = httpx.get(bot.url + "/metrics", timeout=2).text
    assert 'switchboard_events_received_total{event="posted"}' in metrics
    assert 'switchboard_handled_total{kind="message"}' in metrics
    assert "switchboard_handler_latency_seconds_bucket" in metrics
    # The selftest button round-trips through Mattermost's click path.
    t = dm(sim_thread, "selftest")
    one_reply_each(sim, [t])
    post = replies_to(sim, t["id"])[0]
    action = post["props"]["attachments"][0]["actions"][0]
    signed = action_context(sim, post)
    assert signed is not None and signed["action"] == "selftest"
    status, body = sim_thread.call(sim.click("alice", post["id"], action["id"]))
    assert status == 200, body
    wait_until(lambda: "passed" in next(x for x in sim.posts() if x["id"] == post["id"])[
        "message"], 10, "the post to be updated")
    # A forged click: a context not signed by the bot.
    forged = {"user_id": sim.user_id("bob"), "post_id": post["id"], "trigger_id": "t",
              "channel_id": post["channel_id"], "type": "button",
              "context": dict(signed, subject="other")}
    r = httpx.post(bot.url + "/actions/selftest", json=forged, timeout=2)
    assert r.status_code == 403 and r.json()["error"]
    for bad in (b"", b"{not json", b"[]", b'{"context": 1}'):
        r = httpx.post(bot.url + "/actions/selftest", content=bad, timeout=2,
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "error" in r.json()
    r = httpx.post(bot.url + "/actions/selftest", content=b"x" * 2_000_000, timeout=5)
    assert r.status_code == 413
    assert httpx.get(bot.url + "/nope", timeout=2).json()["error"].startswith("no such")
    assert SECRET not in bot.log() and BOT_TOKEN not in bot.log()


def action_context(sim: MattermostSimulator, post: dict[str, Any]) -> dict[str, Any] | None:
    """The signed context the simulator keeps for a post's first button."""
    stored = next(p for p in sim.posts() if p["id"] == post["id"])
    for att in stored.get("props", {}).get("attachments", []):
        for action in att.get("actions", []):
            ctx = (action.get("integration") or {}).get("context")
            if isinstance(ctx, dict):
                return ctx
    return None


def test_outage_posts_survive_live_traffic_after_reconnect(
        sim_thread: SimulatorThread, sim: MattermostSimulator, tmp_path: Path) -> None:
    # No overlap: only the frozen cursor can save the outage's posts.
    bot = BotProcess(sim, tmp_path, settings={"backfill": {"overlap_ms": 0}}).start()
    try:
        bot.wait_ready()
        one_reply_each(sim, [dm(sim_thread, "ping before")])
        before = sim.ws_connects
        sim.set_down(True)
        outage = [dm(sim_thread, "ping during outage"),
                  say(sim_thread, "helpdesk", "@switchboard ping during outage")]
        # Slow the bot's channel listing after the reconnect, so live posts arrive (and the
        # periodic save runs) before backfill has read the gap.
        sim.fail_next("GET", r"/teams$", 503, count=4)
        sim.set_down(False)
        wait_until(lambda: sim.ws_connects > before, 15, "a reconnect")
        live = [dm(sim_thread, "ping live"),
                say(sim_thread, "helpdesk", "@switchboard ping live")]
        one_reply_each(sim, outage + live, timeout=30)
    finally:
        assert bot.stop() == 0


def test_a_restarted_bot_does_not_answer_stale_messages(
        sim_thread: SimulatorThread, sim: MattermostSimulator, tmp_path: Path) -> None:
    settings = {"backfill": {"max_age": 3}}
    first = BotProcess(sim, tmp_path, settings=settings).start()
    first.wait_ready()
    one_reply_each(sim, [dm(sim_thread, "ping")])
    assert first.stop() == 0
    stale = dm(sim_thread, "ping from long ago")
    # Let it age past backfill.max_age: waiting is the point here.
    wait_until(lambda: time.time() * 1000 - stale["create_at"] > 3500, 10, "the post to age")
    fresh = dm(sim_thread, "ping fresh")
    again = BotProcess(sim, tmp_path, settings=settings).start()
    try:
        again.wait_ready()
        one_reply_each(sim, [fresh])
        assert replies_to(sim, stale["id"]) == []
    finally:
        assert again.stop() == 0
