"""What the store hands back: plain, frozen values, whichever implementation serves them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .alert_state import AlertState, DigestState


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
    #: `chat` (a request's thread: its replies go to the ticket) or `alert` (an alert's post,
    #: whose thread only hears from the ticket).
    origin: str = "chat"


@dataclass(frozen=True)
class AlertRecord:
    """An incident's durable state: where its post is, and everything shown on it."""

    source: str
    key: str
    channel_id: str
    post_id: str
    #: A storm digest's state under the digest source, an incident's under every other.
    state: AlertState | DigestState
    revision: int
    created_at: float

    @property
    def incident(self) -> AlertState:
        """The state of an incident (every record but a storm digest's)."""
        if not isinstance(self.state, AlertState):
            raise TypeError(f"{self.source}:{self.key} is a storm digest, not an incident")
        return self.state

    @property
    def digest(self) -> DigestState:
        """The state of a storm digest."""
        if not isinstance(self.state, DigestState):
            raise TypeError(f"{self.source}:{self.key} is an incident, not a storm digest")
        return self.state


class StoreError(Exception):
    """The store could not do what was asked (the file or database refused it)."""


class StoreInUse(StoreError):
    """Another running process holds the state: one state file serves one running bot."""
