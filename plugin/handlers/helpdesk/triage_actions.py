"""The triage post's buttons: Take (assign to me), Reply… (a public follow-up, which also reaches
the requester's thread), Private note… (seen by technicians only), Solve… (the solution, which
then reaches the requester, who may accept or refuse it) and Urgency. Only the staff may use them
(`helpdesk.staff`; none named: the triage channel's members). Each is signed, checked, queued
(`triage-action`), carried out on the person's behalf, and told on the post with who did it."""

from __future__ import annotations

import uuid
from typing import Any

from bridge.tickets import Person, TicketNotFound, TrackerError, TrackerUnavailable

from ... import i18n, markdown
from ...access import Membership
from ...context import Context
from ...events import Click
from ...i18n import N_, _
from ...outbox import Retry
from ...signing import Payload
from ...store import OutboxEntry, TicketLink
from .core import label, log
from .triage import URGENCIES, Triage

#: The dialogs behind the buttons that ask for a text: (title, field label, operation).
_FORMS = {"triagereply": (N_("Reply to #{number}"), N_("Your answer (the requester sees it)"),
                          "reply"),
          "triagenote": (N_("Private note on #{number}"), N_("The note (technicians only)"),
                         "note"),
          "triagesolve": (N_("Solve #{number}"), N_("The solution"), "solve")}
#: The actions, as the triage post names them.
_OPS = {"take": N_("Take"), "reply": N_("Reply"), "note": N_("Private note"),
        "solve": N_("Solve"), "urgency": N_("Urgency")}
#: The longest text a form takes (characters).
TEXT_LIMIT = 5000


class NotStaff(Exception):
    """The clicker may not act on the triage channel's posts; the message says why."""


