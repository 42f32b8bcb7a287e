"""End to end: alerts posted to the real process become one live post each, with buttons whose
clicks go through the Mattermost simulator's click path."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugin.sandbox.glpi import GLPISimulatorThread
from plugin.sandbox.mattermost import MattermostSimulator, SimulatorThread

from .harness import BOT_TOKEN, BotProcess, posts_with_bare_urls, wait_until

pytestmark = pytest.mark.e2e

ALERTS_TOKEN = "alerts-token-for-tests-0123"
GLPI_TOKEN = "glpi-token-for-alert-tests"


class Env:
    def __init__(self, tmp: Path, env: dict[str, str] | None = None, **settings: Any) -> None:
        self.mm_thread = SimulatorThread(bot_token=BOT_TOKEN)
        self.mm: MattermostSimulator = self.mm_thread.start()
        self.glpi_thread = GLPISimulatorThread(user_token=GLPI_TOKEN)
        self.glpi = self.glpi_thread.start()
        self.bot = BotProcess(self.mm, tmp, settings=settings, env={
            "ALERTS_TOKEN": ALERTS_TOKEN, "ALERTS_CHANNEL": "sandbox/town-square",
            "GLPI_URL": self.glpi.api_url, "GLPI_USER_TOKEN": GLPI_TOKEN, **(env or {})}
            ).start()
        self.bot.wait_ready()

    def close(self) -> None:
        try:
            if self.bot.proc is not None and self.bot.proc.poll() is None:
                assert self.bot.stop() == 0, self.bot.log()
        finally:
            self.glpi_thread.stop()
            self.mm_thread.stop()

    def send(self, body: Any, token: str = ALERTS_TOKEN, source: str = "generic"
             ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(f"{self.bot.url}/alerts/{source}", json=body, headers=headers,
                          timeout=10)

    def alert_posts(self) -> list[dict[str, Any]]:
        return [p for p in self.mm_thread.call(lambda: self.mm.posts("town-square"))
                if p["user_id"] == self.mm.bot_id and not p.get("root_id")]

    def post(self, title: str, timeout: float = 15) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((p for p in self.alert_posts()
                         if title in p["props"]["attachments"][0]["title"]), None)
        return wait_until(find, timeout, f"the post of {title!r}")  # type: ignore[no-any-return]

    def thread(self, post: dict[str, Any]) -> list[str]:
        return [p["message"] for p in self.mm_thread.call(lambda: self.mm.posts("town-square"))
                if p.get("root_id") == post["id"]]

    def buttons(self, post: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {a["name"]: a for a in post["props"]["attachments"][0].get("actions") or []}

    def click(self, user: str, post: dict[str, Any], name: str,
              option: str | None = None) -> tuple[int, Any]:
        action = self.buttons(post)[name]
        return self.mm_thread.call(  # type: ignore[no-any-return]
            self.mm.click(user, post["id"], action["id"], option))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.close()


DISK = {"key": "disk-db1", "title": "Disk full on db1", "severity": "critical", "host": "db1",
        "text": "/var at 97%"}


def field(post: dict[str, Any], name: str) -> str:
    return next((f["value"] for f in post["props"]["attachments"][0]["fields"]
                 if f["title"] == name), "")


def metric(env: Env, sample: str) -> float | None:
    """One sample of the bot's /metrics (`name{labels}` as Prometheus prints it), or None."""
    text = httpx.get(env.bot.url + "/metrics", timeout=5).text
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_senders_must_authenticate_and_send_well_formed_alerts(env: Env) -> None:
    assert env.send(DISK, token="").status_code == 401
    wrong = env.send(DISK, token="not-the-token")
    assert wrong.status_code == 401 and wrong.json()["error"]
    bad = env.send({"title": "x", "status": "sideways"})
    assert bad.status_code == 400 and "status" in bad.json()["error"]
    assert env.send({"no": "title"}).status_code == 400
    assert httpx.post(f"{env.bot.url}/alerts/generic", content=b"{oops", timeout=5,
                      headers={"Authorization": f"Bearer {ALERTS_TOKEN}",
                               "Content-Type": "application/json"}).status_code == 400
    assert env.send(DISK, source="nosuch").status_code == 404
    assert env.alert_posts() == []
    assert ALERTS_TOKEN not in env.bot.log()


