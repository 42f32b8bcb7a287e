"""The product's behaviour: one module per feature, each with its `Router`.

A feature is included here with one line. Order matters for messages: the first route that
takes a message wins, so features come first and `help` (with the fallback for direct messages
nothing else took) comes last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.tickets import Tracker

from ..config import Config
from ..router import Router
from . import help, ping, selftest
from .alerts import Alerts
from .helpdesk import Helpdesk

if TYPE_CHECKING:
    from ..app import Feature

#: Built-in features every deployment has, in the order their routes are tried.
BUILT_IN: tuple[Router, ...] = (ping.router, selftest.router, help.router)


def default_features(config: Config, trackers: dict[str, Tracker]) -> list[Router | Feature]:
    """Feature routers first; the built-in ones (help and the DM fallback last), so features
    win."""
    from ..monitoring import build_parsers, build_sources
    s = config.settings
    return [Helpdesk(s.helpdesk, trackers),
            Alerts(s.alerts, build_parsers(s.alerts), build_sources(s.alerts), trackers), *BUILT_IN]


def default_routers() -> list[Router]:
    """Only the built-in commands (no trackers)."""
    return list(BUILT_IN)
