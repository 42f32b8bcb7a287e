"""End to end: helpdesk tickets from chat, through the real process, the Mattermost simulator and
the GLPI simulator, over real sockets."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugin import i18n
from plugin.sandbox.glpi import GLPISimulator, GLPISimulatorThread
from plugin.sandbox.mattermost import MattermostSimulator, SimulatorThread
from plugin.store import SQLiteStore

from .harness import (
    BotProcess,
    merge,
    one_reply_each,
    posts_with_bare_urls,
    replies_to,
    wait_until,
)

pytestmark = pytest.mark.e2e

GLPI_TOKEN = "glpi-user-token-for-tests"
HELPDESK = {"helpdesk": {"poll_interval": 0.3, "closed_poll_interval": 0.6,
                         "retry_initial": 0.3, "retry_max": 1.0, "staff": {"users": ["carol"]}},
            "trackers": {"glpi": {"timeout": 2}}}


class World:
    def __init__(self, mm: SimulatorThread, glpi: GLPISimulatorThread, tmp: Path) -> None:
        self.mm_thread, self.glpi_thread, self.tmp = mm, glpi, tmp
        assert mm.simulator is not None and glpi.simulator is not None
        self.mm: MattermostSimulator = mm.simulator
        self.glpi: GLPISimulator = glpi.simulator

    def bot(self, **settings: Any) -> BotProcess:
        env = {"GLPI_URL": self.glpi.api_url, "GLPI_USER_TOKEN": GLPI_TOKEN,
               "HELPDESK_TRACKER": "glpi"}
        return BotProcess(self.mm, self.tmp, env=env, settings=settings or HELPDESK).start()

    def say(self, text: str, user: str = "alice", channel: str = "helpdesk",
            root_id: str = "", file_ids: list[str] | None = None) -> dict[str, Any]:
        return self.mm_thread.call(self.mm.post_as(  # type: ignore[no-any-return]
            user, channel, text, root_id=root_id, file_ids=file_ids))

    def dm(self, text: str, user: str = "alice") -> dict[str, Any]:
        return self.mm_thread.call(self.mm.dm_as(user, text))  # type: ignore[no-any-return]

    def tickets(self) -> list[dict[str, Any]]:
        return self.glpi_thread.call(self.glpi.tickets)  # type: ignore[no-any-return]

    def reply(self, post: dict[str, Any], pattern: str, timeout: float = 15) -> dict[str, Any]:
        """Wait for the bot's reply in a post's thread that matches `pattern`."""
        def found() -> dict[str, Any] | None:
            return next((r for r in replies_to(self.mm, post["id"])
                         if re.search(pattern, r["message"])), None)
        return wait_until(found, timeout, f"a reply matching {pattern!r}")  # type: ignore


@pytest.fixture
def bot(world: World) -> Iterator[BotProcess]:
    b = world.bot()
    b.wait_ready()
    yield b
    if b.proc is not None and b.proc.poll() is None:
        assert b.stop() == 0, b.log()


def bot_reactions(world: World, post_id: str) -> list[dict[str, Any]]:
    """The bot's reactions on a post, as the simulator stores them."""
    post = next((x for x in world.mm.posts() if x["id"] == post_id), None)
    assert post is not None, f"no post {post_id}"
    return [x for x in post.get("metadata", {}).get("reactions", [])
            if x["user_id"] == world.mm.bot_id]


def linked(world: World, n: int | str = r"\d+") -> str:
    """The pattern of a ticket's number as the bot writes it: a link to the ticket in GLPI."""
    page = re.escape(f"{world.glpi.url}/front/ticket.form.php?id=")
    return rf"\[#{n}\]\({page}{n}\)"


def ticket_number(reply: dict[str, Any]) -> int:
    m = re.search(r"#(\d+)", reply["message"])
    assert m, reply["message"]
    return int(m.group(1))