def test_one_live_post_per_alert_from_firing_to_resolved(env: Env) -> None:
    assert env.send(DISK).json() == {"accepted": 1, "ignored": 0}
    post = env.post("Disk full on db1")
    att = post["props"]["attachments"][0]
    assert att["color"] == "#b71c1c" and field(post, "Status") == "Firing"
    assert field(post, "Host") == "db1" and att["text"] == "/var at 97%"
    assert set(env.buttons(post)) == {"Acknowledge", "Open ticket"}
    # A repeat changes nothing.
    assert env.send(DISK).json() == {"accepted": 0, "ignored": 1}
    # Acknowledge: the post says who, and the thread tells it.
    status, body = env.click("alice", post, "Acknowledge")
    assert status == 200, body
    # First "Acknowledging…" (the source is being told), then done: Unacknowledge is offered.
    post = wait_until(lambda: (p := env.post("Disk full on db1"))
                      and "Unacknowledge" in env.buttons(p) and p, 10, "the ack")
    assert field(post, "Status").startswith("Acknowledged by @alice at ")
    wait_until(lambda: any("Acknowledged by @alice" in m for m in env.thread(post)), 10,
               "the thread note")
    # The metrics count it: by source and status, by action and outcome, and what is kept.
    assert metric(env, 'switchboard_alerts_received_total{source="generic",status="firing"}'
                  ) == 1
    assert metric(env, 'switchboard_alert_actions_total{action="ack",outcome="done",'
                       'source="generic"}') == 1
    assert metric(env, 'switchboard_alerts{source="generic",state="acknowledged"}') == 1
    # Resolved: green, no buttons, and the thread says so; one post throughout.
    env.send(dict(DISK, status="resolved"))
    post = wait_until(lambda: (p := env.post("Disk full on db1"))
                      and field(p, "Status") == "Resolved" and p, 10, "the recovery")
    assert post["props"]["attachments"][0]["color"] == "#2e7d32"
    assert "actions" not in post["props"]["attachments"][0] or \
        not post["props"]["attachments"][0]["actions"]
    wait_until(lambda: any("Resolved at" in m for m in env.thread(post)), 10, "resolved note")
    assert len(env.alert_posts()) == 1
    assert metric(env, 'switchboard_alerts{source="generic",state="resolved"}') == 1
    assert metric(env, 'switchboard_alerts{source="generic",state="acknowledged"}') is None
    assert metric(env, 'switchboard_alerts_received_total{source="generic",status="resolved"}'
                  ) == 1
    # A recovery for an alert never seen is dropped.
    assert env.send({"key": "never", "title": "Ghost", "status": "resolved"}).json() == {
        "accepted": 0, "ignored": 1}


def test_replayed_forged_and_late_clicks_are_refused(env: Env) -> None:
    env.send(DISK)
    post = env.post("Disk full on db1")
    stored = next(p for p in env.mm.posts("town-square") if p["id"] == post["id"])
    ack_action = next(a for a in stored["props"]["attachments"][0]["actions"]
                      if a["name"] == "Acknowledge")
    ctx = ack_action["integration"]["context"]
    url = ack_action["integration"]["url"]
    click = {"user_id": env.mm.user_id("bob"), "user_name": "bob", "post_id": post["id"],
             "channel_id": post["channel_id"], "trigger_id": "t", "type": "button",
             "context": ctx}
    tampered = httpx.post(url, json=dict(click, context=dict(ctx, subject="generic|other")),
                          timeout=5)
    assert tampered.status_code == 403
    first = httpx.post(url, json=click, timeout=5)
    assert first.status_code == 200 and first.json()["ephemeral_text"]
    again = httpx.post(url, json=dict(click, user_name="carol"), timeout=5)
    assert again.json() == {"ephemeral_text": "Already acknowledged by @bob."}
    post = wait_until(lambda: (p := env.post("Disk full on db1"))
                      and "Unacknowledge" in env.buttons(p) and p, 10, "the ack")
    assert "Acknowledged by @bob" in field(post, "Status")
    # Unacknowledge, then replay the old Acknowledge: out of date, nothing changes.
    assert env.click("alice", post, "Unacknowledge")[0] == 200
    wait_until(lambda: field(env.post("Disk full on db1"), "Status") == "Firing", 10, "unack")
    replay = httpx.post(url, json=click, timeout=5)
    assert replay.status_code == 403
    assert field(env.post("Disk full on db1"), "Status") == "Firing"


