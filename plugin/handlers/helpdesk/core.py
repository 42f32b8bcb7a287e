"""What every part of the helpdesk shares: its settings and trackers, the runtime, the threads that
follow a ticket, the locks that serialize work on a ticket, and how tickets, statuses and people
are named."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from bridge.tickets import Attachment, Person, Status, Ticket, Tracker, TrackerError, clean_text

from ...access import Membership
from ...config import HelpdeskSettings
from ...context import Context
from ...events import Click
from ...i18n import N_, NP_, _, pgettext
from ...mattermost import MattermostError
from ...outbox import Outbox

if TYPE_CHECKING:
    from ...runtime import Runtime

log = logging.getLogger("switchboard.helpdesk")


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


#: The context of a tracker's own status labels in the catalogs.
STATUS_LABEL = "ticket status"
#: GLPI's status labels: a fixed set, which GLPI itself shows in its user's language. (Redmine's
#: are named by its administrators, in their language: shown as they are.)
#: (The context is written out: the catalogs' extraction reads literal strings only.)
GLPI_LABELS = (NP_("ticket status", "New"), NP_("ticket status", "Processing (assigned)"),
               NP_("ticket status", "Processing (planned)"), NP_("ticket status", "Pending"),
               NP_("ticket status", "Solved"), NP_("ticket status", "Closed"))


def shown_status(ticket: Ticket) -> str:
    """The tracker's own label for a ticket's status (in the reader's language when it is one
    the catalogs know), or else the common status."""
    if ticket.status_label:
        return pgettext(STATUS_LABEL, ticket.status_label)
    return status_name(ticket.status.value)


def title_of(text: str, limit: int) -> str:
    """The first non-empty line, without markup noise, within the tracker's limit."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    first = re.sub(r"\s+", " ", clean_text(first)).strip()
    first = first.strip("*_`~# ")
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    return first or _("Request from chat")


class HelpdeskCore:
    """The state every part of the helpdesk works on."""

    def __init__(self, settings: HelpdeskSettings, trackers: dict[str, Tracker]) -> None:
        self.settings = settings
        self.trackers = trackers
        #: Roots of the threads whose replies go to a ticket (filed or still queued).
        self.linked: set[str] = set()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._rt: Runtime | None = None
        self._staff: Membership | None = None
        #: When the watch last looked at solved and closed tickets.
        self._closed_looked = 0.0
        self.default_tracker = settings.default_tracker or next(
            (t.tracker for t in settings.triggers if t.tracker in trackers), "")

    @property
    def rt(self) -> Runtime:
        if self._rt is None:
            raise RuntimeError("the helpdesk has not been started")
        return self._rt

    @property
    def outbox(self) -> Outbox:
        return self.rt.outbox

    @contextlib.asynccontextmanager
    async def _lock(self, tracker: str, ticket_id: str) -> AsyncIterator[None]:
        """One piece of work on a ticket at a time: in this process, then between replicas
        sharing the store."""
        local = self._locks.setdefault((tracker, ticket_id), asyncio.Lock())
        async with local, self.rt.store.locked(f"ticket|{tracker}|{ticket_id}"):
            yield

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
        where = _("a direct message to the bot")
        channel: dict[str, Any] | None = None
        try:
            channel = await api.channel(channel_id)
            if channel.get("type") in ("O", "P"):
                where = f"~{channel.get('name')} ({channel.get('display_name')})"
        except MattermostError as exc:
            log.warning("cannot describe channel %s: %s", channel_id, exc)
        return where, await api.permalink(post_id, channel)

    @staticmethod
    async def _open_form(ctx: Context, click: Click, callback_id: str, title: str, submit: str,
                         field: dict[str, Any], subject: str,
                         data: dict[str, Any] | None = None) -> dict[str, Any]:
        """A one-field form (a textarea, `field` adding its name and label) opened for a
        click; the click's answer: nothing, or why the form could not be opened."""
        dialog = {"title": title[:24], "submit_label": submit,
                  "elements": [dict({"type": "textarea"}, **field)]}
        try:
            await ctx.open_dialog(click.trigger_id, callback_id, dialog, subject=subject,
                                  data=data)
        except MattermostError as exc:
            log.warning("could not open the %s form: %s", callback_id, exc)
            return {"ephemeral_text": _("The form could not be opened; try again.")}
        return {}

    async def _replace_buttons(self, post_id: str, text: str) -> None:
        """An answered question: the post's buttons give way to `text` (its other props, its
        idempotency key among them, are kept)."""
        try:
            post = await self.rt.api.get_post(post_id)
            props = dict(post.get("props") or {})
            props["attachments"] = [{"text": text}]
            await self.rt.api.update_post(post_id, props=props)
        except MattermostError as exc:
            log.warning("could not update post %s: %s", post_id, exc)

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

    async def _attach(self, tracker: Tracker, ticket_id: str, file_ids: list[str]) -> None:
        for attachment in await self._files(file_ids):
            try:
                await tracker.attach(ticket_id, attachment)
            except TrackerError as exc:
                log.warning("could not attach %s to %s #%s: %s", attachment.filename,
                            tracker.name, ticket_id, exc)
