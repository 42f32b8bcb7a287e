"""The alert state's JSON form: rows stored by earlier runs load into the typed values unchanged,
and what is written back has the same shape (the store's pruning reads it too)."""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.alerts import Alert, AlertKind, AlertStatus, Severity
from plugin.store import AlertRecord, SQLiteStore
from plugin.store.alert_state import (
    DIGEST_SOURCE,
    Ack,
    AlertState,
    DigestMember,
    DigestState,
    Silence,
    TicketRef,
    alert_from_json,
    alert_to_json,
    state_from_json,
)

#: An incident as stored: acknowledged, silenced, with a ticket, a failed decision, a decision
#: under way, and grouped into a storm's digest.
STORED_INCIDENT: dict[str, Any] = {
    "alert": {
        "source": "alertmanager", "key": "fp1@2024-05-01T10:00:00Z", "status": "firing",
        "severity": "critical", "title": "Disk full", "host": "db1", "service": "disk",
        "text": "92% used", "labels": {"team": "db", "alertname": "DiskFull"},
        "links": [["Grafana", "https://grafana.example/d/1"], ["Runbook", "https://rb/x"]],
        "started_at": "2024-05-01T10:00:00+00:00", "kind": "alert", "update": "",
        "ref": {"fingerprint": "fp1", "matchers": [{"name": "alertname", "value": "DiskFull"}]}},
    "ack": {"by": "alice", "at": 1714557600.5, "handle": "silence-7", "external": False},
    "pending": "silence", "epoch": 3,
    "silence": {"by": "bob", "until": 1714561200.0, "handle": ""},
    "ticket": {"tracker": "glpi", "id": "42", "url": "https://glpi.example/42"},
    "error": "Silencing failed: connection refused", "first_seen": 1714557000.25,
    "mention": "@db-oncall", "digest": "alertmanager:chan1:28575950"}

#: A new incident as stored when it first arrives (no storm: no digest key at all).
STORED_NEW: dict[str, Any] = {
    "alert": {
        "source": "zabbix", "key": "1234", "status": "resolved", "severity": "warning",
        "title": "High load", "host": "", "service": "", "text": "", "labels": {},
        "links": [], "started_at": None, "kind": "alert", "update": "", "ref": {}},
    "ack": None, "pending": None, "epoch": 0, "silence": None, "ticket": None, "error": "",
    "first_seen": 1714557000.0, "mention": ""}

#: An alert with a name (what fired), stored since alerts have one.
STORED_NAMED: dict[str, Any] = {
    **STORED_NEW, "alert": {
        "source": "alertmanager", "key": "fp2", "status": "firing", "severity": "warning",
        "title": "API latency above 2 s", "name": "HighLatency", "host": "api1:9100",
        "service": "api", "text": "", "labels": {"alertname": "HighLatency", "team": "web"},
        "links": [], "started_at": None, "kind": "alert", "update": "", "ref": {}}}

#: Acknowledged in the monitoring system itself.
STORED_EXTERNAL_ACK: dict[str, Any] = {
    **STORED_NEW, "ack": {"by": "", "at": 1714557100.0, "handle": "", "external": True},
    "epoch": 2}

STORED_DIGEST: dict[str, Any] = {
    "source": "alertmanager",
    "members": [{"key": "a", "title": "Disk full", "host": "db1", "status": "firing"},
                {"key": "b", "title": "Load", "host": "", "status": "resolved"}],
    "count": 57, "resolved": 1}


def through_json(d: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(d))
    return result


@pytest.mark.parametrize("stored", [STORED_INCIDENT, STORED_NEW, STORED_EXTERNAL_ACK,
                                    STORED_NAMED])
def test_a_stored_incident_round_trips_unchanged(stored: dict[str, Any]) -> None:
    original = copy.deepcopy(stored)
    state = AlertState.from_json(through_json(stored))
    assert through_json(state.to_json()) == stored
    assert list(state.to_json()) == list(stored)  # the same keys, in the same order
    assert stored == original  # reading does not change what was read


