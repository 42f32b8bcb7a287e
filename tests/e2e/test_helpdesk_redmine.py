"""End to end against a REAL Redmine: the real process, the Mattermost simulator, Redmine 5 from
Debian's packages (started by the `redmine_server` fixture)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin.sandbox.mattermost import MattermostSimulator, SimulatorThread
from tests.servers.redmine import RedmineServer

from .harness import BotProcess, replies_to, wait_until

pytestmark = pytest.mark.e2e

SETTINGS = {"helpdesk": {"poll_interval": 0.5, "retry_initial": 0.3, "retry_max": 1.0},
            "trackers": {"redmine": {"timeout": 10}}}


@pytest.fixture
def bot(mm: SimulatorThread, redmine_server: RedmineServer,
        tmp_path: Path) -> Iterator[BotProcess]:
    assert mm.simulator is not None
    b = BotProcess(mm.simulator, tmp_path, settings=SETTINGS, env={
        "REDMINE_URL": redmine_server.url, "REDMINE_API_KEY": redmine_server.admin_key,
        "REDMINE_PROJECT": redmine_server.project, "REDMINE_SWITCH_USER": "true",
        "HELPDESK_TRACKER": "redmine"}).start()
    b.wait_ready()
    yield b
    if b.proc is not None and b.proc.poll() is None:
        assert b.stop() == 0, b.log()


def reply(sim: MattermostSimulator, post: dict[str, Any], pattern: str,
          timeout: float = 20) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((r for r in replies_to(sim, post["id"])
                     if re.search(pattern, r["message"])), None)
    return wait_until(found, timeout, f"a reply matching {pattern!r}")  # type: ignore


def issue(server: RedmineServer, number: int) -> dict[str, Any]:
    r = server.api("GET", f"/issues/{number}.json?include=journals")
    assert r.status_code == 200, r.text
    return r.json()["issue"]  # type: ignore[no-any-return]


def test_a_ticket_in_redmine_from_chat_to_solved(mm: SimulatorThread, bot: BotProcess,
                                                 redmine_server: RedmineServer) -> None:
    sim = mm.simulator
    assert sim is not None
    p = mm.call(sim.post_as("alice", "helpdesk", "112 keyboard is missing keys\nF5 and F6"))
    page = re.escape(f"{redmine_server.url}/issues/")
    opened = reply(sim, p, rf"Ticket \*\*\[#\d+\]\({page}\d+\)\*\* opened in Redmine")
    m = re.search(r"#(\d+)", opened["message"])
    assert m is not None
    n = int(m.group(1))
    number = f"[#{n}]({redmine_server.url}/issues/{n})"
    assert f"Ticket **{number}** opened in Redmine" in opened["message"]
    created = issue(redmine_server, n)
    assert created["subject"] == "keyboard is missing keys"
    assert "F5 and F6" in created["description"]
    assert created["author"]["id"] == redmine_server.users["alice"].id  # switched user
    assert created["project"]["id"] == redmine_server.project_id

    # A thread reply becomes a note, and is not echoed back.
    mm.call(sim.post_as("bob", "helpdesk", "Mine too, since Monday", root_id=p["id"]))
    wait_until(lambda: any("since Monday" in (j.get("notes") or "")
                           for j in issue(redmine_server, n)["journals"]), 20, "the note")

    # A technician's note and a status change come back into the thread; the requester is told.
    tech = redmine_server.api("PUT", f"/issues/{n}.json",
                              json_body={"issue": {"notes": "New keyboard on its way."}})
    assert tech.status_code in (200, 204), tech.text
    reply(sim, p, r"New keyboard on its way")
    redmine_server.set_status(n, redmine_server.resolved_status_id)
    reply(sim, p, rf"Ticket \*\*#{n}\*\* is now \*\*Resolved\*\*")
    wait_until(lambda: any(f"Your ticket **{number}**" in x["message"] for x in sim.posts()),
               15, "the requester's DM")
    assert not any("since Monday" in r["message"] for r in replies_to(sim, p["id"]))

    # Status in a DM, for the requester only.
    mine = mm.call(sim.dm_as("alice", f"status {n}"))
    reply(sim, mine, rf"\*\*{re.escape(number)}\*\* keyboard is missing keys\n"
                     r"Status: \*\*Resolved\*\*")
    other = mm.call(sim.dm_as("bob", f"status {n}"))
    reply(sim, other, r"not found, or it is not yours")


def test_redmine_refusal_is_told_in_the_thread(mm: SimulatorThread, tmp_path: Path,
                                               redmine_server: RedmineServer) -> None:
    sim = mm.simulator
    assert sim is not None
    b = BotProcess(sim, tmp_path, settings=SETTINGS, env={
        "REDMINE_URL": redmine_server.url, "REDMINE_API_KEY": redmine_server.admin_key,
        "REDMINE_PROJECT": "no-such-project", "HELPDESK_TRACKER": "redmine"}).start()
    try:
        b.wait_ready()
        p = mm.call(sim.post_as("alice", "helpdesk", "112 chair is broken"))
        refused = reply(sim, p, r"Redmine refused the ticket")
        assert redmine_server.admin_key not in refused["message"]
    finally:
        assert b.stop() == 0


def test_the_triage_channel_takes_answers_and_solves_in_redmine(
        mm: SimulatorThread, tmp_path: Path, redmine_server: RedmineServer) -> None:
    """Bob asks; Alice, in the support channel, takes the issue, answers and solves it: Redmine
    shows each step as Alice's (switched user), and Bob hears the answer and the solution."""
    sim = mm.simulator
    assert sim is not None
    world: MattermostSimulator = sim
    sim.create_channel("support", members=["alice", "switchboard"])
    b = BotProcess(sim, tmp_path, settings=SETTINGS, env={
        "REDMINE_URL": redmine_server.url, "REDMINE_API_KEY": redmine_server.admin_key,
        "REDMINE_PROJECT": redmine_server.project, "REDMINE_SWITCH_USER": "true",
        "HELPDESK_TRACKER": "redmine", "HELPDESK_TRIAGE_CHANNEL": "sandbox/support"}).start()
    alice = redmine_server.users["alice"]

    def triage(pattern: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((x for x in world.posts("support") if x["user_id"] == world.bot_id
                         and not x.get("root_id") and re.search(pattern, x["message"])), None)
        post: dict[str, Any] = wait_until(found, 20, f"the triage post matching {pattern!r}")
        return post

    def press(post: dict[str, Any], name: str, text: str = "") -> None:
        action = next(a for a in post["props"]["attachments"][0]["actions"] if a["name"] == name)
        before = len(world.dialogs("alice"))
        status, body = mm.call(world.click("alice", post["id"], action["id"]))
        assert status == 200, body
        if text:
            opened = wait_until(lambda: world.dialogs("alice")[before:], 10, "the form")[0]
            status, body = mm.call(world.submit_dialog(
                "alice", opened, {"text": text}, channel=post["channel_id"]))
            assert status == 200 and body == {}, body

    try:
        b.wait_ready()
        p = mm.call(sim.post_as("bob", "helpdesk", "112 docking station dead"))
        opened = re.search(r"#(\d+)", reply(sim, p, r"opened in Redmine")["message"])
        assert opened is not None
        n = int(opened.group(1))
        post = triage(rf"#{n}\].*docking station dead · Redmine")
        assert "From @bob" in post["message"]
        press(post, "Take")
        post = triage(r"Taken by @alice \(Redmine: alice\)")
        assert issue(redmine_server, n)["assigned_to"]["id"] == alice.id
        press(post, "Reply…", "Try another USB-C cable, please.")
        reply(sim, p, r"\*\*@alice\*\* on #\d+:\nTry another USB-C cable")
        journals = issue(redmine_server, n)["journals"]
        (answer,) = [j for j in journals if "USB-C" in (j.get("notes") or "")]
        assert answer["user"]["id"] == alice.id
        press(triage(r"@alice replied"), "Solve…", "Replaced the docking station.")
        reply(sim, p, r"is now \*\*Resolved\*\*.*\nSolution from \*\*.*\*\*:\n"
                      r"> Replaced the docking station")
        (solving,) = [j for j in issue(redmine_server, n)["journals"]
                      if "Replaced the docking" in (j.get("notes") or "")]
        assert solving["user"]["id"] == alice.id
        assert any(d.get("name") == "status_id" for d in solving["details"])
        wait_until(lambda: any("Replaced the docking station" in x["message"]
                               and "Your ticket" in x["message"] for x in sim.posts()), 15,
                   "the solution in bob's direct message")
        thread = [r["message"] for r in replies_to(sim, p["id"])]
        assert len([m for m in thread if "USB-C" in m]) == 1
    finally:
        assert b.stop() == 0, b.log()
