"""What the store hands back: plain, frozen values, whichever implementation serves them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PendingClaim:
    """A post whose handler started but never finished (the bot stopped mid-way)."""

    post_id: str
    channel_id: str
    attempts: int
    claimed_at: float


@dataclass(frozen=True)
class OutboxEntry:
    """A request to an outside system, kept until it is done."""

    key: str
    kind: str
    payload: dict[str, Any]
    state: str
    attempts: int
    notified: bool
    result: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class TicketLink:
    """A ticket and the chat thread that follows it."""

    tracker: str
    ticket_id: str
    channel_id: str
    root_id: str
    requester_id: str
    requester: str
    title: str
    url: str
    status: str
    status_changes: int
    open: bool


@dataclass(frozen=True)
class AlertRecord:
    """An incident's durable state: where its post is, and everything shown on it."""

    source: str
    key: str
    channel_id: str
    post_id: str
    state: dict[str, Any]
    revision: int
    created_at: float


class StoreError(Exception):
    """The store could not do what was asked (the file or database refused it)."""
