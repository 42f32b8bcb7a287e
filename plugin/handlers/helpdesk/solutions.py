"""Solutions: when a ticket is solved, how it was solved reaches its thread and its requester's
direct messages. Where the tracker waits for the requester's approval (GLPI), that message carries
Accept and Refuse; a refusal asks for a reason. The answer is queued (`ticket-answer`) and goes back
to the tracker on the requester's behalf; the message then shows it, and so does the thread."""

from __future__ import annotations

from typing import Any

from bridge.tickets import (
    Solution,
    Tracker,
    TrackerError,
    TrackerRejected,
    TrackerUnavailable,
)

from ... import i18n, markdown
from ...context import Context
from ...events import Click
from ...i18n import _
from ...outbox import Retry
from ...signing import Payload
from ...store import OutboxEntry, TicketLink
from .core import label, log
from .triage import Triage

#: The longest reason for a refusal (characters).
REASON_LIMIT = 3000


class NotYours(Exception):
    """The click or the form may not answer this solution; the message says why."""


class Solutions(Triage):
    """Solutions shown, and the requester's answers to them."""

    async def _solution(self, tracker: Tracker, link: TicketLink) -> Solution | None:
        """The ticket's solution, when the tracker can tell it (an outage is raised: the change
        is announced at the next look, solution included)."""
        try:
            return await tracker.solution(link.ticket_id)
        except TrackerUnavailable:
            raise
        except TrackerError as exc:
            log.warning("cannot read the solution of %s #%s: %s", tracker.name, link.ticket_id,
                        exc)
            return None

    @staticmethod
    def _solution_text(solution: Solution) -> str:
        """The solution as a quoted block, naming who wrote it."""
        quoted = markdown.quote(solution.text.strip()) or "> …"
        return _("Solution from **{author}**:\n{text}").format(
            author=markdown.escape(solution.author or _("Support")), text=quoted)

    def _answer_buttons(self, link: TicketLink, solution: Solution) -> list[dict[str, Any]]:
        """Accept and Refuse, for the requester only, bound to this solution."""
        ctx = Context(self.rt, key="", user_id="", channel_id="")
        subject = f"{link.tracker}|{link.ticket_id}"
        data = {"solution": solution.id}
        return [{"text": _("Does this solve your problem?"), "actions": [
            ctx.button(_("Accept"), "ticketaccept", subject, data, style="success"),
            ctx.button(_("Refuse…"), "ticketrefuse", subject, data, style="danger")]}]

    # --- the requester's answer ---------------------------------------------------------------
    async def _answering(self, user_id: str, payload: Payload) -> TicketLink:
        tracker, _sep, ticket_id = payload.subject.partition("|")
        link = await self.rt.store.tickets.get(tracker, ticket_id)
        if link is None or tracker not in self.trackers:
            raise NotYours(_("This ticket is not followed here any more."))
        if user_id != link.requester_id:
            raise NotYours(_("Only the person who asked for the ticket can answer its solution."))
        return link

    async def on_accept(self, click: Click, payload: Payload) -> dict[str, Any]:
        try:
            link = await self._answering(click.user_id, payload)
        except NotYours as exc:
            return {"ephemeral_text": str(exc)}
        _queued, text = await self._queue_answer(link, payload, True, "", click.user_id,
                                                 click.post_id)
        return {"ephemeral_text": text}

    async def on_refuse(self, ctx: Context, click: Click, payload: Payload) -> dict[str, Any]:
        try:
            link = await self._answering(click.user_id, payload)
        except NotYours as exc:
            return {"ephemeral_text": str(exc)}
        return await self._open_form(
            ctx, click, "ticketrefuse",
            _("Refuse the solution of #{number}").format(number=link.ticket_id), _("Refuse"),
            {"display_name": _("What is still wrong?"), "name": "reason",
             "max_length": REASON_LIMIT},
            payload.subject, dict(payload.data, post=click.post_id))

    async def on_refuse_form(self, submission: dict[str, Any], payload: Payload, user_id: str,
                             cancelled: bool) -> dict[str, Any]:
        if cancelled:
            return {}
        reason = str(submission.get("reason") or "").strip()
        if not reason:
            return {"errors": {"reason": _("Say what is still wrong.")}}
        try:
            link = await self._answering(user_id, payload)
        except NotYours as exc:
            return {"errors": {"reason": str(exc)}}
        queued, text = await self._queue_answer(link, payload, False, reason[:REASON_LIMIT],
                                                user_id, str(payload.data.get("post") or ""))
        return {} if queued else {"errors": {"reason": text}}

    async def _queue_answer(self, link: TicketLink, payload: Payload, accepted: bool,
                            reason: str, user_id: str, post_id: str) -> tuple[bool, str]:
        """Queue the answer once per solution; whether it was queued now, and what to tell."""
        solution_id = str(payload.data.get("solution") or "")
        key = f"ticket-answer:{link.tracker}:{link.ticket_id}:{solution_id}"
        queued = await self.outbox.put(key, "ticket-answer", {
            "tracker": link.tracker, "ticket_id": link.ticket_id, "accepted": accepted,
            "reason": reason, "user_id": user_id, "post_id": post_id})
        if not queued:
            return False, _("You have already answered this solution.")
        return True, _("Thank you: your answer is on its way to {tracker}.").format(
            tracker=label(link.tracker))

    async def _send_answer(self, entry: OutboxEntry) -> None:
        """The `ticket-answer` executor: the answer to the tracker, then shown in chat."""
        p = entry.payload
        tracker = self.trackers.get(p["tracker"])
        link = await self.rt.store.tickets.get(p["tracker"], p["ticket_id"])
        if tracker is None or link is None:
            await self.rt.store.outbox.update(entry.key, state="failed",
                                              error="the ticket is no longer followed")
            return
        await self.rt.speak_to(p["user_id"])
        person = await self._person(p["user_id"])
        resumed = self.rt.resumed(entry)
        if entry.state == "queued":
            with i18n.use(None):  # the tracker is read by the support team
                text = p["reason"] or _("Solution accepted from Mattermost.")
            try:
                # A stopped run may have sent it already: then nothing waits for an answer.
                waiting = True
                if resumed:
                    solution = await tracker.solution(link.ticket_id)
                    waiting = solution is not None and solution.awaiting_approval
                if waiting:
                    await tracker.answer_solution(link.ticket_id, bool(p["accepted"]), text,
                                                  person)
            except TrackerUnavailable as exc:
                raise Retry(str(exc)) from None
            except TrackerRejected as exc:
                await self._show_answer(p, _(":warning: {tracker} did not take your answer: "
                                             "{error}").format(
                    tracker=label(tracker.name), error=markdown.without_bare_urls(str(exc))))
                await self.rt.store.outbox.update(entry.key, state="failed", error=str(exc))
                return
            await self.rt.store.outbox.update(entry.key, state="filed", durable=False)
            log.info("%s the solution of %s #%s", "accepted" if p["accepted"] else "refused",
                     tracker.name, link.ticket_id)
        if p["accepted"]:
            mine = _(":thumbsup: You accepted this solution.")
            note = _(":thumbsup: @{user} accepted the solution.").format(user=person.username)
        else:
            quoted = markdown.quote(p["reason"])
            mine = _(":thumbsdown: You refused this solution:\n{reason}").format(reason=quoted)
            note = _(":thumbsdown: @{user} refused the solution:\n{reason}").format(
                user=person.username, reason=quoted)
        await self._show_answer(p, mine)
        await self.rt.api.create_post(link.channel_id, note, root_id=link.root_id,
                                      key=f"{entry.key}:thread", check_first=resumed)
        # The ticket's new status is told at the next look, which includes it even though it
        # was last seen solved.
        self._closed_looked = 0.0
        await self.rt.store.outbox.update(entry.key, state="done", durable=False)

    async def _show_answer(self, p: dict[str, Any], text: str) -> None:
        """The answer on the message that asked for it, in place of its buttons."""
        if p.get("post_id"):
            await self._replace_buttons(str(p["post_id"]), text)
