"""Replicas: two or three real `switchboard run` processes on one real PostgreSQL, against the
Mattermost and GLPI simulators. One leads (reads the event stream), the others stand by and
serve clicks and alerts; every post is handled once, whoever reads it, and a replica's death,
a rolling restart or a database restart in the middle of a burst loses and doubles nothing."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugin.sandbox.glpi import GLPISimulatorThread
from plugin.sandbox.mattermost import SimulatorThread
from tests.servers.postgres import PostgresServer, empty_schema

from .harness import BOT_TOKEN, BotProcess, replies_to, wait_until
from .test_helpdesk import GLPI_TOKEN, HELPDESK, World, linked
from .test_ways_in import outgoing_hook

pytestmark = [pytest.mark.e2e, pytest.mark.servers]

ALERTS_TOKEN = "alerts-token-for-replica-tests"
SETTINGS = HELPDESK | {"dispatch": {"shutdown_grace": 5}}
DISK = {"key": "disk-db1", "title": "Disk full on db1", "severity": "critical", "host": "db1"}


class Cluster(World):
    """The simulators, the database and the replicas running on it."""

    def __init__(self, tmp: Path, db: PostgresServer, *, glpi_latency: float = 0.0) -> None:
        asyncio.run(empty_schema(db.dsn))
        mm = SimulatorThread(bot_token=BOT_TOKEN)
        glpi = GLPISimulatorThread(user_token=GLPI_TOKEN, latency_s=glpi_latency,
                                   max_concurrency=8)
        mm.start()
        glpi.start()
        super().__init__(mm, glpi, tmp)
        self.db = db
        self.replicas: list[BotProcess] = []

    def make(self, **env: str) -> BotProcess:
        """A replica, not started yet."""
        bot = BotProcess(self.mm, self.tmp, settings=SETTINGS, env={
            "GLPI_URL": self.glpi.api_url, "GLPI_USER_TOKEN": GLPI_TOKEN,
            "HELPDESK_TRACKER": "glpi", "SWITCHBOARD_DB": self.db.dsn,
            "ALERTS_TOKEN": ALERTS_TOKEN, "ALERTS_CHANNEL": "sandbox/town-square",
            "SWITCHBOARD_LOG_LEVEL": "INFO", **env})
        self.replicas.append(bot)
        return bot

    def start(self, n: int = 1) -> list[BotProcess]:
        started = [self.make().start() for _ in range(n)]
        for bot in started:
            bot.wait_ready(40)
        return started

    def running(self) -> list[BotProcess]:
        return [b for b in self.replicas if b.proc is not None and b.proc.poll() is None]

    def leader(self) -> BotProcess | None:
        """The replica that leads with its stream up, or in webhook-only mode its REST watch
        (None: none, or several)."""
        leading = [b for b in self.running() if (h := health(b)) and h["role"] == "leader"
                   and h["websocket"] in ("connected", "disabled") and h["status"] == "ok"]
        return leading[0] if len(leading) == 1 else None

    def close(self) -> None:
        try:
            for bot in self.running():
                assert bot.stop() == 0, bot.log()
        finally:
            for bot in self.running():
                bot.kill()
            self.glpi_thread.stop()
            self.mm_thread.stop()

    def settled(self, count: int) -> bool:
        """`count` tickets, and nothing left in any replica's outbox."""
        if len(self.tickets()) < count:
            return False
        return all((h := health(b)) is not None and not any(h["outbox"].values())
                   for b in self.running())

    def opened(self, post: dict[str, Any]) -> list[str]:
        return [r["message"] for r in replies_to(self.mm, post["id"])
                if re.search(rf"Ticket \*\*{linked(self)}\*\* opened", r["message"])]

    def alert_post(self, title: str) -> dict[str, Any] | None:
        return next((p for p in self.mm.posts("town-square")
                     if p["user_id"] == self.mm.bot_id and not p.get("root_id")
                     and title in p["props"]["attachments"][0]["title"]), None)

    def send_alert(self, bot: BotProcess, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{bot.url}/alerts/generic", json=body, timeout=20,
                          headers={"Authorization": f"Bearer {ALERTS_TOKEN}"})