def test_open_ticket_from_an_alert(env: Env) -> None:
    env.send(DISK)
    post = env.post("Disk full on db1")
    assert env.click("alice", post, "Open ticket")[0] == 200
    opened = wait_until(lambda: env.mm.dialogs("alice"), 10, "the dialog")[0]
    elements = {e["name"]: e for e in opened["dialog"]["elements"]}
    assert elements["title"]["default"] == "Disk full on db1"
    status, body = env.mm_thread.call(env.mm.submit_dialog(
        "alice", opened, {"title": "Disk full on db1", "details": "please extend /var"},
        channel="town-square"))
    assert status == 200 and body == {}, body
    post = wait_until(lambda: (p := env.post("Disk full on db1")) and field(p, "Ticket") and p,
                      15, "the ticket on the post")
    tickets = env.glpi_thread.call(env.glpi.tickets)
    assert len(tickets) == 1 and tickets[0]["name"] == "Disk full on db1"
    assert f"#{tickets[0]['id']}" in field(post, "Ticket")
    assert "Open ticket" not in env.buttons(post)


def test_a_ticket_from_an_alert_is_followed_in_its_thread(tmp_path: Path) -> None:
    e = Env(tmp_path, helpdesk={"poll_interval": 0.3, "closed_poll_interval": 0.6})
    try:
        e.send(DISK)
        post = e.post("Disk full on db1")
        assert e.click("alice", post, "Open ticket")[0] == 200
        opened = wait_until(lambda: e.mm.dialogs("alice"), 10, "the dialog")[0]
        assert e.mm_thread.call(e.mm.submit_dialog(
            "alice", opened, {"title": "Disk full on db1"}, channel="town-square"))[0] == 200
        (ticket,) = wait_until(lambda: e.glpi_thread.call(e.glpi.tickets), 15, "the ticket")
        n = int(ticket["id"])
        # A technician's follow-up and the solution come to the alert's thread; the person who
        # opened the ticket is asked about the solution.
        e.glpi_thread.call(lambda: e.glpi.add_followup(n, "Extending /var now."))
        wait_until(lambda: any("Extending /var now" in m for m in e.thread(post)), 15,
                   "the follow-up in the alert's thread")
        e.glpi_thread.call(lambda: e.glpi.solve(n, "Added 50 GB."))
        wait_until(lambda: any("Added 50 GB" in m and "Solved" in m for m in e.thread(post)), 15,
                   "the solution in the alert's thread")
        alice = e.mm_thread.call(e.mm.dm_as("alice", "·"))["channel_id"]
        asked = wait_until(lambda: next((p for p in e.mm.posts() if p["channel_id"] == alice
                                         and "Added 50 GB" in p["message"]), None), 10,
                           "the solution in a direct message")
        actions = asked["props"]["attachments"][0]["actions"]
        assert [a["name"] for a in actions] == ["Accept", "Refuse…"]
        # A reply in the alert's thread is the responders' talk, not a note on the ticket.
        e.mm_thread.call(e.mm.post_as("bob", "town-square", "looking at it", root_id=post["id"]))
        e.glpi_thread.call(lambda: e.glpi.add_followup(n, "Marker after the reply."))
        wait_until(lambda: any("Marker after the reply" in m for m in e.thread(post)), 15,
                   "the later follow-up")
        assert not any("looking at it" in f["content"] for f in e.glpi.followups(n))
    finally:
        e.close()


def test_alert_posts_and_their_notes_carry_no_bare_address(env: Env) -> None:
    # Mattermost fetches the first bare address of a post for a preview before it answers; a
    # markdown link is not fetched. The alert's links, even hostile ones, stay whole links.
    grafana = "https://grafana.example.com/d/disk?var-host=db1&from=now-1h"
    env.send(dict(DISK, text="/var at 97%, see https://wiki.example.com/disk", links=[
        {"label": "Grafana [db1] (disk)", "url": grafana},
        {"label": "Runbook](javascript:alert(1))", "url": "https://wiki.example.com/run book (1)"},
    ]))
    post = env.post("Disk full on db1")
    assert field(post, "Links") == (
        f"[Grafana \\[db1\\] \\(disk\\)]({grafana}) · "
        "[Runbook\\]\\(javascript:alert\\(1\\)\\)](https://wiki.example.com/run%20book%20%281%29)")
    assert env.click("alice", post, "Acknowledge")[0] == 200
    wait_until(lambda: any("Acknowledged by @alice" in m for m in env.thread(post)), 10, "ack")
    assert env.click("alice", env.post("Disk full on db1"), "Open ticket")[0] == 200
    opened = wait_until(lambda: env.mm.dialogs("alice"), 10, "the dialog")[0]
    status, body = env.mm_thread.call(env.mm.submit_dialog(
        "alice", opened, {"title": "Disk full on db1", "details": "see the runbook"},
        channel="town-square"))
    assert status == 200 and body == {}, body
    post = wait_until(lambda: (p := env.post("Disk full on db1")) and field(p, "Ticket") and p,
                      15, "the ticket on the post")
    n = env.glpi_thread.call(env.glpi.tickets)[0]["id"]
    number = f"[#{n}]({env.glpi.url}/front/ticket.form.php?id={n})"
    assert field(post, "Ticket") == number
    wait_until(lambda: f":ticket: Ticket **{number}** opened by @alice" in env.thread(post), 15,
               "the ticket's note")
    env.send(dict(DISK, status="resolved"))
    wait_until(lambda: any("Resolved at" in m for m in env.thread(post)), 10, "resolved note")
    assert posts_with_bare_urls(env.mm, users=("alice",)) == []


