"""The ticket's number when Mattermost refuses to post it: join a public channel, retry for a
while, then tell the requester in a direct message."""

from __future__ import annotations

import time
from types import MethodType, SimpleNamespace
from typing import Any

import pytest

from plugin.config import HelpdeskSettings
from plugin.handlers.helpdesk import Helpdesk
from plugin.mattermost import MattermostError
from plugin.outbox import Retry
from plugin.runtime import Runtime
from plugin.store import OutboxEntry

THREAD_CHANNEL, DM_CHANNEL = "c" * 26, "d" * 26


class FakeAPI:
    def __init__(self, channel_type: str, joinable: bool) -> None:
        self.channel_type, self.joinable = channel_type, joinable
        self.member = False
        self.posts: list[tuple[str, str]] = []
        self.joins = 0

    async def create_post(self, channel_id: str, message: str, **kw: Any) -> dict[str, Any]:
        if channel_id == THREAD_CHANNEL and not self.member:
            raise MattermostError(403, "api.context.permissions.app_error", "no", "/posts")
        self.posts.append((channel_id, message))
        return {"id": "p" * 26}

    async def channel(self, channel_id: str) -> dict[str, Any]:
        return {"id": channel_id, "type": self.channel_type}

    async def join_channel(self, channel_id: str) -> None:
        self.joins += 1
        if not self.joinable:
            raise MattermostError(403, "api.context.permissions.app_error", "no", "/members")
        self.member = True

    async def direct_channel(self, user_id: str) -> str:
        return DM_CHANNEL


class FakeOutbox:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    async def update(self, key: str, **kw: Any) -> None:
        self.updates.append(kw)


class FakeStore:
    def __init__(self) -> None:
        self.outbox = FakeOutbox()

    @property
    def updates(self) -> list[dict[str, Any]]:
        return self.outbox.updates


def helpdesk(api: FakeAPI, store: FakeStore) -> Helpdesk:
    h = Helpdesk(HelpdeskSettings(number_retry_hours=1), {})
    rt = SimpleNamespace(api=api, store=store, started_at=0.0, stream_enabled=True,
                         speak_to=_noop)
    rt.resumed = MethodType(Runtime.resumed, rt)
    h._rt = rt  # type: ignore[assignment]
    return h


async def _noop(user_id: str) -> None:
    return None


def entry(age_hours: float) -> OutboxEntry:
    return OutboxEntry("ticket:" + "p" * 26, "ticket",
                       {"tracker": "glpi", "channel_id": THREAD_CHANNEL, "root_id": "r" * 26,
                        "user_id": "u" * 26, "post_id": "p" * 26},
                       "filed", 1, False, {"id": "7", "title": "printer", "url": "http://t/7"},
                       time.time() - age_hours * 3600)


async def file(h: Helpdesk, e: OutboxEntry) -> None:
    h.trackers = {"glpi": SimpleNamespace(name="glpi")}
    await h._file_ticket(e)


async def test_a_public_channel_is_joined_and_the_number_posted() -> None:
    api, store = FakeAPI("O", joinable=True), FakeStore()
    await file(helpdesk(api, store), entry(0))
    assert api.joins == 1
    assert [c for c, _ in api.posts] == [THREAD_CHANNEL]
    assert store.updates[-1]["state"] == "done"


async def test_a_refused_number_is_retried_within_the_window() -> None:
    api, store = FakeAPI("P", joinable=False), FakeStore()
    with pytest.raises(Retry):
        await file(helpdesk(api, store), entry(0.5))
    assert api.joins == 0 and api.posts == [] and store.updates == []


async def test_after_the_window_the_requester_gets_the_number_directly() -> None:
    api, store = FakeAPI("O", joinable=False), FakeStore()
    await file(helpdesk(api, store), entry(2))
    assert [c for c, _ in api.posts] == [DM_CHANNEL]
    assert "#7" in api.posts[0][1].replace("**", "")
    assert store.updates[-1]["state"] == "failed"
