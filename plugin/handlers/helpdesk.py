"""Helpdesk from chat: `112 printer broken` opens a ticket, the thread follows the ticket, and a DM
answers `status 123` and `my tickets`.

Every request to a tracker goes through the outbox, so a message creates exactly one ticket whatever
happens (websocket drop, the bot killed and restarted, a tracker that times out after creating the
ticket, a tracker that is down for an hour): the request is durable before anything is answered,
an interrupted creation first looks for the ticket it may have made, and every post the bot makes
for it carries an idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.tickets import (
    Attachment,
    NewTicket,
    Person,
    Status,
    Ticket,
    TicketNotFound,
    Tracker,
    TrackerError,
    TrackerRejected,
    TrackerUnavailable,
    clean_text,
)

from .. import filters as F
from .. import i18n, logs
from ..access import Membership
from ..config import HelpdeskSettings, Trigger
from ..context import Context
from ..events import Message, Post, SlashCommand
from ..i18n import N_, _, ngettext
from ..mattermost import MattermostError
from ..outbox import Outbox, Retry
from ..router import Router
from ..store import OutboxEntry, TicketLink

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger("switchboard.helpdesk")

NOT_FOUND = N_("Ticket #{number} was not found, or it is not yours.")


def label(tracker_name: str) -> str:
    """How a tracker is named to people: `glpi` → GLPI, `redmine` → Redmine."""
    return tracker_name.upper() if tracker_name.lower() == "glpi" else tracker_name.capitalize()


#: The common statuses, as people read them (a tracker's own label is shown when it has one).
STATUS_NAMES = {Status.NEW: N_("new"), Status.IN_PROGRESS: N_("in progress"),
                Status.PENDING: N_("pending"), Status.SOLVED: N_("solved"),
                Status.CLOSED: N_("closed")}


def status_name(status: str) -> str:
    """A common status value (`in progress`) in the language in force."""
    try:
        return _(STATUS_NAMES[Status(status)])
    except ValueError:
        return status


def shown_status(ticket: Ticket) -> str:
    """The tracker's own label for a ticket's status, or else the common status."""
    return ticket.status_label or status_name(ticket.status.value)


def _lower(words: tuple[str, ...]) -> set[str]:
    return {w.lower() for w in words}


def title_of(text: str, limit: int) -> str:
    """The first non-empty line, without markup noise, within the tracker's limit."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    first = re.sub(r"\s+", " ", clean_text(first)).strip()
    first = first.strip("*_`~# ")
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    return first or _("Request from chat")


