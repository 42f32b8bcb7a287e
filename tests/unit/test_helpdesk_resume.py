"""Executors taken up again after a stopped run (which may have done their work already) look
where the tracker shows it before doing it again: an answered solution, a reply among the
follow-ups, a closed ticket."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import MethodType, SimpleNamespace
from typing import Any

import pytest

from bridge.glpi import GLPITracker
from bridge.tickets import NewTicket, Person
from plugin.config import HelpdeskSettings
from plugin.handlers.helpdesk import Helpdesk
from plugin.runtime import Runtime
from plugin.sandbox.glpi import GLPISimulator
from plugin.store import OutboxEntry, SQLiteStore, TicketLink

TOKEN = "resume-test-token"
ALICE = Person(username="alice", email="alice@sandbox.local", display_name="Alice A")
CAROL = Person(username="carol", email="carol@sandbox.local", display_name="Carol C")


class FakeAPI:
    def __init__(self) -> None:
        self.posts: list[str] = []

    async def create_post(self, channel_id: str, message: str, **kw: Any) -> dict[str, Any]:
        self.posts.append(message)
        return {"id": "p" * 26}

    async def get_post(self, post_id: str) -> dict[str, Any]:
        return {"id": post_id, "props": {}}

    async def update_post(self, post_id: str, message: str | None = None,
                          props: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"id": post_id}

    async def direct_channel(self, user_id: str) -> str:
        return "d" * 26

    async def user(self, user_id: str) -> dict[str, Any]:
        person = {"a" * 26: ALICE, "c" * 26: CAROL}[user_id]
        return {"id": user_id, "username": person.username, "email": person.email,
                "first_name": person.display_name, "last_name": ""}


async def _noop(user_id: str) -> None:
    return None


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[SimpleNamespace]:
    sim = GLPISimulator(user_token=TOKEN)
    await sim.start()
    tracker = GLPITracker(url=sim.api_url, user_token=TOKEN)
    store = SQLiteStore(tmp_path / "state.db")
    await store.open()
    h = Helpdesk(HelpdeskSettings(), {"glpi": tracker})
    api = FakeAPI()
    rt = SimpleNamespace(api=api, store=store, started_at=time.time(), speak_to=_noop,
                         outbox=SimpleNamespace(kick=lambda: None))
    rt.resumed = MethodType(Runtime.resumed, rt)
    h._rt = rt  # type: ignore[assignment]
    ticket = await tracker.create(NewTicket(title="Printer", content="jammed", requester=ALICE,
                                            ref="mattermost-post:x"))
    await store.tickets.link(TicketLink("glpi", ticket.id, "c" * 26, "r" * 26, "a" * 26,
                                        "alice", "Printer", ticket.url, "new", 0, True))
    yield SimpleNamespace(sim=sim, tracker=tracker, store=store, h=h, api=api,
                          number=int(ticket.id), id=ticket.id)
    await tracker.aclose()
    await store.close()
    await sim.stop()


def resumed(kind: str, payload: dict[str, Any]) -> OutboxEntry:
    """An entry a stopped run had started (one attempt made)."""
    return OutboxEntry(f"{kind}:test", kind, payload, "queued", 1, False, {}, time.time() - 60)


async def test_an_answer_already_given_is_not_given_again(world: SimpleNamespace) -> None:
    world.sim.solve(world.number, "Replaced the fuser.")
    await world.tracker.answer_solution(world.id, True, "ok", ALICE)  # the stopped run's
    await world.store.outbox.put("ticket-answer:test", "ticket-answer", {})
    await world.h._send_answer(resumed("ticket-answer", {
        "tracker": "glpi", "ticket_id": world.id, "accepted": True, "reason": "",
        "user_id": "a" * 26, "post_id": ""}))
    assert len([f for f in world.sim.followups(world.number) if "(@alice)" in f["content"]]) == 1
    assert (await world.store.outbox.get("ticket-answer:test")).state == "done"


async def test_a_reply_already_written_is_not_written_again(world: SimpleNamespace) -> None:
    await world.tracker.comment(world.id, "Power-cycle it, please.", CAROL)  # the stopped run's
    await world.store.outbox.put("triage-action:test", "triage-action", {})
    await world.h._triage_action(resumed("triage-action", {
        "tracker": "glpi", "ticket_id": world.id, "op": "reply", "user_id": "c" * 26,
        "text": "Power-cycle it, please."}))
    assert len([f for f in world.sim.followups(world.number)
                if "Power-cycle" in f["content"]]) == 1
    # Told in the requester's thread, and marked seen so that the watch does not tell it again.
    assert any("Power-cycle" in m for m in world.api.posts)
    seen = await world.store.tickets.seen_comments("glpi", world.id)
    assert {str(f["id"]) for f in world.sim.followups(world.number)} <= seen


async def test_a_ticket_already_closed_is_not_closed_again(world: SimpleNamespace) -> None:
    await world.tracker.close(world.id, "works", ALICE)  # the stopped run's
    await world.store.outbox.put("ticket-close:test", "ticket-close", {})
    await world.h._close_ticket(resumed("ticket-close", {
        "tracker": "glpi", "ticket_id": world.id, "user_id": "a" * 26, "reason": "works"}))
    assert len([f for f in world.sim.followups(world.number) if "works" in f["content"]]) == 1
    assert (await world.store.outbox.get("ticket-close:test")).state == "done"
    assert not any("did not close" in m for m in world.api.posts)
