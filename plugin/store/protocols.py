"""The store's interface: one repository per concern, and `Store`, which holds them all.

The runtime depends on these protocols only; `sqlite.SQLiteStore` implements them on an embedded
file, and a second implementation (a server database, for replicas) plugs in behind the same
names. Every call is one round trip to the store and durable before it returns: the caller may act
on its answer at once. The exceptions say so: a claim's completion, an outbox lease, and writes
made with `durable=False` record what a later run can find again (by looking first), so they
reach the disk with the next durable write instead of on their own, and the writes are not even
waited for: lost to a crash or a power cut, they are found again. Every "handle this once"
decision is a claim — insert-if-absent — never an in-memory set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from .alert_state import AlertState, DigestState
from .records import AlertRecord, Liveness, OutboxEntry, PendingClaim, ReplicaInfo, TicketLink


class ClaimRepository(Protocol):
    """Which posts were taken on, and which of those are finished."""

    async def claim(self, post_id: str, channel_id: str, *, durable: bool = True) -> bool:
        """Claim a post for handling; False when it was claimed before (by anyone, ever).
        Not `durable`: answered before the claim is on disk (see `Store.barrier`)."""
        ...

    async def reclaim(self, post_id: str) -> int:
        """Take over a pending claim left by a run that is gone (see `pending`); the attempt
        number (0: none, or another replica took it first)."""
        ...

    async def complete(self, post_id: str) -> None:
        """Mark a claimed post finished. Written with the store's next request, not waited
        for, and not durable on its own: lost, the handler runs again as a later attempt,
        which looks before it acts."""
        ...

    async def is_handled(self, post_id: str) -> bool: ...

    async def pending(self) -> list[PendingClaim]:
        """Claims not completed whose run is gone (a stopped run, a replica not seen for the
        store's `Liveness.dead_after`), oldest first. This run's own are never among them."""
        ...

    async def prune(self, older_than: float) -> int:
        """Forget completed claims made before `older_than`; how many went."""
        ...


class CursorRepository(Protocol):
    """How far each channel has been read (a post's `create_at`, in milliseconds)."""

    async def load(self) -> dict[str, int]: ...

    async def save(self, cursors: dict[str, int]) -> None:
        """Advance cursors; a cursor never moves backwards."""
        ...


class KeyValue(Protocol):
    """Small named settings (text) the runtime keeps between runs."""

    async def get(self, key: str) -> str | None: ...
    async def put(self, key: str, value: str) -> None: ...


class LeaseRepository(Protocol):
    """Named leases, so that periodic work runs in one place at a time."""

    async def take(self, name: str, owner: str, seconds: float) -> bool:
        """Hold `name` for `seconds` unless another owner holds it; True when held."""
        ...

    async def release(self, name: str, owner: str) -> None:
        """Give `name` up, if `owner` holds it: another may take it at once."""
        ...

    async def holder(self, name: str) -> tuple[str, float] | None:
        """Who holds `name`, and until when (None: nobody, or a lease run out)."""
        ...


class ReplicaRepository(Protocol):
    """The replicas running on this store, each seen every few seconds."""

    async def beat(self, replica: ReplicaInfo) -> None:
        """Say that `replica` runs (its `seen_at` is now)."""
        ...

    async def listed(self) -> list[ReplicaInfo]:
        """Every replica seen lately (those not seen for long are forgotten), first started
        first."""
        ...

    async def forget(self, replica_id: str) -> None:
        """A replica that stopped cleanly: gone at once."""
        ...


class OutboxRepository(Protocol):
    """Requests to outside systems, durable until done.

    An entry is `queued`, `filed` (half-way: the outside system has it, the chat not yet),
    `done` or `failed`; reading due entries leases them to the reader, and any update releases
    the lease."""

    async def put(self, key: str, kind: str, payload: dict[str, Any], *,
                  due_at: float | None = None) -> bool:
        """Queue a request once (due now, or at `due_at`); False when the key was queued
        before."""
        ...

    async def put_leased(self, key: str, kind: str, payload: dict[str, Any],
                         lease: float) -> OutboxEntry | None:
        """Queue a request once, leased to the caller for `lease` seconds (to run it at once,
        with no read of it); the entry as stored, or None when the key was queued before."""
        ...

    async def get(self, key: str) -> OutboxEntry | None: ...

    async def due(self, now: float, lease: float, limit: int) -> list[OutboxEntry]:
        """Entries whose time has come, leased to the caller (the store's `Liveness.owner`)
        for `lease` seconds: those not leased, those whose lease ran out, and those leased to a
        replica that is gone. An entry taken over from a run that never released it counts
        an attempt (its executor looks before acting again). The lease is not durable on its
        own: a lost lease only makes an entry due again."""
        ...

    async def renew(self, keys: list[str], lease: float) -> None:
        """Extend the caller's leases of these entries (still running) by `lease` seconds."""
        ...

    async def update(self, key: str, *, state: str | None = None,
                     result: dict[str, Any] | None = None, retry_at: float | None = None,
                     error: str | None = None, notified: bool | None = None,
                     release: bool = False, durable: bool = True) -> None:
        """Change an entry. Its lease is kept (the run that holds it goes on) unless `release`
        is set or a retry is scheduled: `retry_at` releases it and counts an attempt.
        `durable=False` for a step its executor finds again when it resumes from before it:
        the change is then written with the store's next request, not waited for (a failure
        is logged)."""
        ...

    async def counts(self) -> dict[str, int]:
        """How many entries are in each state."""
        ...

    async def backlog(self) -> list[tuple[str, str, int, float]]:
        """Unfinished entries (`queued`, `filed`) as (kind, state, how many, when the oldest
        was queued), for the metrics."""
        ...

    async def open(self, kind: str, since: float = 0.0) -> list[OutboxEntry]:
        """Entries of a kind not done yet (queued or half-way), oldest first; only those
        queued at or after `since`, when given."""
        ...

    async def requeue(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        """Queue a request, or queue it again (now, fresh) when it was queued before."""
        ...

    async def finish(self, key: str, revision: int) -> bool:
        """Mark a re-queueable entry done, unless it was queued again for a later revision
        (its payload's `revision`) meanwhile, when it is released to run again; True when
        done."""
        ...

    async def prune(self, older_than: float) -> int:
        """Forget entries done or failed, created before `older_than`; how many went."""
        ...


class TicketRepository(Protocol):
    """Tickets and the chat threads that follow them, and the tracker comments already shown
    in (or written from) chat."""

    async def link(self, link: TicketLink, *, durable: bool = True) -> None:
        """Record a ticket's thread; a ticket already linked keeps its first link.
        `durable=False` when whoever made the ticket links it again if this is lost: written
        with the store's next request, not waited for."""
        ...

    async def by_root(self, root_id: str) -> TicketLink | None:
        """The ticket a thread follows (the latest, should there be several)."""
        ...

    async def get(self, tracker: str, ticket_id: str) -> TicketLink | None: ...

    async def find(self, *, open_only: bool = True,
                   requester_id: str | None = None) -> list[TicketLink]:
        """Tickets, oldest first: the open ones only, or a requester's only, or both."""
        ...

    async def watched(self, now: float) -> list[TicketLink]:
        """Tickets to watch, oldest first: the open ones, and those solved or closed whose
        watch lasts beyond `now`."""
        ...

    async def linked_roots(self, since: float = 0.0) -> set[str]:
        """The root post of every thread whose replies go to a ticket (a request's thread;
        not an alert's); only those linked at or after `since`, when given."""
        ...

    async def set_status(self, tracker: str, ticket_id: str, status: str, is_open: bool, *,
                         watch_until: float = 0.0) -> int:
        """Record a new status (a ticket no longer open is watched until `watch_until`); how
        many changes the ticket has had (0: no such ticket)."""
        ...

    async def triage(self, tracker: str, ticket_id: str) -> dict[str, Any]:
        """The ticket's triage record (its post in the triage channel, what was done there);
        {} when it has none."""
        ...

    async def save_triage(self, tracker: str, ticket_id: str, triage: dict[str, Any]) -> None:
        ...

    async def mark_comments_seen(self, tracker: str, ticket_id: str,
                                 comment_ids: list[str]) -> None: ...
    async def seen_comments(self, tracker: str, ticket_id: str) -> set[str]: ...

    async def prune(self, older_than: float) -> int:
        """Forget the comments seen on tickets whose watch ended before `older_than`; how many
        went."""
        ...


class AlertRepository(Protocol):
    """Each incident's current state and post, and the notes for its thread."""

    async def get(self, source: str, key: str) -> AlertRecord | None: ...

    async def by_identity(self, source: str, identity: str) -> AlertRecord | None:
        """The latest incident of `source` whose alert has this identity (what stays the same
        when it fires again), if any."""
        ...

    async def in_digest(self, digest_key: str) -> list[AlertRecord]:
        """The incidents a storm digest groups, oldest first."""
        ...

    async def save(self, source: str, key: str, channel_id: str,
                   state: AlertState | DigestState,
                   notes: list[str] | None = None) -> AlertRecord:
        """Store an incident's new state (revision + 1) and its new thread notes, at once; a
        storm digest's state goes under the digest source."""
        ...

    async def set_post(self, source: str, key: str, post_id: str) -> None: ...

    async def notes(self, source: str, key: str) -> list[tuple[int, str]]:
        """(id, text) of the notes not yet posted in the incident's thread, oldest first."""
        ...

    async def note_posted(self, note_id: int) -> None: ...

    async def mark_notes_posted(self, source: str, key: str) -> None:
        """For incidents without a post of their own (grouped into a digest)."""
        ...

    async def created_since(self, channel_id: str, since: float) -> int:
        """How many incidents of a channel were first seen at or after `since`."""
        ...

    async def by_state(self, now: float) -> list[tuple[str, str, int]]:
        """(source, state, how many) of the incidents kept, digests aside; state is `firing`,
        `acknowledged`, `silenced` (a silence running at `now`) or `resolved`."""
        ...

    async def prune(self, older_than: float) -> int:
        """Forget incidents not updated since `older_than` that are resolved (storm digests:
        whose alerts all resolved), with no action pending and no edit of their post still
        queued in the outbox, with their notes; and the posted notes of incidents not updated
        since. How many rows went."""
        ...


class Store(Protocol):
    """What the runtime needs from durable state: the repositories, and what concerns them all."""

    claims: ClaimRepository
    cursors: CursorRepository
    kv: KeyValue
    leases: LeaseRepository
    outbox: OutboxRepository
    tickets: TicketRepository
    alerts: AlertRepository
    replicas: ReplicaRepository
    #: This run among the replicas sharing the store: the owner of its claims and leases.
    liveness: Liveness
    #: Whether other processes may use the store at the same time (a database replicas
    #: share): what one of them keeps in memory may then be changed by another.
    shared: bool

    async def open(self) -> None:
        """Connect, and bring the schema up to date."""
        ...

    async def close(self) -> None: ...

    def locked(self, name: str) -> AbstractAsyncContextManager[None]:
        """Hold `name` against every other process on this store while the block runs (a
        read-change-save of one incident or one ticket). Within a process, callers serialize
        themselves first (an `asyncio.Lock` per name): this is the lock between replicas."""
        ...

    def barrier(self) -> Callable[[], Awaitable[None]]:
        """A waiter that returns once everything written so far is on disk: what an effect
        outside (a post, a request) awaits when it must not get ahead of a write made without
        waiting for the disk. Cheap once satisfied."""
        ...

    async def prune(self, older_than: float) -> int:
        """Forget finished work older than a point in time (seconds since the epoch), in every
        repository at once; how many rows went."""
        ...
