"""Which triage channel a new ticket goes to."""

from __future__ import annotations

from typing import Any

from plugin.config import HelpdeskSettings
from plugin.handlers.helpdesk.triage import Triage


def triage(**settings: Any) -> Triage:
    return Triage(HelpdeskSettings.model_validate({"triage": settings}), {})


def test_routes_then_the_trackers_channel_then_everyones() -> None:
    t = triage(channel="it/support", trackers={"redmine": "dev/triage"}, routes=[
        {"tracker": "glpi", "field": "entities_id", "value": 3, "channel": "it/paris"},
        {"field": "itilcategories_id", "value": "7", "channel": "it/hardware"}])
    assert t._triage_ref("glpi", {"entities_id": 3}) == "it/paris"
    assert t._triage_ref("glpi", {"entities_id": "3"}) == "it/paris"
    assert t._triage_ref("redmine", {"entities_id": 3}) == "dev/triage"
    assert t._triage_ref("glpi", {"itilcategories_id": 7}) == "it/hardware"
    assert t._triage_ref("redmine", {}) == "dev/triage"
    assert t._triage_ref("glpi", {"entities_id": 4}) == "it/support"


def test_no_channel_no_triage() -> None:
    assert triage()._triage_ref("glpi", {"entities_id": 3}) == ""
    assert triage(trackers={"redmine": "dev/triage"})._triage_ref("glpi", {}) == ""
