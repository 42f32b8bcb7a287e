"""`make bench`: figures for the runtime, through the Mattermost simulator over real sockets.

1. Throughput: a flood of chatter that matches no trigger; how many events per second the bot
   absorbs, with the bot pinned to one core (the simulator runs on another when there is one).
2. Latency: a person posts `@switchboard ping` and waits for the reply, one at a time; the time from
   posting to seeing the bot's reply on the person's own websocket (median, p90, p99).
3. Helpdesk (`bench/helpdesk.py`): 1,000 `112 ...` messages at once against a tracker (the GLPI
   simulator) that answers in 50 ms and serves 16 requests at a time, through a Mattermost
   simulator that costs what a real server costs (`plugin/sandbox/costs.py`), for Switchboard and
   for a bare reference bot (`bench/reference.py`), run in turn. The floor is 1000 × 0.05 / 16 ≈
   3.1 s; the figures are each bot's time to give every message its ticket and threaded reply,
   as a ratio to the floor, Switchboard's ratio to the reference's, and each bot's CPU time and
   peak memory.
4. Replicas (`bench/replicas.py`): the helpdesk burst and the alert intake on one bot with its
   SQLite file, on one replica and on two replicas sharing a PostgreSQL database, side by side;
   and what a post's claim costs when one replica reads the stream or three race for it.
   `BENCH_REPLICAS=0` leaves them out.

The bot is the real `switchboard run` process. Each figure that has a target is printed with it,
marked `ok` or `MISS`; a closing summary line names every figure that missed, and the exit status
is then 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from bench.targets import Scorecard
from plugin.sandbox.mattermost import SimulatorThread
from tests.e2e.harness import BOT_TOKEN, BotProcess, wait_until

CHATTER = int(os.environ.get("BENCH_EVENTS", "50000"))
PINGS = int(os.environ.get("BENCH_PINGS", "300"))


def pin(cpus: set[int]) -> None:
    try:
        os.sched_setaffinity(0, cpus)
    except (AttributeError, OSError):
        pass


def throughput(st: SimulatorThread, bot: BotProcess) -> tuple[float, float]:
    sim = st.simulator
    assert sim is not None
    messages = [f"just chatting about lunch, message {i}" for i in range(CHATTER)]
    marker_root: dict[str, Any] = {}
    started = time.perf_counter()
    st.call(sim.flood("town-square", "bob", messages))
    flooded = time.perf_counter()
    # The stream is ordered: once the marker after the flood is answered, the flood was read.
    marker_root.update(st.call(sim.dm_as("carol", "ping")))
    dm_channel = marker_root["channel_id"]

    def answered() -> bool:
        return any(p.get("root_id") == marker_root["id"]
                   for p in st.call(lambda: sim.posts(dm_channel)))
    wait_until(answered, 600, "the marker's reply", interval=0.005)
    elapsed = time.perf_counter() - started
    metrics = httpx.get(bot.url + "/metrics", timeout=5).text
    received = 0.0
    for line in metrics.splitlines():
        if line.startswith('switchboard_events_received_total{event="posted"}'):
            received = float(line.split()[-1])
    assert received >= CHATTER, f"the bot saw {received} of {CHATTER} events"
    return CHATTER / elapsed, CHATTER / (flooded - started)


async def latency(url: str, channel_id: str) -> list[float]:
    headers = {"Authorization": "Bearer alice-token"}
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=url + "/api/v4", headers=headers) as http, \
            connect("ws" + url[4:] + "/api/v4/websocket", additional_headers=headers) as ws:
        await ws.recv()  # hello
        bot_id = (await http.get("/users/username/switchboard")).json()["id"]
        for _ in range(PINGS):
            t0 = time.perf_counter()
            r = await http.post("/posts", json={"channel_id": channel_id,
                                               "message": "@switchboard ping"})
            root = r.json()["id"]
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("event") != "posted":
                    continue
                post = json.loads(frame["data"]["post"])
                if post["user_id"] == bot_id and post["root_id"] == root:
                    samples.append((time.perf_counter() - t0) * 1000)
                    break
    return samples


def main() -> int:
    card = Scorecard()
    cores = os.cpu_count() or 1
    bot_cpu, sim_cpu = {0}, ({1} if cores > 1 else {0})
    pin(sim_cpu)
    print(f"machine: {cores} cores; bot pinned to core {min(bot_cpu)}, "
          f"simulator and client on core {min(sim_cpu)} (the helpdesk's simulated server "
          f"does its costed work on any core)")
    st = SimulatorThread(bot_token=BOT_TOKEN)
    sim = st.start()
    with tempfile.TemporaryDirectory() as tmp:
        bot = BotProcess(sim, Path(tmp), settings={"logging": {"level": "WARNING"}},
                         env={"SWITCHBOARD_LOG_LEVEL": "WARNING"})
        bot.start(cpus=bot_cpu)
        try:
            bot.wait_ready()
            rate, offered = throughput(st, bot)
            absorbed = card.judge("throughput", rate, ">=", 5000, unit="/s")
            print(f"throughput: {absorbed.shown} non-matching events/s absorbed on one core "
                  f"({CHATTER:,} events; the simulator offered {offered:,.0f}/s) "
                  f"{absorbed.mark}")
            samples = asyncio.run(latency(sim.url, sim.channel_id("helpdesk")))
            samples.sort()
            med = statistics.median(samples)
            p90 = samples[int(len(samples) * 0.9) - 1]
            p99 = samples[int(len(samples) * 0.99) - 1]
            median = card.judge("latency median", med, "<", 20, decimals=1, unit=" ms")
            print(f"latency: event to reply for a trivial handler over {len(samples)} messages: "
                  f"median {median.shown} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms "
                  f"{median.mark}")
        finally:
            bot.stop()
            st.stop()
    from bench import alerts
    alerts.report(alerts.run(bot_cpu), card)
    from bench import helpdesk
    helpdesk.report(helpdesk.compare(bot_cpu, sim_cpu), card)
    if os.environ.get("BENCH_REPLICAS", "1") != "0":
        from bench import replicas
        replicas.report(*replicas.run(bot_cpu, sim_cpu))
    print(card.summary())
    return card.exit_status()


if __name__ == "__main__":
    sys.exit(main())