def test_112_opens_one_ticket_and_answers_in_the_thread(world: World, bot: BotProcess) -> None:
    p = world.say("112 printer broken\nThe one on floor 2 shows *E42* <jammed> & blinks")
    reply = world.reply(p, rf"Ticket \*\*{linked(world)}\*\* opened in GLPI")
    n = ticket_number(reply)
    assert f"front/ticket.form.php?id={n}" in reply["message"]
    tickets = world.tickets()
    assert len(tickets) == 1
    t = tickets[0]
    assert t["id"] == n and t["name"] == "printer broken"
    assert "E42" in t["content"] and "@alice" in t["content"]
    assert f"/pl/{p['id']}" in t["content"]
    assert t["urgency"] == 3
    requesters = [u for u in world.glpi.ticket_users(n) if u["type"] == 1]
    assert [u["users_id"] for u in requesters] == [world.glpi.user_id("alice")]
    one_reply_each(world.mm, [p])


def test_urgent_keyword_and_empty_request(world: World, bot: BotProcess) -> None:
    p = world.say("112! server room is flooding")
    world.reply(p, r"opened in GLPI")
    assert world.tickets()[0]["urgency"] == 5
    empty = world.say("112")
    world.reply(empty, r"Describe the problem")
    assert len(world.tickets()) == 1


def test_thread_follows_the_ticket(world: World, bot: BotProcess) -> None:
    p = world.say("112 VPN drops every hour")
    n = ticket_number(world.reply(p, r"opened in GLPI"))
    # A reply in the thread becomes a follow-up (linked back to that reply), confirmed with the
    # bot's reaction on that reply.
    r = world.say("It happened again at 10:00", user="bob", root_id=p["id"])
    followups = wait_until(lambda: [f for f in world.glpi.followups(n)
                                    if "happened again" in f["content"]], 15, "the follow-up")
    assert len(followups) == 1 and f"/pl/{r['id']}" in followups[0]["content"]
    confirmed = wait_until(lambda: bot_reactions(world, r["id"]), 10, "the reaction on the reply")
    assert [x["emoji_name"] for x in confirmed] == ["white_check_mark"]
    # A technician's public follow-up and a status change come back into the thread.
    world.glpi_thread.call(lambda: world.glpi.add_followup(n, "We replaced the router."))
    world.glpi_thread.call(lambda: world.glpi.add_followup(n, "internal note", private=True))
    world.reply(p, r"We replaced the router")
    world.glpi_thread.call(lambda: world.glpi.set_ticket_status(n, 5))
    world.reply(p, r"is now \*\*.*(Solved|solved)")
    # The requester also hears of it in a DM.
    dm_post = wait_until(lambda: next((c for c in world.mm.posts()
                                       if "Your ticket" in c["message"]), None), 10, "the DM")
    assert f"#{n}" in dm_post["message"]
    alice_dm = world.dm("thanks")
    assert dm_post["channel_id"] == alice_dm["channel_id"]
    thread = [x["message"] for x in replies_to(world.mm, p["id"])]
    assert not any("internal note" in m for m in thread)
    # The bot's own follow-up was not echoed back into the thread, nor filed twice.
    assert not any("happened again" in m for m in thread)
    assert len([f for f in world.glpi.followups(n) if "happened again" in f["content"]]) == 1


def direct_posts(world: World, user: str, pattern: str) -> list[dict[str, Any]]:
    """The bot's posts in its direct channel with `user` that match `pattern`."""
    channel = world.mm_thread.call(lambda: world.mm.direct_channel_id(user))
    return [p for p in world.mm.posts() if p["channel_id"] == channel
            and p["user_id"] == world.mm.bot_id and re.search(pattern, p["message"])]


def buttons(post: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for att in post.get("props", {}).get("attachments") or []
            for a in att.get("actions") or []}


def straight_click(world: World, user: str, post: dict[str, Any], name: str) -> dict[str, Any]:
    """A click sent to the bot straight, not through Mattermost (as a stale client, or someone
    forging one, would): the bot's answer."""
    action = buttons(post)[name]["integration"]
    answer = httpx.post(action["url"], timeout=5, json={
        "user_id": world.mm.user_id(user), "user_name": user, "post_id": post["id"],
        "channel_id": post["channel_id"], "trigger_id": "t", "type": "button",
        "context": action["context"]})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def click(world: World, user: str, post: dict[str, Any], name: str) -> tuple[int, Any]:
    return world.mm_thread.call(  # type: ignore[no-any-return]
        world.mm.click(user, post["id"], buttons(post)[name]["id"]))


