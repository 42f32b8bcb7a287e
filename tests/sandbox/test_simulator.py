"""Behaviour of the Mattermost simulator itself: faults, clicks, backfill, auth and membership.

The conformance test checks shapes against recordings; these tests check the behaviours the bot's
own tests rely on, including the ones the recordings cannot show (faults, timing knobs).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from plugin.sandbox.mattermost import MattermostSimulator, SimulatorThread

BOT_TOKEN = "test-bot-token"


@pytest.fixture
async def sim() -> AsyncIterator[MattermostSimulator]:
    server = MattermostSimulator(bot_token=BOT_TOKEN, auth_deadline_s=0.4,
                                 integration_timeout_s=1.0, trigger_lifetime_s=1.0)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def api(http: aiohttp.ClientSession, sim: MattermostSimulator, method: str, path: str,
              token: str | None = BOT_TOKEN, body: Any = None,
              ) -> tuple[int, Any, Any]:
    """One REST call: status, headers and the decoded body (text when not JSON)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, sim.url + path, json=body, headers=headers) as resp:
        raw = await resp.read()
        try:
            decoded: Any = json.loads(raw)
        except ValueError:
            decoded = raw.decode()
        return resp.status, resp.headers, decoded


class Stream:
    """A websocket client that keeps every frame it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.new = asyncio.Event()
        self.ended = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.frames.append(json.loads(message))
                self.new.set()
        except ConnectionClosed:
            pass
        finally:
            self.ended.set()
            self.new.set()

    async def wait(self, predicate: Callable[[dict[str, Any]], bool],
                   timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for frame in self.frames[seen:]:
                if predicate(frame):
                    return frame
            seen = len(self.frames)
            if self.ended.is_set():
                raise AssertionError(f"socket ended; frames: {self.frames}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching frame; frames: {self.frames}")
            self.new.clear()
            try:
                await asyncio.wait_for(self.new.wait(), remaining)
            except TimeoutError:
                pass

    def events(self, name: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("event") == name]

    async def round_trip(self, seq: int = 4242) -> None:
        """An app-level ping: once answered, every earlier event has arrived too."""
        await self.ws.send(json.dumps({"action": "ping", "seq": seq}))
        await self.wait(lambda f: f.get("seq_reply") == seq)

    async def close(self) -> None:
        await self.ws.close()
        await self.task


async def open_stream(sim: MattermostSimulator, token: str | None = BOT_TOKEN,
                      hello: bool = True) -> Stream:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws = await connect(sim.url.replace("http://", "ws://") + "/api/v4/websocket",
                       additional_headers=headers, proxy=None, ping_interval=None)
    stream = Stream(ws)
    if hello:
        first = await stream.wait(lambda f: True)
        assert first["event"] == "hello" and first["seq"] == 0
    return stream


def posted_ids(stream: Stream) -> list[str]:
    return [json.loads(f["data"]["post"])["id"] for f in stream.events("posted")]


# -- the world ----------------------------------------------------------------------------------


async def test_world_users_channels_and_tokens(sim: MattermostSimulator,
                                               http: aiohttp.ClientSession) -> None:
    status, _, me = await api(http, sim, "GET", "/api/v4/users/me")
    assert status == 200 and me["username"] == "switchboard" and me["is_bot"] is True
    assert me["id"] == sim.bot_id and me["email"] == "switchboard@sandbox.local"
    status, _, admin = await api(http, sim, "GET", "/api/v4/users/me", token="admin-token")
    assert "system_admin" in admin["roles"].split() and admin["first_name"]
    _, _, channels = await api(http, sim, "GET",
                               f"/api/v4/users/me/teams/{sim.team_id}/channels")
    names = {c["name"]: c["type"] for c in channels}
    assert names == {"town-square": "O", "helpdesk": "O", "ops": "P"}
    _, _, carol_channels = await api(http, sim, "GET",
                                     f"/api/v4/users/me/teams/{sim.team_id}/channels",
                                     token="carol-token")
    assert {c["name"] for c in carol_channels} == {"town-square", "helpdesk", "off-topic"}
    assert len({sim.user_id(n) for n in ("alice", "bob", "carol", "admin")}) == 4


async def test_direct_channel_created_once_announced_once(sim: MattermostSimulator,
                                                          http: aiohttp.ClientSession) -> None:
    stream = await open_stream(sim)
    bob = sim.user_id("bob")
    first = await api(http, sim, "POST", "/api/v4/channels/direct", token="bob-token",
                      body=[bob, sim.bot_id])
    second = await api(http, sim, "POST", "/api/v4/channels/direct", body=[sim.bot_id, bob])
    assert first[0] == second[0] == 201
    dm = first[2]
    assert dm["id"] == second[2]["id"] and dm["team_id"] == "" and dm["type"] == "D"
    assert dm["name"] == "__".join(sorted((bob, sim.bot_id))) and dm["creator_id"] == bob
    await sim.dm_as("bob", "hello bot")
    frame = await stream.wait(lambda f: f.get("event") == "posted")
    assert frame["data"]["channel_type"] == "D"
    assert json.loads(frame["data"]["mentions"]) == [sim.bot_id]
    assert len(stream.events("direct_added")) == 1
    await stream.close()


# -- membership filtering -----------------------------------------------------------------------


async def test_bot_sees_only_channels_it_is_in(sim: MattermostSimulator) -> None:
    bot = await open_stream(sim)
    alice = await open_stream(sim, token="alice-token")
    hidden = await sim.post_as("alice", "off-topic", "@switchboard are you there?")
    private = await sim.post_as("alice", "ops", "private, with the bot")
    public = await sim.post_as("alice", "helpdesk", "@switchboard help")
    dm = await sim.dm_as("alice", "direct")
    await bot.wait(lambda f: f.get("event") == "posted"
                   and json.loads(f["data"]["post"])["id"] == dm["id"])
    await bot.round_trip()
    assert posted_ids(bot) == [private["id"], public["id"], dm["id"]]
    types = [f["data"]["channel_type"] for f in bot.events("posted")]
    assert types == ["P", "O", "D"]
    mention = bot.events("posted")[1]["data"]
    assert json.loads(mention["mentions"]) == [sim.bot_id]
    assert mention["sender_name"] == "@alice" and mention["channel_name"] == "helpdesk"
    await alice.wait(lambda f: f.get("event") == "posted"
                     and json.loads(f["data"]["post"])["id"] == hidden["id"])
    # alice sees her own posts, then a channel_viewed for each.
    viewed = await alice.wait(lambda f: f.get("event") == "channel_viewed")
    assert viewed["broadcast"]["user_id"] == sim.user_id("alice")
    await bot.close()
    await alice.close()


async def test_typing_goes_to_the_others_only(sim: MattermostSimulator,
                                              http: aiohttp.ClientSession) -> None:
    bot = await open_stream(sim)
    alice = await open_stream(sim, token="alice-token")
    alice_id = sim.user_id("alice")
    status, _, body = await api(http, sim, "POST", f"/api/v4/users/{alice_id}/typing",
                                token="alice-token",
                                body={"channel_id": sim.channel_id("helpdesk")})
    assert (status, body) == (200, {"status": "OK"})
    frame = await bot.wait(lambda f: f.get("event") == "typing")
    assert frame["broadcast"]["omit_users"] == {alice_id: True}
    assert frame["data"] == {"parent_id": "", "user_id": alice_id}
    await alice.round_trip()
    assert not alice.events("typing")
    await bot.close()
    await alice.close()


async def test_membership_changes(sim: MattermostSimulator) -> None:
    bot = await open_stream(sim)
    await sim.add_member("off-topic", "switchboard")
    added = await bot.wait(lambda f: f.get("event") == "user_added")
    assert added["data"]["user_id"] == sim.bot_id
    system = await bot.wait(lambda f: f.get("event") == "posted")
    assert system["data"]["sender_name"] == "System"
    assert json.loads(system["data"]["post"])["type"] == "system_add_to_channel"
    await sim.remove_member("off-topic", "switchboard")
    removed = await bot.wait(lambda f: f.get("event") == "user_removed")
    assert removed["broadcast"]["user_id"] == sim.bot_id
    await sim.post_as("alice", "off-topic", "after the bot left")
    await bot.round_trip()
    assert len(bot.events("posted")) == 1
    await bot.close()


# -- authentication -----------------------------------------------------------------------------


async def test_bad_token_rest_401_with_cookie(sim: MattermostSimulator,
                                              http: aiohttp.ClientSession) -> None:
    status, headers, body = await api(http, sim, "GET", "/api/v4/users/me", token="wrong")
    assert status == 401 and body["id"] == "api.context.session_expired.app_error"
    assert headers["Set-Cookie"] == "MMAUTHTOKEN=; Path=/; Max-Age=0; HttpOnly"
    assert body["request_id"] == headers["X-Request-Id"]
    status, headers, _ = await api(http, sim, "GET", "/api/v4/users/me", token=None)
    assert status == 401 and "Set-Cookie" not in headers


async def test_bad_header_token_upgrades_then_drops_after_deadline(
        sim: MattermostSimulator) -> None:
    started = time.monotonic()
    stream = await open_stream(sim, token="wrong", hello=False)
    assert stream.ws.response is not None and stream.ws.response.status_code == 101
    await asyncio.wait_for(stream.ended.wait(), 5)
    lived = time.monotonic() - started
    assert sim.auth_deadline_s * 0.8 <= lived <= sim.auth_deadline_s + 1.0
    assert stream.frames == []  # no hello, nothing
    assert stream.ws.close_code == 1006 and stream.ws.protocol.close_rcvd is None


async def test_challenge_bad_token_drops_at_once_good_token_hello_then_ok(
        sim: MattermostSimulator) -> None:
    bad = await open_stream(sim, token=None, hello=False)
    started = time.monotonic()
    await bad.ws.send(json.dumps({"seq": 1, "action": "authentication_challenge",
                                  "data": {"token": "wrong"}}))
    await asyncio.wait_for(bad.ended.wait(), 5)
    assert time.monotonic() - started < sim.auth_deadline_s * 0.5
    assert bad.frames == [] and bad.ws.close_code == 1006

    good = await open_stream(sim, token=None, hello=False)
    await good.ws.send(json.dumps({"seq": 1, "action": "authentication_challenge",
                                   "data": {"token": BOT_TOKEN}}))
    await good.wait(lambda f: f.get("seq_reply") == 1)
    assert good.frames[0]["event"] == "hello"
    assert good.frames[0]["broadcast"]["user_id"] == sim.bot_id
    replies = [f for f in good.frames if "seq_reply" in f]
    assert replies == [{"status": "OK", "seq_reply": 1}]
    await good.close()


async def test_reconnect_query_is_ignored(sim: MattermostSimulator) -> None:
    ws = await connect(sim.url.replace("http://", "ws://")
                       + "/api/v4/websocket?connection_id=&sequence_number=7",
                       additional_headers={"Authorization": f"Bearer {BOT_TOKEN}"}, proxy=None)
    stream = Stream(ws)
    hello = await stream.wait(lambda f: True)
    assert hello["event"] == "hello" and hello["seq"] == 0
    assert hello["data"]["connection_id"] == ""
    assert sim.ws_connects == 1
    await stream.close()


# -- faults -------------------------------------------------------------------------------------


async def test_drop_connections_abort_and_close_frame(sim: MattermostSimulator) -> None:
    aborted = await open_stream(sim)
    await sim.drop_connections()
    await asyncio.wait_for(aborted.ended.wait(), 5)
    assert aborted.ws.close_code == 1006 and aborted.ws.protocol.close_rcvd is None

    closed = await open_stream(sim)
    await sim.drop_connections(close_frame=True)
    await asyncio.wait_for(closed.ended.wait(), 5)
    assert closed.ws.protocol.close_rcvd is not None and closed.ws.close_code == 1001


async def test_deaf_keeps_pings_but_delivers_nothing(sim: MattermostSimulator,
                                                     http: aiohttp.ClientSession) -> None:
    stream = await open_stream(sim)
    await stream.round_trip(1)
    sim.set_deaf(True)
    missed = await sim.post_as("alice", "helpdesk", "while deaf")
    await stream.round_trip(2)  # app-level pings still answered...
    await asyncio.wait_for(await stream.ws.ping(), 5)  # ...and transport pings
    assert missed["id"] not in posted_ids(stream)
    _, _, page = await api(http, sim, "GET",
                           f"/api/v4/channels/{sim.channel_id('helpdesk')}/posts?page=0")
    assert missed["id"] in page["order"]  # stored: REST backfill finds it
    sim.set_deaf(False)
    heard = await sim.post_as("alice", "helpdesk", "hearing again")
    await stream.wait(lambda f: f.get("event") == "posted")
    assert posted_ids(stream) == [heard["id"]]
    await stream.close()


async def test_down_answers_503_and_drops_sockets(sim: MattermostSimulator,
                                                  http: aiohttp.ClientSession) -> None:
    stream = await open_stream(sim)
    sim.set_down(True)
    await asyncio.wait_for(stream.ended.wait(), 5)
    assert stream.ws.close_code == 1006
    status, headers, body = await api(http, sim, "GET", "/api/v4/system/ping", token=None)
    assert status == 503 and body["status_code"] == 503
    assert list(body) == ["id", "message", "detailed_error", "request_id", "status_code"]
    assert headers["Content-Type"] == "application/json"
    with pytest.raises(InvalidStatus) as refused:
        await open_stream(sim)
    assert refused.value.response.status_code == 503
    sim.set_down(False)
    status, _, _ = await api(http, sim, "GET", "/api/v4/users/me")
    assert status == 200
    back = await open_stream(sim)
    await back.close()


async def test_rate_limit_gives_the_recorded_429(sim: MattermostSimulator,
                                                 http: aiohttp.ClientSession) -> None:
    sim.rate_limit(2, retry_after=3)
    for _ in range(2):
        async with http.get(sim.url + "/api/v4/users/me",
                            headers={"Authorization": f"Bearer {BOT_TOKEN}"}) as resp:
            assert resp.status == 429
            assert await resp.text() == "limit exceeded\n"
            assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert resp.headers["Retry-After"] == "3"
            assert "X-Request-Id" not in resp.headers and "X-Version-Id" not in resp.headers
    stream = await open_stream(sim)  # the websocket is not counted by default
    status, _, _ = await api(http, sim, "GET", "/api/v4/users/me")
    assert status == 200
    assert [r.status for r in sim.request_log] == [429, 429, 200]
    await stream.close()


async def test_fail_next_injects_app_errors(sim: MattermostSimulator,
                                            http: aiohttp.ClientSession) -> None:
    sim.fail_next("POST", r"^/api/v4/posts$", 500, count=2)
    body = {"channel_id": sim.channel_id("helpdesk"), "message": "retry me"}
    outcomes = []
    for _ in range(3):
        status, headers, answer = await api(http, sim, "POST", "/api/v4/posts", body=body)
        outcomes.append(status)
        if status == 500:
            assert answer["id"] == "app.post.save.app_error"
            assert answer["request_id"] == headers["X-Request-Id"]
    assert outcomes == [500, 500, 201]
    status, _, _ = await api(http, sim, "GET", "/api/v4/users/me")
    assert status == 200
    assert len(sim.posts("helpdesk")) == 1
    record = sim.request_log[-2]
    assert (record.method, record.path, record.status, record.user) == (
        "POST", "/api/v4/posts", 201, "switchboard")


async def test_fail_next_handled_stores_the_post_then_answers_the_error(
        sim: MattermostSimulator, http: aiohttp.ClientSession) -> None:
    stream = await open_stream(sim, "alice-token")
    sim.fail_next("POST", r"^/api/v4/posts$", 500, handled=True)
    body = {"channel_id": sim.channel_id("helpdesk"), "message": "stored, then 500"}
    status, headers, answer = await api(http, sim, "POST", "/api/v4/posts", body=body)
    assert status == 500
    assert answer["id"] == "app.post.save.app_error"
    assert answer["request_id"] == headers["X-Request-Id"]
    # The post took effect all the same: stored, and broadcast to the channel's members.
    stored = [p for p in sim.posts("helpdesk") if p["message"] == "stored, then 500"]
    assert len(stored) == 1 and stored[0]["user_id"] == sim.bot_id
    await stream.wait(lambda f: f.get("event") == "posted"
                      and json.loads(f["data"]["post"])["id"] == stored[0]["id"])
    assert sim.request_log[-1].status == 500
    # One request only: the next one is answered normally.
    status, _, created = await api(http, sim, "POST", "/api/v4/posts",
                                   body={**body, "message": "plain"})
    assert status == 201 and created["message"] == "plain"
    # An error the request meets on its own is answered as it is, and nothing is stored.
    sim.fail_next("POST", r"^/api/v4/posts$", 500, handled=True)
    status, _, refused = await api(http, sim, "POST", "/api/v4/posts",
                                   body={"channel_id": sim.channel_id("off-topic"),
                                         "message": "not a member"})
    assert status == 403, refused
    assert not [p for p in sim.posts() if p["message"] == "not a member"]
    await stream.close()


async def test_slow_reader_is_dropped() -> None:
    server = MattermostSimulator(bot_token=BOT_TOKEN, send_queue_limit=8)
    await server.start()
    # A client that stops reading: its library queue holds one frame, then TCP fills up.
    ws = await connect(server.url.replace("http://", "ws://") + "/api/v4/websocket",
                       additional_headers={"Authorization": f"Bearer {BOT_TOKEN}"},
                       proxy=None, ping_interval=None, max_queue=1)
    try:
        assert server.open_sockets == 1
        await server.flood("helpdesk", "alice", ["x" * 16000] * 800)
        await server.wait_for(lambda: server.open_sockets == 0, timeout=10)
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
        assert ws.close_code == 1006
    finally:
        await ws.close()
        await server.stop()


# -- clicks ---------------------------------------------------------------------------------------


class Integration:
    """A local integration endpoint with a scripted reply."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.reply: Callable[[], Awaitable[web.Response]] = self._empty_object
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _empty_object(self) -> web.Response:
        return web.json_response({})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((dict(request.headers), await request.json()))
        return await self.reply()

    async def __aenter__(self) -> Integration:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def buttons(url: str, *, extra_props: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"attachments": [{"text": "ticket 7", "actions": [
        {"id": "ack", "name": "Ack", "type": "button",
         "integration": {"url": url + "/ack", "context": {"ticket": 7}}},
        {"id": "prio", "name": "Priority", "type": "select",
         "options": [{"text": "High", "value": "high"}],
         "integration": {"url": url + "/prio", "context": {"ticket": 7}}}]}],
        **(extra_props or {})}


