"""GLPITracker against the GLPI simulator, over real sockets."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.glpi import REF_LABEL, GLPITracker
from bridge.tickets import (
    Attachment,
    NewTicket,
    Person,
    Status,
    TicketNotFound,
    TrackerError,
    TrackerRejected,
    TrackerUnavailable,
)
from plugin.sandbox.glpi import GLPISimulator

USER_TOKEN = "user-tok-9f8e7d6c5b4a"
APP_TOKEN = "app-tok-0a1b2c3d4e5f"
ALICE = Person(username="alice", email="alice@sandbox.local", display_name="Alice Sandbox")
BOB = Person(username="bob", email="bob@sandbox.local")

Factory = Callable[..., GLPITracker]


@pytest.fixture
async def sim() -> AsyncIterator[GLPISimulator]:
    server = GLPISimulator(user_token=USER_TOKEN, app_token=APP_TOKEN)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make(sim: GLPISimulator) -> AsyncIterator[Factory]:
    made: list[GLPITracker] = []

    def factory(**kwargs: Any) -> GLPITracker:
        options: dict[str, Any] = {"url": sim.api_url, "user_token": USER_TOKEN,
                                   "app_token": APP_TOKEN, "timeout": 5.0}
        options.update(kwargs)
        tracker = GLPITracker(**options)
        made.append(tracker)
        return tracker

    yield factory
    for tracker in made:
        await tracker.aclose()


@pytest.fixture
def tracker(make: Factory) -> GLPITracker:
    return make(requesttypes_id=7)


def new_ticket(ref: str = "mattermost-post:abc123", requester: Person = ALICE,
               **kwargs: Any) -> NewTicket:
    values: dict[str, Any] = {"title": "Printer on fire", "content": "It smokes.\nHelp!",
                              "requester": requester, "ref": ref}
    values.update(kwargs)
    return NewTicket(**values)


def secrets_in(text: str, sim: GLPISimulator) -> list[str]:
    tokens = [USER_TOKEN, APP_TOKEN, "tok-", *sim._sessions]
    return [t for t in tokens if t in text]


# -- creating -------------------------------------------------------------------------------------

async def test_create_sends_the_configured_fields_and_the_requester(
        sim: GLPISimulator, make: Factory) -> None:
    tracker = make(ticket_type=2, requesttypes_id=7, itilcategories_id=2,
                   web_url="https://glpi.example.org")
    made = await tracker.create(new_ticket(urgency=5))

    stored = sim.ticket(int(made.id))
    assert stored["name"] == "Printer on fire"
    assert (stored["type"], stored["urgency"], stored["requesttypes_id"],
            stored["itilcategories_id"]) == (2, 5, 7, 2)
    assert stored["users_id_recipient"] == sim.user_id("helpdesk")
    requesters = [u["users_id"] for u in sim.ticket_users(int(made.id)) if u["type"] == 1]
    assert requesters == [sim.user_id("alice")]
    assert made.status is Status.NEW and made.status_label == "New"
    assert made.requester == "alice"
    assert made.url == f"https://glpi.example.org/front/ticket.form.php?id={made.id}"
    assert made.title == "Printer on fire"


async def test_ticket_link_defaults_to_the_api_url_without_apirest(tracker: GLPITracker,
                                                                   sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    assert made.url == f"{sim.url}/front/ticket.form.php?id={made.id}"


async def test_fields_override_the_configuration(sim: GLPISimulator, make: Factory) -> None:
    tracker = make(ticket_type=1, requesttypes_id=7)
    made = await tracker.create(new_ticket(fields={"type": 2, "requesttypes_id": 4}))
    stored = sim.ticket(int(made.id))
    assert (stored["type"], stored["requesttypes_id"]) == (2, 4)


async def test_requester_found_by_username_when_the_email_is_unknown(
        tracker: GLPITracker, sim: GLPISimulator) -> None:
    person = Person(username="bob", email="robert@elsewhere.example")
    made = await tracker.create(new_ticket(requester=person))
    requesters = [u["users_id"] for u in sim.ticket_users(int(made.id)) if u["type"] == 1]
    assert requesters == [sim.user_id("bob")]
    assert made.requester == "bob"


async def test_requester_found_by_email_even_with_another_username(
        tracker: GLPITracker, sim: GLPISimulator) -> None:
    person = Person(username="carol.chat", email="CAROL@sandbox.local")
    made = await tracker.create(new_ticket(requester=person))
    assert made.requester == "carol"
    assert [u["users_id"] for u in sim.ticket_users(int(made.id)) if u["type"] == 1] == [
        sim.user_id("carol")]


async def test_unknown_requester_leaves_glpis_default(tracker: GLPITracker,
                                                      sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket(requester=Person(username="zed", email="z@x.y")))
    assert made.requester == ""
    stored = sim.ticket(int(made.id))
    # GLPI makes the API user the requester when none is given.
    assert [u["users_id"] for u in sim.ticket_users(stored["id"])] == [sim.user_id("helpdesk")]


async def test_requester_lookups_are_shared_and_cached(tracker: GLPITracker,
                                                       sim: GLPISimulator) -> None:
    sim.latency_s = 0.02
    await asyncio.gather(*(tracker.create(new_ticket(ref=f"r{i}")) for i in range(5)))
    await tracker.create(new_ticket(ref="later"))
    searches = [r for r in sim.request_log if r.path.endswith("/search/User")]
    assert len(searches) == 1
    assert len(sim.tickets()) == 6
    assert all(u["users_id"] == sim.user_id("alice")
               for t in sim.tickets() for u in sim.ticket_users(t["id"]))


async def test_markdown_and_markup_arrive_as_literal_text(tracker: GLPITracker,
                                                           sim: GLPISimulator) -> None:
    text = ("**Bold** & <script>alert(1)</script>\n`a < b && c > d`\n\n"
            "Second paragraph &amp; more")
    made = await tracker.create(new_ticket(title="<b>x</b> & y", content=text))
    stored = sim.ticket(int(made.id))
    # GLPI 10 stores the HTML we send with &, <, > encoded once more.
    markup = html.unescape(stored["content"])
    assert "<script>" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert "&amp;amp; more" in markup
    assert html.unescape(stored["name"]) == "<b>x</b> & y"
    got = await tracker.get(made.id)
    assert got.title == "<b>x</b> & y"


async def test_control_characters_are_dropped(tracker: GLPITracker, sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket(title="Bell\x07 rings", content="A\x00B\x1bC"))
    stored = sim.ticket(int(made.id))
    assert stored["name"] == "Bell rings"
    assert "ABC" in stored["content"]


async def test_long_titles_fit_glpis_column_once_encoded(tracker: GLPITracker,
                                                          sim: GLPISimulator) -> None:
    title = "<x> " * 100  # 400 characters, each < and > stored as five
    made = await tracker.create(new_ticket(title=title))
    stored = sim.ticket(int(made.id))["name"]
    assert len(stored) <= 255
    assert made.title.endswith("…")
    assert html.unescape(stored) == made.title
    plain = await tracker.create(new_ticket(ref="r2", title="x" * 300))
    assert len(plain.title) == 255 and plain.title.endswith("…")


async def test_empty_title_uses_the_first_line_of_the_content(tracker: GLPITracker) -> None:
    made = await tracker.create(new_ticket(title="  ", content="\n  VPN is down  \nsince 9"))
    assert made.title == "VPN is down"


async def test_glpi_validation_error_is_rejected(tracker: GLPITracker) -> None:
    with pytest.raises(TrackerRejected) as caught:
        await tracker.create(new_ticket(fields={"entities_id": 42}))
    assert "ERROR_GLPI_ADD" in str(caught.value)
    assert "permission" in str(caught.value)
    assert not caught.value.retryable


# -- sessions -------------------------------------------------------------------------------------

async def test_one_session_is_shared_by_concurrent_calls(tracker: GLPITracker,
                                                         sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    await asyncio.gather(*(tracker.get(made.id) for _ in range(10)))
    assert sim.login_count == 1


async def test_concurrent_first_calls_log_in_once(make: Factory, sim: GLPISimulator) -> None:
    made = await make().create(new_ticket())
    sim.latency_s = 0.02
    tracker = make()
    got = await asyncio.gather(*(tracker.get(made.id) for _ in range(6)))
    assert {t.id for t in got} == {made.id}
    assert sim.login_count == 2  # one for each tracker


async def test_expired_session_logs_in_again_and_retries_once(tracker: GLPITracker,
                                                              sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    sim.expire_sessions()
    got = await tracker.get(made.id)
    assert got.id == made.id
    assert sim.login_count == 2
    statuses = [(r.path.rsplit("/", 1)[-1], r.status) for r in sim.request_log]
    assert ("initSession", 200) in statuses
    assert (made.id, 401) in statuses and statuses.count((made.id, 200)) == 1


async def test_expired_session_does_not_create_twice(tracker: GLPITracker,
                                                     sim: GLPISimulator) -> None:
    await tracker.create(new_ticket(ref="first"))
    sim.expire_sessions()
    await tracker.create(new_ticket(ref="second"))
    assert len(sim.tickets()) == 2


async def test_session_refused_twice_is_unavailable(tracker: GLPITracker,
                                                    sim: GLPISimulator) -> None:
    await tracker.open_tickets(ALICE)
    sim.fail_next("GET", r"/Ticket/1$", 401, count=2,
                  body=["ERROR_SESSION_TOKEN_INVALID", "session_token seems invalid"])
    with pytest.raises(TrackerUnavailable, match="ERROR_SESSION_TOKEN_INVALID"):
        await tracker.get("1")
    assert sim.login_count == 2


async def test_aclose_kills_the_session(make: Factory, sim: GLPISimulator) -> None:
    tracker = make()
    await tracker.open_tickets(ALICE)
    assert sim.active_sessions == 1
    await tracker.aclose()
    assert sim.active_sessions == 0
    assert sim.request_log[-1].path.endswith("/killSession")
    with pytest.raises(TrackerUnavailable):
        await tracker.get("1")


async def test_aclose_without_a_session_sends_nothing(make: Factory, sim: GLPISimulator) -> None:
    await make().aclose()
    assert sim.request_log == []


# -- configuration errors -------------------------------------------------------------------------

@pytest.mark.parametrize(("app_token", "code"), [
    ("", "ERROR_APP_TOKEN_PARAMETERS_MISSING"),
    ("not-the-app-token", "ERROR_WRONG_APP_TOKEN_PARAMETER"),
])
async def test_app_token_errors_are_clear_and_secret_free(
        make: Factory, sim: GLPISimulator, app_token: str, code: str) -> None:
    tracker = make(app_token=app_token)
    with pytest.raises(TrackerRejected) as caught:
        await tracker.get("1")
    message = str(caught.value)
    assert message.startswith(f"GLPI: {code} — ")
    assert "app_token" in message
    assert "view documentation" not in message
    assert "not-the-app-token" not in message and secrets_in(message, sim) == []


async def test_bad_user_token_is_rejected_without_the_token(make: Factory,
                                                            sim: GLPISimulator) -> None:
    tracker = make(user_token="wrong-user-token-123")
    with pytest.raises(TrackerRejected) as caught:
        await tracker.create(new_ticket())
    message = str(caught.value)
    assert "ERROR_GLPI_LOGIN_USER_TOKEN" in message
    assert "wrong-user-token-123" not in message and secrets_in(message, sim) == []
    assert sim.tickets() == []


async def test_ip_not_allowed_is_rejected(tracker: GLPITracker, sim: GLPISimulator) -> None:
    sim.ip_allowed = False
    with pytest.raises(TrackerRejected) as caught:
        await tracker.get("1")
    assert "ERROR_NOT_ALLOWED_IP" in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


async def test_no_error_message_carries_a_token(tracker: GLPITracker, sim: GLPISimulator,
                                                make: Factory) -> None:
    messages: list[str] = []
    made = await tracker.create(new_ticket())
    session_tokens = list(sim._sessions)
    attempts: list[Callable[[], Awaitable[Any]]] = [
        lambda: tracker.get("999"),
        lambda: tracker.comment("999", "x"),
        lambda: tracker.create(new_ticket(fields={"entities_id": 9})),
        lambda: make(app_token="x").get(made.id),
        lambda: make(user_token="y").get(made.id),
    ]
    for attempt in attempts:
        with pytest.raises(TrackerError) as caught:
            await attempt()
        messages.append(str(caught.value))
    sim.fail_next("*", r"/Ticket/", 500)
    with pytest.raises(TrackerUnavailable) as failed:
        await tracker.get(made.id)
    messages.append(str(failed.value))
    for message in messages:
        assert message.startswith("GLPI")
        for secret in (USER_TOKEN, APP_TOKEN, *session_tokens):
            assert secret not in message


# -- finding a ticket again -----------------------------------------------------------------------

async def test_find_by_ref_after_a_create_that_timed_out(make: Factory,
                                                         sim: GLPISimulator) -> None:
    tracker = make(timeout=0.5)
    since = datetime.now(UTC)
    sim.slow_create_after_commit(1)
    with pytest.raises(TrackerUnavailable) as caught:
        await tracker.create(new_ticket(ref="mattermost-post:q1w2e3"))
    assert caught.value.retryable
    assert len(sim.tickets()) == 1  # GLPI stored it anyway

    found = await tracker.find_by_ref("mattermost-post:q1w2e3", since)
    assert found is not None
    assert found.id == str(sim.tickets()[0]["id"])
    assert found.title == "Printer on fire" and found.requester == "alice"


async def test_find_by_ref_matches_the_whole_reference(tracker: GLPITracker) -> None:
    since = datetime.now(UTC) - timedelta(minutes=5)
    longer = await tracker.create(new_ticket(ref="mattermost-post:abc1234"))
    assert await tracker.find_by_ref("mattermost-post:abc123", since) is None
    exact = await tracker.create(new_ticket(ref="mattermost-post:abc123"))
    found = await tracker.find_by_ref("mattermost-post:abc123", since)
    assert found is not None and found.id == exact.id != longer.id


async def test_find_by_ref_ignores_a_reference_quoted_in_the_text(tracker: GLPITracker) -> None:
    since = datetime.now(UTC)
    await tracker.create(new_ticket(ref="r-other", content="see mattermost-post:zz9"))
    assert await tracker.find_by_ref("mattermost-post:zz9", since) is None


async def test_find_by_ref_skips_tickets_older_than_since(tracker: GLPITracker,
                                                          sim: GLPISimulator) -> None:
    sim.clock = lambda: datetime.now(UTC) - timedelta(days=3)
    await tracker.create(new_ticket(ref="mattermost-post:old"))
    sim.clock = lambda: datetime.now(UTC)
    assert await tracker.find_by_ref("mattermost-post:old", datetime.now(UTC)) is None
    found = await tracker.find_by_ref("mattermost-post:old",
                                      datetime.now(UTC) - timedelta(days=4))
    assert found is not None


async def test_ref_is_the_last_line_of_the_description(tracker: GLPITracker,
                                                       sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket(ref="mattermost-post:r9"))
    content = html.unescape(sim.ticket(int(made.id))["content"])
    assert content.endswith(f"<p>{REF_LABEL} mattermost-post:r9</p>")


# -- reading --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "status", "label"), [
    (1, Status.NEW, "New"),
    (2, Status.IN_PROGRESS, "Processing (assigned)"),
    (3, Status.IN_PROGRESS, "Processing (planned)"),
    (4, Status.PENDING, "Pending"),
    (5, Status.SOLVED, "Solved"),
    (6, Status.CLOSED, "Closed"),
])
async def test_status_mapping(tracker: GLPITracker, sim: GLPISimulator, code: int,
                              status: Status, label: str) -> None:
    made = await tracker.create(new_ticket())
    sim.set_ticket_status(int(made.id), code)
    got = await tracker.get(made.id)
    assert (got.status, got.status_label) == (status, label)


async def test_get_reports_assignee_requester_and_update_time(tracker: GLPITracker,
                                                              sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    before = await tracker.get(made.id)
    assert before.assignee == "" and before.requester == "alice"
    sim.assign(int(made.id), "tech")
    after = await tracker.get(made.id)
    assert after.assignee == "tech"
    assert after.status is Status.IN_PROGRESS
    assert after.updated_at is not None and after.updated_at.tzinfo is UTC
    assert abs(after.updated_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_unknown_ticket_is_not_found(tracker: GLPITracker) -> None:
    with pytest.raises(TicketNotFound, match="ERROR_ITEM_NOT_FOUND"):
        await tracker.get("4242")
    with pytest.raises(TicketNotFound):
        await tracker.get("not-a-number")


# -- follow-ups and documents ---------------------------------------------------------------------

async def test_comment_returns_the_followup_id_and_names_the_author(
        tracker: GLPITracker, sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    first = await tracker.comment(made.id, "Still smoking <b>a lot</b> & more", ALICE)
    second = await tracker.comment(made.id, "plain")
    stored = sim.followups(int(made.id))
    assert [str(f["id"]) for f in stored] == [first, second]
    assert stored[0]["is_private"] == 0 and stored[0]["requesttypes_id"] == 7
    texts = [c.text for c in await tracker.comments(made.id)]
    assert texts == ["Alice Sandbox (@alice): Still smoking <b>a lot</b> & more", "plain"]


async def test_comments_lists_public_followups_only(tracker: GLPITracker,
                                                    sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    number = int(made.id)
    public = sim.add_followup(number, "We are on it.\nBring the extinguisher.")
    sim.add_followup(number, "internal: replace the fuser", private=True)
    mine = await tracker.comment(made.id, "Thanks", BOB)
    comments = await tracker.comments(made.id)
    assert [c.id for c in comments] == [str(public), mine]
    assert comments[0].author == "tech"
    # GLPI's editor makes each line a paragraph; paragraphs come back blank-line separated.
    assert comments[0].text == "We are on it.\n\nBring the extinguisher."
    assert comments[1].author == "helpdesk" and comments[1].text == "bob: Thanks"
    assert comments[0].created_at is not None
    assert all("internal" not in c.text for c in comments)


async def test_comment_on_missing_or_closed_tickets(tracker: GLPITracker,
                                                    sim: GLPISimulator) -> None:
    with pytest.raises(TicketNotFound):
        await tracker.comment("777", "hello")
    made = await tracker.create(new_ticket())
    sim.set_ticket_status(int(made.id), 6)
    with pytest.raises(TrackerRejected, match="permission"):
        await tracker.comment(made.id, "hello")
    assert sim.followups(int(made.id)) == []


async def test_a_solution_is_read_and_accepted_by_the_requester(tracker: GLPITracker,
                                                                  sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    number = int(made.id)
    assert await tracker.solution(made.id) is None
    sim.solve(number, "Replaced the fuser.\nPrint a test page.")
    assert (await tracker.get(made.id)).status is Status.SOLVED
    solution = await tracker.solution(made.id)
    assert solution is not None and solution.awaiting_approval
    assert solution.author == "tech"
    assert solution.text == "Replaced the fuser.\n\nPrint a test page."
    await tracker.answer_solution(made.id, True, "Works, thanks", ALICE)
    assert (await tracker.get(made.id)).status is Status.CLOSED
    assert sim.solutions(number)[0]["status"] == 3  # accepted
    assert "Alice Sandbox (@alice): Works, thanks" in sim.followups(number)[-1]["content"]
    # Answered once: a second answer finds nothing waiting.
    with pytest.raises(TrackerRejected, match="no longer waits"):
        await tracker.answer_solution(made.id, False, "changed my mind", ALICE)
    assert (await tracker.solution(made.id)).awaiting_approval is False  # type: ignore[union-attr]


async def test_a_refused_solution_reopens_the_ticket_with_the_reason(tracker: GLPITracker,
                                                                     sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    number = int(made.id)
    sim.assign(number)
    sim.solve(number, "Rebooted it.")
    with pytest.raises(TrackerRejected, match="reason"):
        await tracker.answer_solution(made.id, False, "  ", None)
    await tracker.answer_solution(made.id, False, "Still smoking", BOB)
    ticket = await tracker.get(made.id)
    assert ticket.status is Status.IN_PROGRESS and ticket.status_label == "Processing (assigned)"
    assert sim.solutions(number)[0]["status"] == 4  # refused
    assert "bob: Still smoking" in sim.followups(number)[-1]["content"]
    # A new solution waits again; an entity that closes at once accepts it by itself.
    sim.autoclose_delay = 0
    sim.solve(number, "New fuser.")
    assert (await tracker.get(made.id)).status is Status.CLOSED
    assert (await tracker.solution(made.id)).awaiting_approval is False  # type: ignore[union-attr]


async def test_a_technician_takes_notes_and_solves_from_chat(tracker: GLPITracker,
                                                            sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    number = int(made.id)
    tech = Person(username="tech", email="tech@sandbox.local", display_name="Tina Tech")
    assert await tracker.assign(made.id, tech) == "tech"
    ticket = await tracker.get(made.id)
    assert ticket.assignee == "tech" and ticket.status is Status.IN_PROGRESS
    with pytest.raises(TrackerRejected, match="no user for @nobody"):
        await tracker.assign(made.id, Person(username="nobody"))
    note = await tracker.comment(made.id, "Fuser part ordered", tech, private=True)
    stored = {str(f["id"]): f for f in sim.followups(number)}
    assert stored[note]["is_private"] == 1
    assert note not in [c.id for c in await tracker.comments(made.id)]  # private: not shown
    await tracker.set_urgency(made.id, 5)
    assert sim.ticket(number)["urgency"] == 5 and sim.ticket(number)["priority"] == 4
    await tracker.solve(made.id, "Replaced the fuser", tech)
    solution = await tracker.solution(made.id)
    assert solution is not None and solution.awaiting_approval
    assert solution.text == "Tina Tech (@tech): Replaced the fuser"
    with pytest.raises(TrackerRejected, match="already solved"):
        await tracker.solve(made.id, "again", tech)


async def test_the_requester_closes_a_ticket(tracker: GLPITracker, sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    await tracker.close(made.id, "Works again.", ALICE)
    assert (await tracker.get(made.id)).status is Status.CLOSED
    assert "Alice Sandbox (@alice): Works again." in sim.followups(int(made.id))[-1]["content"]
    with pytest.raises(TrackerRejected, match="already closed"):
        await tracker.close(made.id, "again", ALICE)


async def test_attach_uploads_a_document_linked_to_the_ticket(tracker: GLPITracker,
                                                              sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    data = bytes(range(256)) * 10
    await tracker.attach(made.id, Attachment("logs/err.bin", data, "application/x-thing"))
    docs = sim.documents(int(made.id))
    assert len(docs) == 1
    assert docs[0]["filename"] == "logs_err.bin" and docs[0]["mime"] == "application/x-thing"
    assert sim.document_data(docs[0]["id"]) == data


async def test_attach_to_a_missing_ticket(tracker: GLPITracker, sim: GLPISimulator) -> None:
    with pytest.raises(TicketNotFound):
        await tracker.attach("31337", Attachment("a.txt", b"x"))
    assert sim._store["Document"] == {}


# -- open tickets ---------------------------------------------------------------------------------

async def test_open_tickets_lists_the_requesters_unsolved_tickets(tracker: GLPITracker,
                                                                  sim: GLPISimulator) -> None:
    ids = [(await tracker.create(new_ticket(ref=f"r{i}", title=f"T{i}"))).id for i in range(4)]
    await tracker.create(new_ticket(ref="bob", requester=BOB))
    sim.set_ticket_status(int(ids[1]), 5)
    sim.set_ticket_status(int(ids[2]), 6)
    sim.assign(int(ids[3]))
    sim.set_ticket_status(int(ids[0]), 4)
    tickets = await tracker.open_tickets(ALICE)
    assert {t.id for t in tickets} == {ids[0], ids[3]}
    by_id = {t.id: t for t in tickets}
    assert by_id[ids[0]].status is Status.PENDING and by_id[ids[0]].title == "T0"
    assert by_id[ids[3]].assignee == "tech" and by_id[ids[3]].status is Status.IN_PROGRESS
    assert all(t.requester == "alice" and t.url.endswith(f"id={t.id}") for t in tickets)


async def test_open_tickets_of_an_unknown_person_is_empty(tracker: GLPITracker) -> None:
    await tracker.create(new_ticket())
    assert await tracker.open_tickets(Person(username="nobody", email="no@body.example")) == []


# -- failures -------------------------------------------------------------------------------------

async def test_refused_connections_are_unavailable(tracker: GLPITracker,
                                                   sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    await sim.set_down(True)
    with pytest.raises(TrackerUnavailable, match="unreachable") as caught:
        await tracker.get(made.id)
    assert caught.value.retryable
    await sim.set_down(False)
    assert (await tracker.get(made.id)).id == made.id


async def test_503_and_500_are_unavailable(tracker: GLPITracker, sim: GLPISimulator) -> None:
    made = await tracker.create(new_ticket())
    await sim.set_down(True, refuse=False)
    with pytest.raises(TrackerUnavailable, match="HTTP 503"):
        await tracker.get(made.id)
    await sim.set_down(False)
    sim.fail_next("POST", r"/ITILFollowup$", 500)
    with pytest.raises(TrackerUnavailable, match="ERROR_SQL"):
        await tracker.comment(made.id, "x")
    assert await tracker.comment(made.id, "x")


async def test_a_slow_glpi_is_unavailable(make: Factory, sim: GLPISimulator) -> None:
    tracker = make(timeout=0.2)
    await tracker.open_tickets(ALICE)
    sim.latency_s = 0.6
    with pytest.raises(TrackerUnavailable, match=r"did not answer within 0\.2 s"):
        await tracker.get("1")


async def test_requests_in_flight_are_bounded(make: Factory, sim: GLPISimulator) -> None:
    tracker = make(max_in_flight=3)
    made = await tracker.create(new_ticket())
    sim.latency_s = 0.03
    sim.peak_in_flight = 0
    await asyncio.gather(*(tracker.get(made.id) for _ in range(12)))
    assert sim.peak_in_flight == 3
