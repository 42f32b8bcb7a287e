"""The metrics read from the store when /metrics is asked for: incidents by source and state,
unfinished outbox entries by kind and state, and the age of the oldest."""

from __future__ import annotations

import time
from pathlib import Path

from bridge.alerts import Alert, AlertStatus, Severity
from plugin.metrics import Metrics
from plugin.store import SQLiteStore
from plugin.store.alert_state import Ack, AlertState, DigestState, Silence


def incident(source: str, key: str, status: AlertStatus = AlertStatus.FIRING,
             **decided: object) -> AlertState:
    alert = Alert(source=source, key=key, status=status, severity=Severity.WARNING, title=key)
    return AlertState(alert=alert, first_seen=time.time(), **decided)  # type: ignore[arg-type]


async def test_gauges_follow_the_store_and_drop_what_is_gone(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    metrics = Metrics()
    now = time.time()
    save = store.alerts.save
    await save("zabbix", "1", "c", incident("zabbix", "1"))
    await save("zabbix", "2", "c", incident("zabbix", "2", ack=Ack(by="alice", at=now)))
    await save("zabbix", "3", "c", incident("zabbix", "3", ack=Ack(by="bob", at=now),
                                            silence=Silence(by="bob", until=now + 600)))
    await save("zabbix", "4", "c", incident("zabbix", "4",
                                            silence=Silence(by="bob", until=now - 1)))
    await save("alertmanager", "a", "c", incident("alertmanager", "a", AlertStatus.RESOLVED))
    await save("digest", "d", "c", DigestState(source="zabbix"))
    assert await store.outbox.put("ticket:p1", "ticket", {})
    assert await store.outbox.put("ticket:p2", "ticket", {})
    assert await store.outbox.put("alert-render:x", "alert-render", {})
    await store.outbox.update("ticket:p2", state="filed")
    await store.outbox.update("alert-render:x", state="done")

    await metrics.refresh(store)
    value = metrics.registry.get_sample_value
    assert value("switchboard_alerts", {"source": "zabbix", "state": "firing"}) == 2  # 1, 4
    assert value("switchboard_alerts", {"source": "zabbix", "state": "acknowledged"}) == 1
    assert value("switchboard_alerts", {"source": "zabbix", "state": "silenced"}) == 1
    assert value("switchboard_alerts", {"source": "alertmanager", "state": "resolved"}) == 1
    assert value("switchboard_alerts", {"source": "digest", "state": "firing"}) is None
    assert value("switchboard_outbox_entries", {"kind": "ticket", "state": "queued"}) == 1
    assert value("switchboard_outbox_entries", {"kind": "ticket", "state": "filed"}) == 1
    assert value("switchboard_outbox_entries", {"kind": "alert-render", "state": "done"}) is None
    age = value("switchboard_outbox_oldest_seconds", {"kind": "ticket"})
    assert age is not None and 0 <= age < 60

    # Done and pruned: the gauges drop the label sets, they do not keep the last value.
    await store.outbox.update("ticket:p1", state="done")
    await store.outbox.update("ticket:p2", state="done")
    await metrics.refresh(store)
    assert value("switchboard_outbox_entries", {"kind": "ticket", "state": "queued"}) is None
    assert value("switchboard_outbox_oldest_seconds", {"kind": "ticket"}) is None
    await store.close()