async def test_click_request_shape_and_trigger(sim: MattermostSimulator,
                                               http: aiohttp.ClientSession) -> None:
    async with Integration() as hook:
        post = await sim.post_as("admin", "helpdesk", "t", props=buttons(hook.url))
        status, body = await sim.click("alice", post["id"], "ack")
        assert status == 200 and body["status"] == "OK" and len(body["trigger_id"]) == 26
        headers, request = hook.requests[0]
        assert list(request) == ["user_id", "user_name", "channel_id", "channel_name",
                                 "team_id", "team_domain", "post_id", "trigger_id", "type",
                                 "data_source", "context"]
        assert request["user_name"] == "alice" and request["team_domain"] == "sandbox"
        assert request["context"] == {"ticket": 7} and request["type"] == "button"
        assert headers["User-Agent"] == "Mattermost-Bot/1.1" and "Authorization" not in headers
        client_id, user_id, ms, signature = base64.b64decode(request["trigger_id"]).decode(
        ).split(":")
        assert client_id == body["trigger_id"] and user_id == sim.user_id("alice")
        assert int(ms) > 0 and signature
        # The same click through REST, with a menu selection.
        status, _, answer = await api(http, sim, "POST",
                                      f"/api/v4/posts/{post['id']}/actions/prio",
                                      token="alice-token", body={"selected_option": "high"})
        assert status == 200 and answer["status"] == "OK"
        assert hook.requests[1][1]["context"] == {"selected_option": "high", "ticket": 7}
        # The signed trigger opens a dialog for the clicker, within its lifetime only.
        alice = await open_stream(sim, token="alice-token")
        dialog = {"trigger_id": request["trigger_id"], "url": hook.url + "/dialog",
                  "dialog": {"callback_id": "c", "title": "Update", "elements": []}}
        status, _, opened = await api(http, sim, "POST", "/api/v4/actions/dialogs/open",
                                      body=dialog)
        assert (status, opened) == (200, {"status": "OK"})
        frame = await alice.wait(lambda f: f.get("event") == "open_dialog")
        assert json.loads(frame["data"]["dialog"])["trigger_id"] == body["trigger_id"]
        await asyncio.sleep(sim.trigger_lifetime_s + 0.1)
        status, _, expired = await api(http, sim, "POST", "/api/v4/actions/dialogs/open",
                                       body=dialog)
        assert status == 400 and expired["id"] == "interactive_message.decode_trigger_id.expired"
        await alice.close()


