"""End to end: the triage channel. A ticket goes from `112 printer broken`, through Take, Reply,
a private note, Urgency and Solve in the support team's channel, to a solution the requester
accepts, without anyone leaving Mattermost; GLPI (the simulator) shows every step with its
author."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from .harness import BotProcess, merge, replies_to, wait_until
from .test_helpdesk import (
    GLPI_TOKEN,
    HELPDESK,
    World,
    buttons,
    direct_posts,
    straight_click,
    ticket_number,
)

pytestmark = pytest.mark.e2e

TRIAGE = merge(HELPDESK, {"helpdesk": {"triage": {"channel": "sandbox/support"}}})


@pytest.fixture
def bot(world: World) -> Iterator[BotProcess]:
    world.mm.create_channel("support", display_name="Support",
                            members=["carol", "switchboard"])
    b = BotProcess(world.mm, world.tmp, settings=TRIAGE, env={
        "GLPI_URL": world.glpi.api_url, "GLPI_USER_TOKEN": GLPI_TOKEN,
        "HELPDESK_TRACKER": "glpi"}).start()
    b.wait_ready()
    yield b
    if b.proc is not None and b.proc.poll() is None:
        assert b.stop() == 0, b.log()


def triage_post(world: World, pattern: str, timeout: float = 15) -> dict[str, Any]:
    """The bot's post in the triage channel, once it matches `pattern`."""
    def found() -> dict[str, Any] | None:
        return next((p for p in world.mm.posts("support") if p["user_id"] == world.mm.bot_id
                     and not p.get("root_id") and re.search(pattern, p["message"])), None)
    return wait_until(found, timeout, f"the triage post matching {pattern!r}")  # type: ignore


def press(world: World, user: str, post: dict[str, Any], name: str,
          option: str | None = None) -> None:
    status, body = world.mm_thread.call(
        world.mm.click(user, post["id"], buttons(post)[name]["id"], option))
    assert status == 200, body


def fill(world: World, user: str, post: dict[str, Any], name: str, text: str) -> None:
    before = len(world.mm.dialogs(user))
    press(world, user, post, name)
    opened = wait_until(lambda: world.mm.dialogs(user)[before:], 10, f"the {name} form")[0]
    status, body = world.mm_thread.call(world.mm.submit_dialog(
        user, opened, {"text": text}, channel=post["channel_id"]))
    assert status == 200 and body == {}, body


def test_from_112_to_an_accepted_solution_through_the_triage_channel(world: World,
                                                                     bot: BotProcess) -> None:
    p = world.say("112 printer broken")
    n = ticket_number(world.reply(p, r"opened in GLPI"))
    post = triage_post(world, rf"#{n}\]")
    assert "From @alice ~helpdesk" in post["message"]
    assert "Assigned to: nobody yet" in post["message"]
    assert set(buttons(post)) == {"Take", "Reply…", "Private note…", "Solve…", "Urgency"}
    # Someone outside the support team cannot act, even by sending the click to the bot straight.
    forged = straight_click(world, "bob", post, "Take")
    assert "Only the support team" in forged["ephemeral_text"]
    # Take: assigned to carol's GLPI user, told on the post.
    press(world, "carol", post, "Take")
    post = triage_post(world, r"Taken by @carol")
    assert "Assigned to: carol" in post["message"]
    assigned = [u for u in world.glpi.ticket_users(n) if u["type"] == 2]
    assert [u["users_id"] for u in assigned] == [world.glpi.user_id("carol")]
    # Reply: a public follow-up by carol, told in alice's thread once.
    fill(world, "carol", post, "Reply…", "Please power-cycle it and tell me.")
    wait_until(lambda: any("power-cycle" in f["content"] for f in world.glpi.followups(n)), 15,
               "the follow-up in GLPI")
    (followup,) = [f for f in world.glpi.followups(n) if "power-cycle" in f["content"]]
    assert "(@carol)" in followup["content"] and followup["is_private"] == 0
    world.reply(p, r"\*\*@carol\*\* on #\d+:\nPlease power-cycle it")
    # A private note stays with the technicians.
    fill(world, "carol", triage_post(world, r"@carol replied"), "Private note…",
         "Fuser looks worn out.")
    wait_until(lambda: any("worn out" in f["content"] and f["is_private"] == 1
                           for f in world.glpi.followups(n)), 15, "the private note")
    press(world, "carol", triage_post(world, r"private note"), "Urgency", option="4")
    wait_until(lambda: world.glpi.ticket(n)["urgency"] == 4, 15, "the urgency")
    post = triage_post(world, r"Urgency set to high by @carol")
    # Solve: the solution, written by carol, reaches alice, who accepts it.
    fill(world, "carol", post, "Solve…", "Replaced the fuser.")
    wait_until(lambda: world.glpi.ticket(n)["status"] == 5, 15, "the ticket solved")
    assert "(@carol): Replaced the fuser." in world.glpi.solutions(n)[0]["content"]
    world.reply(p, r"is now \*\*Solved\*\*.*\nSolution from")
    dm = wait_until(lambda: next(iter(direct_posts(world, "alice", r"Replaced the fuser")), None),
                    15, "the solution in alice's direct message")
    status, body = world.mm_thread.call(
        world.mm.click("alice", dm["id"], buttons(dm)["Accept"]["id"]))
    assert status == 200, body
    wait_until(lambda: world.glpi.ticket(n)["status"] == 6, 15, "the ticket closed")
    assert "(@alice)" in world.glpi.followups(n)[-1]["content"]
    post = triage_post(world, r"Solved by @carol")
    wait_until(lambda: not buttons(triage_post(world, rf"#{n}\]")), 15,
               "the triage post without buttons once the ticket is done")
    # Alice's thread heard each step once.
    thread = [r["message"] for r in replies_to(world.mm, p["id"])]
    assert len([m for m in thread if "power-cycle" in m]) == 1
    assert not any("worn out" in m for m in thread)
