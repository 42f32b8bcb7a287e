"""Alert figures: 10,000 alerts posted to the listener as fast as a client can, and the time a
click on Acknowledge takes to be answered while the monitoring system is slow to act on it."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from bench.procfs import cpu_seconds, memory_mib
from bench.targets import Scorecard
from bridge.transport import PooledTransport
from plugin.sandbox.mattermost import MattermostSimulator, SimulatorThread
from tests.e2e.harness import BOT_TOKEN, BotProcess, free_port, wait_until

ALERTS = int(os.environ.get("BENCH_ALERTS", "10000"))
CLICKS = int(os.environ.get("BENCH_CLICKS", "200"))
TOKEN = "bench-alerts-token-0123456789"
#: How long the simulated monitoring system takes to carry out an acknowledgement.
SOURCE_DELAY = 2.0
#: New alerts per minute into one channel before grouping: room for the click alerts.
STORM = CLICKS + 50


class SlowCallback:
    """A monitoring system's endpoint that answers decisions after SOURCE_DELAY."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls = 0
        ready = threading.Event()

        async def handle(request: web.Request) -> web.Response:
            self.calls += 1
            await asyncio.sleep(SOURCE_DELAY)
            return web.json_response({})

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/decide", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            ready.set()
            await asyncio.Event().wait()

        threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/decide"


async def _post_all(url: str, bodies: list[dict[str, Any]], concurrency: int = 32
                    ) -> tuple[float, int]:
    accepted = 0
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    # The client must not be what is measured: it uses the project's lean transport.
    transport = PooledTransport(limit=concurrency)
    async with httpx.AsyncClient(headers=headers, transport=transport, timeout=60) as client:
        async def worker() -> None:
            nonlocal accepted
            while queue:
                body = queue.pop()
                r = await client.post(url, json=body)
                r.raise_for_status()
                accepted += r.json()["accepted"]
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, accepted


def _root_posts(st: SimulatorThread, sim: MattermostSimulator) -> list[dict[str, Any]]:
    return [p for p in st.call(lambda: sim.posts("town-square"))
            if p["user_id"] == sim.bot_id and not p.get("root_id")]


def run(bot_cpu: set[int]) -> dict[str, Any]:
    st = SimulatorThread(bot_token=BOT_TOKEN)
    sim = st.start()
    slow = SlowCallback()
    out: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bot = BotProcess(sim, Path(tmp),
                             settings={"alerts": {"storm_per_minute": STORM}},
                             env={"ALERTS_TOKEN": TOKEN, "ALERTS_CHANNEL": "sandbox/town-square",
                                  "SWITCHBOARD_LOG_LEVEL": "WARNING"})
            bot.start(cpus=bot_cpu)
            try:
                bot.wait_ready()
                assert bot.proc is not None
                url = f"{bot.url}/alerts/generic"
                out["rss_before"] = memory_mib(bot.proc.pid)
                # Clicks first, on alerts of their own (a fresh minute: no storm grouping yet).
                bodies = [{"key": f"click{i}", "title": f"Queue stuck {i}", "severity": "high",
                           "callback_url": slow.url} for i in range(CLICKS)]
                asyncio.run(_post_all(url, bodies, 8))
                posts = wait_until(lambda: len(_root_posts(st, sim)) >= CLICKS and
                                   _root_posts(st, sim), 120, "the click posts")
                out["click_ms"] = _clicks(bot, sim, st, posts)
                # Then the flood: ALERTS alerts, every one new.
                bodies = [{"key": f"flood{i}", "title": f"Disk {i % 97} full on host{i}",
                           "severity": ("critical", "warning", "info")[i % 3],
                           "host": f"host{i}"} for i in range(ALERTS)]
                cpu0 = cpu_seconds(bot.proc.pid)
                seconds, accepted = asyncio.run(_post_all(url, bodies))
                out["bot_cpu_share"] = (cpu_seconds(bot.proc.pid) - cpu0) / seconds
                out["accepted"] = accepted
                out["accept_rate"] = accepted / seconds
                out["posts"] = len(wait_until(lambda: _settled(st, sim, bot), 300,
                                              "the posts to settle")) - CLICKS
                out["rss_after"] = memory_mib(bot.proc.pid)
                out["source_calls"] = slow.calls
            finally:
                bot.stop()
    finally:
        st.stop()
    return out


def _settled(st: SimulatorThread, sim: MattermostSimulator, bot: BotProcess
             ) -> list[dict[str, Any]] | None:
    health = httpx.get(f"{bot.url}/healthz", timeout=5).json()
    if any(health["outbox"].values()):
        return None
    return _root_posts(st, sim)


def _clicks(bot: BotProcess, sim: MattermostSimulator, st: SimulatorThread,
            posts: list[dict[str, Any]]) -> list[float]:
    """Time from sending each Acknowledge click to its answer, clicks one at a time."""
    samples: list[float] = []
    stored = {p["id"]: p for p in st.call(lambda: sim.posts("town-square"))}
    with httpx.Client(timeout=30) as client:
        for n in range(CLICKS):
            post = stored[posts[n]["id"]]
            action = next(a for a in post["props"]["attachments"][0]["actions"]
                          if a["name"] in ("Acknowledge", "Unacknowledge"))
            body = {"user_id": sim.user_id("alice"), "user_name": "alice",
                    "post_id": post["id"], "channel_id": post["channel_id"],
                    "trigger_id": f"t{n}", "type": "button",
                    "context": action["integration"]["context"]}
            t0 = time.perf_counter()
            r = client.post(action["integration"]["url"], json=body)
            samples.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200 and "Acknowledging" in r.text, r.text
    return samples


def report(figures: dict[str, Any], card: Scorecard) -> None:
    clicks = sorted(figures["click_ms"])
    p99 = clicks[max(0, int(len(clicks) * 0.99) - 1)]
    print(f"alerts: {ALERTS:,} posted, {figures['accepted']:,.0f} accepted at "
          f"{figures['accept_rate']:,.0f}/s (the bot used {figures['bot_cpu_share']:.0%} of its "
          f"core); {figures['posts']:,.0f} posts after grouping; "
          f"bot memory {figures['rss_before']:.0f} MiB before, {figures['rss_after']:.0f} MiB "
          f"after")
    answered = card.judge("clicks p99", p99, "<", 100, decimals=1, unit=" ms")
    print(f"clicks: {len(clicks)} Acknowledge clicks answered in median "
          f"{statistics.median(clicks):.1f} ms, p99 {answered.shown} ms while the source takes "
          f"{SOURCE_DELAY:.0f} s to act {answered.mark}")