class Helpdesk:
    """The helpdesk feature: its router, outbox executors and ticket watcher."""

    def __init__(self, settings: HelpdeskSettings, trackers: dict[str, Tracker]) -> None:
        self.settings = settings
        self.trackers = trackers
        self.router = Router("helpdesk")
        self.linked: set[str] = set()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._rt: Runtime | None = None
        self._staff: Membership | None = None
        self.default_tracker = settings.default_tracker or next(
            (t.tracker for t in settings.triggers if t.tracker in trackers), "")
        self._declare()

    # --- declarations ---------------------------------------------------------------------------
    def _declare(self) -> None:
        r = self.router
        r.on_start(self.start)
        r.on_stop(self.stop)
        r.executor("ticket", on_retry=self._queued_notice)(self._file_ticket)
        r.executor("comment")(self._file_comment)
        r.every(self.settings.poll_interval, name="helpdesk-watch")(self.watch)
        # Replies in a linked thread go to the ticket first, whatever they say.
        r.message(self._in_linked_thread)(self.thread_reply)
        for trigger in self.settings.triggers:
            if trigger.tracker not in self.trackers:
                continue
            words = [trigger.keyword, *trigger.urgent_keywords]
            handler = self._opener(trigger)
            description = N_("open a ticket in {tracker}")
            if trigger.urgent_keywords:
                description = N_("open a ticket in {tracker} (`{urgent}` for an urgent one)")
            words += trigger.aliases
            r.message(F.Keyword(*words), channels=trigger.channels or None,
                      usage=f"{trigger.keyword} <problem>", description=description,
                      describe={"tracker": label(trigger.tracker),
                                "urgent": (trigger.urgent_keywords or [""])[0]})(handler)
        if self.trackers and self.default_tracker and self.settings.slash_command:
            r.slash(self.settings.slash_command,
                    description=N_("open a ticket, or `status N`, or `mine`"))(self.slash)
        if self.trackers and self.default_tracker:
            r.command("status", args=r"(?:(?P<tracker>[A-Za-z][\w-]*)\s+)?#?(?P<number>\d+)",
                      usage="status <number>",
                      description=N_("a ticket's status, assignee and link"))(self.status)
            r.message(F.Regex(r"^\s*#(?P<number>\d+)\s*$"), direct=True)(self.status_of)
            r.command("my tickets", description=N_("your open tickets"))(self.my_tickets)

    def _in_linked_thread(self, msg: Message) -> bool:
        return bool(msg.post.root_id) and msg.post.root_id in self.linked

    def _opener(self, trigger: Trigger) -> Callable[..., Awaitable[None]]:
        async def open_ticket(ctx: Context, event: Message, text: str, keyword: str) -> None:
            await self.open_ticket(ctx, event, text, keyword, trigger)
        open_ticket.__name__ = f"open_ticket_{trigger.keyword}"
        return open_ticket

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def rt(self) -> Runtime:
        if self._rt is None:
            raise RuntimeError("the helpdesk has not been started")
        return self._rt

    @property
    def outbox(self) -> Outbox:
        return self.rt.outbox

    async def start(self, rt: Runtime) -> None:
        self._rt = rt
        self.linked = await rt.store.tickets.linked_roots()
        # Threads of tickets still queued take replies too (they are filed later).
        self.linked |= {e.payload.get("root_id", "") for e in
                        await rt.store.outbox.open("ticket")} - {""}

    async def stop(self) -> None:
        for tracker in self.trackers.values():
            try:
                await tracker.aclose()
            except Exception as exc:
                log.warning("closing %s: %s", tracker.name, exc)

    # --- opening tickets ------------------------------------------------------------------------
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
                            file_ids: list[str]) -> None:
        """Durably queue the filing of one ticket for one chat post (once per post)."""
        queued = await self.outbox.put(f"ticket:{post_id}", "ticket", {
            "tracker": trigger.tracker, "post_id": post_id, "channel_id": channel_id,
            "root_id": root_id, "user_id": user_id, "text": text,
            "urgency": trigger.urgent_urgency if urgent else trigger.urgency,
            "fields": trigger.fields, "file_ids": file_ids})
        with logs.about(post=post_id):  # a slash command's request post is new here
            log.info("ticket request %s for %s", "queued" if queued else "already queued",
                     trigger.tracker)

    async def _person(self, user_id: str) -> Person:
        try:
            user = await self.rt.api.user(user_id)
        except MattermostError:
            return Person(username=user_id)
        name = " ".join(x for x in (user.get("first_name"), user.get("last_name")) if x)
        return Person(username=str(user.get("username", user_id)),
                      email=str(user.get("email") or ""),
                      display_name=name or str(user.get("nickname") or ""))

    async def _permalink(self, channel_id: str, post_id: str) -> tuple[str, str]:
        """(where, permalink) for the ticket's body."""
        api = self.rt.api
        where, team_name = _("a direct message to the bot"), ""
        try:
            channel = await api.channel(channel_id)
            if channel.get("type") in ("O", "P"):
                where = f"~{channel.get('name')} ({channel.get('display_name')})"
            team_id = str(channel.get("team_id") or "")
            if team_id:
                team_name = str((await api.team(team_id)).get("name", ""))
            else:
                teams = await api.teams()
                team_name = str(teams[0].get("name", "")) if teams else ""
        except MattermostError as exc:
            log.warning("cannot describe channel %s: %s", channel_id, exc)
        base = api.base_url
        link = f"{base}/{team_name}/pl/{post_id}" if team_name else f"{base}/pl/{post_id}"
        return where, link

    async def _files(self, file_ids: list[str]) -> list[Attachment]:
        out = []
        for file_id in file_ids:
            try:
                info, data = await self.rt.api.file(file_id)
            except MattermostError as exc:
                log.warning("cannot read file %s: %s", file_id, exc)
                continue
            if len(data) > self.settings.max_attachment_bytes:
                log.warning("file %s is larger than max_attachment_bytes; not copied", file_id)
                continue
            out.append(Attachment(str(info.get("name") or file_id), data,
                                  str(info.get("mime_type") or "application/octet-stream")))
        return out

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
        resumed = entry.attempts > 0 or entry.created_at < self.rt.started_at
        if entry.state == "queued":
            ticket = await self._create(entry, tracker)
            if ticket is None:
                return
            result = {"id": ticket.id, "title": ticket.title, "url": ticket.url,
                      "status": ticket.status.value}
            person = await self._person(p["user_id"])
            await self.rt.store.tickets.link(TicketLink(
                p["tracker"], ticket.id, p["channel_id"], p["root_id"], p["user_id"],
                person.username, ticket.title, ticket.url, ticket.status.value, 0,
                ticket.status.is_open))
            self.linked.add(p["root_id"])
            await self._attach(tracker, ticket.id, p.get("file_ids") or [])
            # From here on a retry only owes the reply: no second look-up, no second upload.
            await self.rt.store.outbox.update(key, state="filed", result=result)
            log.info("filed as %s #%s", tracker.name, ticket.id)
        else:
            result = entry.result
        if self.rt.stream_enabled:
            text = _(":ticket: Ticket **#{number}** opened in {tracker}: {title}\n{url}\n"
                     "Replies in this thread are added to the ticket.")
        else:  # webhook-only: thread replies do not reach the bot
            text = _(":ticket: Ticket **#{number}** opened in {tracker}: {title}\n{url}")
        message = text.format(number=result["id"], tracker=label(tracker.name),
                              title=result["title"], url=result["url"])
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
        await self.rt.store.outbox.update(key, state="done", result=result)

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
        started_before = entry.attempts > 0 or entry.created_at < self.rt.started_at
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
                    tracker=label(tracker.name), error=exc),
                root_id=p["root_id"], key=f"{entry.key}:refused", check_first=True)
            await self.rt.store.outbox.update(entry.key, state="failed", error=str(exc))
            return None

    async def _attach(self, tracker: Tracker, ticket_id: str, file_ids: list[str]) -> None:
        for attachment in await self._files(file_ids):
            try:
                await tracker.attach(ticket_id, attachment)
            except TrackerError as exc:
                log.warning("could not attach %s to %s #%s: %s", attachment.filename,
                            tracker.name, ticket_id, exc)

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

    # --- the thread follows the ticket ----------------------------------------------------------
    async def thread_reply(self, ctx: Context, post: Post) -> None:
        await self.outbox.put(f"comment:{post.id}", "comment", {
            "root_id": post.root_id, "post_id": post.id, "user_id": post.user_id,
            "channel_id": post.channel_id, "text": post.message,
            "file_ids": list(post.file_ids)})

    def _lock(self, tracker: str, ticket_id: str) -> asyncio.Lock:
        return self._locks.setdefault((tracker, ticket_id), asyncio.Lock())

    async def _file_comment(self, entry: OutboxEntry) -> None:
        p = dict(entry.payload)
        link = await self.rt.store.tickets.by_root(p["root_id"])
        if link is None:
            if any(e.payload.get("root_id") == p["root_id"]
                   for e in await self.rt.store.outbox.open("ticket")):
                raise Retry("the thread's ticket is not filed yet")
            await self.rt.store.outbox.update(entry.key, state="failed",
                                               error="the thread has no ticket")
            return
        p["tracker"], p["ticket_id"] = link.tracker, link.ticket_id
        tracker = self.trackers.get(link.tracker)
        if tracker is None:
            await self.rt.store.outbox.update(entry.key, state="failed", error="no tracker")
            return
        person = await self._person(p["user_id"])
        # The link back to the chat message also marks the follow-up as this message's.
        permalink = (await self._permalink(p.get("channel_id", ""), p["post_id"]))[1]
        marker = f"/pl/{p['post_id']}"
        with i18n.use(None):
            text = _("{text}\n\n(from chat: {link})").format(text=clean_text(p["text"]),
                                                            link=permalink)
        try:
            async with self._lock(p["tracker"], p["ticket_id"]):
                comment_id = ""
                if entry.attempts > 0 or entry.created_at < self.rt.started_at:
                    # An earlier try may have landed: look before writing it again.
                    for c in await tracker.comments(p["ticket_id"]):
                        if marker in c.text:
                            comment_id = c.id
                if not comment_id:
                    comment_id = await tracker.comment(p["ticket_id"], text, person)
                if comment_id:
                    await self.rt.store.tickets.mark_comments_seen(p["tracker"], p["ticket_id"],
                                                            [comment_id])
            await self._attach(tracker, p["ticket_id"], p.get("file_ids") or [])
        except TrackerUnavailable as exc:
            raise Retry(str(exc)) from None
        except TrackerError as exc:
            log.warning("%s refused a comment on #%s: %s", tracker.name, p["ticket_id"], exc)
            await self.rt.store.outbox.update(entry.key, state="failed", error=str(exc))
            return
        try:
            await self.rt.api.add_reaction(p["post_id"], "white_check_mark")
        except MattermostError as exc:
            log.warning("could not confirm comment %s: %s", p["post_id"], exc)
        await self.rt.store.outbox.update(entry.key, state="done")
        log.info("follow-up added to %s #%s", p["tracker"], p["ticket_id"])

    # --- watching linked tickets ----------------------------------------------------------------
    async def watch(self) -> None:
        """One look at linked tickets, by whichever process holds the watch's lease."""
        if await self.rt.store.leases.take("helpdesk-watch", f"watch-{id(self)}",
                                          self.settings.poll_interval * 3):
            await self.poll_once()

    async def poll_once(self) -> None:
        """Post status changes and technicians' public follow-ups into linked threads."""
        links = await self.rt.store.tickets.find(open_only=True)
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
                                                           link.status, False)
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
                                                number=link.ticket_id, text=c.text),
                    root_id=link.root_id,
                    key=f"followup:{link.tracker}:{link.ticket_id}:{c.id}", check_first=True)
                await self.rt.store.tickets.mark_comments_seen(link.tracker, link.ticket_id, [c.id])
        ticket = await tracker.get(link.ticket_id)
        if ticket.status.value == link.status:
            return
        # Announce first, record after: a failed post is tried again at the next poll, and the
        # keys (one per change) keep a repeated announcement from being posted twice.
        n = link.status_changes + 1
        label = shown_status(ticket)
        await api.create_post(
            link.channel_id, _(":arrows_counterclockwise: Ticket **#{number}** is now "
                               "**{status}** (was {old}).").format(
                number=link.ticket_id, status=label, old=status_name(link.status)),
            root_id=link.root_id,
            key=f"status:{link.tracker}:{link.ticket_id}:{n}", check_first=True)
        if ticket.status in (Status.SOLVED, Status.CLOSED):
            channel_id = await api.direct_channel(link.requester_id)
            await api.create_post(
                channel_id, _(":white_check_mark: Your ticket **#{number}** ({title}) is "
                              "{status}.\n{url}").format(number=link.ticket_id,
                                                         title=link.title, status=label,
                                                         url=link.url),
                key=f"statusdm:{link.tracker}:{link.ticket_id}:{n}", check_first=True)
        await self.rt.store.tickets.set_status(link.tracker, link.ticket_id,
                                               ticket.status.value, ticket.status.is_open)

    # --- DM commands ----------------------------------------------------------------------------
    async def _is_staff(self, user_id: str) -> bool:
        if self._staff is None:
            self._staff = Membership(self.rt.api, self.settings.staff)
        return not self._staff.anyone and await self._staff.includes(user_id)

    async def status(self, ctx: Context, user_id: str, number: str = "",
                     tracker: str | None = None, usage_error: bool = False) -> None:
        if usage_error:
            await ctx.reply(_("Usage: `status <number>`, for example `status 123`."))
            return
        await ctx.reply(await self.status_text(user_id, number, tracker))

    async def status_of(self, ctx: Context, user_id: str, number: str) -> None:
        """`#123` alone in a direct message: that ticket's status."""
        await ctx.reply(await self.status_text(user_id, number))

    async def status_text(self, user_id: str, number: str, tracker: str | None = None) -> str:
        """What `status N` answers this user."""
        name = tracker or self.default_tracker
        t = self.trackers.get(name)
        if t is None:
            return _("I know no tracker named `{name}`. Known: {known}.").format(
                name=name, known=", ".join(sorted(self.trackers)))
        try:
            ticket = await t.get(number)
        except TicketNotFound:
            return _(NOT_FOUND).format(number=number)
        except TrackerUnavailable:
            return _("{tracker} is not reachable right now; try again in a few minutes.").format(
                tracker=label(t.name))
        except TrackerError as exc:
            log.warning("status %s on %s: %s", number, t.name, exc)
            return _(NOT_FOUND).format(number=number)
        if not await self._may_see(user_id, name, ticket):
            return _(NOT_FOUND).format(number=number)
        updated = ticket.updated_at.strftime("%Y-%m-%d %H:%M UTC") if ticket.updated_at else "—"
        return _("**#{number}** {title}\nStatus: **{status}** · Assigned to: {assignee} · "
                 "Last update: {updated}\n{url}").format(
            number=ticket.id, title=ticket.title,
            status=shown_status(ticket),
            assignee=ticket.assignee or _("nobody yet"), updated=updated, url=ticket.url)

    async def _may_see(self, user_id: str, tracker: str, ticket: Ticket) -> bool:
        link = await self.rt.store.tickets.get(tracker, ticket.id)
        if link is not None and link.requester_id == user_id:
            return True
        person = await self._person(user_id)
        if ticket.requester and ticket.requester.lower() in {
                person.username.lower(), person.email.lower()} - {""}:
            return True
        return await self._is_staff(user_id)

    async def my_tickets(self, ctx: Context, user_id: str) -> None:
        await ctx.reply(await self.my_tickets_text(user_id))

    async def my_tickets_text(self, user_id: str) -> str:
        """What `my tickets` answers this user."""
        name = self.default_tracker
        t = self.trackers[name]
        person = await self._person(user_id)
        found: dict[str, tuple[str, str, str]] = {}
        for link in await self.rt.store.tickets.find(open_only=True, requester_id=user_id):
            if link.tracker == name:
                found[link.ticket_id] = (link.title, status_name(link.status), link.url)
        try:
            for ticket in await t.open_tickets(person):
                found[ticket.id] = (ticket.title, shown_status(ticket),
                                    ticket.url)
        except TrackerUnavailable:
            if not found:
                return _("{tracker} is not reachable right now; try again later.").format(
                    tracker=label(t.name))
        except TrackerError as exc:
            log.warning("open tickets of %s: %s", person.username, exc)
        if not found:
            return _("You have no open tickets.")
        lines = [ngettext("Your open tickets ({count}):", "Your open tickets ({count}):",
                          len(found)).format(count=len(found))]
        for tid in sorted(found, key=lambda x: int(x) if x.isdigit() else 0, reverse=True):
            title, status, url = found[tid]
            lines.append(f"- **#{tid}** {title} — {status} — {url}")
        return "\n".join(lines)

    # --- the slash command ----------------------------------------------------------------------
    async def slash(self, ctx: Context, command: SlashCommand, text: str) -> dict[str, Any]:
        """`/ticket <text>` files a ticket as `112` does; `/ticket status N`; `/ticket mine`."""
        words = text.split()
        name = command.command
        first = words[0].lower() if words else ""
        # Sub-commands answer to their translations too (`/ticket статус 12`).
        if not words or first in _lower(i18n.aliases("help")):
            return {"text": _("`{command} <problem>` opens a ticket · `{command} status <number>` "
                              "· `{command} mine` lists your open tickets").format(command=name)}
        if first in _lower(i18n.aliases("status")):
            m = re.fullmatch(r"#?(\d+)", " ".join(words[1:]))
            if m is None:
                return {"text": _("Usage: `{command} status <number>`").format(command=name)}
            return {"text": await self.status_text(command.user_id, m.group(1)),
                    "response_type": self.settings.slash_response}
        if first in _lower(i18n.aliases("mine")) | {"my"}:
            return {"text": await self.my_tickets_text(command.user_id),
                    "response_type": self.settings.slash_response}
        trigger = next((t for t in self.settings.triggers if t.tracker in self.trackers), None)
        if trigger is None:
            return {"text": _("No tracker is configured for tickets.")}
        # The request gets a post of its own in the channel: the ticket's thread.
        who = (await self._person(command.user_id)).username
        key = hashlib.sha256(command.trigger_id.encode()).hexdigest()[:24]
        root = await self.rt.api.create_post(
            command.channel_id, _(":inbox_tray: Ticket request from @{user}: {text}").format(
                user=who, text=text),
            key=f"slash:{key}")
        post_id = str(root["id"])
        self.linked.add(post_id)
        await self._queue_ticket(trigger, post_id, command.channel_id, post_id,
                                 command.user_id, text.strip(), False, [])
        return {"text": _("Your ticket is being filed; its number will appear in the thread of "
                          "your request in this channel."),
                "response_type": self.settings.slash_response}
