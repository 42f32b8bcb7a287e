"""Tickets from alerts: the button opens a form filled from the incident, and the submitted form
is filed with a tracker (`alert-ticket`); the post then links the ticket."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from bridge.tickets import NewTicket, Person, TrackerError, TrackerUnavailable

from ... import i18n, markdown
from ...context import Context
from ...events import Click
from ...i18n import _
from ...mattermost import MattermostError
from ...outbox import Retry
from ...signing import Payload
from ...store import OutboxEntry, TicketLink
from ...store.alert_state import TicketRef
from .core import AlertsCore, Refusal, log


class Tickets(AlertsCore):
    """The ticket button and form, and the `alert-ticket` executor."""

    async def on_ticket(self, ctx: Context, click: Click, payload: Payload) -> dict[str, Any]:
        try:
            rec = await self._clicked(click, payload)
        except Refusal as exc:
            return {"ephemeral_text": str(exc)}
        state = rec.incident
        if state.ticket:
            # TRANSLATORS: {ticket} is the ticket's number (#42) as a link to it.
            return {"ephemeral_text": _("Ticket {ticket} is already open.").format(
                ticket=markdown.link(f"#{state.ticket.id}", state.ticket.url))}
        alert = state.alert
        elements: list[dict[str, Any]] = []
        if len(self.trackers) > 1:
            elements.append({"display_name": _("Tracker"), "name": "tracker", "type": "select",
                             "options": [{"text": n, "value": n} for n in self.trackers],
                             "default": next(iter(self.trackers))})
        # The details become the ticket's text, read by the support team: the default language.
        with i18n.use(None):
            details = "\n".join(x for x in (
                alert.text,
                _("Host: {host}").format(host=alert.host) if alert.host else "",
                _("Service: {service}").format(service=alert.service) if alert.service else "",
            ) if x)
        elements += [
            {"display_name": _("Title"), "name": "title", "type": "text",
             "default": alert.title[:150], "max_length": 150},
            {"display_name": _("Details"), "name": "details", "type": "textarea",
             "default": details[:3000], "optional": True, "max_length": 3000}]
        dialog = {"title": _("Open a ticket"), "submit_label": _("Open"), "elements": elements}
        try:
            await ctx.open_dialog(click.trigger_id, "alertticket", dialog,
                                  subject=payload.subject,
                                  data={"epoch": payload.data.get("epoch", "")})
        except MattermostError as exc:
            log.warning("could not open the ticket dialog: %s", exc)
            return {"ephemeral_text": _("The ticket form could not be opened; try again.")}
        return {}

    async def on_ticket_dialog(self, submission: dict[str, Any], payload: Payload,
                               user_id: str, cancelled: bool) -> dict[str, Any]:
        if cancelled:
            return {}
        source, _sep, key = payload.subject.partition("|")
        rec = await self.rt.store.alerts.get(source, key)
        if rec is None:
            return {"errors": {"title": _("This alert no longer exists.")}}
        tracker = str(submission.get("tracker") or next(iter(self.trackers), ""))
        if tracker not in self.trackers:
            return {"errors": {"tracker": _("Choose a tracker.")}}
        title = str(submission.get("title") or "").strip()
        if not title:
            return {"errors": {"title": _("A title is needed.")}}
        entry_key = f"alert-ticket:{source}:{key}"
        body = {"source": source, "key": key, "tracker": tracker, "title": title,
                "details": str(submission.get("details") or ""), "user_id": user_id}
        outbox = self.rt.store.outbox
        existing = await outbox.get(entry_key)
        if existing is None or existing.state == "failed":
            # A ticket that could not be opened before may be tried again.
            await outbox.requeue(entry_key, "alert-ticket", body)
            self.rt.outbox.kick()
        elif existing.state != "done":
            return {"errors": {"title": _("A ticket for this alert is being opened.")}}
        return {}

    async def _file_ticket(self, entry: OutboxEntry) -> None:
        p = entry.payload
        alerts, outbox = self.rt.store.alerts, self.rt.store.outbox
        tracker = self.trackers[p["tracker"]]
        ref = f"alert:{p['source']}:{p['key']}"
        try:
            found = None
            if self.rt.resumed(entry):
                found = await tracker.find_by_ref(
                    ref, datetime.fromtimestamp(entry.created_at - 600, UTC))
            if found is None:
                user = await self.rt.api.user(p["user_id"])
                person = Person(str(user.get("username", "")), str(user.get("email") or ""),
                                " ".join(x for x in (user.get("first_name"),
                                                     user.get("last_name")) if x))
                found = await tracker.create(NewTicket(
                    title=p["title"][:tracker.title_limit], content=p["details"] or p["title"],
                    requester=person, ref=ref))
        except TrackerUnavailable as exc:
            raise Retry(str(exc)) from None
        except TrackerError as exc:
            rec = await alerts.get(p["source"], p["key"])
            if rec is not None:
                with i18n.use(None):  # a note in the thread: the channel's language
                    note = ":warning: " + _("The ticket could not be opened: {error}").format(
                        error=markdown.without_bare_urls(str(exc)))
                await self._save(rec.source, rec.key, rec.channel_id, rec.incident, [note])
            await outbox.update(entry.key, state="failed", error=str(exc))
            return
        who = str((await self.rt.api.user(p["user_id"])).get("username", ""))
        async with self._lock(p["source"], p["key"]):
            rec = await alerts.get(p["source"], p["key"])
            if rec is not None and rec.post_id:
                # Followed like any ticket: its follow-ups and changes come to the alert's
                # thread, and whoever opened it hears of its solution.
                await self.rt.store.tickets.link(TicketLink(
                    p["tracker"], found.id, rec.channel_id, rec.post_id, p["user_id"], who,
                    found.title, found.url, found.status.value, 0, found.status.is_open,
                    origin="alert"))
            if rec is not None:
                state = dataclasses.replace(rec.incident, ticket=TicketRef(
                    tracker=p["tracker"], id=found.id, url=found.url))
                with i18n.use(None):  # a note in the thread: the channel's language
                    # TRANSLATORS: {ticket} is the ticket's number (#42) as a link to it.
                    note = ":ticket: " + _("Ticket **{ticket}** opened by @{user}").format(
                        ticket=markdown.link(f"#{found.id}", found.url), user=who)
                await self._save(rec.source, rec.key, rec.channel_id, state, [note])
        await outbox.update(entry.key, state="done")