@pytest.mark.parametrize("reply,kind", [
    (lambda: web.Response(status=200, body=b"", content_type="application/json"), "empty 200"),
    (lambda: web.json_response({"update": {"message": "no"}}, status=500), "500"),
    (lambda: web.Response(status=200, text="ok thanks"), "text/plain 200"),
])
async def test_click_failures_are_400_and_change_nothing(
        sim: MattermostSimulator, reply: Callable[[], web.Response], kind: str) -> None:
    async with Integration() as hook:
        async def answer() -> web.Response:
            return reply()
        hook.reply = answer
        post = await sim.post_as("switchboard", "helpdesk", "t", props=buttons(hook.url))
        status, body = await sim.click("alice", post["id"], "ack")
        assert status == 400, kind
        assert body["id"] == "api.post.do_action.action_integration.app_error"
        assert len(hook.requests) == 1
        assert sim.posts("helpdesk")[0]["message"] == "t"
        assert sim.ephemerals("alice") == []


async def test_click_timeout(sim: MattermostSimulator) -> None:
    async with Integration() as hook:
        async def slow() -> web.Response:
            await asyncio.sleep(sim.integration_timeout_s + 1)
            return web.json_response({"update": {"message": "too late"}})
        hook.reply = slow
        post = await sim.post_as("switchboard", "helpdesk", "t", props=buttons(hook.url))
        started = time.monotonic()
        status, body = await sim.click("alice", post["id"], "ack")
        took = time.monotonic() - started
        assert status == 400 and body["id"] == "api.post.do_action.action_integration.app_error"
        assert sim.integration_timeout_s * 0.9 <= took < sim.integration_timeout_s + 0.8
        assert sim.posts("helpdesk")[0]["message"] == "t"