def test_only_responders_may_act(tmp_path: Path) -> None:
    e = Env(tmp_path, alerts={"responders": {"users": ["alice"]}})
    try:
        e.send(DISK)
        post = e.post("Disk full on db1")
        assert e.click("bob", post, "Acknowledge")[0] == 200
        wait_until(lambda: any("not among" in x["message"] for x in e.mm.ephemerals("bob")),
                   10, "bob's refusal")
        assert field(e.post("Disk full on db1"), "Status") == "Firing"
        assert e.click("alice", post, "Acknowledge")[0] == 200
        wait_until(lambda: "@alice" in field(e.post("Disk full on db1"), "Status"), 10, "ack")
    finally:
        e.close()


def test_an_alert_storm_is_grouped(tmp_path: Path) -> None:
    e = Env(tmp_path, alerts={"storm_per_minute": 3})
    try:
        for i in range(10):
            assert e.send({"key": f"cpu{i}", "title": f"CPU high on web{i}",
                           "severity": "warning"}).status_code == 200
        digest = wait_until(lambda: next((p for p in e.alert_posts() if "Alert storm" in
                                          p["props"]["attachments"][0]["title"]), None), 15,
                            "the digest")
        wait_until(lambda: len(e.alert_posts()) == 4, 10, "3 posts and a digest")
        wait_until(lambda: "7 more alerts" in next(
            p for p in e.alert_posts() if p["id"] == digest["id"])["props"]["attachments"][0][
            "title"], 10, "the digest to count 7")

        def title() -> str:
            return str(next(p for p in e.alert_posts() if p["id"] == digest["id"])["props"][
                "attachments"][0]["title"])
        # Only changes of status move the firing count: a resolved member repeated with new
        # words, or a firing one changing severity, do not.
        e.send({"key": "cpu5", "title": "CPU high on web5", "status": "resolved"})
        wait_until(lambda: "(6 firing)" in title(), 10, "6 firing")
        e.send({"key": "cpu5", "title": "CPU back to normal on web5", "status": "resolved"})
        e.send({"key": "cpu7", "title": "CPU high on web7", "status": "resolved"})

        def text() -> str:
            return str(next(p for p in e.alert_posts() if p["id"] == digest["id"])["props"][
                "attachments"][0]["text"])
        # Each send is stored before it is answered: once web7 shows resolved, all are in.
        wait_until(lambda: "~~CPU high on web7~~" in text(), 10, "web7 resolved")
        assert "(5 firing)" in title(), title()
        e.send({"key": "cpu6", "title": "CPU high on web6", "severity": "critical"})
        e.send({"key": "cpu7", "title": "CPU high on web7", "status": "firing"})
        wait_until(lambda: "(6 firing)" in title(), 10, "6 firing again")

        # The digest can be acted on: one member from its menu, then all the others at once.
        def current() -> dict[str, Any]:
            return next(p for p in e.alert_posts() if p["id"] == digest["id"])

        menu = wait_until(lambda: e.buttons(current()).get("Acknowledge one…"), 10, "the menu")
        assert [o["value"] for o in menu["options"]] == [
            f"cpu{i}" for i in (3, 4, 6, 7, 8, 9)]  # the firing members (cpu5 is resolved)
        def told(user: str) -> list[str]:
            return [p["message"] for p in e.mm.ephemerals(user)]

        assert e.click("bob", current(), "Acknowledge one…", option="cpu8")[0] == 200
        wait_until(lambda: "Acknowledged." in told("bob"), 10, "bob told")
        wait_until(lambda: "CPU high on web8 (acknowledged by @bob)" in text(), 10, "web8")
        assert e.click("alice", current(), "Acknowledge all")[0] == 200
        wait_until(lambda: "Acknowledged 5 alerts." in told("alice"), 10, "alice told")
        wait_until(lambda: text().count("(acknowledged by @alice)") == 5, 10, "the others")
        assert "CPU high on web8 (acknowledged by @bob)" in text()
        wait_until(lambda: not e.buttons(current()), 10, "no buttons left")
    finally:
        e.close()


