"""Malformed and hostile payloads against the real process: always a 2xx or a 4xx with a JSON
reason, never a 5xx, and the bot keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugin.sandbox.mattermost import SimulatorThread

from .harness import BOT_TOKEN, BotProcess

pytestmark = pytest.mark.e2e

TOKEN = "hostile-alerts-token-0123456"
SOURCES = ["generic", "alertmanager", "zabbix", "nagios"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(["alerts", "status", "labels", "title", "key", "version",
                                       "event_id", "event_value", "host", "service", "type",
                                       "notification_type", "startsAt", "fingerprint",
                                       "annotations", "severity", "state", "x"]) | st.text(
        max_size=10), children, max_size=6),
    max_leaves=25)


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotProcess]:
    mm = SimulatorThread(bot_token=BOT_TOKEN)
    sim = mm.start()
    tmp: Path = tmp_path_factory.mktemp("hostile")
    b = BotProcess(sim, tmp, env={"ALERTS_TOKEN": TOKEN,
                                  "ALERTS_CHANNEL": "sandbox/town-square"}).start()
    try:
        b.wait_ready()
        yield b
        assert b.stop() == 0, b.log()
    finally:
        if b.proc is not None and b.proc.poll() is None:
            b.kill()
        mm.stop()


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    if r.status_code >= 400:
        assert isinstance(r.json()["error"], str) and "Traceback" not in r.text


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.sampled_from(SOURCES), body=json_values)
def test_hostile_json_to_alert_routes(bot: BotProcess, source: str, body: object) -> None:
    r = httpx.post(f"{bot.url}/alerts/{source}", content=json.dumps(body), timeout=10,
                   headers={"Authorization": f"Bearer {TOKEN}",
                            "Content-Type": "application/json"})
    check(r)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/alerts/generic", "/actions/selftest", "/dialogs", "/slash",
                             "/hooks/x"]),
       raw=st.binary(max_size=300),
       ctype=st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                              "text/plain", "multipart/form-data; boundary=x"]))
def test_hostile_bytes_everywhere(bot: BotProcess, path: str, raw: bytes, ctype: str) -> None:
    r = httpx.post(f"{bot.url}{path}", content=raw, timeout=10,
                   headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": ctype})
    check(r)


def test_still_serving_after_the_storm_of_garbage(bot: BotProcess) -> None:
    assert httpx.get(f"{bot.url}/healthz", timeout=5).status_code == 200
    ok = httpx.post(f"{bot.url}/alerts/generic", json={"title": "after the garbage"},
                    headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