class TriageActions(Triage):
    """Take, Reply, Private note, Solve and Urgency, and the `triage-action` executor."""

    async def _acting(self, user_id: str, payload: Payload) -> TicketLink:
        """The ticket a triage button is for, if this person may act on it."""
        tracker, _sep, ticket_id = payload.subject.partition("|")
        link = await self.rt.store.tickets.get(tracker, ticket_id)
        if link is None or tracker not in self.trackers:
            raise NotStaff(_("This ticket is not followed here any more."))
        staff = self.settings.staff
        if staff.users or staff.channels or staff.teams:
            if self._staff is None:
                self._staff = Membership(self.rt.api, staff)
            allowed = await self._staff.includes(user_id)
        else:
            channel = (await self.rt.store.tickets.triage(tracker, ticket_id)).get("channel")
            allowed = bool(channel) and await self.rt.api.is_member(str(channel), user_id)
        if not allowed:
            raise NotStaff(_("Only the support team can act on tickets here."))
        return link

    async def on_take(self, click: Click, payload: Payload) -> dict[str, Any]:
        return await self._clicked(click, payload, "take")

    async def on_urgency(self, click: Click, payload: Payload) -> dict[str, Any]:
        if not click.selected_option.isdigit() or int(click.selected_option) not in URGENCIES:
            return {"ephemeral_text": _("Choose an urgency from the list.")}
        return await self._clicked(click, payload, "urgency", urgency=int(click.selected_option))

    async def _clicked(self, click: Click, payload: Payload, op: str,
                       **extra: Any) -> dict[str, Any]:
        try:
            link = await self._acting(click.user_id, payload)
        except NotStaff as exc:
            return {"ephemeral_text": str(exc)}
        await self._queue_action(link, op, click.user_id, click.trigger_id, **extra)
        return {}

    async def on_form(self, ctx: Context, click: Click, payload: Payload) -> dict[str, Any]:
        """Reply…, Private note… and Solve…: their form."""
        try:
            link = await self._acting(click.user_id, payload)
        except NotStaff as exc:
            return {"ephemeral_text": str(exc)}
        title, field, _op = _FORMS[payload.action]
        return await self._open_form(
            ctx, click, payload.action, _(title).format(number=link.ticket_id), _("Send"),
            {"display_name": _(field), "name": "text", "max_length": TEXT_LIMIT},
            payload.subject)

    async def on_form_sent(self, submission: dict[str, Any], payload: Payload, user_id: str,
                           cancelled: bool) -> dict[str, Any]:
        if cancelled:
            return {}
        text = str(submission.get("text") or "").strip()
        if not text:
            return {"errors": {"text": _("Write something first.")}}
        try:
            link = await self._acting(user_id, payload)
        except NotStaff as exc:
            return {"errors": {"text": str(exc)}}
        await self._queue_action(link, _FORMS[payload.action][2], user_id, uuid.uuid4().hex,
                                 text=text[:TEXT_LIMIT])
        return {}

    async def _queue_action(self, link: TicketLink, op: str, user_id: str, once: str,
                            **extra: Any) -> None:
        await self.outbox.put(f"triage-action:{link.tracker}:{link.ticket_id}:{op}:{once}",
                              "triage-action", {"tracker": link.tracker,
                                                "ticket_id": link.ticket_id, "op": op,
                                                "user_id": user_id, **extra})

    async def _technician(self, user_id: str) -> Person:
        """The person as the tracker should know them (`helpdesk.technicians` maps logins)."""
        person = await self._person(user_id)
        login = self.settings.technicians.get(person.username)
        return Person(username=login, display_name=person.display_name) if login else person

    async def _triage_action(self, entry: OutboxEntry) -> None:
        """The `triage-action` executor: the action on the tracker, then told on the post."""
        p = entry.payload
        store = self.rt.store
        tracker = self.trackers.get(p["tracker"])
        link = await store.tickets.get(p["tracker"], p["ticket_id"])
        if tracker is None or link is None:
            await store.outbox.update(entry.key, state="failed", error="no such ticket")
            return
        person = await self._technician(p["user_id"])
        who = (await self._person(p["user_id"])).username
        op, text = p["op"], str(p.get("text") or "")
        with i18n.use(None):
            if entry.state == "queued":
                try:
                    resumed = self.rt.resumed(entry)
                    line = await self._carry_out(tracker.name, link, op, person, who, text,
                                                 int(p.get("urgency") or 3), resumed)
                except TrackerUnavailable as exc:
                    raise Retry(str(exc)) from None
                except (TrackerError, TicketNotFound) as exc:
                    line = _(":warning: {op} by @{user} failed: {error}").format(
                        op=_(_OPS.get(op, op)), user=who,
                        error=markdown.without_bare_urls(str(exc)))
                    await store.outbox.update(entry.key, state="failed", error=str(exc))
                    await self._redraw_triage(link.tracker, link.ticket_id, line)
                    return
                await store.outbox.update(entry.key, state="filed", result={"line": line},
                                          durable=False)
            else:
                line = str(entry.result.get("line") or "")
        if op == "reply":
            # The requester's thread hears the answer at once, from its author.
            await self.rt.speak_to(link.requester_id)
            await self.rt.api.create_post(
                link.channel_id, _(":speech_balloon: **@{author}** on #{number}:\n{text}").format(
                    author=who, number=link.ticket_id, text=markdown.without_bare_urls(text)),
                root_id=link.root_id, key=f"{entry.key}:thread",
                check_first=self.rt.resumed(entry))
        await self._redraw_triage(link.tracker, link.ticket_id, line)
        await store.outbox.update(entry.key, state="done", durable=False)
        log.info("triage: %s on %s #%s by %s", op, link.tracker, link.ticket_id, who)

    async def _carry_out(self, tracker_name: str, link: TicketLink, op: str, person: Person,
                         who: str, text: str, urgency: int, resumed: bool = False) -> str:
        """One action on the tracker; the line that tells it on the triage post. A `resumed`
        action (a stopped run may have done it) looks first where the tracker shows it: a
        reply among the follow-ups, a solving in the status. (A private note cannot be seen
        from here: one interrupted at the wrong moment may be written twice.)"""
        tracker = self.trackers[tracker_name]
        number = link.ticket_id
        if op == "take":
            assignee = await tracker.assign(number, person)
            return _(":raising_hand: Taken by @{user} ({tracker}: {login})").format(
                user=who, tracker=label(tracker_name), login=assignee)
        if op == "reply":
            # Told in the thread by the executor itself: the watch (which looks under the same
            # lock) need not tell it again.
            first = next((line.strip() for line in text.splitlines() if line.strip()), "")
            async with self._lock(link.tracker, number):
                found = [c.id for c in await tracker.comments(number)
                         if first and first in c.text] if resumed else []
                comment_id = found[-1] if found else await tracker.comment(number, text, person)
                await self.rt.store.tickets.mark_comments_seen(link.tracker, number,
                                                               [comment_id])
            return _(":speech_balloon: @{user} replied: {text}").format(
                user=who, text=_excerpt(text))
        if op == "note":
            await tracker.comment(number, text, person, private=True)
            return _(":lock: @{user} added a private note: {text}").format(
                user=who, text=_excerpt(text))
        if op == "solve":
            if not resumed or (await tracker.get(number)).status.is_open:
                await tracker.solve(number, text, person)
            return _(":white_check_mark: Solved by @{user}: {text}").format(
                user=who, text=_excerpt(text))
        if op == "urgency":
            await tracker.set_urgency(number, urgency)
            return _(":level_slider: Urgency set to {urgency} by @{user}").format(
                urgency=_(URGENCIES.get(urgency, URGENCIES[3])), user=who)
        raise TrackerError(f"unknown action {op!r}")


def _excerpt(text: str, limit: int = 120) -> str:
    """One line of a text, for the triage post's log."""
    line = " ".join(markdown.without_bare_urls(text).split())
    return markdown.code(line if len(line) <= limit else line[:limit - 1] + "…")