async def test_click_update_props_absent_keeps_empty_clears(sim: MattermostSimulator) -> None:
    async with Integration() as hook:
        bot = await open_stream(sim)
        alice = await open_stream(sim, token="alice-token")
        keep = await sim.post_as("switchboard", "helpdesk", "keep", props=buttons(hook.url))
        clear = await sim.post_as("switchboard", "helpdesk", "clear", props=buttons(
            hook.url, extra_props={"override_username": "desk", "from_webhook": "true"}))

        async def absent() -> web.Response:
            return web.json_response({"update": {"message": "kept"},
                                      "ephemeral_text": "done <http://x|link>"})
        hook.reply = absent
        assert (await sim.click("alice", keep["id"], "ack"))[0] == 200

        async def empty() -> web.Response:
            return web.json_response({"update": {"message": "cleared", "props": {}}})
        hook.reply = empty
        assert (await sim.click("alice", clear["id"], "ack"))[0] == 200

        stored = {p["message"]: p["props"] for p in sim.posts("helpdesk")}
        kept_actions = stored["kept"]["attachments"][0]["actions"]
        assert [a["id"] for a in kept_actions] == ["ack", "prio"]
        assert kept_actions[0]["integration"]["url"] == hook.url + "/ack"  # stored, not shown
        assert stored["kept"]["from_bot"] == "true"
        assert stored["cleared"] == {"from_webhook": "true", "override_username": "desk"}

        edited = await bot.wait(lambda f: f.get("event") == "post_edited")
        shown = json.loads(edited["data"]["post"])
        assert shown["message"] == "kept"
        assert "integration" not in shown["props"]["attachments"][0]["actions"][0]
        ephemeral = sim.ephemerals("alice")
        assert [e["message"] for e in ephemeral] == ["done [link](http://x)"]
        assert ephemeral[0]["root_id"] == keep["id"] and ephemeral[0]["type"] == \
            "system_ephemeral"
        await alice.wait(lambda f: f.get("event") == "ephemeral_message")
        await bot.round_trip()
        assert not bot.events("ephemeral_message")
        await bot.close()
        await alice.close()