def test_sendevt_from_pairs_and_from_standard_input(env: Env) -> None:
    import os
    import subprocess
    import sys

    from .harness import ROOT
    run_env = dict(os.environ, SWITCHBOARD_ALERTS_TOKEN=ALERTS_TOKEN, PYTHONPATH=str(ROOT))

    def sendevt(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "plugin.cli", "sendevt",
                               "--server", env.bot.url, *args], input=stdin, text=True,
                              capture_output=True, env=run_env, timeout=60)

    dry = sendevt("--dry-run", "title=Fan failure", "host=sw1", "labels.rack=A3")
    assert dry.returncode == 0 and '"rack": "A3"' in dry.stdout
    assert env.alert_posts() == []
    sent = sendevt("title=Fan failure", "severity=high", "host=sw1", "key=fan-sw1")
    assert sent.returncode == 0, sent.stderr
    assert env.post("Fan failure")["props"]["attachments"][0]["color"] == "#e53935"
    trap = sendevt(stdin="SNMPv2-MIB::linkDown ifIndex=3\nagent 10.0.0.1\n")
    assert trap.returncode == 0, trap.stderr
    assert "agent 10.0.0.1" in env.post("SNMPv2-MIB::linkDown")["props"]["attachments"][0]["text"]
    refused = subprocess.run([sys.executable, "-m", "plugin.cli", "sendevt", "--server",
                              env.bot.url, "title=x"], text=True, capture_output=True,
                             env=dict(run_env, SWITCHBOARD_ALERTS_TOKEN="wrong"), timeout=60)
    assert refused.returncode == 3 and "refused (401)" in refused.stderr
    down = sendevt("--server", "http://127.0.0.1:9", "--max-retry", "1", "--retry-interval",
                   "0.1", "title=x")
    assert down.returncode == 4 and "gave up after 2 tries" in down.stderr


def test_a_real_alertmanager_from_alert_to_silence_to_recovery(
        tmp_path: Path, alertmanager_factory: Any) -> None:
    am = alertmanager_factory()
    e = Env(tmp_path, env={"ALERTMANAGER_URL": am.url})
    try:
        am.set_receiver(f"{e.bot.url}/alerts/alertmanager", bearer=ALERTS_TOKEN)
        labels = {"alertname": "HighLatency", "severity": "warning", "instance": "api1:9100",
                  "job": "api", "team": "payments"}
        annotations = {"summary": "API latency above 2 s", "description": "p99 is 2.4 s"}
        am.inject(labels, annotations)
        post = e.post("API latency above 2 s", timeout=30)
        # What fired, where, how bad and from where: the rule's name beside its summary.
        assert field(post, "Alert") == "HighLatency" and field(post, "Severity") == "warning"
        assert field(post, "Host") == "api1:9100" and field(post, "Service") == "api"
        assert field(post, "Labels") == "`team=payments`"
        assert post["props"]["attachments"][0]["footer"] == "alertmanager alert"
        assert set(e.buttons(post)) == {"Acknowledge", "Open ticket", "Silence"}
        # Acknowledge = one silence in Alertmanager, made after the click was answered.
        assert e.click("alice", post, "Acknowledge")[0] == 200
        wait_until(lambda: len(am.active_silences()) == 1, 15, "the silence")
        post = wait_until(lambda: (p := e.post("API latency above 2 s"))
                          and "Unacknowledge" in e.buttons(p) and p, 10, "the acked post")
        silence = am.active_silences()[0]
        assert silence["createdBy"] == "alice"
        assert {m["name"]: m["value"] for m in silence["matchers"]} == labels
        # Unacknowledge expires it.
        assert e.click("bob", post, "Unacknowledge")[0] == 200
        wait_until(lambda: am.active_silences() == [], 15, "the silence to expire")
        post = wait_until(lambda: (p := e.post("API latency above 2 s"))
                          and "Acknowledge" in e.buttons(p) and p, 10, "the unacked post")
        # Silence from the menu, then end it early: one silence, then none.
        assert e.click("carol", post, "Silence", option="4")[0] == 200
        wait_until(lambda: len(am.active_silences()) == 1, 15, "the silence")
        post = wait_until(lambda: (p := e.post("API latency above 2 s"))
                          and "Unsilence" in e.buttons(p) and p, 10, "the silenced post")
        assert "@carol" in field(post, "Silenced until")
        assert e.click("carol", post, "Unsilence")[0] == 200
        wait_until(lambda: am.active_silences() == [], 15, "the silence to end")
        post = wait_until(lambda: (p := e.post("API latency above 2 s"))
                          and "Silence" in e.buttons(p) and p, 10, "the menu back")
        # The resolved notification turns the post green and removes the buttons.
        am.resolve(labels, annotations)
        post = wait_until(lambda: (p := e.post("API latency above 2 s"))
                          and field(p, "Status") == "Resolved" and p, 30, "the recovery")
        assert post["props"]["attachments"][0]["color"] == "#2e7d32"
        assert not post["props"]["attachments"][0].get("actions")
        assert len(e.alert_posts()) == 1
        # The rule fires again (a new startsAt, so a new key): the same post, firing again.
        am.inject(labels, annotations)
        post = wait_until(lambda: (p := e.post("API latency above 2 s"))
                          and field(p, "Status") == "Firing" and p, 30, "the re-fire")
        assert len(e.alert_posts()) == 1
        wait_until(lambda: any("Firing again at" in m for m in e.thread(post)), 10,
                   "the note that it fires again")
    finally:
        e.close()


