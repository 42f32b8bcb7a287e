"""RedmineTracker against a real Redmine 5 (Debian's packages, started by the fixture), plus a few
offline checks of the mappings with httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.redmine import RedmineTracker, description_for, has_ref, map_status, named_requester
from bridge.tickets import (
    Attachment,
    NewTicket,
    Person,
    Status,
    TicketNotFound,
    TrackerRejected,
    TrackerUnavailable,
)
from tests.servers.redmine import RedmineServer, free_port, sweep_orphans

ALICE = Person(username="alice", email="alice@sandbox.local", display_name="Alice L.")
BOB = Person(username="bob", email="bob@sandbox.local", display_name="Bob B.")


def new_ticket(requester: Person, title: str = "Printer on fire", **kw: Any) -> NewTicket:
    return NewTicket(title=title, content=kw.pop("content", "It smokes.\nPlease help."),
                     requester=requester, ref=kw.pop("ref", f"post-{uuid.uuid4().hex}"), **kw)


def make_tracker(server: RedmineServer, **kw: Any) -> RedmineTracker:
    options: dict[str, Any] = {
        "url": server.url, "api_key": server.admin_key, "project": server.project,
        "tracker_id": server.tracker_id, "priority_ids": server.priority_ids,
        "switch_user": True}
    options.update(kw)
    return RedmineTracker(**options)


@pytest.fixture
async def tracker(redmine_server: RedmineServer) -> AsyncIterator[RedmineTracker]:
    t = make_tracker(redmine_server)
    yield t
    await t.aclose()


def issue(server: RedmineServer, issue_id: str, include: str = "") -> dict[str, Any]:
    suffix = f"?include={include}" if include else ""
    response = server.api("GET", f"/issues/{issue_id}.json{suffix}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["issue"]
    return data


# --------------------------------------------------------------------------- real Redmine


async def test_create_as_the_requester(tracker: RedmineTracker,
                                       redmine_server: RedmineServer) -> None:
    ticket = await tracker.create(new_ticket(ALICE, title="  Printer\non fire  ", urgency=5,
                                             ref="ref-create-1"))
    assert ticket.title == "Printer on fire"
    assert ticket.status is Status.NEW and ticket.status_label == "New"
    assert ticket.requester == "alice"
    assert ticket.url == f"{redmine_server.url}/issues/{ticket.id}"
    assert ticket.updated_at is not None and ticket.updated_at.tzinfo is not None
    stored = issue(redmine_server, ticket.id)
    assert stored["author"]["id"] == redmine_server.users["alice"].id
    assert stored["priority"]["id"] == redmine_server.priority_ids[5]
    assert stored["tracker"]["id"] == redmine_server.tracker_id
    assert stored["project"]["id"] == redmine_server.project_id
    lines = stored["description"].replace("\r\n", "\n").split("\n")
    assert lines[0] == "It smokes."
    assert lines[-2] == "Requester: Alice L. (@alice, alice@sandbox.local)"
    assert lines[-1] == "Chat ref: ref-create-1"


async def test_requester_is_matched_by_email(tracker: RedmineTracker,
                                             redmine_server: RedmineServer) -> None:
    chat_name = Person(username="a.liddell", email="ALICE@sandbox.local")
    ticket = await tracker.create(new_ticket(chat_name))
    assert ticket.requester == "alice"
    assert issue(redmine_server, ticket.id)["author"]["id"] == redmine_server.users["alice"].id


async def test_unknown_requester_is_filed_by_the_key_owner(
        tracker: RedmineTracker, redmine_server: RedmineServer) -> None:
    stranger = Person(username=f"zed{uuid.uuid4().hex[:8]}", email="zed@elsewhere.test")
    ticket = await tracker.create(new_ticket(stranger, urgency=3))
    assert ticket.requester == redmine_server.admin_login
    stored = issue(redmine_server, ticket.id)
    assert stored["priority"]["id"] == redmine_server.priority_ids[3]
    assert f"(@{stranger.username}, zed@elsewhere.test)" in stored["description"]


async def test_a_redmine_user_outside_the_project_falls_back_to_the_key_owner(
        tracker: RedmineTracker, redmine_server: RedmineServer) -> None:
    login = f"dave{uuid.uuid4().hex[:8]}"
    made = redmine_server.api("POST", "/users.json", json_body={"user": {
        "login": login, "firstname": "Dave", "lastname": "Outsider",
        "mail": f"{login}@sandbox.local", "password": uuid.uuid4().hex}})
    assert made.status_code == 201, made.text
    dave = Person(username=login)
    ticket = await tracker.create(new_ticket(dave))  # as dave: 422, so as the admin
    assert ticket.requester == redmine_server.admin_login
    note = await tracker.comment(ticket.id, "from dave", author=dave)  # as dave: 403
    journal = next(j for j in issue(redmine_server, ticket.id, "journals")["journals"]
                   if str(j["id"]) == note)
    assert journal["user"]["id"] == redmine_server.admin_id
    assert journal["notes"] == "from dave"
    assert [t.id for t in await tracker.open_tickets(dave)] == [ticket.id]


async def test_without_priority_map_redmine_default_applies(
        redmine_server: RedmineServer) -> None:
    async with make_tracker(redmine_server, priority_ids=None, tracker_id=None) as t:
        ticket = await t.create(new_ticket(BOB, urgency=5))
    stored = issue(redmine_server, ticket.id)
    assert stored["priority"]["id"] == redmine_server.default_priority_id
    assert stored["tracker"]["id"] == redmine_server.trackers["Bug"]  # the project's first


async def test_fields_override_tracker_and_priority(tracker: RedmineTracker,
                                                    redmine_server: RedmineServer) -> None:
    ticket = await tracker.create(new_ticket(
        ALICE, urgency=5, fields={"tracker_id": redmine_server.trackers["Feature"],
                                  "priority_id": redmine_server.priorities["Low"],
                                  "subject": "ignored: not an override"}))
    stored = issue(redmine_server, ticket.id)
    assert stored["tracker"]["id"] == redmine_server.trackers["Feature"]
    assert stored["priority"]["id"] == redmine_server.priorities["Low"]
    assert stored["subject"] == "Printer on fire"


async def test_long_titles_are_cut_to_the_limit(tracker: RedmineTracker) -> None:
    ticket = await tracker.create(new_ticket(ALICE, title="x" * 400))
    assert ticket.title == "x" * tracker.title_limit


async def test_find_by_ref(tracker: RedmineTracker) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    base = f"msg-{uuid.uuid4().hex}"
    first = await tracker.create(new_ticket(ALICE, ref=base + "-1"))
    longer = await tracker.create(new_ticket(ALICE, ref=base + "-12"))
    found = await tracker.find_by_ref(base + "-1", since)
    assert found is not None and found.id == first.id
    found = await tracker.find_by_ref(base + "-12", since)
    assert found is not None and found.id == longer.id
    assert await tracker.find_by_ref(base + "-2", since) is None
    assert await tracker.find_by_ref(base + "-1", datetime.now(UTC) + timedelta(hours=1)) is None


async def test_find_by_ref_sees_closed_issues(tracker: RedmineTracker,
                                              redmine_server: RedmineServer) -> None:
    ref = f"closed-{uuid.uuid4().hex}"
    made = await tracker.create(new_ticket(BOB, ref=ref))
    redmine_server.set_status(made.id, redmine_server.closed_status_id)
    found = await tracker.find_by_ref(ref, datetime.now(UTC) - timedelta(minutes=1))
    assert found is not None and found.id == made.id and found.status is Status.CLOSED


async def test_status_mapping_follows_admin_changes(tracker: RedmineTracker,
                                                    redmine_server: RedmineServer) -> None:
    ticket = await tracker.create(new_ticket(ALICE))
    expected = [("In Progress", Status.IN_PROGRESS), ("Feedback", Status.PENDING),
                ("Resolved", Status.SOLVED), ("Closed", Status.CLOSED),
                ("Rejected", Status.CLOSED), ("New", Status.NEW)]
    for name, status in expected:
        redmine_server.set_status(ticket.id, redmine_server.statuses[name])
        got = await tracker.get(ticket.id)
        assert (got.status, got.status_label) == (status, name)
    assert got.assignee == ""
    response = redmine_server.api("PUT", f"/issues/{ticket.id}.json", json_body={
        "issue": {"assigned_to_id": redmine_server.users["alice"].id}})
    assert response.status_code == 204
    got = await tracker.get(ticket.id)
    assert got.assignee == redmine_server.users["alice"].name
    assert got.requester == "alice"


async def test_the_note_of_the_resolving_change_is_the_solution(
        tracker: RedmineTracker, redmine_server: RedmineServer) -> None:
    ticket = await tracker.create(new_ticket(ALICE))
    assert await tracker.solution(ticket.id) is None
    redmine_server.set_status(ticket.id, redmine_server.in_progress_status_id)
    await tracker.comment(ticket.id, "Looking into it.")
    response = redmine_server.api("PUT", f"/issues/{ticket.id}.json", json_body={
        "issue": {"status_id": redmine_server.resolved_status_id,
                  "notes": "Replaced the toner.\nPrint a test page."}})
    assert response.status_code == 204
    solution = await tracker.solution(ticket.id)
    assert solution is not None and not solution.awaiting_approval
    assert solution.text == "Replaced the toner.\nPrint a test page."
    assert solution.author and solution.created_at is not None
    # A change of status without a note says nothing of a solution.
    redmine_server.set_status(ticket.id, redmine_server.closed_status_id)
    assert await tracker.solution(ticket.id) is None
    with pytest.raises(TrackerRejected, match="no approval"):
        await tracker.answer_solution(ticket.id, True, "ok", ALICE)


async def test_assign_private_note_and_solve(tracker: RedmineTracker,
                                            redmine_server: RedmineServer) -> None:
    ticket = await tracker.create(new_ticket(BOB))
    assert await tracker.assign(ticket.id, ALICE) == "alice"
    assert (await tracker.get(ticket.id)).assignee == redmine_server.users["alice"].name
    with pytest.raises(TrackerRejected, match="no user for @nobody"):
        await tracker.assign(ticket.id, Person(username="nobody", email="no@where.test"))
    await tracker.comment(ticket.id, "internal: checking the logs", ALICE, private=True)
    assert all("checking the logs" not in c.text for c in await tracker.comments(ticket.id))
    journals = issue(redmine_server, ticket.id, "journals")["journals"]
    assert journals[-1]["private_notes"] is True
    await tracker.solve(ticket.id, "Cleared the print queue.", ALICE)
    solved = await tracker.get(ticket.id)
    assert solved.status is Status.SOLVED
    solution = await tracker.solution(ticket.id)
    assert solution is not None and solution.text == "Cleared the print queue."
    assert solution.author == redmine_server.users["alice"].name
    await tracker.set_urgency(ticket.id, 5)
    stored = issue(redmine_server, ticket.id, "journals")
    assert stored["priority"]["id"] == redmine_server.priority_ids[5]
    async with make_tracker(redmine_server, priority_ids=None) as plain:
        with pytest.raises(TrackerRejected, match="no Redmine priority"):
            await plain.set_urgency(ticket.id, 5)


async def test_the_requester_closes_an_issue(tracker: RedmineTracker,
                                            redmine_server: RedmineServer) -> None:
    ticket = await tracker.create(new_ticket(BOB))
    await tracker.close(ticket.id, "Works again.", BOB)
    closed = await tracker.get(ticket.id)
    assert closed.status is Status.CLOSED and closed.status_label == "Closed"
    last = issue(redmine_server, ticket.id, "journals")["journals"][-1]
    assert last["notes"] == "Bob B. (@bob): Works again."
    with pytest.raises(TrackerRejected, match="already closed"):
        await tracker.close(ticket.id, "again", BOB)


async def test_missing_issues(tracker: RedmineTracker) -> None:
    with pytest.raises(TicketNotFound):
        await tracker.get("99999999")
    with pytest.raises(TicketNotFound):
        await tracker.get("../projects")
    with pytest.raises(TicketNotFound):
        await tracker.comment("99999999", "hello?")
    with pytest.raises(TicketNotFound):
        await tracker.comments("99999999")


async def test_comment_ids_and_listing(tracker: RedmineTracker,
                                       redmine_server: RedmineServer) -> None:
    ticket = await tracker.create(new_ticket(ALICE))
    from_alice = await tracker.comment(ticket.id, "Still smoking.", author=ALICE)
    from_bot = await tracker.comment(ticket.id, "Still smoking.")
    redmine_server.set_status(ticket.id, redmine_server.in_progress_status_id)
    private = redmine_server.api("PUT", f"/issues/{ticket.id}.json", json_body={
        "issue": {"notes": "internal only", "private_notes": True}})
    assert private.status_code == 204
    from_bob = await tracker.comment(ticket.id, "Bob\x07 here\n\twith a tab", author=BOB)
    assert len({from_alice, from_bot, from_bob}) == 3

    journals = issue(redmine_server, ticket.id, "journals")["journals"]
    by_id = {str(j["id"]): j for j in journals}
    assert by_id[from_alice]["user"]["id"] == redmine_server.users["alice"].id
    assert by_id[from_bot]["user"]["id"] == redmine_server.admin_id
    assert by_id[from_bob]["user"]["id"] == redmine_server.users["bob"].id
    assert by_id[from_bob]["notes"] == "Bob here\n\twith a tab"
    assert [j["notes"] for j in journals if j["private_notes"]] == ["internal only"]

    listed = await tracker.comments(ticket.id)
    assert [c.id for c in listed] == [from_alice, from_bot, from_bob]
    assert [c.author for c in listed] == ["Alice Liddell", by_id[from_bot]["user"]["name"],
                                          "Bob Builder"]
    assert listed[0].text == "Still smoking."
    assert all(c.created_at is not None for c in listed)


async def test_empty_comment_is_refused(tracker: RedmineTracker) -> None:
    with pytest.raises(TrackerRejected):
        await tracker.comment("1", " \n ")


async def test_attach(tracker: RedmineTracker, redmine_server: RedmineServer) -> None:
    ticket = await tracker.create(new_ticket(ALICE))
    content = bytes(range(256)) * 8
    await tracker.attach(ticket.id, Attachment("screen shot.bin", content))
    await tracker.attach(ticket.id, Attachment("notes.txt", b"hello\n", "text/plain"))
    files = {a["filename"]: a for a in issue(redmine_server, ticket.id, "attachments")
             ["attachments"]}
    assert set(files) == {"screen shot.bin", "notes.txt"}
    assert files["screen shot.bin"]["filesize"] == len(content)
    assert files["notes.txt"]["content_type"] == "text/plain"
    download = httpx.get(files["screen shot.bin"]["content_url"], timeout=30,
                         headers={"X-Redmine-API-Key": redmine_server.admin_key})
    assert download.status_code == 200 and download.content == content
    with pytest.raises(TicketNotFound):
        await tracker.attach("99999999", Attachment("a.txt", b"x"))


async def test_open_tickets_of_a_redmine_user(tracker: RedmineTracker,
                                              redmine_server: RedmineServer) -> None:
    before = {t.id for t in await tracker.open_tickets(BOB)}
    first = await tracker.create(new_ticket(BOB, title="first"))
    second = await tracker.create(new_ticket(BOB, title="second"))
    closed = await tracker.create(new_ticket(BOB, title="closed"))
    await tracker.create(new_ticket(ALICE, title="not bob's"))
    redmine_server.set_status(closed.id, redmine_server.closed_status_id)
    redmine_server.set_status(second.id, redmine_server.resolved_status_id)  # open in Redmine
    mine = await tracker.open_tickets(BOB)
    new = [t for t in mine if t.id not in before]
    assert [t.id for t in new] == [second.id, first.id]
    assert all(t.requester == "bob" for t in mine)
    assert closed.id not in {t.id for t in mine}


async def test_open_tickets_filed_without_switching(redmine_server: RedmineServer) -> None:
    person = Person(username=f"carol{uuid.uuid4().hex[:6]}", email="carol@chat.test")
    other = Person(username=person.username + "x")
    async with make_tracker(redmine_server, switch_user=False) as t:
        mine = await t.create(new_ticket(person))
        await t.create(new_ticket(other))
        assert mine.requester == redmine_server.admin_login
        listed = await t.open_tickets(person)
        assert [x.id for x in listed] == [mine.id]
        # alice, a Redmine user, filed through the bot: found as hers too.
        hers = await t.create(new_ticket(ALICE))
        assert hers.id in {x.id for x in await t.open_tickets(ALICE)}


async def test_member_key_can_work_without_admin_rights(redmine_server: RedmineServer) -> None:
    alice = redmine_server.users["alice"]
    async with make_tracker(redmine_server, api_key=alice.api_key) as t:
        ticket = await t.create(new_ticket(BOB))  # no admin: no switch, filed as alice
        assert ticket.requester == "alice"
        note = await t.comment(ticket.id, "as alice", author=BOB)
        assert [c.id for c in await t.comments(ticket.id)] == [note]
        assert ticket.id in {x.id for x in await t.open_tickets(BOB)}


async def test_validation_errors_are_rejected_with_messages(
        tracker: RedmineTracker) -> None:
    with pytest.raises(TrackerRejected) as caught:
        await tracker.create(new_ticket(ALICE, title="   "))
    assert str(caught.value) == "HTTP 422 on POST /issues.json: Subject cannot be blank"
    with pytest.raises(TrackerRejected) as caught:
        await tracker.create(new_ticket(ALICE, title="", fields={"project_id": "no-such"}))
    message = str(caught.value)
    assert "Project cannot be blank" in message and "Subject cannot be blank" in message
    assert "; " in message
    assert not caught.value.retryable


async def test_a_wrong_key_is_rejected_without_showing_it(
        redmine_server: RedmineServer) -> None:
    key = "0123456789abcdef0123456789abcdef01234567"
    async with make_tracker(redmine_server, api_key=key) as t:
        for call in (t.create(new_ticket(ALICE)), t.get("1"), t.comments("1")):
            with pytest.raises(TrackerRejected) as caught:
                await call
            assert str(caught.value) == "Redmine rejected the API key"
            assert key not in repr(caught.value)


async def test_an_unreachable_redmine_is_unavailable(redmine_server: RedmineServer) -> None:
    key = redmine_server.admin_key
    async with make_tracker(redmine_server, url=f"http://127.0.0.1:{free_port()}",
                            timeout=5.0) as t:
        with pytest.raises(TrackerUnavailable) as caught:
            await t.create(new_ticket(ALICE))
        assert caught.value.retryable
        assert key not in str(caught.value)
        with pytest.raises(TrackerUnavailable):
            await t.get("1")


def test_the_server_stops_when_its_test_process_dies(redmine_server: RedmineServer) -> None:
    """A Redmine started by a process that is then killed outright must not outlive it."""
    script = ("import sys, time\n"
              "from tests.servers.redmine import RedmineServer\n"
              "server = RedmineServer().start()\n"
              "print(server.port, flush=True)\n"
              "time.sleep(600)\n")
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", script], cwd=root, text=True,
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # it answers while its parent lives
    finally:
        child.kill()
        child.wait(10)
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            break  # refused: the orphan is gone
        assert time.monotonic() < deadline, "Redmine outlived the process that started it"
        time.sleep(0.1)
    sweep_orphans()  # the killed process's working folder


# --------------------------------------------------------------------------- offline


@pytest.mark.parametrize(("name", "closed", "expected"), [
    ("New", False, Status.NEW), ("In Progress", False, Status.IN_PROGRESS),
    ("Resolved", False, Status.SOLVED), ("Feedback", False, Status.PENDING),
    ("Closed", True, Status.CLOSED), ("Rejected", True, Status.CLOSED),
    ("Anything we made up", False, Status.IN_PROGRESS), ("New", True, Status.CLOSED),
    ("Closed", None, Status.CLOSED), ("Waiting", None, Status.PENDING),
])
def test_map_status(name: str, closed: bool | None, expected: Status) -> None:
    assert map_status(name, closed) is expected


def test_description_footer_round_trip() -> None:
    ticket = NewTicket(title="t", content="body\x00 text\r\n", requester=ALICE, ref="r-1")
    text = description_for(ticket)
    assert text == ("body text\n\nRequester: Alice L. (@alice, alice@sandbox.local)\n"
                    "Chat ref: r-1")
    assert has_ref(text.replace("\n", "\r\n"), "r-1")
    assert not has_ref(text, "r-") and not has_ref(text, "r-10")
    assert named_requester(text) == "alice"
    assert named_requester("Requester: someone") == ""


Handler = Callable[[httpx.Request], Any]


def offline(handler: Handler, **kw: Any) -> RedmineTracker:
    options: dict[str, Any] = {"url": "http://redmine.test/rm", "api_key": "SECRET-KEY",
                               "project": "helpdesk", "transport": httpx.MockTransport(handler)}
    options.update(kw)
    return RedmineTracker(**options)


ISSUE = {"id": 7, "subject": "s", "status": {"id": 1, "name": "New", "is_closed": False},
         "author": {"id": 3, "name": "A"}, "updated_on": "2024-05-01T10:00:00Z"}


async def test_offline_error_mapping() -> None:
    answers = {"/rm/issues/1.json": httpx.Response(503), "/rm/issues/2.json": httpx.Response(403),
               "/rm/issues/3.json": httpx.Response(404), "/rm/issues/4.json": httpx.Response(401),
               "/rm/issues/5.json": httpx.Response(200, text="<html>")}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Redmine-API-Key"] == "SECRET-KEY"
        if request.url.path == "/rm/issues/6.json":
            raise httpx.ReadTimeout("slow", request=request)
        return answers[request.url.path]

    async with offline(handler) as t:
        expected: list[tuple[str, type[Exception], str]] = [
            ("1", TrackerUnavailable, "HTTP 503 on GET /rm/issues/1.json"),
            ("2", TrackerRejected, "HTTP 403 on GET /rm/issues/2.json"),
            ("3", TicketNotFound, "HTTP 404 on GET /rm/issues/3.json"),
            ("4", TrackerRejected, "Redmine rejected the API key"),
            ("5", TrackerUnavailable, "not a JSON object"),
            ("6", TrackerUnavailable, "timed out"),
        ]
        for ticket_id, kind, text in expected:
            with pytest.raises(kind) as caught:
                await t.get(ticket_id)
            assert type(caught.value) is kind or issubclass(type(caught.value), kind)
            assert text in str(caught.value) and "SECRET-KEY" not in str(caught.value)


async def test_offline_switch_falls_back_on_412() -> None:
    seen: list[tuple[str, str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        switch = request.headers.get("X-Redmine-Switch-User")
        seen.append((request.method, request.url.path, switch))
        if request.url.path == "/rm/users.json":
            return httpx.Response(200, json={"users": [
                {"id": 3, "login": "alice", "mail": "alice@x.test"}]})
        if request.method == "POST" and switch == "alice":
            return httpx.Response(412)
        if request.method == "POST":
            body = json.loads(request.content)["issue"]
            assert body["priority_id"] == 14 and body["tracker_id"] == 2
            assert body["custom_fields"] == [{"id": 1, "value": "chat"}]
            assert "bogus" not in body
            return httpx.Response(201, json={"issue": ISSUE})
        return httpx.Response(200, json={"user": {"id": 3, "login": "alice"}})

    async with offline(handler, switch_user=True, tracker_id=2, priority_ids={4: 14},
                       web_url="https://tickets.example.org/") as t:
        ticket = await t.create(new_ticket(
            Person("alice"), urgency=4,
            fields={"custom_fields": [{"id": 1, "value": "chat"}], "bogus": 1}))
    assert ticket.url == "https://tickets.example.org/issues/7"
    assert ticket.updated_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    posts = [s for s in seen if s[0] == "POST"]
    assert posts == [("POST", "/rm/issues.json", "alice"), ("POST", "/rm/issues.json", None)]


async def test_offline_find_by_ref_reads_every_page() -> None:
    offsets: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rm/users/3.json":
            return httpx.Response(200, json={"user": {"id": 3, "login": "a"}})
        params = request.url.params
        assert params["status_id"] == "*" and params["description"] == "~ref-1"
        assert params["created_on"] == ">=2024-05-01T09:55:00Z"
        offset = int(params["offset"])
        offsets.append(offset)
        issues = [dict(ISSUE, id=1000 - offset - i, description="x\nChat ref: ref-10")
                  for i in range(100)]
        if offset == 200:
            issues = [dict(ISSUE, id=5, description="x\nChat ref: ref-1")]
        return httpx.Response(200, json={"issues": issues, "total_count": 201,
                                         "offset": offset, "limit": 100})

    async with offline(handler) as t:
        found = await t.find_by_ref("ref-1", datetime(2024, 5, 1, 10, 0))  # naive: UTC
    assert found is not None and found.id == "5"
    assert offsets == [0, 100, 200]


async def test_offline_requests_in_flight_are_bounded() -> None:
    now = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await asyncio.sleep(0.01)
        now -= 1
        return httpx.Response(200, json={"issue": ISSUE})

    async with offline(handler, max_in_flight=3) as t:
        t._logins[3] = "a"
        tickets = await asyncio.gather(*(t.get("7") for _ in range(30)))
    assert len(tickets) == 30 and peak == 3
