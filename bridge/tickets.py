"""The ticket-tracker interface: what the helpdesk needs from GLPI, Redmine or any other tracker.

A tracker implementation is one module beside this one (`glpi.py`, `redmine.py`) plus its tests.
Every implementation maps its own statuses onto the common `Status` set and its own failures onto
the small error tree below, so the helpdesk never sees a tracker's wire format.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from .responses import ResponseLike
from .transport import PooledTransport


class Status(StrEnum):
    NEW = "new"
    IN_PROGRESS = "in progress"
    PENDING = "pending"
    SOLVED = "solved"
    CLOSED = "closed"

    @property
    def is_open(self) -> bool:
        return self not in (Status.SOLVED, Status.CLOSED)


class TrackerError(Exception):
    """A tracker refused or failed a request. The message is short, says what is wrong, and
    never carries a token."""

    #: True when the same request may succeed later (tracker down, timeout, 5xx).
    retryable = False


class TrackerUnavailable(TrackerError):
    """The tracker could not be reached or answered with a server error: try again later."""

    retryable = True


class TrackerRejected(TrackerError):
    """The tracker understood the request and refused it (validation, rights, configuration)."""


class TicketNotFound(TrackerError):
    """No such ticket, or the tracker account may not see it."""


@dataclass(frozen=True)
class Person:
    """Who asked, as chat knows them; trackers match their own users by email or login."""

    username: str
    email: str = ""
    display_name: str = ""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class NewTicket:
    """A ticket to create. `ref` is unique per chat message: a tracker can find the ticket it
    already made for it (after a timeout, a crash) instead of making a second one."""

    title: str
    content: str
    requester: Person
    ref: str
    urgency: int = 3  # 1 (very low) .. 5 (very high)
    #: Tracker-specific fields from configuration (type, category, project, tracker, priority...).
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ticket:
    id: str
    title: str
    status: Status
    url: str
    status_label: str = ""
    assignee: str = ""
    requester: str = ""          # the tracker's login or email of the requester, when known
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Comment:
    """A public follow-up or note on a ticket."""

    id: str
    author: str
    text: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class Solution:
    """How a ticket was solved, as its technician wrote it."""

    id: str
    author: str
    text: str
    #: The tracker waits for the requester to accept or refuse it (GLPI's approval).
    awaiting_approval: bool = False
    created_at: datetime | None = None


class Tracker(Protocol):
    """One ticket tracker. All calls are async and raise only `TrackerError` subclasses."""

    name: str
    #: Longest title the tracker accepts (characters).
    title_limit: int

    async def create(self, ticket: NewTicket) -> Ticket: ...
    async def find_by_ref(self, ref: str, since: datetime) -> Ticket | None: ...
    async def get(self, ticket_id: str) -> Ticket: ...
    async def comment(self, ticket_id: str, text: str, author: Person | None = None, *,
                      private: bool = False) -> str:
        """Add a follow-up (a private one, seen by the technicians only, when `private`);
        its id."""
        ...
    async def attach(self, ticket_id: str, attachment: Attachment) -> None: ...
    async def comments(self, ticket_id: str) -> list[Comment]: ...
    async def open_tickets(self, requester: Person) -> list[Ticket]: ...
    async def solution(self, ticket_id: str) -> Solution | None:
        """The latest solution of a solved or closed ticket (None: none written)."""
        ...

    async def answer_solution(self, ticket_id: str, accepted: bool, text: str,
                              author: Person | None = None) -> None:
        """The requester's answer to a solution awaiting approval: accepted (the ticket is
        closed) or refused with `text` as the reason (the ticket goes back to work).
        `TrackerRejected` when the tracker has no approval step or the ticket no longer waits
        for one."""
        ...

    async def assign(self, ticket_id: str, technician: Person) -> str:
        """Assign the ticket to the tracker's user for `technician` (by email or login); that
        user's name. `TrackerRejected` when the tracker has no such user."""
        ...

    async def solve(self, ticket_id: str, text: str, author: Person | None = None) -> None:
        """Solve the ticket with `text` as its solution (GLPI: a solution, which may wait for
        the requester's approval; Redmine: the resolving status, with `text` as its note)."""
        ...

    async def set_urgency(self, ticket_id: str, urgency: int) -> None:
        """Change the ticket's urgency, 1 (very low) .. 5 (very high)."""
        ...

    async def close(self, ticket_id: str, text: str, author: Person | None = None) -> None:
        """Close the ticket at its requester's word, with `text` as the last follow-up.
        `TrackerRejected` when it is closed already."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class TLSOptions:
    """TLS for an outside system (tracker or monitoring source): verification on by default, a
    CA bundle, or an explicit insecure switch for self-signed servers; `server_name` is the name
    the certificate must carry when the URL names the server otherwise (e.g. by IP address)."""

    verify: bool = True
    ca_bundle: str = ""
    server_name: str = ""

    def httpx_verify(self) -> bool | ssl.SSLContext:
        if not self.verify:
            return False
        if self.ca_bundle:
            return ssl.create_default_context(cafile=self.ca_bundle)
        return True

    def transport(self, limit: int = 8) -> PooledTransport:
        """The HTTPS transport that applies all of these options (httpx's own `verify=` cannot
        carry `server_name`): give it to the client as `transport=`."""
        return PooledTransport(verify=self.httpx_verify(), limit=limit,
                                server_name=self.server_name)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Drop control characters (tab and newlines stay) that break trackers' storage or markup."""
    return _CONTROL.sub("", text)


def signed(text: str, author: Person | None) -> str:
    """`Name (@login): text`: what the bot writes on someone's behalf names them (the
    tracker's author is the bot's own account)."""
    if author is None or not (author.display_name or author.username):
        return text
    who = author.display_name or author.username
    if author.display_name and author.username and author.display_name != author.username:
        who = f"{author.display_name} (@{author.username})"
    return f"{who}: {text}"


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as the trackers and Alertmanager write it ("Z" or an offset); naive
    times are UTC. None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def short_error(response: ResponseLike, detail: str = "") -> str:
    """`HTTP 422 on POST /issues.json: detail`, never the URL's query or a header."""
    req = response.request
    return f"HTTP {response.status_code} on {req.method} {req.url.path}" + (
        f": {detail}" if detail else "")
