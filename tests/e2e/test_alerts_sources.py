"""End to end against the real monitoring systems: a problem raised in a real Zabbix 6.0 and in
a real Icinga 2 reaches the real `switchboard run` process through the shipped media type /
notification command, becomes one live post in the Mattermost simulator, a click on Acknowledge
(through the simulator's click path) is written back into the monitoring system, the update
notification that comes back lands in the post's thread, and the recovery turns the post green.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from plugin.sandbox.openitcockpit import OpenITCockpitSimulatorThread
from tests.servers.icinga import NODE_NAME as ICINGA_NODE
from tests.servers.icinga_fixture import IcingaFactory
from tests.servers.nagios_fixture import NagiosFactory
from tests.servers.zabbix import HOST as ZABBIX_HOST
from tests.servers.zabbix import ITEM_KEY, ZabbixServer

from . import harness
from .harness import wait_until
from .test_alerts import ALERTS_TOKEN, Env, field
from .test_doctor import run_doctor

pytestmark = pytest.mark.e2e

GREEN = "#2e7d32"


def by_id(env: Env, post_id: str) -> dict[str, Any]:
    """The current state of one root post of the bot (it is edited in place)."""
    return next(p for p in env.alert_posts() if p["id"] == post_id)


def settled(env: Env, post_id: str) -> dict[str, Any] | None:
    """The post once no decision is pending on it ("Acknowledging…" and the like are gone)."""
    post = by_id(env, post_id)
    return None if "·" in field(post, "Status") else post


def resolved(env: Env, post_id: str) -> dict[str, Any] | None:
    post = by_id(env, post_id)
    return post if field(post, "Status") == "Resolved" else None


def assert_resolved(env: Env, post: dict[str, Any]) -> None:
    attachment = post["props"]["attachments"][0]
    assert attachment["color"] == GREEN
    assert not attachment.get("actions"), attachment.get("actions")


class Clock:
    """Seconds since the start of a test, per step, printed at the end (pytest -s / -rP)."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.steps: list[tuple[str, float]] = []

    def mark(self, step: str) -> None:
        self.steps.append((step, time.monotonic() - self.began))

    def report(self) -> str:
        return ", ".join(f"{step} {at:.1f} s" for step, at in self.steps)


# --------------------------------------------------------------------------- Zabbix 6.0


def zabbix_acknowledges(zabbix: ZabbixServer, eventid: str) -> list[dict[str, Any]]:
    events = zabbix.api("event.get", {"eventids": [eventid], "output": ["acknowledged"],
                                      "select_acknowledges": "extend"})
    assert len(events) == 1, events
    return list(events[0]["acknowledges"]) if events[0]["acknowledged"] == "1" else []


def test_a_real_zabbix_from_problem_to_acknowledgement_to_recovery(
        tmp_path: Any, zabbix_server: ZabbixServer) -> None:
    zabbix = zabbix_server
    clock = Clock()
    e = Env(tmp_path, env={"ZABBIX_URL": zabbix.url, "ZABBIX_API_TOKEN": zabbix.api_token})
    try:
        zabbix.set_receiver(f"{e.bot.url}/alerts/zabbix", ALERTS_TOKEN)
        clock.mark("bot up")
        zabbix.send_value(95)
        post = e.post(f"Load is too high on {ZABBIX_HOST}", timeout=45)
        clock.mark("problem posted")
        assert field(post, "Status") == "Firing" and field(post, "Severity") == "high"
        assert field(post, "Host") == ZABBIX_HOST and field(post, "Service") == ITEM_KEY
        assert post["props"]["attachments"][0]["text"] == f"{ITEM_KEY}: 95"
        assert {"Acknowledge", "Open ticket"} <= set(e.buttons(post))
        assert "Silence" not in e.buttons(post)  # Zabbix 6.0 cannot silence from its API
        [problem] = zabbix.api("problem.get", {"objectids": [zabbix.triggerid],
                                               "output": ["eventid"]})
        eventid = str(problem["eventid"])
        assert zabbix_acknowledges(zabbix, eventid) == []

        # Acknowledge as alice: answered at once, then written into Zabbix.
        status, body = e.click("alice", post, "Acknowledge")
        assert status == 200, body
        acks = wait_until(lambda: zabbix_acknowledges(zabbix, eventid), 20,
                          "the acknowledgement in Zabbix")
        clock.mark("acknowledged in Zabbix")
        assert len(acks) == 1, acks
        assert int(acks[0]["action"]) & 2, acks  # the acknowledge bit
        assert "@alice" in acks[0]["message"], acks
        post = wait_until(lambda: (p := settled(e, post["id"])) and "Unacknowledge"
                          in e.buttons(p) and p, 15, "the acknowledged post")
        assert field(post, "Status").startswith("Acknowledged by @alice at ")
        assert "Acknowledge" not in e.buttons(post)

        # The update notification Zabbix sends for the acknowledgement goes into the thread.
        note = wait_until(lambda: next((m for m in e.thread(post) if m.startswith(":memo:")
                                        and "Mattermost by @alice" in m), None), 45,
                          "Zabbix's update notification in the thread")
        clock.mark("update in thread")
        assert "acknowledged" in note.lower()
        assert any(m.startswith(":eyes: Acknowledged by @alice") for m in e.thread(post))
        assert len(e.alert_posts()) == 1
        assert field(by_id(e, post["id"]), "Status").startswith("Acknowledged by @alice")

        # The recovery edits the same post: green, no buttons; one root post throughout.
        zabbix.send_value(5)
        post = wait_until(lambda: resolved(e, post["id"]), 45, "the recovery")
        clock.mark("resolved")
        assert_resolved(e, post)
        assert post["props"]["attachments"][0]["text"] == f"{ITEM_KEY}: 5"
        wait_until(lambda: any("Resolved at" in m for m in e.thread(post)), 10,
                   "the recovery note in the thread")
        assert len(e.alert_posts()) == 1
        assert zabbix.api("problem.get", {"objectids": [zabbix.triggerid]}) == []
        assert zabbix.api_token not in e.bot.log()
        print(f"\nZabbix end to end: {clock.report()}")
    finally:
        try:
            zabbix.send_value(0, check=False)  # the fixture's contract: leave the trigger OK
        finally:
            e.close()


