"""The watch: every `poll_interval`, the replica that leads looks at the open linked tickets
and posts into their threads what changed in the tracker: technicians' public follow-ups and
status changes; a solved or closed ticket is also told to its requester directly. Solved and
closed tickets stay watched for `watch_closed_days`, looked at every `closed_poll_interval`, so
that a reopening or a late follow-up still reaches the thread."""

from __future__ import annotations

import asyncio
import time

from bridge.tickets import Status, TicketNotFound, Tracker, TrackerError, TrackerUnavailable

from ... import logs, markdown
from ...i18n import _
from ...mattermost import MattermostError
from ...store import TicketLink
from .core import log, shown_status, status_name
from .solutions import Solutions


class Watch(Solutions):
    """The periodic look at linked tickets."""

    async def watch(self) -> None:
        """One look at linked tickets, by the replica that leads: when it dies, the next
        leader looks (within `replicas.takeover_after`). Should two look at once (a leader
        cut off while another took over), each change is told under the ticket's lock, from
        the status stored: once."""
        if self.rt.leads:
            await self.poll_once()

    async def poll_once(self) -> None:
        """Post status changes and technicians' public follow-ups into linked threads."""
        now = time.time()
        links = await self.rt.store.tickets.watched(now)
        if now - self._closed_looked >= self.settings.closed_poll_interval:
            self._closed_looked = now
        else:
            links = [link for link in links if link.open]
        limit = asyncio.Semaphore(self.settings.poll_concurrency)

        async def one(link: TicketLink) -> None:
            # gather() runs each in a task of its own: lines about a ticket name its request.
            logs.set_subject(post=link.root_id)
            tracker = self.trackers.get(link.tracker)
            if tracker is None:
                return
            async with limit:
                try:
                    await self._poll_ticket(tracker, link)
                except TrackerUnavailable as exc:
                    log.info("%s unavailable while watching #%s: %s", tracker.name,
                             link.ticket_id, exc)
                except TicketNotFound:
                    log.warning("%s #%s is gone; no longer watched", tracker.name,
                                link.ticket_id)
                    await self.rt.store.tickets.set_status(link.tracker, link.ticket_id,
                                                           link.status, False, watch_until=0)
                except (TrackerError, MattermostError) as exc:
                    log.warning("watching %s #%s: %s", tracker.name, link.ticket_id, exc)

        await asyncio.gather(*(one(link) for link in links))

    async def _poll_ticket(self, tracker: Tracker, link: TicketLink) -> None:
        api = self.rt.api
        # The thread and the DM are the requester's: their language.
        await self.rt.speak_to(link.requester_id)
        async with self._lock(link.tracker, link.ticket_id):
            comments = await tracker.comments(link.ticket_id)
            seen = await self.rt.store.tickets.seen_comments(link.tracker, link.ticket_id)
            for c in comments:
                if c.id in seen:
                    continue
                await api.create_post(
                    link.channel_id, _(":speech_balloon: **{author}** on #{number}:\n{text}"
                                       ).format(author=c.author or _("Support"),
                                                number=link.ticket_id,
                                                text=markdown.without_bare_urls(c.text)),
                    root_id=link.root_id,
                    key=f"followup:{link.tracker}:{link.ticket_id}:{c.id}", check_first=True)
                await self.rt.store.tickets.mark_comments_seen(link.tracker, link.ticket_id, [c.id])
            # The status under the same lock, as stored now: a replica that polled it at the
            # same time (one that held the watch before) may have told it already.
            current = await self.rt.store.tickets.get(link.tracker, link.ticket_id)
            changed = await self._tell_status(tracker, current or link)
        if changed:
            await self._redraw_triage(link.tracker, link.ticket_id)

    async def _tell_status(self, tracker: Tracker, link: TicketLink) -> bool:
        """Tell a change of the ticket's status (the thread, and the requester once it is
        solved or closed) and record it; whether it changed."""
        api = self.rt.api
        ticket = await tracker.get(link.ticket_id)
        if ticket.status.value == link.status:
            return False
        # Announce first, record after: a failed post is tried again at the next poll, and the
        # keys (one per change) keep a repeated announcement from being posted twice.
        n = link.status_changes + 1
        label = shown_status(ticket)
        done = ticket.status in (Status.SOLVED, Status.CLOSED)
        # How it was solved is told once, when the ticket stops being open.
        solution = await self._solution(tracker, link) if done and link.open else None
        shown = "\n" + self._solution_text(solution) if solution else ""
        await api.create_post(
            link.channel_id, _(":arrows_counterclockwise: Ticket **#{number}** is now "
                               "**{status}** (was {old}).").format(
                number=link.ticket_id, status=label, old=status_name(link.status)) + shown,
            root_id=link.root_id,
            key=f"status:{link.tracker}:{link.ticket_id}:{n}", check_first=True)
        if done:
            ask = solution is not None and solution.awaiting_approval and \
                ticket.status is Status.SOLVED
            channel_id = await api.direct_channel(link.requester_id)
            await api.create_post(
                # TRANSLATORS: {ticket} is the ticket's number (#42) as a link to it.
                channel_id, _(":white_check_mark: Your ticket **{ticket}** ({title}) is "
                              "{status}.").format(
                    ticket=markdown.link(f"#{link.ticket_id}", link.url),
                    title=markdown.without_bare_urls(link.title), status=label) + shown,
                props={"attachments": self._answer_buttons(link, solution)}
                if ask and solution else None,
                key=f"statusdm:{link.tracker}:{link.ticket_id}:{n}", check_first=True)
        await self.rt.store.tickets.set_status(
            link.tracker, link.ticket_id, ticket.status.value, ticket.status.is_open,
            watch_until=time.time() + self.settings.watch_closed_days * 86400)
        return True