def health(bot: BotProcess) -> dict[str, Any] | None:
    try:
        return httpx.get(bot.url + "/healthz", timeout=2).json()  # type: ignore[no-any-return]
    except (httpx.HTTPError, ValueError):
        return None


def click(cluster: Cluster, bot: BotProcess, user: str, post: dict[str, Any],
          name: str) -> httpx.Response:
    """A click on a post's button sent to one replica (as a load balancer would pick it)."""
    action = next(a for a in post["props"]["attachments"][0]["actions"] if a["name"] == name)
    path = "/" + action["integration"]["url"].split("/", 3)[3]
    return httpx.post(bot.url + path, timeout=20, json={
        "user_id": cluster.mm.user_id(user), "user_name": user, "post_id": post["id"],
        "channel_id": post["channel_id"], "trigger_id": f"t-{user}-{time.monotonic_ns()}",
        "type": "button", "context": action["integration"]["context"]})


Show = Callable[[str], None]


@pytest.fixture
def show(capsys: pytest.CaptureFixture[str]) -> Show:
    """A line for the test run's own output (the figures the issue asks to see)."""
    def line(text: str) -> None:
        with capsys.disabled():
            print(f"\n    {text}", end="")
    return line


def filed(bot: BotProcess) -> float:
    """The tickets a replica filed since it started (its own count, from /metrics)."""
    try:
        text = httpx.get(bot.url + "/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    found = re.search(r'^switchboard_tickets_total\{[^}]*outcome="filed"[^}]*\} (\S+)$', text,
                      re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def takeover(cluster: Cluster, dead: BotProcess, died_at: float, show: Show) -> float:
    """Seconds from a replica's death until another leads with its stream (or, in
    webhook-only mode, its REST watch) up."""
    def led() -> BotProcess | None:
        new = cluster.leader()
        return new if new is not None and new is not dead else None
    wait_until(led, 20, "another replica to lead", interval=0.05)
    took = time.monotonic() - died_at
    show(f"takeover: another replica led (its stream, or its REST watch, up) {took:.1f} s "
         "after the leader's death")
    return took


@pytest.fixture
def cluster(tmp_path: Path, postgres_server: PostgresServer) -> Iterator[Cluster]:
    c = Cluster(tmp_path, postgres_server)
    yield c
    c.close()


def test_replicas_share_the_work_clicks_reach_any_and_a_leader_is_replaced_quickly(
        cluster: Cluster, show: Show) -> None:
    a, b, c = cluster.start(3)
    wait_until(cluster.leader, 20, "one leader")
    roles = sorted(h["role"] for bot in (a, b, c) if (h := health(bot)))
    assert roles == ["leader", "standby", "standby"]

    posts = [cluster.say(f"112 printer {i} broken", user=("alice", "bob")[i % 2])
             for i in range(30)]
    wait_until(lambda: cluster.settled(30), 60, "30 tickets filed")
    assert sorted(t["name"] for t in cluster.tickets()) == \
        sorted(f"printer {i} broken" for i in range(30))
    for p in posts:
        assert len(cluster.opened(p)) == 1, p["message"]

    # An alert comes in through one replica; two people click at once through two others.
    assert cluster.send_alert(b, DISK).status_code == 200
    post = wait_until(lambda: cluster.alert_post("Disk full on db1"), 15, "the alert's post")
    with httpx.Client():
        answers = [click(cluster, bot, who, post, "Acknowledge")
                   for bot, who in ((c, "bob"), (a, "carol"))]
    texts = sorted(r.json()["ephemeral_text"] for r in answers)
    assert texts[0] == "Acknowledging…" and texts[1].startswith("Already acknowledged by @")

    # The leader dies: a standby leads within the takeover time, and nothing is missed.
    leader = cluster.leader()
    assert leader is not None
    leader.kill()
    died = time.monotonic()
    after = [cluster.say(f"112 scanner {i} broken") for i in range(5)]
    assert takeover(cluster, leader, died, show) < 10
    wait_until(lambda: cluster.settled(35), 60, "the tickets asked for during the takeover")
    for p in after:
        assert len(cluster.opened(p)) == 1, p["message"]
    assert len(cluster.tickets()) == 35

    # The watch moved with the leadership: a follow-up written in GLPI reaches its thread,
    # once, and a reply in a thread reaches its ticket whichever replica filed it.
    first = posts[0]
    number = int(re.search(r"#(\d+)", cluster.opened(first)[0]).group(1))  # type: ignore
    cluster.glpi_thread.call(lambda: cluster.glpi.add_followup(number, "Toner replaced."))
    cluster.reply(first, "Toner replaced", timeout=20)
    cluster.say("still blinking", root_id=first["id"])
    wait_until(lambda: any("still blinking" in f["content"] for f in cluster.glpi_thread.call(
        lambda: cluster.glpi.followups(number))), 20, "the reply in the ticket")
    time.sleep(1.5)
    told = [r for r in replies_to(cluster.mm, first["id"]) if "Toner replaced" in r["message"]]
    assert len(told) == 1


CHAOS_BURST = 500


def test_chaos_three_replicas_two_sigkills_and_a_database_restart(
        tmp_path: Path, postgres_server: PostgresServer, show: Show) -> None:
    # A tracker slow enough that tickets are in flight when the leader dies.
    cluster = Cluster(tmp_path, postgres_server, glpi_latency=0.02)
    try:
        chaos(cluster, postgres_server, show)
    finally:
        cluster.close()


def chaos(cluster: Cluster, postgres_server: PostgresServer, show: Show) -> None:
    cluster.start(3)
    wait_until(cluster.leader, 20, "one leader")
    # Alerts to click during the burst, each through a replica picked at random.
    for n in range(12):
        assert cluster.send_alert(random.choice(cluster.running()),
                                  {"key": f"a{n}", "title": f"Alert {n}"}).status_code == 200
    def alert(n: int) -> dict[str, Any]:
        return wait_until(lambda: cluster.alert_post(f"Alert {n}"), 15,  # type: ignore
                          f"alert {n}")
    alerts = [alert(n) for n in range(12)]
    acknowledged: list[int] = []
    users = ("alice", "bob", "carol")
    posts = []
    takeovers = []
    for i in range(CHAOS_BURST):
        posts.append(cluster.say(f"112 chaos problem {i}", user=users[i % 3],
                                 channel=("helpdesk", "town-square")[i % 2]))
        if i in (120, 320):
            # The replica doing the most work: the leader reads every post and files at once.
            sent = len(posts)

            def some_filed(s: int = sent) -> bool:
                return len(cluster.tickets()) >= s // 3
            wait_until(some_filed, 30, "some tickets before the kill")
            leader = wait_until(cluster.leader, 20, "a leader")
            busiest = max(cluster.running(), key=filed)
            busiest.kill()
            died = time.monotonic()
            cluster.start(1)  # its replacement, as a supervisor would start it
            if busiest is leader:
                takeovers.append(takeover(cluster, leader, died, show))
            show(f"chaos: killed the replica that filed the most tickets, the "
                 f"{'leader' if busiest is leader else 'standby'}")
        if i == 220:
            postgres_server.restart(down_for=1.0)
        if i % 40 == 20 and len(acknowledged) < len(alerts):
            n = len(acknowledged)
            bot = random.choice(cluster.running())
            answer = click(cluster, bot, "carol", alerts[n], "Acknowledge")
            assert answer.status_code == 200, answer.text
            assert answer.json()["ephemeral_text"] == "Acknowledging…"
            acknowledged.append(n)

    wait_until(lambda: cluster.settled(CHAOS_BURST), 180,
               f"{CHAOS_BURST} tickets and empty outboxes", interval=0.5)
    names = sorted(t["name"] for t in cluster.tickets())
    assert names == sorted(f"chaos problem {i}" for i in range(CHAOS_BURST))
    doubled = {p["message"]: n for p in posts if (n := len(cluster.opened(p))) != 1}
    assert doubled == {}, f"posts without exactly one reply: {doubled}"
    # And nothing else: no apology for a request cut short by the database's restart.
    others = {p["message"]: n for p in posts if (n := len(replies_to(cluster.mm, p["id"]))) != 1}
    assert others == {}, f"posts with more than their one reply: {others}"
    # Every click answered is carried out once: acknowledged, told once in its thread.
    for n in acknowledged:
        def done(n: int = n) -> bool:
            post = cluster.alert_post(f"Alert {n}")
            return post is not None and any(
                a["name"] == "Unacknowledge" for a in post["props"]["attachments"][0]["actions"])
        wait_until(done, 20, f"alert {n} acknowledged")

        def told(n: int = n) -> list[str]:
            return [p["message"] for p in cluster.mm.posts("town-square")
                    if p.get("root_id") == alerts[n]["id"]
                    and "Acknowledged by @carol" in p["message"]]
        wait_until(told, 20, f"the acknowledgement of alert {n} in its thread")
    time.sleep(1.5)  # long enough for a doubled note to show
    for n in acknowledged:
        assert len(told(n)) == 1, told(n)
    assert all(t < 10 for t in takeovers), takeovers
    logs = "".join(bot.log() for bot in cluster.replicas)
    # The chaos happened with work in flight: the database was missed, and what the dead
    # leaders had claimed was taken up again by another replica.
    assert "the PostgreSQL state store went away" in logs
    resumed = logs.count("resuming the handler for post")
    show(f"chaos: {resumed} posts claimed by a dead leader were handled by another replica")


def test_a_rolling_restart_during_a_burst_loses_nothing(cluster: Cluster) -> None:
    cluster.start(2)
    wait_until(cluster.leader, 20, "one leader")
    burst = 200
    posts = []
    olds = list(cluster.running())
    for i in range(burst):
        posts.append(cluster.say(f"112 rolling problem {i}"))
        if i in (50, 120):
            # One at a time: a new replica up, then an old one stopped as a deployment does.
            cluster.start(1)
            old = olds.pop(0)
            assert old.stop() == 0, old.log()
    wait_until(lambda: cluster.settled(burst), 120, f"{burst} tickets", interval=0.5)
    assert sorted(t["name"] for t in cluster.tickets()) == \
        sorted(f"rolling problem {i}" for i in range(burst))
    doubled = {p["message"]: n for p in posts if (n := len(cluster.opened(p))) != 1}
    assert doubled == {}, f"posts without exactly one reply: {doubled}"


def test_webhook_only_replicas_serve_the_hook_and_the_lead_moves(cluster: Cluster,
                                                                  show: Show) -> None:
    """Without the stream, an outgoing webhook (a load balancer's address; here a standby's)
    brings the requests; the leader keeps the REST watch and the marks of when a bot ran."""
    leader, standby = (cluster.make(SWITCHBOARD_STREAM="false") for _ in range(2))
    hook = outgoing_hook(cluster.mm, f"{standby.url}/outgoing", "application/json")
    for bot in (leader, standby):
        bot.env["OUTGOING_TOKEN"] = hook["token"]
    leader.start().wait_ready(40)
    assert wait_until(cluster.leader, 20, "the first to start leading") is leader
    standby.start().wait_ready(40)
    assert (health(standby) or {}).get("role") == "standby"
    posts = [cluster.say(f"112 webhook problem {i}") for i in range(5)]
    wait_until(lambda: cluster.settled(5), 30, "5 tickets through the standby's hook")
    for p in posts:
        assert len(cluster.opened(p)) == 1, p["message"]
    assert cluster.mm.ws_connects == 0
    leader.kill()
    died = time.monotonic()
    takeover(cluster, leader, died, show)
    more = [cluster.say(f"112 webhook problem {i}") for i in range(5, 8)]
    wait_until(lambda: cluster.settled(8), 30, "the tickets after the takeover")
    for p in more:
        assert len(cluster.opened(p)) == 1, p["message"]
    assert cluster.mm.ws_connects == 0
