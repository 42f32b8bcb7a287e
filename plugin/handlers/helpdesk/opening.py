"""Opening tickets: a trigger word queues the filing of a ticket (once per post, durably), and the
`ticket` executor files it, posts its number in the thread (joining a public channel first when
it must) and, while the tracker is down, tells the requester that the request is queued.

An interrupted filing first looks for the ticket it may have made, and every post made for it
carries an idempotency key: one message is one ticket, whatever fails on the way.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime

from bridge.tickets import (
    NewTicket,
    Ticket,
    Tracker,
    TrackerError,
    TrackerRejected,
    TrackerUnavailable,
    clean_text,
)

from ... import i18n, logs, markdown
from ...config import Trigger
from ...context import Context
from ...events import Message
from ...i18n import _
from ...mattermost import MattermostError
from ...outbox import Retry
from ...store import OutboxEntry, TicketLink
from .core import label, log, title_of
from .triage import Triage


class Opening(Triage):
    """The triggers, the queueing of a request and the `ticket` executor."""

    async def open_ticket(self, ctx: Context, event: Message, text: str, keyword: str,
                          trigger: Trigger) -> None:
        post = event.post
        if not text.strip():
            await ctx.reply(_("Describe the problem after `{keyword}`, for example "
                              "`{keyword} printer on floor 2 is jammed`.").format(
                                  keyword=trigger.keyword))
            return
        urgent = keyword in trigger.urgent_keywords
        # Replies in the thread are meant for the ticket, even before it is filed.
        self.linked.add(post.thread_id)
        await self._queue_ticket(trigger, post.id, post.channel_id, post.thread_id,
                                 post.user_id, text, urgent, list(post.file_ids))
        if event.source == "webhook":
            # Through an outgoing webhook this becomes the hook's answer, posted at once.
            await ctx.reply(_("Your ticket is being filed; its number will follow in this "
                              "thread."))

    async def _queue_ticket(self, trigger: Trigger, post_id: str, channel_id: str,
                            root_id: str, user_id: str, text: str, urgent: bool,
                            file_ids: list[str]) -> bool:
        """Durably queue the filing of one ticket for one chat post (once per post); whether it
        was queued now."""
        queued = await self.outbox.put(f"ticket:{post_id}", "ticket", {
            "tracker": trigger.tracker, "post_id": post_id, "channel_id": channel_id,
            "root_id": root_id, "user_id": user_id, "text": text,
            "urgency": trigger.urgent_urgency if urgent else trigger.urgency,
            "fields": trigger.fields, "file_ids": file_ids})
        with logs.about(post=post_id):  # a slash command's request post is new here
            log.info("ticket request %s for %s", "queued" if queued else "already queued",
                     trigger.tracker)
        return queued

    async def _file_ticket(self, entry: OutboxEntry) -> None:
        p = entry.payload
        await self.rt.speak_to(p["user_id"])
        tracker = self.trackers.get(p["tracker"])
        if tracker is None:
            raise TrackerRejected(f"no tracker named {p['tracker']!r} is configured")
        key = entry.key
        ticket: Ticket | None = None
        # An entry that a stopped run was working on may already have its ticket (found again
        # by its reference) and even its reply (found again by its key).
        resumed = self.rt.resumed(entry)
        if entry.state == "queued":
            ticket = await self._create(entry, tracker)
            if ticket is None:
                return
            result = {"id": ticket.id, "title": ticket.title, "url": ticket.url,
                      "status": ticket.status.value}
            person = await self._person(p["user_id"])
            # Neither record is waited for: lost to a crash or a power cut, the entry
            # resumes as queued, finds its ticket by its reference and records both again.
            tickets, outbox = self.rt.store.tickets, self.rt.store.outbox
            link = TicketLink(p["tracker"], ticket.id, p["channel_id"], p["root_id"],
                              p["user_id"], person.username, ticket.title, ticket.url,
                              ticket.status.value, 0, ticket.status.is_open)
            self.linked.add(p["root_id"])
            await tickets.link(link, durable=False)
            await self._attach(tracker, ticket.id, p.get("file_ids") or [])
            # From here on a retry only owes the reply: no second look-up, no second upload.
            await outbox.update(key, state="filed", result=result, durable=False)
            log.info("filed as %s #%s", tracker.name, ticket.id)
            self.rt.metrics.tickets.labels(tracker.name, "filed").inc()
        else:
            result = entry.result
        if self.rt.stream_enabled:
            # TRANSLATORS: {ticket} is the ticket's number (#42) as a link to it.
            text = _(":ticket: Ticket **{ticket}** opened in {tracker}: {title}\n"
                     "Replies in this thread are added to the ticket.")
        else:  # webhook-only: thread replies do not reach the bot
            # TRANSLATORS: {ticket} is the ticket's number (#42) as a link to it.
            text = _(":ticket: Ticket **{ticket}** opened in {tracker}: {title}")
        message = text.format(ticket=markdown.link(f"#{result['id']}", result["url"]),
                              tracker=label(tracker.name),
                              title=markdown.without_bare_urls(result["title"]))
        try:
            await self._post_number(entry, message, resumed)
        except MattermostError as exc:
            if exc.status not in (401, 403):
                raise
            # The ticket exists; only its number is owed. A revoked token or a channel the
            # bot may not post in is fixed by someone, so keep trying (the entry is durable),
            # for a day; then the requester gets the number in a direct message.
            if time.time() - entry.created_at < self.settings.number_retry_hours * 3600:
                log.error("cannot post the number of %s #%s (%s); retrying later",
                          tracker.name, result["id"], exc)
                raise Retry(f"Mattermost refused the reply: {exc}") from None
            log.error("gave up posting the number of %s #%s in its thread (%s)", tracker.name,
                      result["id"], exc)
            with contextlib.suppress(MattermostError):
                channel_id = await self.rt.api.direct_channel(p["user_id"])
                await self.rt.api.create_post(channel_id, message, key=f"{key}:filed-dm",
                                               check_first=True)
            await self.rt.store.outbox.update(key, state="failed", result=result,
                                               error=f"reply refused: {exc}")
            return
        await self._queue_triage(p["tracker"], str(result["id"]), dict(p.get("fields") or {}))
        # Lost to a power cut, this step is found again: the reply is looked for by its key.
        await self.rt.store.outbox.update(key, state="done", result=result, durable=False)

    async def _post_number(self, entry: OutboxEntry, message: str, resumed: bool) -> None:
        """The ticket's number in its thread; a public channel the bot was not in (an outgoing
        webhook brought the request) is joined first."""
        p = entry.payload
        post = self.rt.api.create_post
        try:
            await post(p["channel_id"], message, root_id=p["root_id"],
                       key=f"{entry.key}:filed", check_first=resumed)
        except MattermostError as exc:
            if exc.status != 403 or not await self._join_public(p["channel_id"]):
                raise
            await post(p["channel_id"], message, root_id=p["root_id"],
                       key=f"{entry.key}:filed", check_first=True)

    async def _join_public(self, channel_id: str) -> bool:
        """Join a public channel the bot is not in; False when it is not public or the bot
        may not join."""
        try:
            if (await self.rt.api.channel(channel_id)).get("type") != "O":
                return False
            await self.rt.api.join_channel(channel_id)
        except MattermostError as exc:
            log.warning("cannot join channel %s: %s", channel_id, exc)
            return False
        log.info("joined channel %s to answer in it", channel_id)
        return True

    async def _create(self, entry: OutboxEntry, tracker: Tracker) -> Ticket | None:
        """Create the ticket, unless an earlier try already did; None when refused."""
        p = entry.payload
        ref = f"mattermost-post:{p['post_id']}"
        started_before = self.rt.resumed(entry)
        try:
            if started_before:
                since = datetime.fromtimestamp(entry.created_at - 600, UTC)
                found = await tracker.find_by_ref(ref, since)
                if found is not None:
                    log.info("ticket %s already existed for %s", found.id, entry.key)
                    return found
            person = await self._person(p["user_id"])
            # The ticket is read by the support team: their language, the default one.
            with i18n.use(None):
                where, link = await self._permalink(p["channel_id"], p["post_id"])
                text = clean_text(p["text"])
                who = f"{person.display_name} (@{person.username}" + (
                    f", {person.email})" if person.email else ")")
                content = _("{text}\n\n---\nRequested by: {who}\nIn: {where}\n"
                            "Message: {link}").format(text=text, who=who, where=where, link=link)
                title = title_of(text, tracker.title_limit)
            return await tracker.create(NewTicket(
                title=title, content=content, requester=person,
                ref=ref, urgency=int(p.get("urgency", 3)), fields=dict(p.get("fields") or {})))
        except TrackerUnavailable as exc:
            raise Retry(str(exc)) from None
        except TrackerError as exc:
            await self.rt.api.create_post(
                p["channel_id"],
                _(":warning: {tracker} refused the ticket: {error}\n"
                  "Please contact the support team another way.").format(
                    tracker=label(tracker.name), error=markdown.without_bare_urls(str(exc))),
                root_id=p["root_id"], key=f"{entry.key}:refused", check_first=True)
            await self.rt.store.outbox.update(entry.key, state="failed", error=str(exc))
            self.rt.metrics.tickets.labels(tracker.name, "failed").inc()
            return None

    async def _queued_notice(self, entry: OutboxEntry, reason: str) -> None:
        current = await self.rt.store.outbox.get(entry.key)
        if entry.notified or current is None or current.state != "queued" or current.notified:
            return  # told before, or the ticket exists and only the reply is being retried
        p = entry.payload
        await self.rt.speak_to(p["user_id"])
        await self.rt.api.create_post(
            p["channel_id"],
            _(":hourglass: {tracker} is not reachable right now. Your request is queued and will "
              "be filed automatically when it is back; the ticket number will follow here."
              ).format(tracker=label(p["tracker"])),
            root_id=p["root_id"], key=f"{entry.key}:queued", check_first=True)
        await self.rt.store.outbox.update(entry.key, notified=True)