# --------------------------------------------------------------------------- Icinga 2


def icinga_comments(icinga: Any) -> list[dict[str, Any]]:
    """The attributes of the service's comments (an acknowledgement is entry type 4)."""
    response = icinga.api("GET", "/v1/objects/comments")
    assert response.status_code == 200, response.text
    return [r["attrs"] for r in response.json()["results"]
            if r["attrs"].get("host_name") == icinga.host
            and r["attrs"].get("service_name") == icinga.service]


def test_a_real_icinga_from_problem_to_acknowledgement_silence_and_recovery(
        tmp_path: Any, icinga_factory: IcingaFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Icinga needs the bot's URL when it starts and the bot needs Icinga's: the bot's port is
    # chosen first and handed to the process the harness starts.
    port = harness.free_port()
    icinga = icinga_factory(f"http://127.0.0.1:{port}", ALERTS_TOKEN)
    monkeypatch.setattr(harness, "free_port", lambda: port)
    clock = Clock()
    # The instance's certificate, from its own CA, names its node, not 127.0.0.1: the bot
    # trusts that CA and checks the certificate against the node's name.
    env = {"ICINGA_URL": icinga.url, "ICINGA_USER": icinga.username,
           "ICINGA_PASSWORD": icinga.password}
    verified = {"ca_bundle": icinga.ca_file, "server_name": ICINGA_NODE}
    e = Env(tmp_path, env=env, alerts={"sources": {"nagios": {"tls": verified}}})
    try:
        assert e.bot.url == f"http://127.0.0.1:{port}"
        clock.mark("bot up")
        icinga.raise_problem(2, "DISK CRITICAL - 97% used")
        post = e.post("disk on web01 is CRITICAL", timeout=30)
        clock.mark("problem posted")
        assert field(post, "Status") == "Firing" and field(post, "Severity") == "critical"
        assert field(post, "Host") == "web01" and field(post, "Service") == "disk"
        assert post["props"]["attachments"][0]["text"] == "DISK CRITICAL - 97% used"
        assert set(e.buttons(post)) == {"Acknowledge", "Open ticket", "Silence"}
        assert icinga.acknowledgement() == 0

        # Acknowledge as alice: written into Icinga, as alice, without a notification.
        status, body = e.click("alice", post, "Acknowledge")
        assert status == 200, body
        wait_until(lambda: icinga.acknowledgement() == 1, 20, "the acknowledgement in Icinga")
        clock.mark("acknowledged in Icinga")
        acks = [c for c in icinga_comments(icinga) if c.get("entry_type") == 4]
        assert [c["author"] for c in acks] == ["alice"], acks
        post = wait_until(lambda: (p := settled(e, post["id"])) and "Unacknowledge"
                          in e.buttons(p) and p, 15, "the acknowledged post")
        assert field(post, "Status").startswith("Acknowledged by @alice at ")
        assert any(m.startswith(":eyes: Acknowledged by @alice") for m in e.thread(post))

        # The recovery turns the same post green; no acknowledgement notification came back.
        icinga.recover("DISK OK")
        post = wait_until(lambda: resolved(e, post["id"]), 30, "the recovery")
        clock.mark("resolved")
        assert_resolved(e, post)
        assert post["props"]["attachments"][0]["text"] == "DISK OK"
        wait_until(lambda: any("Resolved at" in m for m in e.thread(post)), 10,
                   "the recovery note in the thread")
        assert not [m for m in e.thread(post) if m.startswith(":memo:")], e.thread(post)
        assert len(e.alert_posts()) == 1

        # The check failing again (a new problem of the same check, within the re-fire window)
        # goes back to the same post, and its thread says so; Silence from its menu is a
        # downtime in Icinga, and the downtime notification that comes back lands there too.
        icinga.raise_problem(1, "DISK WARNING - 91% used")
        second = e.post("disk on web01 is WARNING", timeout=30)
        assert second["id"] == post["id"] and field(second, "Status") == "Firing"
        wait_until(lambda: any("Firing again at" in m for m in e.thread(second)), 10,
                   "the note that it fires again")
        status, body = e.click("bob", second, "Silence", option="1")
        assert status == 200, body
        downtimes = wait_until(icinga.downtimes, 20, "the downtime in Icinga")
        clock.mark("downtime in Icinga")
        assert len(downtimes) == 1, downtimes
        second = wait_until(lambda: (p := settled(e, second["id"])) and field(
            p, "Silenced until") and p, 15, "the silenced post")
        assert "by @bob" in field(second, "Silenced until")
        assert "Silence" not in e.buttons(second)
        wait_until(lambda: any(m.startswith(":memo: downtime started") for m in
                               e.thread(second)), 30, "the downtime note in the thread")
        clock.mark("downtime note in thread")
        assert len(e.alert_posts()) == 1
        assert icinga.password not in e.bot.log()

        # Without server_name the same CA is not enough, and the operator is told why.
        (tmp_path / "doctor").mkdir()
        result = run_doctor(e.mm, tmp_path / "doctor", env=env, secrets=(icinga.password,),
                            settings={"alerts": {"sources": {"nagios": {"tls": {
                                "ca_bundle": icinga.ca_file}}}}})
        refused = result.line("FAIL", "alert source nagios")
        assert "TLS certificate made for another host name" in refused
        assert "settings.alerts.sources.nagios.tls.server_name" in refused
        print(f"\nIcinga 2 end to end: {clock.report()}")
    finally:
        e.close()


def test_a_real_nagios_acknowledged_and_silenced_through_its_command_file(
        tmp_path: Any, nagios_factory: NagiosFactory) -> None:
    # The core runs switchboard-notify (the contrib script) for its notifications, reading the
    # bot's URL from a file written once the bot is up; the bot writes its decisions to the
    # core's external command file.
    url_file, token_file = tmp_path / "bot-url", tmp_path / "notify.token"
    token_file.write_text(ALERTS_TOKEN + "\n")
    token_file.chmod(0o600)
    notify = tmp_path / "notify"
    notify.write_text(
        "#!/bin/sh\n"
        f'exec /usr/bin/python3 {harness.ROOT / "contrib/nagios/switchboard-notify"} '
        f'--url "$(cat {url_file})" --token-file {token_file} "$@" '
        f">> {tmp_path / 'notify.log'} 2>&1\n")
    notify.chmod(0o755)
    nagios = nagios_factory([str(notify)])
    clock = Clock()
    e = Env(tmp_path, alerts={"sources": {"nagios": {"command_file": str(nagios.command_file)}}})
    try:
        url_file.write_text(e.bot.url)
        clock.mark("bot up")
        nagios.set_state(2, "DISK CRITICAL - 97% used")
        post = e.post("disk on web01 is CRITICAL", timeout=30)
        clock.mark("problem posted")
        assert field(post, "Host") == "web01" and field(post, "Service") == "disk"
        assert set(e.buttons(post)) == {"Acknowledge", "Open ticket", "Silence"}
        assert nagios.service_status()["problem_has_been_acknowledged"] == "0"

        # Acknowledge as alice: the core has it, and its acknowledgement notification comes
        # back to the same post's thread.
        status, body = e.click("alice", post, "Acknowledge")
        assert status == 200, body
        wait_until(lambda: nagios.service_status().get("problem_has_been_acknowledged") == "1",
                   20, "the acknowledgement in Nagios")
        clock.mark("acknowledged in Nagios")
        post = wait_until(lambda: (p := settled(e, post["id"])) and "Unacknowledge"
                          in e.buttons(p) and p, 15, "the acknowledged post")
        assert field(post, "Status").startswith("Acknowledged by @alice at ")
        wait_until(lambda: any(m.startswith(":memo:") and "alice" in m for m in e.thread(post)),
                   20, "Nagios's acknowledgement notification in the thread")
        clock.mark("acknowledgement notification in thread")

        # Unacknowledge, then Silence: the core drops the acknowledgement and schedules a
        # downtime.
        assert e.click("bob", post, "Unacknowledge")[0] == 200
        wait_until(lambda: nagios.service_status().get("problem_has_been_acknowledged") == "0",
                   20, "the acknowledgement removed")
        post = wait_until(lambda: (p := settled(e, post["id"])) and "Silence" in e.buttons(p)
                          and p, 15, "the unacknowledged post")
        assert e.click("carol", post, "Silence", option="1")[0] == 200
        wait_until(lambda: nagios.downtimes() == 1, 20, "the downtime in Nagios")
        clock.mark("downtime in Nagios")
        post = wait_until(lambda: (p := settled(e, post["id"])) and "Unsilence"
                          in e.buttons(p) and p, 15, "the silenced post")
        assert "by @carol" in field(post, "Silenced until")

        # A core in downtime tells nobody of a recovery: the silence is ended first.
        assert e.click("carol", post, "Unsilence")[0] == 200
        wait_until(lambda: nagios.downtimes() == 0, 20, "the downtime ended in Nagios")

        # The recovery turns the same post green.
        nagios.set_state(0, "DISK OK - 40% used")
        post = wait_until(lambda: resolved(e, post["id"]), 30, "the recovery")
        clock.mark("resolved")
        assert_resolved(e, post)
        assert len(e.alert_posts()) == 1
        assert ALERTS_TOKEN not in (tmp_path / "notify.log").read_text()
        print(f"\nNagios 4 end to end: {clock.report()}")
    finally:
        e.close()


def test_openitcockpit_acknowledged_through_its_api(tmp_path: Any) -> None:
    """openITCOCKPIT's notifications (through switchboard-notify, with its object UUIDs) make
    one post; Acknowledge goes back through its API (the simulator of its command endpoint),
    with the API key in a header only; its acknowledgement and recovery edit the same post."""
    key = "oitc-api-key-for-tests-0123456789"
    host_uuid, service_uuid = "c36b8048-93ce-4385-ac19-ab5c90574b77", "74fd8f59-1348-4e16"
    sim_thread = OpenITCockpitSimulatorThread(api_key=key, hosts={host_uuid: [service_uuid]})
    sim = sim_thread.start()
    e = Env(tmp_path, alerts={"sources": {"openitcockpit": {"url": sim.url, "api_token": key}}})

    def notify(kind: str, state: str, *extra: str) -> None:
        sent = subprocess.run(
            [sys.executable, str(harness.ROOT / "contrib/nagios/switchboard-notify"),
             "--url", e.bot.url, "--source", "openitcockpit", "--type", "Service",
             "--notification-type", kind, "--host", "web01", "--service", "disk",
             "--host-uuid", host_uuid, "--service-uuid", service_uuid, "--state", state,
             "--output", f"DISK {state}", "--problem-id", "41", *extra],
            env={"PATH": "/usr/bin:/bin", "SWITCHBOARD_TOKEN": ALERTS_TOKEN},
            capture_output=True, text=True, timeout=30, check=False)
        assert sent.returncode == 0, sent.stderr

    try:
        notify("PROBLEM", "CRITICAL")
        post = e.post("disk on web01 is CRITICAL", timeout=15)
        assert set(e.buttons(post)) == {"Acknowledge", "Open ticket", "Silence"}
        assert e.click("alice", post, "Acknowledge")[0] == 200
        wait_until(lambda: sim_thread.call(lambda: list(sim.commands)), 15,
                   "the command in openITCOCKPIT")
        [command] = sim_thread.call(lambda: list(sim.commands))
        assert command["command"] == "ACKNOWLEDGE_SVC_PROBLEM"
        assert (command["hostUuid"], command["serviceUuid"]) == (host_uuid, service_uuid)
        assert command["author"] == "alice" and command["sticky"] == 2
        post = wait_until(lambda: (p := settled(e, post["id"])) and "Unacknowledge"
                          in e.buttons(p) and p, 15, "the acknowledged post")
        # openITCOCKPIT's own acknowledgement notification, then the recovery: same post.
        notify("ACKNOWLEDGEMENT", "CRITICAL", "--ack-author", "alice", "--ack-comment", "on it")
        wait_until(lambda: any(m.startswith(":memo:") and "alice" in m for m in e.thread(post)),
                   15, "the acknowledgement in the thread")
        notify("RECOVERY", "OK")
        post = wait_until(lambda: resolved(e, post["id"]), 15, "the recovery")
        assert len(e.alert_posts()) == 1
        assert key not in e.bot.log()
    finally:
        e.close()
        sim_thread.stop()
