"""Replica figures: the helpdesk burst and the alert intake run by one bot on its SQLite file, by
one replica on PostgreSQL and by two replicas on PostgreSQL (Debian's, started here as the tests
start it), side by side; and what reading the event stream on every replica would cost.

- Helpdesk: `bench/helpdesk.py`'s burst (1,000 `112 ...`, a tracker at 50 ms and 16 at a time,
  the cost-faithful Mattermost simulator). The leader reads every post; tickets it cannot start
  at once wait in the outbox, where any replica takes them. CPU is the replicas' sum.
- Alerts: `bench/alerts.py`'s 10,000 new alerts, sent round-robin to the replicas' listeners as
  a load balancer would; the rate at which they are accepted.
- Stream: the claim every post costs, when one replica reads the stream and when three read it
  and race for each post (what "every replica reads the stream" would cost the database, on
  top of a websocket and a decoded frame per post per replica).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import helpdesk
from bench.alerts import STORM, TOKEN, _post_all
from bench.procfs import cpu_seconds
from plugin.sandbox.costs import CostModel
from plugin.sandbox.mattermost import SimulatorThread
from plugin.store import Liveness, ReplicaInfo
from plugin.store.postgres import PostgresStore
from tests.e2e.harness import BOT_TOKEN, BotProcess
from tests.servers.postgres import PostgresServer, empty_schema

ALERTS = int(os.environ.get("BENCH_REPLICA_ALERTS", "10000"))
CLAIMS = int(os.environ.get("BENCH_CLAIMS", "2000"))
#: (label, store, replicas)
SETUPS = (("SQLite, 1 bot", "sqlite", 1), ("PostgreSQL, 1 replica", "postgres", 1),
          ("PostgreSQL, 2 replicas", "postgres", 2))


@dataclass(frozen=True)
class Figures:
    label: str
    burst_s: float
    burst_cpu_s: float
    alerts_per_s: float
    alerts_cpu_s: float


def _replicas(sim_thread: SimulatorThread, tmp: Path, db: str, n: int,
              env: dict[str, str], settings: dict[str, object],
              bot_cpu: set[int]) -> list[BotProcess]:
    assert sim_thread.simulator is not None
    bots = []
    for _ in range(n):
        bot = BotProcess(sim_thread.simulator, tmp, settings=settings, env={
            "SWITCHBOARD_LOG_LEVEL": "WARNING", **env,
            **({"SWITCHBOARD_DB": db} if db else {})})
        bot.start(cpus=bot_cpu)
        bots.append(bot)
    for bot in bots:
        bot.wait_ready(40)
    return bots


def _cpu(bots: list[BotProcess]) -> float:
    return sum(cpu_seconds(b.proc.pid) for b in bots if b.proc is not None)


def burst(db: str, n: int, bot_cpu: set[int], sim_cpu: set[int]) -> tuple[float, float]:
    """The helpdesk burst on `n` replicas; (seconds, CPU seconds of all replicas)."""
    tracker, api_url = helpdesk._start_tracker(sim_cpu)
    st = SimulatorThread(bot_token=BOT_TOKEN, cost_model=CostModel())
    sim = st.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bots = _replicas(st, Path(tmp), db, n, {
                "GLPI_URL": api_url, "GLPI_USER_TOKEN": helpdesk.GLPI_TOKEN,
                "HELPDESK_TRACKER": "glpi"}, {}, bot_cpu)
            try:
                cpu0 = _cpu(bots)
                leader = bots[0]
                assert leader.proc is not None
                run = helpdesk._burst(st, sim, leader.proc.pid, "switchboard")
                return run.elapsed, _cpu(bots) - cpu0
            finally:
                for bot in bots:
                    bot.stop()
    finally:
        st.stop()
        tracker.terminate()
        tracker.wait()


def intake(db: str, n: int, bot_cpu: set[int]) -> tuple[float, float]:
    """New alerts sent round-robin to `n` replicas; (accepted per second, CPU seconds)."""
    st = SimulatorThread(bot_token=BOT_TOKEN)
    st.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bots = _replicas(st, Path(tmp), db, n, {
                "ALERTS_TOKEN": TOKEN, "ALERTS_CHANNEL": "sandbox/town-square"},
                {"alerts": {"storm_per_minute": STORM}}, bot_cpu)
            try:
                bodies = [{"key": f"flood{i}", "title": f"Disk {i % 97} full on host{i}",
                           "severity": ("critical", "warning", "info")[i % 3],
                           "host": f"host{i}"} for i in range(ALERTS)]
                cpu0 = _cpu(bots)
                shares = [bodies[k::n] for k in range(n)]

                async def all_of_them() -> list[tuple[float, int]]:
                    return await asyncio.gather(*(
                        _post_all(f"{bot.url}/alerts/generic", share, 32 // n)
                        for bot, share in zip(bots, shares, strict=True)))
                started = time.perf_counter()
                results = asyncio.run(all_of_them())
                seconds = time.perf_counter() - started
                accepted = sum(r[1] for r in results)
                return accepted / seconds, _cpu(bots) - cpu0
            finally:
                for bot in bots:
                    bot.stop()
    finally:
        st.stop()


async def claims(dsn: str) -> tuple[float, float]:
    """Milliseconds of database work per post: claimed by one reader, and by three racing."""
    async def timed(readers: int) -> float:
        await empty_schema(dsn)
        stores = [PostgresStore(dsn, liveness=Liveness(f"bench{k}")) for k in range(readers)]
        for s in stores:
            await s.open()
            await s.replicas.beat(ReplicaInfo(s.liveness.owner, "standby", "bench", "", 0, 0))
        try:
            started = time.perf_counter()
            for post in range(CLAIMS):
                won = await asyncio.gather(*(s.claims.claim(f"post{post}", "c")
                                             for s in stores))
                assert sum(won) == 1
            return (time.perf_counter() - started) * 1000 / CLAIMS
        finally:
            for s in stores:
                await s.close()
    return await timed(1), await timed(3)


def run(bot_cpu: set[int], sim_cpu: set[int]) -> tuple[list[Figures], tuple[float, float]]:
    figures = []
    with PostgresServer() as db:
        for label, kind, n in SETUPS:
            dsn = ""
            if kind == "postgres":
                asyncio.run(empty_schema(db.dsn))
                dsn = db.dsn
            seconds, cpu = burst(dsn, n, bot_cpu, sim_cpu)
            if kind == "postgres":
                asyncio.run(empty_schema(db.dsn))
            rate, alerts_cpu = intake(dsn, n, bot_cpu)
            figures.append(Figures(label, seconds, cpu, rate, alerts_cpu))
            print(f"  replicas run: {label:<24} burst {seconds:6.2f} s (CPU {cpu:.2f} s), "
                  f"alerts {rate:,.0f}/s (CPU {alerts_cpu:.2f} s)")
        race = asyncio.run(claims(db.dsn))
    return figures, race


def report(figures: list[Figures], race: tuple[float, float]) -> None:
    floor = helpdesk.floor_s()
    print(f"replicas: the helpdesk burst ({helpdesk.TICKETS:,} tickets, floor {floor:.2f} s) "
          f"and {ALERTS:,} new alerts sent round-robin, per store and number of replicas")
    for f in figures:
        print(f"  {f.label:<24} burst {f.burst_s:6.2f} s (ratio {f.burst_s / floor:.2f}), CPU "
              f"{f.burst_cpu_s * 1000 / helpdesk.TICKETS:.2f} s per 1,000 tickets; alerts "
              f"{f.alerts_per_s:,.0f}/s, CPU {f.alerts_cpu_s:.2f} s")
    one, three = race
    print(f"  the stream read by one replica: {one:.2f} ms of database work per post to claim "
          f"it; read by three racing for each post: {three:.2f} ms ({three / one:.1f}×), "
          "plus a websocket and a decoded frame per post on each")


if __name__ == "__main__":
    cores = os.cpu_count() or 1
    bot_cpu, sim_cpu = {0}, ({1} if cores > 1 else {0})
    found, race = run(bot_cpu, sim_cpu)
    report(found, race)