def test_a_solution_reaches_the_requester_who_accepts_it(world: World, bot: BotProcess) -> None:
    p = world.say("112 printer broken")
    n = ticket_number(world.reply(p, r"opened in GLPI"))
    world.glpi_thread.call(lambda: world.glpi.solve(n, "Replaced the fuser.\nPrint a page."))
    # The thread and the requester's direct message say how it was solved.
    world.reply(p, r"is now \*\*Solved\*\*[^\n]*\nSolution from \*\*tech\*\*:\n"
                   r"> Replaced the fuser")
    dm = wait_until(lambda: next(iter(direct_posts(world, "alice", r"Replaced the fuser")), None),
                    10, "the solution in a direct message")
    assert set(buttons(dm)) == {"Accept", "Refuse…"}
    # Nobody but the requester may answer it: Mattermost shows the message to nobody else, and
    # a click sent to the bot straight, in someone else's name, is refused too.
    assert click(world, "bob", dm, "Accept")[0] == 403
    assert "Only the person" in straight_click(world, "bob", dm, "Accept")["ephemeral_text"]
    assert world.glpi.ticket(n)["status"] == 5
    # The requester accepts: GLPI closes the ticket, and says who accepted.
    assert click(world, "alice", dm, "Accept")[0] == 200
    wait_until(lambda: world.glpi.ticket(n)["status"] == 6, 15, "the ticket closed")
    followup = world.glpi.followups(n)[-1]["content"]
    assert "@alice" in followup and "Solution accepted" in followup
    assert world.glpi.solutions(n)[0]["status"] == 3
    world.reply(p, r"@alice accepted the solution")
    answered = wait_until(lambda: (d := next(iter(direct_posts(world, "alice", r"fuser")), None))
                          and not buttons(d) and d, 10, "the answer shown on the message")
    assert "You accepted this solution" in answered["props"]["attachments"][0]["text"]
    # The closing is told in the thread (the ticket is still watched once solved).
    world.reply(p, r"is now \*\*Closed\*\* \(was solved\)")
    # The button is gone (Mattermost finds no such action); the same click sent again to the bot
    # answers nothing twice.
    assert click(world, "alice", dm, "Accept")[0] == 404
    assert "already answered" in straight_click(world, "alice", dm, "Accept")["ephemeral_text"]
    assert len([f for f in world.glpi.followups(n) if "Solution accepted" in f["content"]]) == 1


def test_a_refused_solution_reopens_the_ticket_with_the_reason(world: World,
                                                               bot: BotProcess) -> None:
    p = world.say("112 scanner offline")
    n = ticket_number(world.reply(p, r"opened in GLPI"))
    world.glpi_thread.call(lambda: world.glpi.assign(n))
    world.glpi_thread.call(lambda: world.glpi.solve(n, "Restarted the scanner."))
    dm = wait_until(lambda: next(iter(direct_posts(world, "alice", r"Restarted")), None),
                    10, "the solution in a direct message")
    assert click(world, "alice", dm, "Refuse…")[0] == 200
    opened = wait_until(lambda: world.mm.dialogs("alice"), 10, "the refusal form")[-1]
    status, body = world.mm_thread.call(world.mm.submit_dialog(
        "alice", opened, {"reason": ""}, channel=dm["channel_id"]))
    assert status == 200 and "reason" in body["errors"], body
    status, body = world.mm_thread.call(world.mm.submit_dialog(
        "alice", opened, {"reason": "It is still offline after lunch."}, channel=dm["channel_id"]))
    assert status == 200 and body == {}, body
    wait_until(lambda: world.glpi.ticket(n)["status"] == 2, 15, "the ticket back to work")
    assert "still offline" in world.glpi.followups(n)[-1]["content"]
    assert world.glpi.solutions(n)[0]["status"] == 4
    world.reply(p, r"@alice refused the solution:\n> It is still offline after lunch")
    # The reopening is told in the thread, and the ticket is watched as an open one again.
    world.reply(p, r"is now \*\*Processing \(assigned\)\*\* \(was solved\)")
    world.glpi_thread.call(lambda: world.glpi.add_followup(n, "Replacing the cable now."))
    world.reply(p, r"Replacing the cable now")


