"""A requester closes a ticket from chat: `close N [why]` in a direct message, or `/ticket close N
[why]`. Its requester (or the staff) may; the closing is queued (`ticket-close`), sent to the
tracker with the reason as the last follow-up, and told in the ticket's thread."""

from __future__ import annotations

from bridge.tickets import Ticket, TrackerError, TrackerUnavailable

from ... import i18n, markdown
from ...context import Context
from ...i18n import N_, _
from ...outbox import Retry
from ...store import OutboxEntry
from .core import label, log
from .status import NOT_FOUND, Lookups
from .triage import Triage

#: The follow-up a closing without a reason leaves in the tracker.
CLOSED_FROM_CHAT = N_("Closed from chat by the requester.")


class Closing(Triage, Lookups):
    """`close N` and the `ticket-close` executor."""

    async def close(self, ctx: Context, user_id: str, number: str = "",
                    tracker: str | None = None, reason: str = "",
                    usage_error: bool = False) -> None:
        if usage_error:
            await ctx.reply(_("Usage: `close <number>`, for example `close 123 it works "
                              "again`."))
            return
        await ctx.reply(await self.close_text(user_id, number, tracker, reason,
                                              once=ctx.post_id or ctx.key))

    async def close_text(self, user_id: str, number: str, tracker: str | None, reason: str,
                         once: str) -> str:
        """Queue the closing of ticket `number` for this user; what to answer them."""
        if tracker is not None and tracker not in self.trackers:
            return _("I know no tracker named `{name}`. Known: {known}.").format(
                name=tracker, known=", ".join(sorted(self.trackers)))
        asked = [self.trackers[tracker]] if tracker else list(self.trackers.values())
        for t in asked:
            ticket = await self._visible(user_id, t, number)
            if ticket is TrackerUnavailable:
                return _("{tracker} is not reachable right now; try again in a few "
                         "minutes.").format(tracker=label(t.name))
            if isinstance(ticket, Ticket):
                if not ticket.status.is_open:
                    return _("Ticket #{number} is already {status}.").format(
                        number=number, status=_("solved") if ticket.status.value == "solved"
                        else _("closed"))
                await self.outbox.put(f"ticket-close:{t.name}:{ticket.id}:{once}",
                                      "ticket-close", {"tracker": t.name, "ticket_id": ticket.id,
                                                       "user_id": user_id,
                                                       "reason": reason.strip()})
                return _("Closing ticket #{number} in {tracker}.").format(
                    number=ticket.id, tracker=label(t.name))
        return _(NOT_FOUND).format(number=number)

    async def _close_ticket(self, entry: OutboxEntry) -> None:
        """The `ticket-close` executor."""
        p = entry.payload
        tracker = self.trackers.get(p["tracker"])
        if tracker is None:
            await self.rt.store.outbox.update(entry.key, state="failed", error="no tracker")
            return
        person = await self._person(p["user_id"])
        with i18n.use(None):  # the tracker is read by the support team
            text = p["reason"] or _(CLOSED_FROM_CHAT)
        try:
            # A stopped run may have closed it already.
            if not self.rt.resumed(entry) or \
                    (await tracker.get(p["ticket_id"])).status.is_open:
                await tracker.close(p["ticket_id"], text, person)
        except TrackerUnavailable as exc:
            raise Retry(str(exc)) from None
        except TrackerError as exc:
            log.warning("%s refused to close #%s: %s", tracker.name, p["ticket_id"], exc)
            await self.rt.speak_to(p["user_id"])
            channel_id = await self.rt.api.direct_channel(p["user_id"])
            await self.rt.api.create_post(
                channel_id, _(":warning: {tracker} did not close #{number}: {error}").format(
                    tracker=label(tracker.name), number=p["ticket_id"],
                    error=markdown.without_bare_urls(str(exc))),
                key=f"{entry.key}:refused", check_first=True)
            await self.rt.store.outbox.update(entry.key, state="failed", error=str(exc))
            return
        link = await self.rt.store.tickets.get(p["tracker"], p["ticket_id"])
        if link is not None:
            await self.rt.speak_to(link.requester_id)
            quoted = markdown.quote(p["reason"])
            await self.rt.api.create_post(
                link.channel_id, _(":lock: @{user} closed the ticket.").format(
                    user=person.username) + (f"\n{quoted}" if quoted else ""),
                root_id=link.root_id, key=f"{entry.key}:thread", check_first=True)
            with i18n.use(None):  # the support team's channel
                line = _(":lock: Closed by @{user}").format(user=person.username)
            await self._redraw_triage(link.tracker, link.ticket_id, line)
        await self.rt.store.outbox.update(entry.key, state="done")
        log.info("closed %s #%s at the requester's word", tracker.name, p["ticket_id"])