def test_routes_mentions_failures_and_expired_buttons(tmp_path: Path) -> None:
    from plugin.signing import Signer

    from .harness import SECRET
    e = Env(tmp_path, alerts={"routes": [
        {"labels": {"team": "db"}, "channels": ["sandbox/ops"], "mention": "@dba",
         "mention_from": "high"}]})
    try:
        # Routed by label, with a mention for a high severity; the rest go to the default.
        e.send({"key": "db-repl", "title": "Replication lag", "severity": "critical",
                "labels": {"team": "db"}})
        e.send({"key": "web-5xx", "title": "Web errors", "severity": "warning"})
        ops = wait_until(lambda: [p for p in e.mm.posts("ops") if p["user_id"] == e.mm.bot_id],
                         15, "the routed post")
        assert ops[0]["message"] == "@dba"
        assert "Replication lag" in ops[0]["props"]["attachments"][0]["title"]
        assert e.post("Web errors")["message"] == ""
        # A source that refuses: the post says so and the clicker hears of it in a DM.
        e.send({"key": "cb", "title": "Callback refuses", "severity": "high",
                "callback_url": f"{e.bot.url}/no-such-place"})
        post = e.post("Callback refuses")
        assert e.click("alice", post, "Acknowledge")[0] == 200
        post = wait_until(lambda: (p := e.post("Callback refuses"))
                          and "failed" in field(p, "Last action") and p, 15, "the failure")
        assert field(post, "Status") == "Firing" and "Acknowledge" in e.buttons(post)
        wait_until(lambda: any("Acknowledging **Callback refuses** failed" in p["message"]
                               for p in e.mm.posts()), 10, "the DM to the clicker")
        # An expired button: refused, nothing changes.
        stored = next(p for p in e.mm.posts("town-square") if p["id"] == post["id"])
        action = next(a for a in stored["props"]["attachments"][0]["actions"]
                      if a["name"] == "Acknowledge")
        old = dict(action["integration"]["context"])
        expired = Signer(SECRET).pack("alertack", old["subject"], old["data"], ttl=-10)
        r = httpx.post(action["integration"]["url"], timeout=5, json={
            "user_id": e.mm.user_id("bob"), "user_name": "bob", "post_id": post["id"],
            "channel_id": post["channel_id"], "trigger_id": "t", "type": "button",
            "context": expired})
        assert r.status_code == 403 and "expired" in r.json()["error"]
        assert field(e.post("Callback refuses"), "Status") == "Firing"
    finally:
        e.close()


