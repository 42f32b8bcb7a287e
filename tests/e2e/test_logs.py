"""End to end: the real process's log names the post or alert each line concerns, in JSON (one
object per line) or text, and never shows a configured secret."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import BOT_TOKEN, SECRET, replies_to, wait_until
from .test_alerts import ALERTS_TOKEN, GLPI_TOKEN, Env

pytestmark = pytest.mark.e2e

SECRETS = (BOT_TOKEN, SECRET, GLPI_TOKEN, ALERTS_TOKEN)


class World(Env):
    """The alerts tests' bot, simulators and helpers, with the helpdesk on and a log format."""

    def __init__(self, tmp: Path, log_format: str | None) -> None:
        env = {"HELPDESK_TRACKER": "glpi"}
        if log_format is not None:
            env["SWITCHBOARD_LOG_FORMAT"] = log_format
        super().__init__(tmp, env, helpdesk={"poll_interval": 0.3})

    def file_ticket(self) -> tuple[str, int]:
        """Say `112 printer broken`; the post id and the ticket number once it is answered."""
        post = self.mm_thread.call(self.mm.post_as("alice", "helpdesk", "112 printer broken"))
        reply = wait_until(lambda: next((r for r in replies_to(self.mm, post["id"])
                                         if "opened in GLPI" in r["message"]), None),
                           20, "the ticket's reply")
        m = re.search(r"#(\d+)", reply["message"])
        assert m, reply["message"]
        return str(post["id"]), int(m.group(1))

    def alert(self, body: dict[str, Any]) -> None:
        r = self.send(body)
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text

    def entries(self) -> list[dict[str, Any]]:
        """Every line of the log, each of which must be one JSON object."""
        out = []
        for n, line in enumerate(self.bot.log().splitlines(), 1):
            try:
                entry = json.loads(line)
            except ValueError:
                raise AssertionError(f"log line {n} is not JSON: {line!r}") from None
            assert isinstance(entry, dict), line
            assert {"time", "level", "logger", "message"} <= set(entry), line
            out.append(entry)
        return out


@pytest.fixture
def json_world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, "json")
    yield w
    w.close()


def test_json_lines_name_the_post_and_the_alert_and_hide_secrets(json_world: World) -> None:
    w = json_world
    post_id, number = w.file_ticket()
    w.alert({"key": "disk-db1", "title": "Disk full on db1", "severity": "critical",
             "host": "db1"})
    # A sender may put anything in a key: the mask covers the subject too.
    w.alert({"key": f"leak-{ALERTS_TOKEN}", "title": "Odd key", "severity": "info"})

    def settled() -> list[dict[str, Any]] | None:
        entries = w.entries()
        posted = [e for e in entries if e.get("alert_key") == "generic:disk-db1"
                  and e["message"].startswith("posted as ")]
        return entries if posted else None

    entries = wait_until(settled, 20, "the alert's post to be logged")
    log = w.bot.log()
    for secret in SECRETS:
        assert secret not in log

    # The helpdesk's and the outbox's lines about the request all name its post.
    about_post = [e for e in entries if e["logger"] in ("switchboard.helpdesk",
                                                        "switchboard.outbox")
                  and (post_id in e["message"] or f"#{number}" in e["message"]
                       or e.get("post_id") == post_id)]
    messages = [e["message"] for e in about_post]
    assert "ticket request queued for glpi" in messages, messages
    assert f"filed as glpi #{number}" in messages, messages
    assert f"ticket ticket:{post_id}: attempt 1" in messages, messages
    for e in about_post:
        assert e.get("post_id") == post_id, e
    # So does the tracker client's, called from the outbox run.
    created = [e for e in entries if e["message"] == f"GLPI ticket {number} created"]
    assert created and created[0].get("post_id") == post_id, created
    assert not any(e.get("alert_key") for e in about_post + created)

    # The alert's intake, its rendering run and its post all name its key.
    about_alert = [e for e in entries if "disk-db1" in e["message"]
                   or e.get("alert_key") == "generic:disk-db1"]
    messages = [e["message"] for e in about_alert]
    assert "alert accepted (firing, critical): Disk full on db1" in messages, messages
    assert any(m.startswith("posted as ") for m in messages), messages
    assert "alert-render alert-render:generic:disk-db1: attempt 1" in messages, messages
    for e in about_alert:
        assert e.get("alert_key") == "generic:disk-db1", e
        assert "post_id" not in e, e
    assert any(e.get("alert_key") == "generic:leak-[redacted]" for e in entries)


def test_text_is_the_default_and_names_the_post(tmp_path: Path) -> None:
    w = World(tmp_path, None)
    try:
        post_id, number = w.file_ticket()
        pattern = re.compile(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} INFO "
                             rf"switchboard\.helpdesk \[post={post_id}\] "
                             rf"filed as glpi #{number}$", re.MULTILINE)
        wait_until(lambda: pattern.search(w.bot.log()), 10, "the text line of the filing")
        assert not w.bot.log().lstrip().startswith("{")
    finally:
        w.close()
