"""End to end: the ways into the helpdesk besides the event stream — Mattermost's outgoing
webhooks (alone, in webhook-only mode, and together with the stream) and slash commands made by
`switchboard register-commands` — through the real process, the Mattermost simulator and the
GLPI simulator, over real sockets."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from typing import Any

import httpx
import pytest

from plugin.sandbox.mattermost import MattermostSimulator

from .harness import ROOT, BotProcess, merge, replies_to, wait_until
from .test_helpdesk import GLPI_TOKEN, HELPDESK, World, linked, ticket_number

pytestmark = pytest.mark.e2e

GLPI_ENV = {"HELPDESK_TRACKER": "glpi", "GLPI_USER_TOKEN": GLPI_TOKEN}


def api(sim: MattermostSimulator, user: str) -> httpx.Client:
    return httpx.Client(base_url=sim.url + "/api/v4", timeout=40,
                        headers={"Authorization": f"Bearer {user}-token"})


def new_bot(world: World, settings: dict[str, Any] | None = None, **env: str) -> BotProcess:
    """A bot process, not started yet (a test creates the integrations it needs first)."""
    return BotProcess(world.mm, world.tmp, settings=merge(HELPDESK, settings or {}),
                      env=GLPI_ENV | {"GLPI_URL": world.glpi.api_url} | env)


def outgoing_hook(sim: MattermostSimulator, url: str, content_type: str) -> dict[str, Any]:
    """An outgoing webhook on `112` in ~helpdesk, made by the admin as an operator would."""
    with api(sim, "admin") as admin:
        r = admin.post("/hooks/outgoing", json={
            "team_id": sim.team_id, "channel_id": sim.channel_id("helpdesk"),
            "display_name": "Helpdesk", "trigger_words": ["112"], "trigger_when": 0,
            "callback_urls": [url], "content_type": content_type})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def webhook_comments(sim: MattermostSimulator, root_id: str) -> list[dict[str, Any]]:
    """Thread replies Mattermost posted from a webhook's answer."""
    return [p for p in sim.posts("helpdesk") if p.get("root_id") == root_id
            and (p.get("props") or {}).get("from_webhook") == "true"]