async def test_click_errors(sim: MattermostSimulator, http: aiohttp.ClientSession) -> None:
    async with Integration() as hook:
        post = await sim.post_as("admin", "helpdesk", "t", props=buttons(hook.url))
        hidden = await sim.post_as("alice", "off-topic", "t", props=buttons(hook.url))
        assert (await sim.click("alice", post["id"], "nosuch"))[0] == 404
        status, _, body = await api(http, sim, "POST",
                                    f"/api/v4/posts/{post['id']}/actions/under_score",
                                    token="alice-token", body={})
        assert status == 404 and body["id"] == "api.context.404.app_error"
        status, _, body = await api(http, sim, "POST",
                                    f"/api/v4/posts/{hidden['id']}/actions/ack", body={})
        assert status == 403
        assert hook.requests == []


# -- backfill -----------------------------------------------------------------------------------


async def test_backfill_since_and_after(sim: MattermostSimulator,
                                        http: aiohttp.ClientSession) -> None:
    channel = sim.channel_id("helpdesk")
    marker = await sim.post_as("switchboard", "helpdesk", "marker")
    await sim.wait_for(lambda: int(time.time() * 1000) > marker["create_at"])
    a1 = await sim.post_as("alice", "helpdesk", "a1")
    a2 = await sim.post_as("alice", "helpdesk", "a2")
    a3 = await sim.post_as("alice", "helpdesk", "a3")
    await sim.edit_as("alice", a1["id"], "a1 edited")
    await sim.delete_as("alice", a2["id"])
    base = f"/api/v4/channels/{channel}/posts"

    _, _, since = await api(http, sim, "GET", f"{base}?since={marker['create_at']}")
    assert marker["id"] not in since["order"]  # `since` is exclusive
    posts = since["posts"]
    assert {a1["id"], a2["id"], a3["id"]} <= set(since["order"])
    assert posts[a2["id"]]["message"] == "" and posts[a2["id"]]["delete_at"] > 0
    assert posts[a2["id"]]["props"]["deleteBy"] == sim.user_id("alice")
    assert posts[a1["id"]]["message"] == "a1 edited" and posts[a1["id"]]["edit_at"] > 0
    history = [p for p in posts.values() if p["original_id"] == a1["id"]]
    assert len(history) == 1 and history[0]["delete_at"] > 0
    assert (since["next_post_id"], since["prev_post_id"]) == ("", "")
    _, _, earlier = await api(http, sim, "GET", f"{base}?since={marker['create_at'] - 1}")
    assert marker["id"] in earlier["order"]

    _, _, after = await api(http, sim, "GET", f"{base}?after={marker['id']}")
    assert after["order"] == [a3["id"], a1["id"]]  # live posts only, newest first
    assert after["prev_post_id"] == marker["id"]
    _, _, page0 = await api(http, sim, "GET", f"{base}?after={marker['id']}&per_page=1&page=0")
    _, _, page1 = await api(http, sim, "GET", f"{base}?after={marker['id']}&per_page=1&page=1")
    assert page0["order"] == [a1["id"]] and page0["next_post_id"] == a3["id"]
    assert page1["order"] == [a3["id"]] and page1["next_post_id"] == ""
    _, _, before = await api(http, sim, "GET", f"{base}?before={a3['id']}&per_page=5")
    assert before["order"] == [a1["id"], marker["id"]] and before["next_post_id"] == a3["id"]
    status, _, _ = await api(http, sim, "GET", f"{base}?since=soon")
    assert status == 400


