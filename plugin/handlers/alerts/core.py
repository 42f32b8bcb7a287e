"""What every part of the alerts feature shares: its settings and sources, the runtime, the locks
that serialize changes to an incident, saving a state (and queueing its post's render), and the
check every click goes through."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.alerts import Alert, AlertSource, Severity
from bridge.tickets import Tracker

from ...access import Membership
from ...config import AlertSettings
from ...events import Click
from ...i18n import N_, _, pgettext
from ...listener import HTTPError
from ...mattermost import MattermostError
from ...signing import Payload
from ...store import AlertRecord
from ...store.alert_state import AlertState

if TYPE_CHECKING:
    from ...runtime import Runtime

log = logging.getLogger("switchboard.alerts")

Parser = Callable[[Any], list[Alert]]

#: What the post says while a decision is on its way to the monitoring system.
PENDING = {"ack": N_("Acknowledging…"), "unack": N_("Removing the acknowledgement…"),
           "silence": N_("Silencing…"), "unsilence": N_("Ending the silence…"),
           "resolve": N_("Resolving…")}


def hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


def severity_name(severity: Severity) -> str:
    """A severity in the language in force (its value stays the word routes and filters use)."""
    names = {"critical": pgettext("severity", "critical"), "high": pgettext("severity", "high"),
             "warning": pgettext("severity", "warning"), "info": pgettext("severity", "info"),
             "unknown": pgettext("severity", "unknown")}
    return names.get(severity.value, severity.value)


class Refusal(Exception):
    """A click from someone who may not act: told to them, nothing changes."""


class AlertsCore:
    """The state every part of the feature works on."""

    def __init__(self, settings: AlertSettings, parsers: dict[str, Parser],
                 sources: dict[str, AlertSource], trackers: dict[str, Tracker]) -> None:
        self.settings = settings
        self.parsers = parsers
        self.sources = sources
        self.trackers = trackers
        self._rt: Runtime | None = None
        self._responders: Membership | None = None
        self.accepted = 0
        self.dropped = 0
        # Every read-change-save of an incident's state holds its lock (the store serves one
        # process); new alerts also hold their channel's, so storm counting is exact.
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    @property
    def rt(self) -> Runtime:
        if self._rt is None:
            raise RuntimeError("the alerts feature has not been started")
        return self._rt

    @contextlib.asynccontextmanager
    async def _lock(self, scope: str, key: str) -> AsyncIterator[None]:
        """One read-change-save of an incident (or a digest, a channel's storm count) at a
        time: in this process, then between replicas sharing the store."""
        async with self._local_lock(scope, key), self.rt.store.locked(f"alert|{scope}|{key}"):
            yield

    def _local_lock(self, scope: str, key: str) -> asyncio.Lock:
        lock = self._locks.get((scope, key))
        if lock is None:
            if len(self._locks) > 10_000:  # forget idle locks now and then
                for k in [k for k, v in self._locks.items() if not v.locked()]:
                    del self._locks[k]
            lock = self._locks[(scope, key)] = asyncio.Lock()
        return lock

    async def _channel(self, ref: str) -> str:
        """The id of a channel given as `team/channel` or an id (HTTPError 503 when there is
        none or it cannot be found)."""
        if not ref:
            raise HTTPError(503, "no channel for this alert: set ALERTS_CHANNEL or a route")
        try:
            return await self.rt.api.channel_id(ref)
        except MattermostError as exc:
            log.error("alert channel %s cannot be found: %s", ref, exc)
            raise HTTPError(503, f"the alert channel {ref!r} cannot be found") from None

    async def _save(self, source: str, key: str, channel_id: str, state: AlertState,
                    notes: list[str]) -> AlertRecord:
        rec = await self.rt.store.alerts.save(source, key, channel_id, state, notes)
        if not state.digest_key:
            await self._queue_render(rec)
        elif notes:
            await self.rt.store.alerts.mark_notes_posted(source, key)
        return rec

    async def _queue_render(self, rec: AlertRecord) -> None:
        await self.rt.store.outbox.requeue(
            f"alert-render:{rec.source}:{rec.key}", "alert-render",
            {"source": rec.source, "key": rec.key, "revision": rec.revision})
        self.rt.outbox.kick()

    async def _clicked(self, click: Click, payload: Payload, op: str = "") -> AlertRecord:
        """The clicked incident, if the click may act on it: its button is current, and the
        clicker is among the responders (`Refusal` otherwise)."""
        source, _sep, key = payload.subject.partition("|")
        rec = await self.rt.store.alerts.get(source, key)
        if rec is None:
            raise HTTPError(404, "no such alert")
        state = rec.incident
        if op == "ack" and state.ack:
            # Two people pressed at once: the second learns who was first.
            raise Refusal(_("Already acknowledged by @{user}.").format(user=state.ack.by)
                          if state.ack.by else
                          _("Already acknowledged by the monitoring system."))
        if payload.data.get("epoch") != str(state.epoch):
            log.warning("refused an out-of-date click on %s %s from %s", source, key,
                        click.user_id)
            raise HTTPError(403, "this button is out of date")
        await self._may_act(click)
        return rec

    def _digest_buttons(self, rec: AlertRecord) -> list[dict[str, Any]]:
        """The buttons of a storm's digest post (`digests.py` draws them)."""
        return []

    async def _may_act(self, click: Click) -> None:
        """Refusal unless the clicker is among the responders."""
        assert self._responders is not None
        if not self._responders.anyone and not await self._responders.includes(click.user_id):
            raise Refusal(_("You are not among the people who may act on alerts."))
