"""What the store hands back: plain, frozen values, whichever implementation serves them."""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

from .alert_state import AlertState, DigestState


def new_replica_id() -> str:
    """A name for this run among the replicas sharing a store: host, process and a random part
    (a process id comes back after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Liveness:
    """This run among the replicas sharing a store, and which others are gone: not seen
    (`ReplicaRepository.beat`) for `dead_after` seconds. Claims and outbox entries owned by a
    replica that is gone are taken over. Each beat learns who is gone (`learn`); right after
    this run could not reach the store itself, nobody is judged gone until `dead_after` has
    passed: the others may have been cut off just as long, and need the time to be seen
    again."""

    def __init__(self, owner: str | None = None, dead_after: float = 6.0) -> None:
        self.owner = owner or new_replica_id()
        self.dead_after = dead_after
        self._judging_from = 0.0
        self._gone: list[str] = []

    def cutoff(self, now: float) -> float | None:
        """Replicas not seen since this time are gone; None: judge nobody now."""
        if time.monotonic() < self._judging_from:
            return None
        return now - self.dead_after

    def outage(self) -> None:
        """The store was out of reach: judge nobody until everyone had time to be seen."""
        self._judging_from = time.monotonic() + self.dead_after

    def learn(self, gone: list[str]) -> None:
        """The replicas found gone at this beat."""
        self._gone = [g for g in gone if g != self.owner]

    @property
    def gone(self) -> list[str]:
        """The owners whose claims and leases may be taken over: the replicas found gone at
        the last beat (none while nobody is judged), and "" (rows from before owners were
        written down, or copied from an SQLite file)."""
        if time.monotonic() < self._judging_from:
            return [""]
        return ["", *self._gone]


@dataclass(frozen=True)
class ReplicaInfo:
    """A running replica, as it last said itself (`ReplicaRepository.beat`)."""

    id: str
    #: `leader` (it reads Mattermost's event stream) or `standby`.
    role: str
    version: str
    #: Where its listener is reached (its public URL).
    listener: str
    started_at: float
    seen_at: float


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
    """The store could not do what was asked (the file or database refused it, or was out of
    reach for too long). A request to an outside system that meets one is tried again later:
    its outbox entry keeps it."""

    retryable = True


class StoreInUse(StoreError):
    """Another running process holds the state: one state file serves one running bot."""
