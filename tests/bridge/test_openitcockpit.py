"""openITCOCKPIT: decisions as queued external commands through its API, against the simulator
of its documented endpoint (errors included); the notification's UUIDs that make them
possible."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bridge.alerts import Alert, SourceError, SourceUnavailable
from bridge.icinga import parse_nagios
from bridge.openitcockpit import OpenITCockpitClient
from plugin.sandbox.openitcockpit import OpenITCockpitSimulator

KEY = "oitc-api-key-0123456789abcdef"
HOST_UUID = "c36b8048-93ce-4385-ac19-ab5c90574b77"
SERVICE_UUID = "74fd8f59-1348-4e16-85f0-4a5c57c7dd62"


def notification(**extra: object) -> dict[str, object]:
    return {"type": "Service", "notification_type": "PROBLEM", "host": "web01",
            "service": "disk", "state": "CRITICAL", "output": "DISK CRITICAL",
            "host_uuid": HOST_UUID, "service_uuid": SERVICE_UUID, **extra}


def alert(**extra: object) -> Alert:
    return parse_nagios(notification(**extra), source="openitcockpit")[0]


@pytest.fixture
async def sim() -> AsyncIterator[OpenITCockpitSimulator]:
    simulator = OpenITCockpitSimulator(api_key=KEY, hosts={HOST_UUID: [SERVICE_UUID]})
    await simulator.start()
    yield simulator
    await simulator.stop()


def test_the_notification_keeps_the_object_uuids() -> None:
    got = alert()
    assert got.source == "openitcockpit" and got.host == "web01" and got.service == "disk"
    assert got.ref["host_uuid"] == HOST_UUID and got.ref["service_uuid"] == SERVICE_UUID
    host = parse_nagios({**notification(type="Host"), "state": "DOWN"}, source="openitcockpit")
    assert "service_uuid" not in host[0].ref
    with pytest.raises(ValueError, match="host_uuid"):
        parse_nagios(notification(host_uuid="a;b c"))


async def test_decisions_become_queued_commands(sim: OpenITCockpitSimulator) -> None:
    client = OpenITCockpitClient(url=sim.url, api_key=KEY)
    try:
        assert await client.acknowledge(alert(), "alice", "on it") == ""
        await client.unacknowledge(alert(), "", "bob")
        await client.silence(alert(), 3600, "carol")
        host_alert = parse_nagios({**notification(type="Host"), "state": "DOWN"},
                                  source="openitcockpit")[0]
        await client.acknowledge(host_alert, "dave", "")
    finally:
        await client.aclose()
    ack, unack, downtime, host_ack = sim.commands
    assert ack == {"command": "ACKNOWLEDGE_SVC_PROBLEM", "hostUuid": HOST_UUID,
                   "serviceUuid": SERVICE_UUID, "sticky": 2, "notify": 1, "persistent": 1,
                   "author": "alice", "comment": "on it"}
    assert unack == {"command": "REMOVE_SVC_ACKNOWLEDGEMENT", "hostUuid": HOST_UUID,
                     "serviceUuid": SERVICE_UUID}
    assert downtime["command"] == "SCHEDULE_SVC_DOWNTIME" and downtime["fixed"] == 1
    assert downtime["end_time"] - downtime["start_time"] == 3600 == downtime["duration"]
    assert downtime["author"] == "carol"
    assert host_ack["command"] == "ACKNOWLEDGE_HOST_PROBLEM" and "serviceUuid" not in host_ack
    assert host_ack["comment"] == "Acknowledged by dave"


async def test_sticky_and_notify_are_choices(sim: OpenITCockpitSimulator) -> None:
    client = OpenITCockpitClient(url=sim.url, api_key=KEY, sticky=False, notify=False)
    try:
        await client.acknowledge(alert(), "alice", "quietly")
    finally:
        await client.aclose()
    assert (sim.commands[0]["sticky"], sim.commands[0]["notify"]) == (0, 0)


async def test_refusals_and_outages_never_show_the_key(sim: OpenITCockpitSimulator) -> None:
    wrong = OpenITCockpitClient(url=sim.url, api_key="not-the-key")
    good = OpenITCockpitClient(url=sim.url, api_key=KEY)
    gone = OpenITCockpitClient(url="http://127.0.0.1:9", api_key=KEY, timeout=2)
    try:
        with pytest.raises(SourceError, match="refused the API key") as refused:
            await wrong.acknowledge(alert(), "alice", "")
        assert not isinstance(refused.value, SourceUnavailable)
        with pytest.raises(SourceError, match="Service not found"):
            await good.acknowledge(alert(service_uuid="0" * 36), "alice", "")
        with pytest.raises(SourceError, match="no service UUID"):
            await good.acknowledge(alert(service_uuid=""), "alice", "")
        sim.fail_next(503)
        with pytest.raises(SourceUnavailable):
            await good.acknowledge(alert(), "alice", "")
        with pytest.raises(SourceUnavailable):
            await gone.acknowledge(alert(), "alice", "")
        with pytest.raises(SourceError, match="end it in openITCOCKPIT"):
            await good.unsilence(alert(), "", "alice")
        with pytest.raises(SourceError):
            await good.resolve(alert(), "alice")
    finally:
        for client in (wrong, good, gone):
            await client.aclose()
    assert sim.commands == []


async def test_the_simulator_refuses_a_key_in_the_url_and_bad_commands(
        sim: OpenITCockpitSimulator) -> None:
    import httpx
    headers = {"Authorization": f"X-OITC-API {KEY}"}
    async with httpx.AsyncClient(base_url=sim.url, timeout=5) as http:
        assert (await http.get(f"/nagios_module/cmd/submit.json?apikey={KEY}")).status_code \
            == 403
        assert (await http.post("/nagios_module/cmd/submit.json", headers=headers,
                                json={"command": "SHUTDOWN_PROGRAM"})).status_code == 400
        missing = await http.post("/nagios_module/cmd/submit.json", headers=headers,
                                  json={"command": "ACKNOWLEDGE_HOST_PROBLEM"})
        assert missing.status_code == 400 and "hostUuid" in missing.json()["message"]
        assert (await http.delete("/nagios_module/cmd/submit.json",
                                  headers=headers)).status_code == 405
    assert sim.commands == []
