"""Outgoing webhooks, slash command tokens and webhook-only mode, in-process: payload decoding,
the /outgoing route (tokens, the bot's own posts, malformed bodies, the comment answer), the
tokens `register-commands` stores, and health without a stream."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge import http1
from plugin import commands
from plugin import filters as F
from plugin.app import Bot
from plugin.commands import TOKENS_KEY, CommandSpec, register, replace_teams, stored_tokens
from plugin.config import parse
from plugin.context import Context
from plugin.events import BadPayload, Message, OutgoingWebhook, SlashCommand
from plugin.listener import HTTPError, Listener, build, token_matches
from plugin.mattermost import MattermostAuthError, MattermostError
from plugin.review import warnings
from plugin.router import Router
from plugin.store import SQLiteStore, StoreError

BOT_ID = "b" * 26
ALICE = "a" * 26
CHANNEL = "c" * 26
HOOK_TOKEN = "outgoing-token-0123456789"

JSON_CALL: dict[str, Any] = {
    "token": HOOK_TOKEN, "team_id": "t" * 26, "team_domain": "sandbox", "channel_id": CHANNEL,
    "channel_name": "helpdesk", "timestamp": 1795388384730, "user_id": ALICE,
    "user_name": "alice", "post_id": "p" * 26, "text": "112 printer broken",
    "trigger_word": "112", "file_ids": ""}


# --- decoding -----------------------------------------------------------------------------------
def test_json_call_decodes_with_the_time_in_milliseconds() -> None:
    hook = OutgoingWebhook.from_body(JSON_CALL | {"file_ids": "f1,f2"})
    assert hook.timestamp == 1795388384730
    assert hook.file_ids == ("f1", "f2")
    msg = hook.message()
    assert isinstance(msg, Message)
    assert msg.source == "webhook" and msg.channel_type == "O"
    assert msg.post.id == "p" * 26 and msg.post.create_at == 1795388384730
    assert msg.post.message == "112 printer broken" and msg.sender_name == "@alice"
    assert msg.post.root_id == "" and msg.channel_name == "helpdesk"


def test_form_call_has_the_time_in_seconds() -> None:
    form = {k: str(v) for k, v in JSON_CALL.items()} | {"timestamp": "1795388386"}
    hook = OutgoingWebhook.from_body(form, form=True)
    assert hook.timestamp == 1795388386000
    assert hook.file_ids == ()
    assert hook.token == HOOK_TOKEN


@pytest.mark.parametrize("body", [
    [JSON_CALL], "text", JSON_CALL | {"timestamp": "soon"}, JSON_CALL | {"timestamp": True},
    JSON_CALL | {"timestamp": -5}, JSON_CALL | {"post_id": ""}, JSON_CALL | {"user_id": 7},
    {k: v for k, v in JSON_CALL.items() if k != "channel_id"}, JSON_CALL | {"file_ids": 3}])
def test_malformed_calls_are_refused(body: Any) -> None:
    with pytest.raises(BadPayload):
        OutgoingWebhook.from_body(body)


def test_tokens_compare_against_every_candidate() -> None:
    assert token_matches("abc", ["", "xyz", "abc"])
    assert not token_matches("abd", ["abc", ""])
    assert not token_matches("", ["", "abc"])
    assert not token_matches("abc", [])


# --- the bot, in-process ------------------------------------------------------------------------
calls: list[tuple[str, str]] = []
stamps: list[int] = []
#: Per handler run: None when its requests wait for nothing, else (was its claim on disk when it
#: began, was it once the requests' waiter returned).
gates: list[tuple[bool, bool] | None] = []
stores: list[SQLiteStore] = []
router = Router("test")


@router.message(F.Keyword("112"))
async def ticket(ctx: Context, text: str, event: Message) -> None:
    calls.append((event.post.id, text))
    stamps.append(event.post.create_at)
    waiter = http1._BEFORE_REQUEST.get()  # what every request made here awaits first
    if waiter is None:
        gates.append(None)
    else:
        engine = stores[-1].engine
        assert engine._disk is not None
        mark = engine._written
        began = engine._disk.synced >= mark
        await waiter()
        gates.append((began, engine._disk.synced >= mark))
    if text == "late":
        await asyncio.sleep(0.5)
    await ctx.reply(f"filing: {text}")
    if text == "twice":
        await ctx.reply("second line")


def config(**listener: Any) -> Any:
    settings = {"mattermost": {"url": "http://127.0.0.1:9", "token": "bot-token"},
                "security": {"secret": "s" * 32},
                "listener": {"outgoing_tokens": ["", HOOK_TOKEN],
                             "slash_tokens": ["configured-slash"]} | listener,
                "stream": {"enabled": False}}
    return parse(json.dumps({"manifest": {"id": "io.test.bot", "name": "T", "version": "1.0.0",
                                          "min_server_version": "5.36.0"},
                             "settings": settings}))


class FakeREST:
    """What the bot asks Mattermost during these tests."""

    def __init__(self) -> None:
        self.readable = True
        self.text = str(JSON_CALL["text"])
        self.posted: list[dict[str, Any]] = []

    async def get_post(self, post_id: str) -> dict[str, Any]:
        if not self.readable:
            raise MattermostError(403, "api.context.permissions.app_error", "no", "/posts")
        return {"id": post_id, "channel_id": CHANNEL, "user_id": ALICE, "root_id": "",
                "message": self.text, "create_at": JSON_CALL["timestamp"],
                "props": {}, "type": ""}

    async def channel(self, channel_id: str) -> dict[str, Any]:
        return {"id": channel_id, "type": "O", "name": "helpdesk", "team_id": "t" * 26}

    async def user(self, user_id: str) -> dict[str, Any]:
        return {"id": user_id, "username": "alice", "locale": "en"}

    async def create_post(self, channel_id: str, message: str, **kw: Any) -> dict[str, Any]:
        self.posted.append({"channel_id": channel_id, "message": message} | kw)
        return {"id": "r" * 26}


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> AsyncIterator[tuple[Bot, httpx.AsyncClient, FakeREST]]:
    calls.clear()
    stamps.clear()
    gates.clear()
    store = SQLiteStore(tmp_path / "state.db")
    stores.append(store)
    bot = Bot(config(action_timeout=0.3), [router], store=store)
    rest = FakeREST()
    for name in ("get_post", "channel", "user", "create_post"):
        monkeypatch.setattr(bot.api, name, getattr(rest, name))
    bot.api.me = {"id": BOT_ID, "username": "switchboard"}
    await store.open()
    # The one replica of its file, leading, without the stream (or REST watch) it would run.
    bot.replica.role, bot.replica.last_beat = "leader", time.monotonic()
    listener = Listener(build(bot.ways_in, 1 << 20), "127.0.0.1", 0)
    port = await listener.start()
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False,
                               timeout=10)
    try:
        yield bot, client, rest
    finally:
        await client.aclose()
        await listener.stop()
        await bot.dispatcher.join(2)
        await store.close()
        bot.api.close()


async def test_a_webhook_call_is_handled_once_and_answered_as_a_comment(
        world: tuple[Bot, httpx.AsyncClient, FakeREST]) -> None:
    bot, client, rest = world
    r = await client.post("/outgoing", json=JSON_CALL)
    assert r.status_code == 200
    assert r.json() == {"text": "filing: printer broken", "response_type": "comment"}
    assert calls == [("p" * 26, "printer broken")]
    assert rest.posted == []  # the answer carried the reply: no REST post
    assert await bot.store.claims.is_handled("p" * 26)
    # The same post again (a second hook, or the stream) is not handled a second time.
    again = await client.post("/outgoing", json=JSON_CALL)
    assert again.json() == {}
    msg = Message.from_frame({"post": json.dumps(await rest.get_post("p" * 26)),
                              "channel_type": "O"})
    assert bot.pipeline.ingest(msg, 0.0)
    await bot.dispatcher.join(2)
    assert len(calls) == 1
    assert gates == [None]  # the call's claim was on disk before its handler ran


async def test_a_streamed_post_is_claimed_without_the_disk_and_its_requests_wait_for_it(
        world: tuple[Bot, httpx.AsyncClient, FakeREST]) -> None:
    bot, _, rest = world
    rest.text = "112 streamed"
    msg = Message.from_frame({"post": json.dumps(await rest.get_post("p" * 26)),
                              "channel_type": "O"})
    assert bot.pipeline.ingest(msg, 0.0)
    await bot.dispatcher.join(2)
    assert calls == [("p" * 26, "streamed")]
    # Not on disk when the handler began; on disk before any request it makes leaves.
    assert gates == [(False, True)]
    assert [p["message"] for p in rest.posted] == ["filing: streamed"]
    assert await bot.store.claims.is_handled("p" * 26)


async def test_form_calls_and_several_replies(
        world: tuple[Bot, httpx.AsyncClient, FakeREST]) -> None:
    _, client, rest = world
    rest.readable = False  # the call's own fields are used
    form = {k: str(v) for k, v in JSON_CALL.items()} | {"text": "112 twice",
                                                        "timestamp": "1795388386"}
    r = await client.post("/outgoing", data=form)
    assert r.json() == {"text": "filing: twice\n\nsecond line",
                              "response_type": "comment"}
    assert calls == [("p" * 26, "twice")]
    assert stamps == [1795388386000]


async def test_replies_after_the_deadline_go_over_rest(
        world: tuple[Bot, httpx.AsyncClient, FakeREST]) -> None:
    bot, client, rest = world
    rest.text = "112 late"
    r = await client.post("/outgoing", json=JSON_CALL | {"text": rest.text})
    assert r.json() == {}
    await bot.dispatcher.join(5)
    assert [p["message"] for p in rest.posted] == ["filing: late"]
    assert rest.posted[0]["root_id"] == "p" * 26


@pytest.mark.parametrize("token", ["", "wrong-token", HOOK_TOKEN + "x"])
async def test_a_wrong_or_missing_token_is_refused_and_changes_nothing(
        world: tuple[Bot, httpx.AsyncClient, FakeREST], token: str) -> None:
    bot, client, _ = world
    body = JSON_CALL | {"token": token}
    r = await client.post("/outgoing", json=body)
    assert r.status_code == 401
    assert "token" in r.json()["error"]
    form = await client.post("/outgoing", data={k: str(v) for k, v in body.items()})
    assert form.status_code == 401
    assert calls == []
    assert not await bot.store.claims.is_handled("p" * 26)


async def test_the_bots_own_post_is_never_answered(
        world: tuple[Bot, httpx.AsyncClient, FakeREST]) -> None:
    bot, client, _ = world
    r = await client.post("/outgoing", json=JSON_CALL | {"user_id": BOT_ID})
    assert r.status_code == 200 and r.json() == {}
    assert calls == []
    assert not await bot.store.claims.is_handled("p" * 26)


async def test_no_matching_handler_answers_nothing(
        world: tuple[Bot, httpx.AsyncClient, FakeREST]) -> None:
    _, client, rest = world
    rest.text = "hello there"
    r = await client.post("/outgoing", json=JSON_CALL | {"text": rest.text})
    assert r.status_code == 200 and r.json() == {}
    assert calls == []


@pytest.mark.parametrize("raw,ctype", [
    (b"not json", "application/json"), (b"[1, 2]", "application/json"),
    (b"", "application/json"),
    (json.dumps(JSON_CALL | {"timestamp": "later"}).encode(), "application/json"),
    (b"token=" + HOOK_TOKEN.encode() + b"&channel_id=x&user_id=y&timestamp=abc&post_id=z",
     "application/x-www-form-urlencoded")])
async def test_malformed_bodies_are_400(world: tuple[Bot, httpx.AsyncClient, FakeREST],
                                        raw: bytes, ctype: str) -> None:
    _, client, _ = world
    r = await client.post("/outgoing", content=raw, headers={"Content-Type": ctype})
    assert r.status_code == 400
    assert "error" in r.json()
    assert calls == []


# --- slash command tokens stored by register-commands ------------------------------------------
async def test_stored_slash_tokens_are_accepted_and_read_again_on_a_miss(
        world: tuple[Bot, httpx.AsyncClient, FakeREST]) -> None:
    bot, _, _ = world
    command = SlashCommand.from_form({"command": "/nosuch", "user_id": ALICE,
                                      "trigger_id": "x", "team_id": "t"})
    assert (await bot.ways_in.on_slash(command, "configured-slash"))["response_type"] == "ephemeral"
    await bot.store.kv.put(TOKENS_KEY, json.dumps(
        {"c1": {"team_id": "t", "trigger": "ticket", "token": "stored-slash"}}))
    await bot.ways_in.read_slash_tokens()
    await bot.ways_in.on_slash(command, "stored-slash")
    # A token stored later is not seen until the re-read interval has passed...
    await bot.store.kv.put(TOKENS_KEY, json.dumps(
        {"c2": {"team_id": "t", "trigger": "ticket", "token": "newer-slash"}}))
    with pytest.raises(HTTPError) as refused:
        await bot.ways_in.on_slash(command, "newer-slash")
    assert refused.value.status == 401
    # ...then one miss reads the store again.
    bot.ways_in.slash_token_reread = 0.0
    await bot.ways_in.on_slash(command, "newer-slash")
    assert await stored_tokens(bot.store) == [("t", "newer-slash")]
    with pytest.raises(HTTPError):
        await bot.ways_in.on_slash(command, "stored-slash")


async def test_garbage_in_the_store_is_ignored(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        await store.kv.put(TOKENS_KEY, "{not json")
        assert await stored_tokens(store) == []
    finally:
        await store.close()


# --- webhook-only mode --------------------------------------------------------------------------
async def test_webhook_only_mode_is_healthy_without_a_stream(
        world: tuple[Bot, httpx.AsyncClient, FakeREST]) -> None:
    _, client, _ = world
    r = await client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["websocket"] == "disabled"
    text = " ".join(warnings(config()))
    assert "webhook-only mode" in text and "direct messages" in text
    no_token = " ".join(warnings(config(outgoing_tokens=[])))
    assert "every outgoing webhook is refused" in no_token
    streamed = parse(json.dumps({"manifest": {"id": "io.test.bot", "name": "T",
                                              "version": "1.0.0",
                                              "min_server_version": "5.36.0"}}))
    assert not any("webhook-only" in w for w in warnings(streamed))


async def test_a_call_about_another_post_is_refused(
        world: tuple[Bot, httpx.AsyncClient, FakeREST]) -> None:
    # A token holder names a post of another channel (a DM, say): nothing is handled or said.
    bot, client, _ = world
    r = await client.post("/outgoing", json=JSON_CALL | {"channel_id": "d" * 26})
    assert r.status_code == 403
    r = await client.post("/outgoing", json=JSON_CALL | {"user_id": "u" * 26})
    assert r.status_code == 403
    assert calls == []
    assert not await bot.store.claims.is_handled("p" * 26)


async def test_a_slow_post_read_leaves_the_handler_its_time(
        world: tuple[Bot, httpx.AsyncClient, FakeREST],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bot, client, rest = world
    real = rest.get_post

    async def slow(post_id: str) -> dict[str, Any]:
        await asyncio.sleep(1.0)
        return await real(post_id)
    monkeypatch.setattr(bot.api, "get_post", slow)
    started = time.monotonic()
    r = await client.post("/outgoing", json=JSON_CALL)
    # The call's own fields serve when the read is slow; the answer still carries the reply
    # within the deadline Mattermost gives it.
    assert r.json() == {"text": "filing: printer broken", "response_type": "comment"}
    assert time.monotonic() - started < 0.9


async def test_webhook_only_mode_reports_a_revoked_token(
        world: tuple[Bot, httpx.AsyncClient, FakeREST],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bot, client, _ = world

    async def refused() -> dict[str, Any]:
        raise MattermostAuthError(401, "api.context.session_expired.app_error", "no", "/me")

    async def no_backfill(first: bool) -> None:
        return None
    monkeypatch.setattr(bot.api, "login", refused)
    monkeypatch.setattr(bot.rest_watch, "catch_up", no_backfill)
    task = asyncio.create_task(bot.rest_watch.run())
    try:
        for _ in range(100):
            if not bot.rest_watch.ok:
                break
            await asyncio.sleep(0.01)
        r = await client.get("/healthz")
        assert r.status_code == 503 and r.json()["rest"] == "failing"
    finally:
        bot.stop()
        await asyncio.wait_for(task, 5)


# --- register-commands against a fake API -------------------------------------------------------
class FakeCommands:
    def __init__(self, existing: list[dict[str, Any]], forbidden: bool = False) -> None:
        self.existing = existing
        self.forbidden = forbidden
        self.created: list[dict[str, Any]] = []
        self.updated: list[dict[str, Any]] = []

    async def custom_commands(self, team_id: str) -> list[dict[str, Any]]:
        if self.forbidden:
            raise MattermostError(403, "api.context.permissions.app_error", "no", "/commands")
        return [dict(c) for c in self.existing]

    async def create_command(self, command: dict[str, Any]) -> dict[str, Any]:
        made = command | {"id": "new", "token": "tok-new"}
        self.created.append(made)
        self.existing.append(made)
        return made

    async def update_command(self, command: dict[str, Any]) -> dict[str, Any]:
        self.updated.append(command)
        self.existing = [command if c["id"] == command["id"] else c for c in self.existing]
        return command


SPEC = CommandSpec("ticket", "Helpdesk ticket", "Open a ticket", "Open", "[problem]")
TEAM = [{"id": "t1", "name": "sandbox"}]


async def test_register_creates_then_leaves_alone_then_updates_in_place() -> None:
    api = FakeCommands([])
    results, tokens = await register(api, TEAM, [SPEC], "http://bot/slash", {})  # type: ignore
    assert (results[0].created, results[0].updated, results[0].unchanged) == (1, 0, 0)
    assert tokens == {"new": {"team_id": "t1", "trigger": "ticket", "token": "tok-new"}}
    results, _ = await register(api, TEAM, [SPEC], "http://bot/slash", {})  # type: ignore
    assert (results[0].created, results[0].updated, results[0].unchanged) == (0, 0, 1)
    # A new public URL: the command is recognised by its recorded id, not by its old address.
    results, tokens = await register(api, TEAM, [SPEC], "http://moved/slash",  # type: ignore
                                     tokens)
    assert (results[0].created, results[0].updated, results[0].unchanged) == (0, 1, 0)
    assert api.updated[0]["id"] == "new" and api.updated[0]["url"] == "http://moved/slash"
    assert tokens["new"]["token"] == "tok-new"
    assert "tok-new" not in results[0].line()


async def test_register_leaves_a_foreign_command_and_names_the_permission() -> None:
    foreign = FakeCommands([{"id": "x", "trigger": "ticket", "url": "http://other/hook",
                             "token": "theirs"}])
    results, tokens = await register(foreign, TEAM, [SPEC], "http://bot/slash",  # type: ignore
                                     {})
    assert tokens == {} and foreign.updated == []
    assert "not this bot" in results[0].problems[0]
    adopted, tokens = await register(foreign, TEAM, [SPEC], "http://bot/slash",  # type: ignore
                                     {"x": {"team_id": "t1", "trigger": "ticket", "token": ""}})
    assert adopted[0].updated == 1 and tokens["x"]["token"] == "theirs"
    denied = FakeCommands([], forbidden=True)
    results, _ = await register(denied, TEAM, [SPEC], "http://bot/slash", {})  # type: ignore
    assert "manage_slash_commands" in results[0].problems[0]
    assert "--token-env" in results[0].problems[0]


async def test_only_the_bots_own_commands_are_adopted() -> None:
    public = "https://bot.example.com/sb/slash"
    for foreign_url in ("https://jira-bridge.example.com/slash",  # another host's /slash
                        "https://bot.example.com:8443/sb/slash",  # another port
                        "http://bot.example.com/sb/slash",  # another scheme
                        "https://bot.example.com/sb/other"):  # not a slash endpoint
        foreign = FakeCommands([{"id": "x", "trigger": "ticket", "url": foreign_url,
                                 "token": "theirs-0123"}])
        results, tokens = await register(foreign, TEAM, [SPEC], public, {})  # type: ignore
        assert tokens == {} and foreign.updated == [] and foreign.created == [], foreign_url
        problem = results[0].problems[0]
        assert "/ticket already exists in this team" in problem and "left alone" in problem
        assert "not this bot's listener (https://bot.example.com)" in problem
        assert "theirs-0123" not in problem
    assert "calls https://jira-bridge.example.com, not" in (await register(
        FakeCommands([{"id": "x", "trigger": "ticket", "token": "t",
                       "url": "https://jira-bridge.example.com/slash?secret=s3"}]),  # type: ignore
        TEAM, [SPEC], public, {}))[0][0].problems[0]
    # Made by hand for this bot (same scheme, host and port, written differently): adopted.
    for own_url in ("https://BOT.example.com:443/sb/slash", "https://bot.example.com/slash/"):
        own = FakeCommands([{"id": "x", "trigger": "ticket", "url": own_url, "token": "mine"}])
        results, tokens = await register(own, TEAM, [SPEC], public, {})  # type: ignore
        assert results[0].updated == 1 and tokens["x"]["token"] == "mine", own_url
        assert own.updated[0]["url"] == public


async def accepted(bot: Bot, token: str, team_id: str) -> bool:
    """Whether the bot takes a slash request from `team_id` carrying `token`."""
    command = SlashCommand.from_form({"command": "/nosuch", "user_id": ALICE,
                                      "trigger_id": "x", "team_id": team_id})
    try:
        await bot.ways_in.on_slash(command, token)
    except HTTPError as refused:
        assert refused.status == 401
        return False
    return True


async def test_a_stored_token_is_accepted_only_from_its_commands_team(
        world: tuple[Bot, httpx.AsyncClient, FakeREST]) -> None:
    bot, _, _ = world
    await bot.store.kv.put(TOKENS_KEY, json.dumps({
        "c1": {"team_id": "t1", "trigger": "ticket", "token": "team1-slash"},
        "c2": {"team_id": "t2", "trigger": "ticket", "token": "team2-slash"},
        # No team (as no run writes it): never accepted, from any team.
        "c3": {"trigger": "ticket", "token": "teamless-slash"}}))
    bot.ways_in.slash_token_reread = 0.0
    assert await accepted(bot, "team1-slash", "t1")
    assert not await accepted(bot, "team1-slash", "t2")
    assert not await accepted(bot, "team1-slash", "")
    assert await accepted(bot, "team2-slash", "t2")
    assert not await accepted(bot, "teamless-slash", "t1")
    # The configured tokens are not tied to a team.
    assert await accepted(bot, "configured-slash", "t1")
    assert await accepted(bot, "configured-slash", "t2")


class FakeMattermost:
    """Teams and their custom commands, as `register_commands` sees Mattermost."""

    def __init__(self, *teams: str) -> None:
        self.commands: dict[str, list[dict[str, Any]]] = {t: [] for t in teams}
        self.unlisted: set[str] = set()
        self.made = 0

    async def login(self) -> dict[str, Any]:
        return {"id": BOT_ID, "username": "switchboard"}

    async def my_teams(self) -> list[dict[str, Any]]:
        return [{"id": t, "name": f"team-{t}"} for t in self.commands]

    async def custom_commands(self, team_id: str) -> list[dict[str, Any]]:
        if team_id in self.unlisted:
            raise MattermostError(403, "api.context.permissions.app_error", "no", "/commands")
        return [dict(c) for c in self.commands[team_id]]

    async def create_command(self, command: dict[str, Any]) -> dict[str, Any]:
        self.made += 1
        made = command | {"id": f"cmd{self.made}", "token": f"tok{self.made}"}
        self.commands[command["team_id"]].append(made)
        return dict(made)

    async def update_command(self, command: dict[str, Any]) -> dict[str, Any]:
        for team, listed in self.commands.items():
            self.commands[team] = [command if c["id"] == command["id"] else c for c in listed]
        return dict(command)

    def regenerate(self, command_id: str, token: str) -> None:
        for listed in self.commands.values():
            for c in listed:
                if c["id"] == command_id:
                    c["token"] = token

    def close(self) -> None:
        pass


async def test_register_replaces_a_teams_tokens_with_what_mattermost_lists_now(
        world: tuple[Bot, httpx.AsyncClient, FakeREST], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bot, _, _ = world
    bot.ways_in.slash_token_reread = 0.0
    mattermost = FakeMattermost("t1", "t2")
    monkeypatch.setattr(commands, "MattermostAPI", lambda *a, **kw: mattermost)
    setup = parse(json.dumps({
        "manifest": {"id": "io.test.bot", "name": "T", "version": "1.0.0",
                     "min_server_version": "5.36.0"},
        "settings": {"mattermost": {"url": "http://127.0.0.1:9", "token": "bot-token"},
                     "security": {"secret": "s" * 32},
                     "listener": {"public_url": "https://bot.example.com"},
                     # The file the running bot holds open.
                     "state": {"path": str(tmp_path / "state.db")}}}))
    printed: list[str] = []
    assert await commands.register_commands(setup, out=printed.append,
                                            err=printed.append) == 0, printed
    assert sorted(await stored_tokens(bot.store)) == [("t1", "tok1"), ("t2", "tok2")]
    assert await accepted(bot, "tok1", "t1") and await accepted(bot, "tok2", "t2")
    assert not await accepted(bot, "tok1", "t2")
    # The token of /ticket in t1 is regenerated; the one in t2 is deleted (the run makes it
    # again). After the run, neither old token is accepted.
    mattermost.regenerate("cmd1", "tok1-regenerated")
    mattermost.commands["t2"].clear()
    assert await commands.register_commands(setup, out=printed.append,
                                            err=printed.append) == 0, printed
    assert sorted(await stored_tokens(bot.store)) == [("t1", "tok1-regenerated"),
                                                      ("t2", "tok3")]
    assert not await accepted(bot, "tok1", "t1") and not await accepted(bot, "tok2", "t2")
    assert await accepted(bot, "tok1-regenerated", "t1") and await accepted(bot, "tok3", "t2")
    # A team whose commands cannot be listed keeps its entries.
    mattermost.unlisted.add("t1")
    assert await commands.register_commands(setup, out=printed.append,
                                            err=printed.append) == 1
    assert await accepted(bot, "tok1-regenerated", "t1")
    assert not [line for line in printed if re.search(r"\btok\d", line)]


def test_replacing_a_teams_entries_leaves_other_teams_and_drops_teamless_ones() -> None:
    current = {"a": {"team_id": "t1", "trigger": "ticket", "token": "old-a"},
               "b": {"team_id": "t2", "trigger": "ticket", "token": "b"},
               "c": {"team_id": "", "trigger": "ticket", "token": "c"}}
    found = {"d": {"team_id": "t1", "trigger": "ticket", "token": "d"}}
    assert replace_teams(current, {"t1"}, found) == {"b": current["b"], "d": found["d"]}
    assert replace_teams(current, {"t1"}, {}) == {"b": current["b"]}


async def test_a_claim_waits_for_a_store_out_of_reach_and_the_post_is_handled_once(
        world: tuple[Bot, httpx.AsyncClient, FakeREST], monkeypatch: pytest.MonkeyPatch) -> None:
    """A database down longer than its own patience: the post waits, held, and is handled
    once the store answers again, not dropped."""
    bot, _, rest = world
    rest.text = "112 while the store is away"
    claim = bot.store.claims.claim
    failures = [StoreError("out of reach"), StoreError("out of reach")]

    async def away(post_id: str, channel_id: str, *, durable: bool = True) -> bool:
        if failures:
            raise failures.pop()
        return await claim(post_id, channel_id, durable=durable)

    monkeypatch.setattr(bot.store.claims, "claim", away)
    monkeypatch.setattr(bot.pipeline, "CLAIM_RETRY", 0.05)
    msg = Message.from_frame({"post": json.dumps(await rest.get_post("p" * 26)),
                              "channel_type": "O"})
    assert bot.pipeline.ingest(msg, 0.0)
    await bot.dispatcher.join(5)
    assert failures == []
    assert calls == [("p" * 26, "while the store is away")]
    assert await bot.store.claims.is_handled("p" * 26)


async def test_a_post_not_claimed_when_the_bot_stops_keeps_its_cursor_back(
        world: tuple[Bot, httpx.AsyncClient, FakeREST], monkeypatch: pytest.MonkeyPatch) -> None:
    bot, _, rest = world
    rest.text = "112 never claimed"

    async def away(post_id: str, channel_id: str, *, durable: bool = True) -> bool:
        raise StoreError("out of reach")

    monkeypatch.setattr(bot.store.claims, "claim", away)
    monkeypatch.setattr(bot.pipeline, "CLAIM_RETRY", 0.05)
    bot.cursors.gap(set())  # cursors may move (the stream is up)
    raw = await rest.get_post("p" * 26)
    msg = Message.from_frame({"post": json.dumps(raw), "channel_type": "O"})
    assert bot.pipeline.ingest(msg, 0.0)
    await asyncio.sleep(0.2)
    bot.stop()
    await bot.dispatcher.join(2)
    assert calls == []
    # The channel's cursor stays before the post: a later run reads it again.
    assert bot.cursors.take_dirty().get(CHANNEL, 0) < raw["create_at"]
