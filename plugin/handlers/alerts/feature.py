"""The alerts feature as the bot sees it: one `Alerts`, and what it declares on its `Router`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.alerts import AlertSource
from bridge.tickets import Tracker

from ...access import Membership
from ...config import AlertSettings
from ...router import Router
from .core import Parser, log
from .digests import DigestDecisions
from .escalation import KIND as ESCALATE
from .intake import Intake
from .render import Rendering
from .tickets import Tickets

if TYPE_CHECKING:
    from ...runtime import Runtime


class Alerts(Intake, Rendering, DigestDecisions, Tickets):
    """The alerts feature: ingestion, rendering, clicks, tickets from alerts."""

    def __init__(self, settings: AlertSettings, parsers: dict[str, Parser],
                 sources: dict[str, AlertSource], trackers: dict[str, Tracker]) -> None:
        super().__init__(settings, parsers, sources, trackers)
        self.router = Router("alerts")
        r = self.router
        r.on_start(self.start)
        r.on_stop(self.stop)
        r.intake("alerts")(self.ingest)
        r.executor("alert-render")(self._render)
        r.executor("alert-action")(self._act)
        r.executor("alert-ticket")(self._file_ticket)
        r.executor(ESCALATE)(self._escalate)
        r.action("alertack")(self.on_ack)
        r.action("alertunack")(self.on_unack)
        r.action("alertsilence")(self.on_silence)
        r.action("alertunsilence")(self.on_unsilence)
        r.action("alertresolve")(self.on_resolve)
        r.action("alertackall")(self.on_ack_all)
        r.action("alertackone")(self.on_ack_one)
        r.action("alertticket")(self.on_ticket)
        r.dialog("alertticket")(self.on_ticket_dialog)

    async def start(self, rt: Runtime) -> None:
        self._rt = rt
        self._responders = Membership(rt.api, self.settings.responders)

    async def stop(self) -> None:
        for source in self.sources.values():
            try:
                await source.aclose()
            except Exception as exc:
                log.warning("closing %s: %s", source.name, exc)
