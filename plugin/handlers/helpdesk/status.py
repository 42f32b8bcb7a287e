"""What a requester may ask about tickets: `status N` (or `#N` alone in a direct message) and
`my tickets`. A ticket is shown to its requester and to the staff; to anyone else it does not
exist."""

from __future__ import annotations

from bridge.tickets import Ticket, TicketNotFound, TrackerError, TrackerUnavailable

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
        # TRANSLATORS: {ticket} is the ticket's number (#42) as a link to it.
        return _("**{ticket}** {title}\nStatus: **{status}** · Assigned to: {assignee} · "
                 "Last update: {updated}").format(
            ticket=markdown.link(f"#{ticket.id}", ticket.url),
            title=markdown.without_bare_urls(ticket.title), status=shown_status(ticket),
            assignee=markdown.without_bare_urls(ticket.assignee) or _("nobody yet"),
            updated=updated)

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
            number = markdown.link(f"#{tid}", url)
            lines.append(f"- **{number}** {markdown.without_bare_urls(title)} — {status}")
        return "\n".join(lines)
