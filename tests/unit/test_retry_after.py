"""Retry-After in both forms HTTP allows, as Mattermost's REST side and its websocket read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from plugin.mattermost import retry_after_seconds


def test_seconds_dates_and_nonsense() -> None:
    assert retry_after_seconds("7") == 7.0
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    wait = retry_after_seconds(soon)
    assert wait is not None and 25 <= wait <= 31
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # already past
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds(None) is None