def test_a_closed_ticket_is_still_watched(world: World, bot: BotProcess) -> None:
    p = world.say("112 monitor flickers")
    n = ticket_number(world.reply(p, r"opened in GLPI"))
    world.glpi_thread.call(lambda: world.glpi.set_ticket_status(n, 6))
    world.reply(p, r"is now \*\*Closed\*\*")
    # Reopened weeks later (well, now) with a new follow-up: both reach the thread.
    world.glpi_thread.call(lambda: world.glpi.set_ticket_status(n, 2))
    world.glpi_thread.call(lambda: world.glpi.add_followup(n, "Reopened: it flickers again."))
    world.reply(p, r"Reopened: it flickers again")
    world.reply(p, r"is now \*\*Processing \(assigned\)\*\* \(was closed\)")


def test_status_and_my_tickets_only_for_the_requester_or_staff(world: World,
                                                                bot: BotProcess) -> None:
    p = world.say("112 monitor flickers")
    n = ticket_number(world.reply(p, r"opened in GLPI"))
    mine = world.dm(f"status {n}")
    world.reply(mine, rf"\*\*{linked(world, n)}\*\* monitor flickers\nStatus: \*\*")
    hash_form = world.dm(f"#{n}")
    world.reply(hash_form, rf"\*\*{linked(world, n)}\*\*")
    other = world.dm(f"status {n}", user="bob")
    world.reply(other, r"not found, or it is not yours")
    staff = world.dm(f"status {n}", user="carol")
    world.reply(staff, rf"\*\*{linked(world, n)}\*\* monitor flickers")
    missing = world.dm("status 999")
    world.reply(missing, r"#999 was not found")
    bad = world.dm("status abc")
    world.reply(bad, r"Usage: `status <number>`")
    lst = world.dm("my tickets")
    world.reply(lst, rf"Your open tickets \(1\):\n- \*\*{linked(world, n)}\*\* monitor flickers")
    none = world.dm("my tickets", user="bob")
    world.reply(none, r"You have no open tickets")


def test_the_bots_posts_carry_no_bare_address(world: World, bot: BotProcess) -> None:
    # Mattermost fetches the first bare address of a post for a preview before it answers; a
    # markdown link is not fetched. Every address the bot writes, its own or passed on, is one.
    kb = "https://kb.example.com/printers?floor=2"
    p = world.say(f"112 printer page {kb} is out of date")
    reply = world.reply(p, r"opened in GLPI")
    n = ticket_number(reply)
    page = f"{world.glpi.url}/front/ticket.form.php?id={n}"
    assert reply["message"] == (
        f":ticket: Ticket **[#{n}]({page})** opened in GLPI: printer page [{kb}]({kb}) is out "
        "of date\nReplies in this thread are added to the ticket.")
    world.reply(world.dm(f"status {n}"), rf"\*\*{linked(world, n)}\*\* printer page ")
    world.reply(world.dm(f"#{n}"), rf"\*\*{linked(world, n)}\*\*")
    world.reply(world.dm("my tickets"), rf"- \*\*{linked(world, n)}\*\* printer page ")
    # A technician's answer with an address, then the ticket solved: told in the thread and
    # to the requester directly.
    world.glpi_thread.call(lambda: world.glpi.add_followup(
        n, "Fixed, see https://kb.example.com/article/42."))
    world.reply(p, re.escape("Fixed, see [https://kb.example.com/article/42]"
                             "(https://kb.example.com/article/42)."))
    world.glpi_thread.call(lambda: world.glpi.set_ticket_status(n, 5))
    wait_until(lambda: any(c["message"].startswith(f":white_check_mark: Your ticket **[#{n}]("
                                                   f"{page})** (printer page [{kb}]({kb}) is")
                           for c in world.mm.posts()), 15, "the DM")
    assert world.mm.posts()
    assert posts_with_bare_urls(world.mm) == []


