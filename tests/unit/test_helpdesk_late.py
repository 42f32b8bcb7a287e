"""When a request found too late was written, as its author reads clocks."""

from __future__ import annotations

from datetime import UTC, datetime

from plugin.handlers.helpdesk.late import local_time

NOW = datetime(2026, 12, 7, 22, 30, tzinfo=UTC)
MORNING = int(datetime(2026, 12, 7, 9, 14, tzinfo=UTC).timestamp() * 1000)


def test_the_authors_timezone_is_used_and_today_is_a_time() -> None:
    paris = {"timezone": {"useAutomaticTimezone": "true", "automaticTimezone": "Europe/Paris"}}
    assert local_time(paris, MORNING, NOW) == "10:14"
    tokyo = {"timezone": {"useAutomaticTimezone": "false", "automaticTimezone": "Europe/Paris",
                          "manualTimezone": "Asia/Tokyo"}}
    # 18:14 in Tokyo, while it is already the 8th there.
    assert local_time(tokyo, MORNING, NOW) == "2026-12-07 18:14"


def test_without_a_known_timezone_utc_is_said() -> None:
    assert local_time({}, MORNING, NOW) == "09:14 UTC"
    assert local_time({"timezone": {"useAutomaticTimezone": "true",
                                    "automaticTimezone": "Mars/Olympus"}}, MORNING, NOW) \
        == "09:14 UTC"
    assert local_time({"timezone": "garbage"}, MORNING - 86_400_000, NOW) == "2026-12-06 09:14 UTC"
