"""The helpdesk as the bot sees it: one `Helpdesk`, and what it declares on its `Router`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bridge.tickets import Tracker

from ... import filters as F
from ...config import HelpdeskSettings, Trigger
from ...context import Context
from ...events import Message
from ...i18n import N_
from ...router import Router
from .core import label, log
from .followups import FollowUps
from .late import LateRequests
from .slash import Slash
from .triage_actions import TriageActions
from .watch import Watch

if TYPE_CHECKING:
    from ...runtime import Runtime

#: Seconds between looks at the threads other replicas linked to tickets, and how far each
#: look reaches back before the last one.
LINKED_REFRESH = 1.0
LINKED_OVERLAP = 30.0


class Helpdesk(Slash, LateRequests, TriageActions, FollowUps, Watch):
    """The helpdesk feature: its router, outbox executors and ticket watcher."""

    def __init__(self, settings: HelpdeskSettings, trackers: dict[str, Tracker]) -> None:
        super().__init__(settings, trackers)
        self._linked_at = 0.0
        self.router = Router("helpdesk")
        self._declare()

    def _declare(self) -> None:
        r = self.router
        r.on_start(self.start)
        r.on_stop(self.stop)
        r.executor("ticket", on_retry=self._queued_notice)(self._file_ticket)
        r.executor("comment")(self._file_comment)
        r.executor("ticket-answer")(self._send_answer)
        r.action("ticketaccept")(self.on_accept)
        r.action("ticketrefuse")(self.on_refuse)
        r.dialog("ticketrefuse")(self.on_refuse_form)
        r.executor("ticket-close")(self._close_ticket)
        r.executor("triage-render")(self._render_triage)
        r.executor("triage-action")(self._triage_action)
        r.action("triagetake")(self.on_take)
        r.action("triageurgency")(self.on_urgency)
        for form in ("triagereply", "triagenote", "triagesolve"):
            r.action(form)(self.on_form)
            r.dialog(form)(self.on_form_sent)
        r.action("ticketlate")(self.on_file_late)
        r.action("ticketlatedismiss")(self.on_dismiss_late)
        r.every(self.settings.poll_interval, name="helpdesk-watch")(self.watch)
        r.every(LINKED_REFRESH, name="helpdesk-linked")(self._learn_linked)
        # Replies in a linked thread go to the ticket first, whatever they say.
        r.message(self._in_linked_thread)(self.thread_reply)
        for trigger in self.settings.triggers:
            if trigger.tracker not in self.trackers:
                continue
            words = [trigger.keyword, *trigger.urgent_keywords]
            handler = self._opener(trigger)
            description = N_("open a ticket in {tracker}")
            if trigger.urgent_keywords:
                description = N_("open a ticket in {tracker} (`{urgent}` for an urgent one)")
            words += trigger.aliases
            r.message(F.Keyword(*words), channels=trigger.channels or None,
                      usage=f"{trigger.keyword} <problem>", description=description,
                      describe={"tracker": label(trigger.tracker),
                                "urgent": (trigger.urgent_keywords or [""])[0]},
                      late=self._late_offer(trigger))(handler)
        if self.trackers and self.default_tracker and self.settings.slash_command:
            r.slash(self.settings.slash_command,
                    description=N_("open a ticket, or `status N`, or `mine`"))(self.slash)
        if self.trackers and self.default_tracker:
            r.command("status", args=r"(?:(?P<tracker>[A-Za-z][\w-]*)\s+)?#?(?P<number>\d+)",
                      usage="status <number>",
                      description=N_("a ticket's status, assignee and link"))(self.status)
            r.message(F.Regex(r"^\s*#(?P<number>\d+)\s*$"), direct=True)(self.status_of)
            r.command("my tickets", description=N_("your open tickets"))(self.my_tickets)
            r.command("close", args=r"(?:(?P<tracker>[A-Za-z][\w-]*)\s+)?#?(?P<number>\d+)"
                                    r"(?:\s+(?P<reason>[\s\S]+))?",
                      usage="close <number> [why]",
                      description=N_("close one of your tickets"))(self.close)

    def _in_linked_thread(self, msg: Message) -> bool:
        return bool(msg.post.root_id) and msg.post.root_id in self.linked

    def _opener(self, trigger: Trigger) -> Callable[..., Awaitable[None]]:
        async def open_ticket(ctx: Context, event: Message, text: str, keyword: str) -> None:
            await self.open_ticket(ctx, event, text, keyword, trigger)
        open_ticket.__name__ = f"open_ticket_{trigger.keyword}"
        return open_ticket

    async def start(self, rt: Runtime) -> None:
        self._rt = rt
        self._linked_at = time.time()
        self.linked = await self._linked_since(0.0)

    async def _linked_since(self, since: float) -> set[str]:
        """Threads linked to a ticket since then; threads of tickets still queued take
        replies too (they are filed later)."""
        store = self.rt.store
        queued = {e.payload.get("root_id", "") for e in await store.outbox.open("ticket",
                                                                                 since)}
        return (await store.tickets.linked_roots(since) | queued) - {""}

    async def _learn_linked(self) -> None:
        """Learn the threads other replicas linked (a ticket from a slash command, a click or
        an outgoing webhook one of them served): this replica may be the one reading the
        replies. Clocks of replicas' hosts differ a little: the looks overlap."""
        if not self.rt.store.shared:
            return  # nobody else links threads
        since, self._linked_at = self._linked_at - LINKED_OVERLAP, time.time()
        self.linked |= await self._linked_since(since)

    async def stop(self) -> None:
        for tracker in self.trackers.values():
            try:
                await tracker.aclose()
            except Exception as exc:
                log.warning("closing %s: %s", tracker.name, exc)