def test_tracker_down_queues_and_files_later(world: World, bot: BotProcess) -> None:
    world.glpi_thread.call(world.glpi.set_down(True))
    p = world.say("112 laptop will not boot")
    world.reply(p, r"GLPI is not reachable right now\. Your request is queued")
    assert world.tickets() == []
    world.glpi_thread.call(world.glpi.set_down(False))
    n = ticket_number(world.reply(p, r"opened in GLPI", timeout=20))
    assert [t["id"] for t in world.tickets()] == [n]
    queued = [r for r in replies_to(world.mm, p["id"]) if "queued" in r["message"]]
    assert len(queued) == 1


def test_a_create_that_times_out_after_committing_is_not_repeated(world: World,
                                                                  bot: BotProcess) -> None:
    world.glpi_thread.call(lambda: world.glpi.slow_create_after_commit(1, delay_s=4))
    p = world.say("112 phone has no dial tone")
    world.reply(p, r"opened in GLPI", timeout=25)
    assert len(world.tickets()) == 1
    assert len([r for r in replies_to(world.mm, p["id"]) if "opened" in r["message"]]) == 1


def test_files_are_copied_to_the_ticket(world: World, bot: BotProcess) -> None:
    fid = world.mm_thread.call(world.mm.upload_file("alice", "helpdesk", "error.txt",
                                                    b"E42 paper jam"))
    p = world.say("112 printer error, log attached", file_ids=[fid])
    n = ticket_number(world.reply(p, r"opened in GLPI"))
    docs = wait_until(lambda: world.glpi.documents(n), 10, "the document")
    assert docs[0]["filename"] == "error.txt"
    assert world.glpi.document_data(docs[0]["id"]) == b"E42 paper jam"


def test_the_requester_closes_a_ticket_and_adds_a_file_from_chat(world: World,
                                                                  bot: BotProcess) -> None:
    p = world.say("112 mouse double-clicks")
    n = ticket_number(world.reply(p, r"opened in GLPI"))
    # A file alone, posted in the ticket's thread, is attached to the ticket.
    fid = world.mm_thread.call(world.mm.upload_file("alice", "helpdesk", "mouse.log",
                                                    b"click click"))
    world.say("", root_id=p["id"], file_ids=[fid])
    docs = wait_until(lambda: world.glpi.documents(n), 15, "the document")
    assert docs[0]["filename"] == "mouse.log"
    # Someone else may not close it; the requester may, with a reason.
    other = world.dm(f"close {n}", user="bob")
    world.reply(other, rf"#{n} was not found")
    closing = world.dm(f"close {n} it works again after a reboot")
    world.reply(closing, rf"Closing ticket #{n} in GLPI")
    wait_until(lambda: world.glpi.ticket(n)["status"] == 6, 15, "the ticket closed")
    assert "(@alice): it works again after a reboot" in world.glpi.followups(n)[-1]["content"]
    world.reply(p, r"@alice closed the ticket\.\n> it works again after a reboot")
    world.reply(p, r"is now \*\*Closed\*\*")
    again = world.dm(f"close {n}")
    world.reply(again, rf"Ticket #{n} is already closed")


def test_the_slash_command_files_and_answers(world: World) -> None:
    sim = world.mm
    b = BotProcess(sim, world.tmp, settings=HELPDESK, env={
        "GLPI_URL": world.glpi.api_url, "GLPI_USER_TOKEN": GLPI_TOKEN,
        "HELPDESK_TRACKER": "glpi"})
    admin = httpx.Client(base_url=sim.url + "/api/v4", timeout=40,
                         headers={"Authorization": "Bearer admin-token"})
    alice = httpx.Client(base_url=sim.url + "/api/v4", timeout=40,
                         headers={"Authorization": "Bearer alice-token"})
    created = admin.post("/commands", json={"team_id": sim.team_id, "trigger": "ticket",
                                            "url": f"{b.url}/slash", "method": "P"})
    assert created.status_code == 201, created.text
    b.env["SLASH_TOKEN"] = created.json()["token"]
    b.start()
    try:
        b.wait_ready()
        channel = sim.channel_id("helpdesk")

        def run(text: str) -> httpx.Response:
            return alice.post("/commands/execute", json={"channel_id": channel,
                                                         "command": f"/ticket {text}"})
        filed = run("scanner jams on every page")
        assert filed.status_code == 200 and "being filed" in filed.json()["text"]
        root = wait_until(lambda: next((p for p in sim.posts("helpdesk")
                                        if "Ticket request from @alice" in p["message"]), None),
                          15, "the request's post")
        n = ticket_number(world.reply(root, r"opened in GLPI"))
        assert world.tickets()[0]["name"] == "scanner jams on every page"
        status = run(f"status {n}")
        assert re.match(rf"\*\*{linked(world, n)}\*\* scanner jams on every page\n",
                        status.json()["text"]), status.json()["text"]
        assert re.search(rf"\n- \*\*{linked(world, n)}\*\* scanner jams on every page — ",
                         run("mine").json()["text"])
        # A command with a wrong token is refused before anything happens.
        forged = httpx.post(f"{b.url}/slash", data={
            "command": "/ticket", "text": "x", "user_id": sim.user_id("bob"),
            "token": "not-the-token", "channel_id": channel}, timeout=10)
        assert forged.status_code == 401
        assert len(world.tickets()) == 1
    finally:
        assert b.stop() == 0
        admin.close()
        alice.close()


