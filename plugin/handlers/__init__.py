"""The product's behaviour: one router per feature. `default_routers` is what `run` serves."""

from __future__ import annotations

from ..router import Router
from . import core


def default_routers() -> list[Router]:
    """Feature routers first; the core router (help, fallbacks) last, so features win."""
    return [core.router]
