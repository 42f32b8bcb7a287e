"""The triage channel: every new ticket is posted in the support team's channel (per tracker, or
per trigger field: category, entity, project) as one live post, drawn again (`triage-render`)
whenever the ticket changes or someone acts on it. The post says who asked, where, the status,
urgency and assignee, and what was done from chat and by whom; its buttons are in
`triage_actions`."""

from __future__ import annotations

import time
from typing import Any

from bridge.tickets import Ticket, TicketNotFound, TrackerError, TrackerUnavailable

from ... import i18n, markdown
from ...context import Context
from ...i18n import N_, _
from ...mattermost import MattermostError
from ...outbox import Retry
from ...store import OutboxEntry, TicketLink
from .core import HelpdeskCore, label, log, shown_status

#: Urgency levels as the trackers number them, and as people read them.
URGENCIES = {1: N_("very low"), 2: N_("low"), 3: N_("medium"), 4: N_("high"), 5: N_("very high")}
#: The most lines of the triage log shown on the post (the latest).
LOG_SHOWN = 8


class Triage(HelpdeskCore):
    """The triage channel's live posts."""

    def _triage_ref(self, tracker: str, fields: dict[str, Any]) -> str:
        """The triage channel (as configured) of a new ticket; "" for none."""
        t = self.settings.triage
        for route in t.routes:
            if (not route.tracker or route.tracker == tracker) and \
                    str(fields.get(route.field)) == str(route.value):
                return route.channel
        return t.trackers.get(tracker) or t.channel

    async def _queue_triage(self, tracker: str, ticket_id: str, fields: dict[str, Any]) -> None:
        """Post a new ticket in its triage channel (when it has one), once."""
        ref = self._triage_ref(tracker, fields)
        if not ref:
            return
        async with self._lock(f"triage:{tracker}", ticket_id):
            triage = await self.rt.store.tickets.triage(tracker, ticket_id)
            if not triage.get("ref"):
                await self.rt.store.tickets.save_triage(tracker, ticket_id,
                                                        {"ref": ref, "rev": 0, "log": []})
        await self.outbox.put(f"triage:{tracker}:{ticket_id}", "triage-render",
                              {"tracker": tracker, "ticket_id": ticket_id, "revision": 0})

    async def _redraw_triage(self, tracker: str, ticket_id: str, line: str = "") -> None:
        """Draw a ticket's triage post again (it changed, or someone acted on it: `line`
        tells what was done, and by whom)."""
        async with self._lock(f"triage:{tracker}", ticket_id):
            triage = await self.rt.store.tickets.triage(tracker, ticket_id)
            if not triage.get("ref"):
                return
            if line:
                triage["log"] = [*triage.get("log", []), [time.time(), line]]
            triage["rev"] = revision = int(triage.get("rev", 0)) + 1
            await self.rt.store.tickets.save_triage(tracker, ticket_id, triage)
        # A drawing under way when this comes finishes, then runs again (`finish`).
        await self.rt.store.outbox.requeue(
            f"triage:{tracker}:{ticket_id}", "triage-render",
            {"tracker": tracker, "ticket_id": ticket_id, "revision": revision})
        self.rt.outbox.kick()

    async def _render_triage(self, entry: OutboxEntry) -> None:
        """The `triage-render` executor: the post made, or drawn again, from the ticket now."""
        p = entry.payload
        store = self.rt.store
        link = await store.tickets.get(p["tracker"], p["ticket_id"])
        tracker = self.trackers.get(p["tracker"])
        if link is None or tracker is None:
            await store.outbox.finish(entry.key, 1 << 62)
            return
        try:
            ticket = await tracker.get(link.ticket_id)
        except TrackerUnavailable as exc:
            raise Retry(str(exc)) from None
        except TicketNotFound:
            await store.outbox.finish(entry.key, 1 << 62)
            return
        except TrackerError as exc:
            log.warning("cannot read %s #%s for its triage post: %s", tracker.name,
                        link.ticket_id, exc)
            raise Retry(str(exc)) from None
        api = self.rt.api
        async with self._lock(f"triage:{link.tracker}", link.ticket_id):
            triage = await store.tickets.triage(link.tracker, link.ticket_id)
            if not triage.get("ref"):
                await store.outbox.finish(entry.key, 1 << 62)
                return
            if not triage.get("channel"):
                try:
                    triage["channel"] = await api.channel_id(triage["ref"])
                except MattermostError as exc:
                    log.error("the triage channel %s cannot be found: %s", triage["ref"], exc)
                    raise Retry(f"the triage channel {triage['ref']!r} cannot be found") \
                        from None
            with i18n.use(None):  # the support team's channel: the default language
                message, attachments = await self._triage_post(link, ticket, triage)
            if triage.get("post"):
                await api.update_post(triage["post"], message, {"attachments": attachments})
            else:
                post = await api.create_post(
                    triage["channel"], message, props={"attachments": attachments},
                    key=entry.key, check_first=self.rt.resumed(entry))
                triage["post"] = str(post["id"])
                await store.tickets.save_triage(link.tracker, link.ticket_id, triage)
        if not await store.outbox.finish(entry.key, int(triage.get("rev", 0))):
            self.rt.outbox.kick()  # changed meanwhile: drawn again

    async def _triage_post(self, link: TicketLink, ticket: Ticket, triage: dict[str, Any],
                           ) -> tuple[str, list[dict[str, Any]]]:
        """The triage post's text and its buttons (none once the ticket is solved or closed)."""
        api = self.rt.api
        where = ""
        try:
            channel = await api.channel(link.channel_id)
            if channel.get("type") in ("O", "P"):
                where = f"~{channel.get('name')}"
            request = await api.permalink(link.root_id, channel)
        except MattermostError:
            request = ""
        asked = markdown.link(_("request"), request) if request else ""
        lines = [_(":inbox_tray: **{ticket}** {title} · {tracker}").format(
            ticket=markdown.link(f"#{ticket.id}", ticket.url),
            title=markdown.without_bare_urls(ticket.title), tracker=label(link.tracker))]
        lines.append(" · ".join(x for x in (
            _("From @{user}").format(user=link.requester) + (f" {where}" if where else ""),
            asked,
            _("Status: **{status}**").format(status=shown_status(ticket)),
            _("Assigned to: {assignee}").format(
                assignee=markdown.without_bare_urls(ticket.assignee) or _("nobody yet")),
        ) if x))
        for _at, line in triage.get("log", [])[-LOG_SHOWN:]:
            lines.append(f"- {line}")
        if not ticket.status.is_open:
            return "\n".join(lines), [{"text": _("Nothing left to do here.")}]
        ctx = Context(self.rt, key="", user_id="", channel_id=triage.get("channel", ""))
        subject = f"{link.tracker}|{link.ticket_id}"
        urgency = ctx.button(_("Urgency"), "triageurgency", subject, {})
        urgency["type"] = "select"
        urgency["options"] = [{"text": _(name), "value": str(level)}
                              for level, name in URGENCIES.items()]
        buttons = [ctx.button(_("Take"), "triagetake", subject, {}, style="primary"),
                   ctx.button(_("Reply…"), "triagereply", subject, {}),
                   ctx.button(_("Private note…"), "triagenote", subject, {}),
                   ctx.button(_("Solve…"), "triagesolve", subject, {}, style="success"),
                   urgency]
        return "\n".join(lines), [{"actions": buttons}]