def _set_locale(world: World, user: str, locale: str) -> None:
    """The user picks a language in their Mattermost settings (`PUT /users/{id}/patch`)."""
    sim = world.mm
    r = httpx.put(f"{sim.url}/api/v4/users/{sim.user_id(user)}/patch",
                  json={"locale": locale}, timeout=10,
                  headers={"Authorization": f"Bearer {user}-token"})
    assert r.status_code == 200 and r.json()["locale"] == locale, r.text


def test_a_russian_user_is_answered_in_russian(world: World, bot: BotProcess) -> None:
    _set_locale(world, "alice", "ru")
    p = world.say("112 принтер не печатает")
    reply = world.reply(p, r"#\d+")
    n = ticket_number(reply)
    assert re.search(r"[А-Яа-я]{4}", reply["message"]), reply["message"]
    assert "opened in" not in reply["message"]
    # The ticket itself is for the support team: the default language.
    assert "Requested by: " in world.tickets()[0]["content"]
    # The thread is the requester's: a status change is told in Russian, the old status too.
    world.glpi_thread.call(lambda: world.glpi.set_ticket_status(n, 2))
    # GLPI's own status label, in Russian as GLPI itself would show it.
    world.reply(p, rf"#{n}\*\*: \*\*В работе \(назначена\)\*\* \(был: новая\)")
    # A localized command word, answered in Russian.
    status = world.dm(f"статус {n}")
    answer = world.reply(status, rf"\*\*{linked(world, n)}\*\* принтер не печатает")
    assert "Status:" not in answer["message"] and "Processing" not in answer["message"]
    assert "Статус: **В работе (назначена)**" in answer["message"]
    assert re.search(r"[А-Яа-я]{4}", answer["message"].split("\n")[1])
    # Someone else, with an English locale, still gets English.
    other = world.dm("my tickets", user="bob")
    world.reply(other, r"You have no open tickets")
    # Japanese works the same way, with its own alias for `help`.
    _set_locale(world, "bob", "ja")
    with i18n.use("ja"):
        help_word = i18n.pgettext(i18n.COMMAND, "help")
        expected = i18n._("**Commands** (send them to me in a direct message):")
    assert help_word != "help" and expected != "**Commands** (send them to me in a direct message):"
    shown = world.dm(help_word, user="bob")
    world.reply(shown, re.escape(expected))


def stopped_hours_ago(world: World, hours: float) -> None:
    """The bot's state file as a run that stopped `hours` ago left it."""
    async def seed() -> None:
        store = SQLiteStore(world.tmp / "state.db")
        await store.open()
        then = int((time.time() - hours * 3600) * 1000)
        await store.kv.put("initialized", str(then))
        await store.kv.put("last_seen", str(then))
        await store.close()
    asyncio.run(seed())