async def test_reply_bumps_its_root_for_since(sim: MattermostSimulator,
                                              http: aiohttp.ClientSession) -> None:
    root = await sim.post_as("alice", "helpdesk", "root")
    await sim.wait_for(lambda: int(time.time() * 1000) > root["create_at"])
    reply = await sim.post_as("switchboard", "helpdesk", "reply", root_id=root["id"])
    assert reply["reply_count"] == 1 and reply["parent_id"] == root["id"]
    _, _, since = await api(http, sim, "GET", f"/api/v4/channels/{sim.channel_id('helpdesk')}"
                                              f"/posts?since={root['create_at']}")
    assert since["order"] == [reply["id"], root["id"]]
    status, _, _ = await api(http, sim, "POST", "/api/v4/posts",
                             body={"channel_id": sim.channel_id("ops"), "root_id": root["id"],
                                   "message": "wrong channel"})
    assert status == 400


async def test_private_channel_posts_need_membership(sim: MattermostSimulator,
                                                     http: aiohttp.ClientSession) -> None:
    private = sim.create_channel("secret", private=True, members=["alice"])
    status, _, body = await api(http, sim, "GET", f"/api/v4/channels/{private}/posts")
    assert status == 403 and body["id"] == "api.context.permissions.app_error"
    status, _, _ = await api(http, sim, "POST", "/api/v4/posts",
                             body={"channel_id": private, "message": "x"})
    assert status == 403


