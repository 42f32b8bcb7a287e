"""The store's former flat interface, one method per operation, kept for the callers that have
not moved to the repositories yet.

Each method is a one-line delegation to a repository of `Store`; this class (and its place among
the bases of `Store` and `SQLiteStore`) goes once the remaining callers use the repositories.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .protocols import (
        AlertRepository,
        ClaimRepository,
        CursorRepository,
        KeyValue,
        LeaseRepository,
        OutboxRepository,
        TicketRepository,
    )
    from .records import AlertRecord, OutboxEntry, PendingClaim, TicketLink


class FlatStoreMethods(Protocol):
    """Delegations from the flat names to the repositories."""

    claims: ClaimRepository
    channel_cursors: CursorRepository
    kv: KeyValue
    leases: LeaseRepository
    outbox: OutboxRepository
    ticket_links: TicketRepository
    alerts: AlertRepository

    async def claim(self, post_id: str, channel_id: str) -> bool:
        return await self.claims.claim(post_id, channel_id)

    async def reclaim(self, post_id: str) -> int:
        return await self.claims.reclaim(post_id)

    async def complete(self, post_id: str) -> None:
        await self.claims.complete(post_id)

    async def is_handled(self, post_id: str) -> bool:
        return await self.claims.is_handled(post_id)

    async def pending(self) -> list[PendingClaim]:
        return await self.claims.pending()

    async def cursors(self) -> dict[str, int]:
        return await self.channel_cursors.load()

    async def save_cursors(self, cursors: dict[str, int]) -> None:
        await self.channel_cursors.save(cursors)

    async def get(self, key: str) -> str | None:
        return await self.kv.get(key)

    async def put(self, key: str, value: str) -> None:
        await self.kv.put(key, value)

    async def take_lease(self, name: str, owner: str, seconds: float) -> bool:
        return await self.leases.take(name, owner, seconds)

    async def outbox_put(self, key: str, kind: str, payload: dict[str, Any]) -> bool:
        return await self.outbox.put(key, kind, payload)

    async def outbox_get(self, key: str) -> OutboxEntry | None:
        return await self.outbox.get(key)

    async def outbox_due(self, now: float, lease: float, limit: int) -> list[OutboxEntry]:
        return await self.outbox.due(now, lease, limit)

    async def outbox_update(self, key: str, *, state: str | None = None,
    result: dict[str, Any] | None = None, retry_at: float | None = None,
    error: str | None = None, notified: bool | None = None) -> None:
        await self.outbox.update(key, state=state, result=result, retry_at=retry_at,
    error=error, notified=notified)

    async def outbox_counts(self) -> dict[str, int]:
        return await self.outbox.counts()

    async def outbox_open(self, kind: str) -> list[OutboxEntry]:
        return await self.outbox.open(kind)

    async def outbox_requeue(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        await self.outbox.requeue(key, kind, payload)

    async def outbox_finish(self, key: str, revision: int) -> bool:
        return await self.outbox.finish(key, revision)

    async def link_ticket(self, link: TicketLink) -> None:
        await self.ticket_links.link(link)

    async def ticket_by_root(self, root_id: str) -> TicketLink | None:
        return await self.ticket_links.by_root(root_id)

    async def ticket(self, tracker: str, ticket_id: str) -> TicketLink | None:
        return await self.ticket_links.get(tracker, ticket_id)

    async def tickets(self, *, open_only: bool = True,
                      requester_id: str | None = None) -> list[TicketLink]:
        return await self.ticket_links.find(open_only=open_only, requester_id=requester_id)

    async def linked_roots(self) -> set[str]:
        return await self.ticket_links.linked_roots()

    async def set_ticket_status(self, tracker: str, ticket_id: str, status: str,
    is_open: bool) -> int:
        return await self.ticket_links.set_status(tracker, ticket_id, status, is_open)

    async def mark_comments_seen(self, tracker: str, ticket_id: str,
    comment_ids: list[str]) -> None:
        await self.ticket_links.mark_comments_seen(tracker, ticket_id, comment_ids)

    async def seen_comments(self, tracker: str, ticket_id: str) -> set[str]:
        return await self.ticket_links.seen_comments(tracker, ticket_id)

    async def alert(self, source: str, key: str) -> AlertRecord | None:
        return await self.alerts.get(source, key)

    async def save_alert(self, source: str, key: str, channel_id: str, state: dict[str, Any],
    notes: list[str] | None = None) -> AlertRecord:
        return await self.alerts.save(source, key, channel_id, state, notes)

    async def set_alert_post(self, source: str, key: str, post_id: str) -> None:
        await self.alerts.set_post(source, key, post_id)

    async def alert_notes(self, source: str, key: str) -> list[tuple[int, str]]:
        return await self.alerts.notes(source, key)

    async def note_posted(self, note_id: int) -> None:
        await self.alerts.note_posted(note_id)

    async def mark_notes_posted(self, source: str, key: str) -> None:
        await self.alerts.mark_notes_posted(source, key)

    async def alerts_created_since(self, channel_id: str, since: float) -> int:
        return await self.alerts.created_since(channel_id, since)