def metric(bot: BotProcess, name: str) -> float:
    text = httpx.get(bot.url + "/metrics", timeout=5).text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def register(bot: BotProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`switchboard register-commands` with the bot's configuration and environment."""
    return subprocess.run(
        [sys.executable, "-m", "plugin.cli", "register-commands", "-c", str(bot.config), *args],
        cwd=ROOT, env=bot.env | env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("content_type", ["application/json",
                                          "application/x-www-form-urlencoded"])
def test_webhook_only_mode_files_one_ticket_and_comments(world: World,
                                                         content_type: str) -> None:
    b = new_bot(world, SWITCHBOARD_STREAM="false")
    hook = outgoing_hook(world.mm, f"{b.url}/outgoing", content_type)
    b.env["OUTGOING_TOKEN"] = hook["token"]
    b.start()
    try:
        b.wait_ready()
        assert world.mm.ws_connects == 0  # healthy without ever opening the websocket
        p = world.say("112 printer broken")
        comment = wait_until(lambda: webhook_comments(world.mm, p["id"]), 15,
                             "the webhook's comment")[0]
        assert "being filed" in comment["message"]
        assert comment["user_id"] == world.mm.user_id("admin")  # the hook's creator posts it
        n = ticket_number(world.reply(
            p, rf"^:ticket: Ticket \*\*{linked(world)}\*\* opened in GLPI: printer broken$"))
        assert [t["id"] for t in world.tickets()] == [n]
        assert world.tickets()[0]["name"] == "printer broken"
        assert len(webhook_comments(world.mm, p["id"])) == 1
        assert len(replies_to(world.mm, p["id"])) == 1
        # Without the stream, the bot's own posts come back only through the webhook.
        own = world.mm_thread.call(world.mm.post_as("switchboard", "helpdesk", "112 loop?"))
        wait_until(lambda: metric(b, 'switchboard_listener_requests_total{route="/outgoing",'
                                     'status="200"}') >= 2, 10, "the call for the bot's post")
        assert webhook_comments(world.mm, own["id"]) == []
        assert world.mm.ws_connects == 0
    finally:
        assert b.stop() == 0, b.log()
    assert len(world.tickets()) == 1


def test_webhook_only_restart_reads_only_what_came_while_it_was_down(world: World) -> None:
    short = {"backfill": {"overlap_ms": 200}}  # the margin for clocks that disagree
    b = new_bot(world, short, SWITCHBOARD_STREAM="false")
    hook = outgoing_hook(world.mm, f"{b.url}/outgoing", "application/json")
    b.env["OUTGOING_TOKEN"] = hook["token"]
    b.start()
    try:
        b.wait_ready()
        # Not for the bot while it runs: a DM, and a channel without a hook.
        ignored_dm = world.dm("112 dm while up")
        ignored = world.say("112 in a channel without a hook", channel="town-square")
        last = max(p["create_at"] for p in (ignored_dm, ignored))

        def alive_at() -> int:
            with sqlite3.connect(world.tmp / "state.db") as db:
                row = db.execute("SELECT value FROM kv WHERE key = 'alive_at'").fetchone()
            return int(row[0]) if row else 0
        # Housekeeping marks the bot alive once a second.
        wait_until(lambda: alive_at() > last + 1000, 10, "the bot marked alive")
    finally:
        assert b.stop() == 0, b.log()
    missed = world.say("112 posted while down")
    missed_dm = world.dm("112 dm while down")
    again = new_bot(world, short, SWITCHBOARD_STREAM="false", OUTGOING_TOKEN=hook["token"])
    again.start()
    try:
        again.wait_ready()
        world.reply(missed, r"opened in GLPI")
        assert [t["name"] for t in world.tickets()] == ["posted while down"]
        for post in (ignored_dm, ignored, missed_dm):
            assert replies_to(world.mm, post["id"]) == [], post["message"]
    finally:
        assert again.stop() == 0, again.log()


def test_webhook_and_stream_together_file_one_ticket(world: World) -> None:
    b = new_bot(world)
    hook = outgoing_hook(world.mm, f"{b.url}/outgoing", "application/json")
    b.env["OUTGOING_TOKEN"] = hook["token"]
    b.start()
    try:
        b.wait_ready()
        p = world.say("112 scanner jams")
        n = ticket_number(world.reply(p, r"opened in GLPI"))
        # Both deliveries were seen: the later one was skipped as already handled.
        wait_until(lambda: metric(b, "switchboard_duplicates_skipped_total") >= 1, 15,
                   "the second delivery to be skipped")
        wait_until(lambda: metric(b, 'switchboard_listener_requests_total{route="/outgoing",'
                                     'status="200"}') >= 1, 10, "the webhook's answer")
        assert [t["id"] for t in world.tickets()] == [n]
        opened = [r for r in replies_to(world.mm, p["id"]) if "opened" in r["message"]]
        assert len(opened) == 1
        assert len(webhook_comments(world.mm, p["id"])) <= 1
    finally:
        assert b.stop() == 0, b.log()


def test_a_wrong_webhook_token_is_refused(world: World) -> None:
    b = new_bot(world, SWITCHBOARD_STREAM="false", OUTGOING_TOKEN="the-right-token")
    outgoing_hook(world.mm, f"{b.url}/outgoing", "application/json")  # a token of its own
    b.start()
    try:
        b.wait_ready()
        p = world.say("112 keyboard missing")
        wait_until(lambda: metric(b, 'switchboard_listener_requests_total{route="/outgoing",'
                                     'status="401"}') >= 1, 10, "the refused call")
        assert world.tickets() == []
        assert webhook_comments(world.mm, p["id"]) == []
        assert "the-right-token" not in b.log()
    finally:
        assert b.stop() == 0, b.log()


def test_register_commands_is_idempotent_and_its_token_is_accepted(world: World) -> None:
    sim = world.mm
    b = new_bot(world)
    first = register(b)
    assert first.returncode == 0, first.stderr
    assert "team sandbox: 1 created, 0 updated, 0 unchanged" in first.stdout
    commands = sim.commands()
    assert len(commands) == 1
    cmd = commands[0]
    assert (cmd["trigger"], cmd["url"], cmd["method"]) == ("ticket", f"{b.url}/slash", "P")
    assert cmd["auto_complete"] and "status <number>" in cmd["auto_complete_hint"]
    assert cmd["display_name"] and cmd["description"] and cmd["auto_complete_desc"]
    assert cmd["token"] not in first.stdout + first.stderr
    second = register(b)
    assert second.returncode == 0, second.stderr
    assert "0 created, 0 updated, 1 unchanged" in second.stdout
    assert "nothing changed" in second.stdout
    assert sim.commands() == commands
    # A new public URL updates the same command: same id, same token.
    moved = register(b, SWITCHBOARD_PUBLIC_URL="http://127.0.0.1:9")
    assert moved.returncode == 0 and "0 created, 1 updated" in moved.stdout
    assert [(c["id"], c["token"], c["url"]) for c in sim.commands()] == [
        (cmd["id"], cmd["token"], "http://127.0.0.1:9/slash")]
    back = register(b)
    assert back.returncode == 0 and "1 updated" in back.stdout
    assert [(c["id"], c["url"]) for c in sim.commands()] == [(cmd["id"], f"{b.url}/slash")]
    # The bot runs without SLASH_TOKEN: the token stored by register-commands is accepted.
    assert "SLASH_TOKEN" not in b.env
    b.start()
    try:
        b.wait_ready()
        with api(sim, "alice") as alice:
            r = alice.post("/commands/execute", json={"channel_id": sim.channel_id("helpdesk"),
                                                      "command": "/ticket printer broken"})
        assert r.status_code == 200, r.text
        assert "being filed" in r.json()["text"]
        assert r.json()["response_type"] == "ephemeral"
        root = wait_until(lambda: next((p for p in sim.posts("helpdesk")
                                        if "Ticket request from @alice" in p["message"]), None),
                          15, "the request's post")
        n = ticket_number(world.reply(root, r"opened in GLPI"))
        assert [(t["id"], t["name"]) for t in world.tickets()] == [(n, "printer broken")]
        # The answer was ephemeral: nothing was posted as alice.
        assert not [p for p in sim.posts("helpdesk") if p["user_id"] == sim.user_id("alice")]
    finally:
        assert b.stop() == 0, b.log()


def test_register_commands_names_the_missing_permission(world: World) -> None:
    sim = world.mm
    sim.only_admin_commands = True
    b = new_bot(world)
    denied = register(b)
    assert denied.returncode == 1
    assert "manage_slash_commands" in denied.stderr and "--token-env" in denied.stderr
    assert sim.commands() == []
    made = register(b, "--token-env", "SB_ADMIN_TOKEN", SB_ADMIN_TOKEN="admin-token")
    assert made.returncode == 0, made.stderr
    assert "1 created" in made.stdout and "admin-token" not in made.stdout + made.stderr
    assert [c["creator_id"] for c in sim.commands()] == [sim.user_id("admin")]
    empty = register(b, "--token-env", "SB_UNSET_TOKEN")
    assert empty.returncode == 1 and "SB_UNSET_TOKEN" in empty.stderr


def slash_call(bot: BotProcess, sim: MattermostSimulator, token: str,
               team_id: str) -> httpx.Response:
    """A slash command's request, as Mattermost sends it, straight to the bot's listener."""
    return httpx.post(f"{bot.url}/slash", timeout=10, data={
        "token": token, "team_id": team_id, "team_domain": "sandbox",
        "channel_id": sim.channel_id("helpdesk"), "channel_name": "helpdesk",
        "user_id": sim.user_id("alice"), "user_name": "alice", "command": "/ticket",
        "text": "status x", "response_url": "", "trigger_id": "t" * 26})


def test_a_foreign_ticket_command_is_left_alone_and_its_token_refused(world: World) -> None:
    sim = world.mm
    b = new_bot(world)
    with api(sim, "admin") as admin:
        made = admin.post("/commands", json={
            "team_id": sim.team_id, "trigger": "ticket", "method": "P",
            "url": "https://jira-bridge.example.com/slash"})
    assert made.status_code == 201, made.text
    before = sim.commands()
    # Even an account that may change others' commands leaves it alone.
    foreign = register(b, "--token-env", "SB_ADMIN_TOKEN", SB_ADMIN_TOKEN="admin-token")
    assert foreign.returncode == 1
    assert ("team sandbox: /ticket already exists in this team and calls "
            "https://jira-bridge.example.com, not this bot's listener") in foreign.stderr
    assert "left alone" in foreign.stderr
    assert made.json()["token"] not in foreign.stdout + foreign.stderr
    assert sim.commands() == before
    b.start()
    try:
        b.wait_ready()
        assert slash_call(b, sim, made.json()["token"], sim.team_id).status_code == 401
    finally:
        assert b.stop() == 0, b.log()


def test_a_stored_token_is_accepted_only_from_its_team(world: World) -> None:
    sim = world.mm
    b = new_bot(world)
    done = register(b)
    assert done.returncode == 0, done.stderr
    token = sim.commands()[0]["token"]
    b.start()
    try:
        b.wait_ready()
        answer = slash_call(b, sim, token, sim.team_id)
        assert answer.status_code == 200, answer.text
        assert answer.json()["response_type"] == "ephemeral"
        assert slash_call(b, sim, token, "x" * 26).status_code == 401
    finally:
        assert b.stop() == 0, b.log()


def test_in_channel_answers_are_posted_in_the_channel(world: World) -> None:
    sim = world.mm
    b = new_bot(world, SLASH_RESPONSE="in_channel")
    with api(sim, "admin") as admin:
        created = admin.post("/commands", json={"team_id": sim.team_id, "trigger": "ticket",
                                                "url": f"{b.url}/slash", "method": "P"})
    assert created.status_code == 201, created.text
    b.env["SLASH_TOKEN"] = created.json()["token"]
    b.start()
    try:
        b.wait_ready()
        channel = sim.channel_id("helpdesk")
        with api(sim, "alice") as alice:
            r = alice.post("/commands/execute", json={"channel_id": channel,
                                                      "command": "/ticket monitor flickers"})
            assert r.status_code == 200 and r.json()["response_type"] == "in_channel"
            answer = wait_until(lambda: next(
                (p for p in sim.posts("helpdesk") if p["user_id"] == sim.user_id("alice")
                 and "being filed" in p["message"]), None), 10, "the in-channel answer")
            assert answer["props"]["from_webhook"] == "true"
            # Usage help stays for the one who asked.
            usage = alice.post("/commands/execute", json={"channel_id": channel,
                                                          "command": "/ticket status x"})
            assert usage.json()["response_type"] == "ephemeral"
        root = wait_until(lambda: next((p for p in sim.posts("helpdesk")
                                        if "Ticket request from @alice" in p["message"]), None),
                          15, "the request's post")
        world.reply(root, r"opened in GLPI")
        assert len(world.tickets()) == 1
        alice_posts = [p for p in sim.posts("helpdesk") if p["user_id"] == sim.user_id("alice")]
        assert len(alice_posts) == 1
    finally:
        assert b.stop() == 0, b.log()
