"""Requests found too late: a `112 …` posted while the bot was away, older than `backfill.max_age`
when backfill finds it, is not dropped in silence. Its author gets one direct message ("you wrote
… at 09:14 while I was offline: file it now?") with File and Dismiss; File queues the ticket as
the message itself would have (once per message, however often it is clicked), and its number
then follows in the message's thread."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ... import markdown
from ...config import Trigger
from ...context import Context
from ...events import Click, Message
from ...i18n import _
from ...mattermost import MattermostError
from ...signing import Payload
from .core import label, log
from .opening import Opening

#: The longest request carried by the offer's buttons (characters).
TEXT_LIMIT = 10_000


def local_time(user: dict[str, Any], ms: int, now: datetime | None = None) -> str:
    """When a post was made, as its author reads clocks: `09:14` today, else `2026-12-05 09:14`;
    in their Mattermost timezone, or UTC (then said) when they have none."""
    tz = user.get("timezone") if isinstance(user.get("timezone"), dict) else {}
    assert isinstance(tz, dict)
    automatic = str(tz.get("useAutomaticTimezone", "")).lower() == "true"
    name = str(tz.get("automaticTimezone" if automatic else "manualTimezone") or "")
    zone: ZoneInfo | None = None
    if name:
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
    when = datetime.fromtimestamp(ms / 1000, zone or UTC)
    today = (now or datetime.now(UTC)).astimezone(zone or UTC).date()
    shown = when.strftime("%H:%M") if when.date() == today else when.strftime("%Y-%m-%d %H:%M")
    return shown if zone is not None else f"{shown} UTC"


class LateRequests(Opening):
    """The offer of a request found too late, and its File and Dismiss buttons."""

    def _late_offer(self, trigger: Trigger
                    ) -> Callable[[Context, Message, dict[str, Any]], Awaitable[None]]:
        async def offer_late(ctx: Context, event: Message, captured: dict[str, Any]) -> None:
            await self.offer_late(ctx, event, captured, trigger)
        return offer_late

    async def offer_late(self, ctx: Context, event: Message, captured: dict[str, Any],
                         trigger: Trigger) -> None:
        post = event.post
        text = str(captured.get("text") or "")
        if not text.strip():
            return
        if await self.rt.store.outbox.get(f"ticket:{post.id}") is not None:
            return  # an earlier run queued it before it stopped: it is being filed
        api = self.rt.api
        try:
            user = await api.user(post.user_id)
        except MattermostError:
            user = {}
        keyword = str(captured.get("keyword") or trigger.keyword)
        first = next((line for line in post.message.splitlines() if line.strip()), "")
        shown = first if len(first) <= 120 else first[:119] + "…"
        try:
            where = await api.permalink(post.id, await api.channel(post.channel_id))
        except MattermostError:
            where = ""
        data = {"user": post.user_id, "keyword": trigger.keyword, "tracker": trigger.tracker,
                "urgent": keyword in trigger.urgent_keywords, "text": text[:TEXT_LIMIT],
                "channel": post.channel_id, "root": post.thread_id,
                "files": list(post.file_ids)}
        message = _(":hourglass: You wrote {request} at {time} while I was offline, and it is "
                    "too old for me to act on by myself. Shall I file it as a ticket in "
                    "{tracker} now?").format(request=markdown.code(shown),
                                             time=local_time(user, post.create_at),
                                             tracker=label(trigger.tracker))
        if where:
            message += "\n" + markdown.link(_("Your message"), where)
        buttons = [ctx.button(_("File it"), "ticketlate", post.id, data, style="primary"),
                   ctx.button(_("Dismiss"), "ticketlatedismiss", post.id, {"user": post.user_id})]
        channel_id = await api.direct_channel(post.user_id)
        await api.create_post(channel_id, message, props={"attachments": [{"actions": buttons}]},
                              key=f"late:{post.id}", check_first=True)
        log.info("offered a late request (%s) to its author", trigger.tracker)

    async def on_file_late(self, click: Click, payload: Payload) -> dict[str, Any]:
        d = payload.data
        post_id = payload.subject
        if click.user_id != d.get("user"):
            return {"ephemeral_text": _("Only the person who wrote it can file it.")}
        if await self.rt.store.kv.get(f"late:{post_id}") == "dismissed":
            return {"ephemeral_text": _("You dismissed this request; write it again to file "
                                        "it.")}
        trigger = next((t for t in self.settings.triggers if t.keyword == d.get("keyword")
                        and t.tracker == d.get("tracker") and t.tracker in self.trackers), None)
        if trigger is None:
            return {"ephemeral_text": _("Requests like this one are no longer filed here.")}
        root = str(d.get("root") or post_id)
        self.linked.add(root)
        queued = await self._queue_ticket(trigger, post_id, str(d.get("channel") or ""), root,
                                          click.user_id, str(d.get("text") or ""),
                                          bool(d.get("urgent")), list(d.get("files") or []))
        if not queued:
            return {"ephemeral_text": _("It is already being filed: its number follows in your "
                                        "message's thread.")}
        await self._replace_buttons(click.post_id, _(":ticket: Filing it now: its number will "
                                                     "follow in your message's thread."))
        return {}

    async def on_dismiss_late(self, click: Click, payload: Payload) -> dict[str, Any]:
        post_id = payload.subject
        if click.user_id != payload.data.get("user"):
            return {"ephemeral_text": _("Only the person who wrote it can dismiss it.")}
        if await self.rt.store.outbox.get(f"ticket:{post_id}") is not None:
            return {"ephemeral_text": _("It is already being filed: its number follows in your "
                                        "message's thread.")}
        await self.rt.store.kv.put(f"late:{post_id}", "dismissed")
        await self._replace_buttons(click.post_id, _("Dismissed: nothing was filed."))
        return {}
