"""What a requester may ask about tickets: `status N` (or `#N` alone in a direct message) and
`my tickets`. A ticket is shown to its requester and to the staff; to anyone else it does not
exist. With several trackers both ask every one of them (`status glpi 12` asks one) and say which
tracker each ticket lives in."""

from __future__ import annotations

import asyncio

from bridge.tickets import Ticket, TicketNotFound, Tracker, TrackerError, TrackerUnavailable

from ... import markdown
from ...access import Membership
from ...context import Context
from ...i18n import N_, _, ngettext
from .core import HelpdeskCore, label, log, shown_status, status_name

NOT_FOUND = N_("Ticket #{number} was not found, or it is not yours.")


class Lookups(HelpdeskCore):
    """`status N`, `#N` and `my tickets`, and who may see which ticket."""

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
        """What `status N` answers this user: the ticket N in the tracker named, or in every
        tracker when none is named (each found one, saying where it lives)."""
        if tracker is not None and tracker not in self.trackers:
            return _("I know no tracker named `{name}`. Known: {known}.").format(
                name=tracker, known=", ".join(sorted(self.trackers)))
        asked = [self.trackers[tracker]] if tracker else list(self.trackers.values())
        found = await asyncio.gather(*(self._visible(user_id, t, number) for t in asked))
        shown = [self._status_line(t, ticket, len(asked) > 1 or tracker is not None)
                 for t, ticket in zip(asked, found, strict=True) if isinstance(ticket, Ticket)]
        if shown:
            return "\n\n".join(shown)
        down = [t for t, ticket in zip(asked, found, strict=True) if ticket is TrackerUnavailable]
        if down:
            return _("{tracker} is not reachable right now; try again in a few minutes.").format(
                tracker=", ".join(label(t.name) for t in down))
        return _(NOT_FOUND).format(number=number)

    async def _visible(self, user_id: str, tracker: Tracker, number: str,
                       ) -> Ticket | type[TrackerUnavailable] | None:
        """Ticket `number` of `tracker` if this user may see it; `TrackerUnavailable` when the
        tracker could not tell."""
        try:
            ticket = await tracker.get(number)
        except TicketNotFound:
            return None
        except TrackerUnavailable:
            return TrackerUnavailable
        except TrackerError as exc:
            log.warning("status %s on %s: %s", number, tracker.name, exc)
            return None
        return ticket if await self._may_see(user_id, tracker.name, ticket) else None

    @staticmethod
    def _status_line(tracker: Tracker, ticket: Ticket, where: bool) -> str:
        updated = ticket.updated_at.strftime("%Y-%m-%d %H:%M UTC") if ticket.updated_at else "—"
        # TRANSLATORS: {ticket} is the ticket's number (#42) as a link to it.
        text = _("**{ticket}** {title}\nStatus: **{status}** · Assigned to: {assignee} · "
                 "Last update: {updated}").format(
            ticket=markdown.link(f"#{ticket.id}", ticket.url),
            title=markdown.without_bare_urls(ticket.title), status=shown_status(ticket),
            assignee=markdown.without_bare_urls(ticket.assignee) or _("nobody yet"),
            updated=updated)
        if where:
            text += " · " + _("in {tracker}").format(tracker=label(tracker.name))
        return text

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
        """What `my tickets` answers this user: their open tickets in every tracker."""
        person = await self._person(user_id)
        links = await self.rt.store.tickets.find(open_only=True, requester_id=user_id)
        found: dict[tuple[str, str], tuple[str, str, str]] = {}
        for link in links:
            if link.tracker in self.trackers:
                found[(link.tracker, link.ticket_id)] = (link.title, status_name(link.status),
                                                         link.url)
        trackers = list(self.trackers.values())
        answers = await asyncio.gather(*(t.open_tickets(person) for t in trackers),
                                       return_exceptions=True)
        down = []
        for t, answer in zip(trackers, answers, strict=True):
            if isinstance(answer, TrackerUnavailable):
                down.append(label(t.name))
            elif isinstance(answer, BaseException):
                log.warning("open tickets of %s in %s: %s", person.username, t.name, answer)
            else:
                for ticket in answer:
                    found[(t.name, ticket.id)] = (ticket.title, shown_status(ticket), ticket.url)
        if not found:
            if down:
                return _("{tracker} is not reachable right now; try again later.").format(
                    tracker=", ".join(down))
            return _("You have no open tickets.")
        lines = [ngettext("Your open tickets ({count}):", "Your open tickets ({count}):",
                          len(found)).format(count=len(found))]
        several = len(self.trackers) > 1
        order = sorted(found, key=lambda k: (k[0], -int(k[1]) if k[1].isdigit() else 0))
        for name, tid in order:
            title, status, url = found[(name, tid)]
            number = markdown.link(f"#{tid}", url)
            line = f"- **{number}** {markdown.without_bare_urls(title)} — {status}"
            if several:
                line += " · " + _("in {tracker}").format(tracker=label(name))
            lines.append(line)
        if down:
            lines.append(_("({tracker} could not be asked just now.)").format(
                tracker=", ".join(down)))
        return "\n".join(lines)
