"""The product's behaviour: one router (or feature) per concern."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.tickets import Tracker

from ..config import Config
from ..router import Router
from . import core
from .alerts import Alerts
from .helpdesk import Helpdesk

if TYPE_CHECKING:
    from ..app import Feature


def default_features(config: Config, trackers: dict[str, Tracker]) -> list[Router | Feature]:
    """Feature routers first; the core router (help, fallbacks) last, so features win."""
    from ..monitoring import build_parsers, build_sources
    s = config.settings
    return [Helpdesk(s.helpdesk, trackers),
            Alerts(s.alerts, build_parsers(), build_sources(s.alerts), trackers), core.router]


def default_routers() -> list[Router]:
    """Only the built-in commands (no trackers)."""
    return [core.router]