def test_a_request_found_too_late_is_offered_once_and_filed_once(world: World) -> None:
    stopped_hours_ago(world, 3)
    two_hours_ago = int((time.time() - 2 * 3600) * 1000)
    p = world.mm_thread.call(world.mm.post_as("alice", "helpdesk", "112 badge reader broken",
                                              create_at=two_hours_ago))
    ignored = world.mm_thread.call(world.mm.post_as("bob", "helpdesk", "112 coffee machine",
                                                    create_at=two_hours_ago + 1000))
    b = world.bot()
    b.wait_ready()
    try:
        offer = wait_until(lambda: next(iter(direct_posts(world, "alice", r"while I was offline")),
                                        None), 15, "the offer in a direct message")
        assert "`112 badge reader broken`" in offer["message"] and "UTC" in offer["message"]
        assert set(buttons(offer)) == {"File it", "Dismiss"}
        assert world.tickets() == [] and replies_to(world.mm, p["id"]) == []
        # Bob dismisses his.
        bob_offer = wait_until(lambda: next(iter(direct_posts(world, "bob", r"coffee machine")),
                                            None), 15, "bob's offer")
        assert click(world, "bob", bob_offer, "Dismiss")[0] == 200
        wait_until(lambda: (d := next(iter(direct_posts(world, "bob", r"coffee")), None))
                   and not buttons(d), 10, "bob's offer answered")
        # Alice files hers, twice (a double click): one ticket, its number in her thread.
        assert click(world, "alice", offer, "File it")[0] == 200
        again = straight_click(world, "alice", offer, "File it")
        assert "already being filed" in again["ephemeral_text"]
        reply = world.reply(p, rf"Ticket \*\*{linked(world)}\*\* opened in GLPI")
        assert [t["name"] for t in world.tickets()] == ["badge reader broken"]
        assert ticket_number(reply) == world.tickets()[0]["id"]
        assert replies_to(world.mm, ignored["id"]) == []
    finally:
        assert b.stop() == 0, b.log()
    # Both requests are claimed in the state file: read again, by any run, they are not offered
    # again.
    async def claimed() -> list[bool]:
        store = SQLiteStore(world.tmp / "state.db")
        await store.open()
        try:
            return [await store.claims.is_handled(x["id"]) for x in (p, ignored)]
        finally:
            await store.close()
    assert asyncio.run(claimed()) == [True, True]
    # Another start: no second offer, no second ticket.
    b = world.bot()
    b.wait_ready()
    try:
        wait_until(lambda: "backfill:" in b.log(), 15, "the second run's backfill")
        assert len(direct_posts(world, "alice", r"while I was offline")) == 1
        assert len(direct_posts(world, "bob", r"while I was offline")) == 1
        assert len(world.tickets()) == 1
    finally:
        assert b.stop() == 0, b.log()


def test_a_trigger_alias_opens_a_ticket_like_the_keyword(world: World) -> None:
    trigger = {"keyword": "112", "urgent_keywords": ["112!"], "tracker": "glpi",
               "aliases": ["заявка"]}
    b = world.bot(**merge(HELPDESK, {"helpdesk": {"triggers": [trigger]}}))
    try:
        b.wait_ready()
        # Not a word of its own: "Заявка:" is not the alias (the later ticket count shows it).
        p = world.say("Заявка: сканер не сканирует")
        q = world.say("заявка сканер не сканирует")
        n = ticket_number(world.reply(q, r"opened in GLPI"))
        assert [t["name"] for t in world.tickets()] == ["сканер не сканирует"]
        assert n == world.tickets()[0]["id"]
        assert replies_to(world.mm, p["id"]) == []
    finally:
        assert b.stop() == 0


def test_a_refused_reply_is_posted_once_mattermost_allows_it(world: World,
                                                             bot: BotProcess) -> None:
    # The ticket is filed; posting its number is refused (a revoked token, a channel the bot
    # may not post in) until someone fixes it. The number is owed, not dropped.
    world.mm_thread.call(_fail_posts(world.mm, 403, 2))
    p = world.say("112 badge reader offline")
    reply = world.reply(p, r"opened in GLPI", timeout=20)
    assert ticket_number(reply) == world.tickets()[0]["id"]
    assert len(world.tickets()) == 1
    one_reply_each(world.mm, [p])


async def _fail_posts(sim: MattermostSimulator, status: int, count: int) -> None:
    sim.fail_next("POST", r"^/api/v4/posts$", status, count)
