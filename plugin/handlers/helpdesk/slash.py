"""The slash command (`/ticket` by default): `/ticket <problem>` opens a ticket as a trigger word
does, in a thread of its own; `/ticket status N` and `/ticket mine` answer as their commands do."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ... import i18n, markdown
from ...context import Context
from ...events import SlashCommand
from ...i18n import _
from .closing import Closing
from .opening import Opening


def _lower(words: tuple[str, ...]) -> set[str]:
    return {w.lower() for w in words}


class Slash(Opening, Closing):
    """The slash command's sub-commands, over opening and status."""

    async def slash(self, ctx: Context, command: SlashCommand, text: str) -> dict[str, Any]:
        """`/ticket <text>` files a ticket as `112` does; `/ticket status N`; `/ticket mine`."""
        words = text.split()
        name = command.command
        first = words[0].lower() if words else ""
        # Sub-commands answer to their translations too (`/ticket статус 12`).
        if not words or first in _lower(i18n.aliases("help")):
            return {"text": _("`{command} <problem>` opens a ticket · `{command} status <number>` "
                              "· `{command} mine` lists your open tickets").format(command=name)
                    + " · " + _("`{command} close <number>` closes one of them").format(
                        command=name)}
        if first in _lower(i18n.aliases("status")):
            m = re.fullmatch(r"#?(\d+)", " ".join(words[1:]))
            if m is None:
                return {"text": _("Usage: `{command} status <number>`").format(command=name)}
            return {"text": await self.status_text(command.user_id, m.group(1)),
                    "response_type": self.settings.slash_response}
        if first in _lower(i18n.aliases("close")):
            m = re.fullmatch(r"#?(\d+)(?:\s+([\s\S]+))?", text.strip()[len(words[0]):].strip())
            if m is None:
                return {"text": _("Usage: `{command} close <number> [why]`").format(
                    command=name)}
            once = hashlib.sha256(command.trigger_id.encode()).hexdigest()[:24]
            return {"text": await self.close_text(command.user_id, m.group(1), None,
                                                  m.group(2) or "", once),
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
                user=who, text=markdown.without_bare_urls(text)),
            key=f"slash:{key}")
        post_id = str(root["id"])
        self.linked.add(post_id)
        await self._queue_ticket(trigger, post_id, command.channel_id, post_id,
                                 command.user_id, text.strip(), False, [])
        return {"text": _("Your ticket is being filed; its number will appear in the thread of "
                          "your request in this channel."),
                "response_type": self.settings.slash_response}