def test_basic_credentials_size_limit_and_a_restart_keep_one_post(tmp_path: Path) -> None:
    e = Env(tmp_path, alerts={"sources": {"generic": {"username": "nagios",
                                                      "password": "s3cret-basic-pass"}}})
    try:
        url = f"{e.bot.url}/alerts/generic"
        ok = httpx.post(url, json=DISK, auth=("nagios", "s3cret-basic-pass"), timeout=10)
        assert ok.status_code == 200 and ok.json()["accepted"] == 1
        bad = httpx.post(url, json=DISK, auth=("nagios", "wrong"), timeout=10)
        assert bad.status_code == 401
        huge = e.send({"title": "x", "text": "y" * 2_000_000})
        assert huge.status_code == 413 and "larger than" in huge.json()["error"]
        post = e.post("Disk full on db1")
        # The alert → post mapping survives a restart: the recovery edits the same post.
        assert e.bot.stop() == 0
        e.bot = BotProcess(e.mm, tmp_path, settings={"alerts": {"sources": {"generic": {
            "username": "nagios", "password": "s3cret-basic-pass"}}}}, env={
            "ALERTS_TOKEN": ALERTS_TOKEN, "ALERTS_CHANNEL": "sandbox/town-square",
            "GLPI_URL": e.glpi.api_url, "GLPI_USER_TOKEN": GLPI_TOKEN}).start()
        e.bot.wait_ready()
        assert e.send(dict(DISK, status="resolved")).json()["accepted"] == 1
        wait_until(lambda: field(e.post("Disk full on db1"), "Status") == "Resolved", 15,
                   "the recovery on the same post")
        assert [p["id"] for p in e.alert_posts()] == [post["id"]]
        assert "s3cret-basic-pass" not in e.bot.log()
    finally:
        e.close()


def test_simultaneous_clicks_and_a_simultaneous_storm(tmp_path: Path) -> None:
    import asyncio
    e = Env(tmp_path, alerts={"storm_per_minute": 5})
    try:
        e.send(DISK)
        post = e.post("Disk full on db1")
        stored = next(p for p in e.mm.posts("town-square") if p["id"] == post["id"])
        action = next(a for a in stored["props"]["attachments"][0]["actions"]
                      if a["name"] == "Acknowledge")

        async def both() -> list[dict[str, Any]]:
            async with httpx.AsyncClient(timeout=10) as client:
                answers = await asyncio.gather(*(client.post(
                    action["integration"]["url"], json={
                        "user_id": e.mm.user_id(who), "user_name": who, "post_id": post["id"],
                        "channel_id": post["channel_id"], "trigger_id": who, "type": "button",
                        "context": action["integration"]["context"]})
                    for who in ("bob", "carol")))
            return [a.json() for a in answers]
        texts = sorted(a["ephemeral_text"] for a in asyncio.run(both()))
        assert texts[0] == "Acknowledging…" and texts[1].startswith("Already acknowledged by @")
        winner = texts[1].removeprefix("Already acknowledged by @").rstrip(".")
        post = wait_until(lambda: (p := e.post("Disk full on db1"))
                          and "Unacknowledge" in e.buttons(p) and p, 10, "the ack")
        assert f"Acknowledged by @{winner}" in field(post, "Status")

        # 30 new alerts at once with room for 5 (one is taken): 4 posts, the rest counted.
        async def storm() -> None:
            async with httpx.AsyncClient(timeout=20, headers={
                    "Authorization": f"Bearer {ALERTS_TOKEN}"}) as client:
                answers = await asyncio.gather(*(client.post(
                    f"{e.bot.url}/alerts/generic", json={"key": f"s{i}", "title": f"Storm {i}"})
                    for i in range(30)))
            assert all(a.status_code == 200 for a in answers)
        asyncio.run(storm())
        def grouped() -> int:
            # One digest a minute: a storm that straddles a minute has two.
            titles = [p["props"]["attachments"][0]["title"] for p in e.alert_posts()]
            return sum(int(m.group(1)) for t in titles
                       if (m := re.match(r"Alert storm: (\d+) more", t)))
        wait_until(lambda: grouped() == 26, 20, "digests counting 26")
        singles = [p for p in e.alert_posts() if "Storm " in
                   p["props"]["attachments"][0]["title"]]
        assert len(singles) == 4
    finally:
        e.close()