def test_a_stored_incident_reads_as_typed_values() -> None:
    state = AlertState.from_json(through_json(STORED_INCIDENT))
    assert state.alert == Alert(
        source="alertmanager", key="fp1@2024-05-01T10:00:00Z", status=AlertStatus.FIRING,
        severity=Severity.CRITICAL, title="Disk full", host="db1", service="disk",
        text="92% used", labels={"team": "db", "alertname": "DiskFull"},
        links=(("Grafana", "https://grafana.example/d/1"), ("Runbook", "https://rb/x")),
        started_at=datetime(2024, 5, 1, 10, 0, tzinfo=UTC), kind=AlertKind.ALERT,
        ref={"fingerprint": "fp1", "matchers": [{"name": "alertname", "value": "DiskFull"}]})
    assert state.ack == Ack(by="alice", at=1714557600.5, handle="silence-7")
    assert state.silence == Silence(by="bob", until=1714561200.0)
    assert state.ticket == TicketRef(tracker="glpi", id="42", url="https://glpi.example/42")
    assert (state.pending, state.epoch, state.error, state.first_seen, state.mention,
            state.digest_key) == ("silence", 3, "Silencing failed: connection refused",
                                  1714557000.25, "@db-oncall", "alertmanager:chan1:28575950")
    fresh = AlertState.from_json(through_json(STORED_NEW))
    assert (fresh.ack, fresh.pending, fresh.silence, fresh.ticket, fresh.digest_key) == (
        None, None, None, None, "")
    assert fresh.alert.started_at is None and fresh.alert.links == ()
    external = AlertState.from_json(through_json(STORED_EXTERNAL_ACK))
    assert external.ack == Ack(by="", at=1714557100.0, external=True)


def test_a_new_state_is_written_in_the_stored_shape() -> None:
    alert = alert_from_json(through_json(STORED_NEW["alert"]))
    state = AlertState(alert=alert, first_seen=1714557000.0)
    assert through_json(state.to_json()) == STORED_NEW
    assert through_json(alert_to_json(alert)) == STORED_NEW["alert"]


def test_a_stored_digest_round_trips_unchanged() -> None:
    digest = DigestState.from_json(through_json(STORED_DIGEST))
    assert digest == DigestState(
        source="alertmanager", count=57, resolved=1,
        members=(DigestMember("a", "Disk full", "db1", AlertStatus.FIRING),
                 DigestMember("b", "Load", "", AlertStatus.RESOLVED)))
    assert through_json(digest.to_json()) == STORED_DIGEST
    assert through_json(DigestState("zabbix").to_json()) == {
        "source": "zabbix", "members": [], "count": 0, "resolved": 0}


def test_the_source_tells_a_digest_from_an_incident() -> None:
    assert isinstance(state_from_json(DIGEST_SOURCE, through_json(STORED_DIGEST)), DigestState)
    assert isinstance(state_from_json("alertmanager", through_json(STORED_INCIDENT)),
                      AlertState)


def test_a_record_hands_out_the_state_it_holds() -> None:
    incident = AlertRecord("zabbix", "1234", "c", "", AlertState.from_json(STORED_NEW), 1, 0.0)
    digest = AlertRecord(DIGEST_SOURCE, "k", "c", "", DigestState.from_json(STORED_DIGEST), 1,
                         0.0)
    assert incident.incident is incident.state and digest.digest is digest.state
    with pytest.raises(TypeError):
        _ = incident.digest
    with pytest.raises(TypeError):
        _ = digest.incident


# --- through the store --------------------------------------------------------------------------
@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "s.db")
    await s.open()
    yield s
    await s.close()


def stored_text(path: Path, source: str, key: str) -> dict[str, Any]:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT state FROM alerts WHERE source = ? AND key = ?",
                         (source, key)).fetchone()
    finally:
        db.close()
    result: dict[str, Any] = json.loads(row[0])
    return result


async def test_rows_written_before_load_and_are_written_back_alike(
        store: SQLiteStore, tmp_path: Path) -> None:
    # Rows as the earlier code wrote them: its JSON text, straight into the table.
    def insert(db: sqlite3.Connection) -> None:
        for source, key, state in (("alertmanager", "k", STORED_INCIDENT),
                                   ("zabbix", "1234", STORED_NEW),
                                   (DIGEST_SOURCE, "d", STORED_DIGEST)):
            db.execute("INSERT INTO alerts(source, key, channel_id, state, created_at, "
                       "updated_at) VALUES (?, ?, 'c', ?, 1, 1)",
                       (source, key, json.dumps(state)))

    await store.engine.run(insert)
    incident = await store.alerts.get("alertmanager", "k")
    fresh = await store.alerts.get("zabbix", "1234")
    digest = await store.alerts.get(DIGEST_SOURCE, "d")
    assert incident is not None and fresh is not None and digest is not None
    assert incident.incident == AlertState.from_json(STORED_INCIDENT)
    assert digest.digest == DigestState.from_json(STORED_DIGEST)
    # Saved again unchanged, each row keeps its JSON.
    for rec in (incident, fresh, digest):
        saved = await store.alerts.save(rec.source, rec.key, rec.channel_id, rec.state)
        assert saved.state == rec.state and saved.revision == rec.revision + 1
    path = tmp_path / "s.db"
    assert stored_text(path, "alertmanager", "k") == STORED_INCIDENT
    assert stored_text(path, "zabbix", "1234") == STORED_NEW
    assert stored_text(path, DIGEST_SOURCE, "d") == STORED_DIGEST