# -- throughput helpers and the thread wrapper ---------------------------------------------------


async def test_flood_reaches_the_bot_in_order_with_sent_times(sim: MattermostSimulator) -> None:
    stream = await open_stream(sim)
    await stream.round_trip()
    messages = [f"m{i}" for i in range(300)]
    started = time.monotonic()
    await sim.flood("helpdesk", "alice", messages)
    await stream.wait(lambda f: f.get("event") == "posted"
                      and json.loads(f["data"]["post"])["message"] == "m299")
    posted = stream.events("posted")
    assert [json.loads(f["data"]["post"])["message"] for f in posted] == messages
    seqs = [f["seq"] for f in stream.frames if "event" in f]
    assert seqs == list(range(len(seqs)))
    times = [sim.sent_at(json.loads(f["data"]["post"])["id"]) for f in posted]
    assert all(t is not None and t >= started for t in times)
    assert times == sorted(times)  # type: ignore[type-var]
    assert sim.sent_at("nosuchpost") is None
    assert len(sim.posts("helpdesk")) == 300
    await stream.close()


async def test_wait_for_times_out(sim: MattermostSimulator) -> None:
    with pytest.raises(TimeoutError):
        await sim.wait_for(lambda: False, timeout=0.05)


def test_simulator_thread_serves_sync_code() -> None:
    with SimulatorThread(bot_token=BOT_TOKEN) as sim:
        request = urllib.request.Request(sim.url + "/api/v4/users/me",
                                         headers={"Authorization": f"Bearer {BOT_TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert json.loads(resp.read())["id"] == sim.bot_id
    thread = SimulatorThread()
    sim = thread.start()
    try:
        post = thread.call(sim.post_as("alice", "helpdesk", "from a thread"))
        assert post["message"] == "from a thread"
        assert thread.call(lambda: len(sim.posts("helpdesk"))) == 1
    finally:
        thread.stop()