def test_refires_stay_on_one_post_flapping_shows_there_and_a_late_one_gets_a_new_post(
        tmp_path: Path) -> None:
    e = Env(tmp_path, alerts={"refire_window": 3, "flap_changes": 4, "flap_window": 600})
    try:
        assert e.send(DISK).json()["accepted"] == 1
        post = e.post("Disk full on db1")
        # Resolved and firing again, within the window: the same post, and its thread says so.
        for status in ("resolved", "firing", "resolved"):
            assert e.send(dict(DISK, status=status)).json()["accepted"] == 1
        wait_until(lambda: len(e.thread(post)) >= 3, 10, "three notes")
        assert [m.split(" at ")[0] for m in e.thread(post)] == [
            ":white_check_mark: Resolved", ":rotating_light: Firing again",
            ":white_check_mark: Resolved"]
        # The fourth change makes it flapping: said once in the thread, then on the post only.
        assert e.send(DISK).json()["accepted"] == 1
        post = wait_until(lambda: (p := e.post("Disk full on db1"))
                          and "flapping" in field(p, "Status") and p, 10, "flapping shown")
        assert field(post, "Status") == "Firing · flapping"
        wait_until(lambda: len(e.thread(post)) == 4, 10, "the flapping note")
        assert e.thread(post)[-1].startswith(":twisted_rightwards_arrows: Flapping: 4 changes")
        for status in ("resolved", "firing", "resolved"):
            assert e.send(dict(DISK, status=status)).json()["accepted"] == 1
        wait_until(lambda: field(e.post("Disk full on db1"), "Status") == "Resolved", 10,
                   "resolved")
        assert len(e.thread(post)) == 4 and len(e.alert_posts()) == 1
        # Firing again after the window: a new incident, with a post of its own.
        time.sleep(3.5)
        assert e.send(DISK).json()["accepted"] == 1
        wait_until(lambda: len(e.alert_posts()) == 2, 10, "a second post")
        newest = max(e.alert_posts(), key=lambda p: p["create_at"])
        assert newest["id"] != post["id"] and field(newest, "Status") == "Firing"
        first = next(p for p in e.alert_posts() if p["id"] == post["id"])
        assert field(first, "Status") == "Resolved"  # the old post stays as it was
    finally:
        e.close()


def test_an_unanswered_alert_escalates_once_per_step_across_a_sigkill(tmp_path: Path) -> None:
    """Step 1 mentions @oncall in the thread, step 2 posts in another channel and tells bob in a
    direct message; the bot is killed before step 1 is due and started again: each step
    speaks once. An acknowledged alert does not escalate."""
    steps = [{"after_minutes": 0.05, "mention": "@oncall"},
             {"after_minutes": 0.1, "channel": "sandbox/helpdesk", "dm": ["bob"]}]
    e = Env(tmp_path, alerts={"routes": [{"channels": ["sandbox/town-square"],
                                          "escalation": steps}]})
    try:
        assert e.send(DISK).json()["accepted"] == 1
        post = e.post("Disk full on db1")
        e.bot.kill()  # long before step 1 is due (3 s)
        e.bot.start()
        e.bot.wait_ready()
        wait_until(lambda: any("@oncall" in m for m in e.thread(post)), 15, "step 1")

        def escalated() -> list[dict[str, Any]]:
            return [p for p in e.mm.posts("helpdesk") if p["user_id"] == e.mm.bot_id]

        wait_until(escalated, 15, "step 2 in the other channel")
        [elsewhere] = escalated()
        assert "Not acknowledged after 0.1 min: **Disk full on db1**" in elsewhere["message"]
        assert f"/pl/{post['id']}" in elsewhere["message"]
        direct = "__".join(sorted([e.mm.user_id("bob"), e.mm.bot_id]))

        def told_bob() -> list[dict[str, Any]]:
            try:
                return [p for p in e.mm.posts(direct) if "Not acknowledged" in p["message"]]
            except (KeyError, LookupError, ValueError):
                return []  # the direct channel does not exist yet

        dms = wait_until(told_bob, 15, "the DM to bob")
        time.sleep(2)  # nothing more comes
        assert len([m for m in e.thread(post) if "@oncall" in m]) == 1
        assert len(escalated()) == 1 and len(dms) == 1 == len(told_bob())

        # An alert acknowledged in time is not escalated.
        other = dict(DISK, key="cpu-db1", title="CPU hot on db1")
        assert e.send(other).json()["accepted"] == 1
        second = e.post("CPU hot on db1")
        assert e.click("alice", second, "Acknowledge")[0] == 200
        time.sleep(8)  # past both steps
        assert not [m for m in e.thread(second) if "@oncall" in m]
        assert len(escalated()) == 1
    finally:
        e.close()
