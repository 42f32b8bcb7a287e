"""Chaos: a burst of 200 `112` messages while the bot is killed with SIGKILL twice and restarted
and its websocket is dropped. Exactly 200 tickets and 200 replies, no duplicates."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from plugin.sandbox.glpi import GLPISimulatorThread
from plugin.sandbox.mattermost import SimulatorThread

from .harness import BOT_TOKEN, BotProcess, replies_to, wait_until
from .test_helpdesk import GLPI_TOKEN, HELPDESK, World, linked

pytestmark = pytest.mark.e2e

BURST = 200


def test_burst_survives_sigkill_twice_and_a_dropped_socket(tmp_path: Path) -> None:
    mm = SimulatorThread(bot_token=BOT_TOKEN)
    # Slow enough that work is in flight when the bot is killed.
    glpi = GLPISimulatorThread(user_token=GLPI_TOKEN, latency_s=0.02, max_concurrency=8)
    mm.start()
    glpi.start()
    bots: list[BotProcess] = []
    try:
        world = World(mm, glpi, tmp_path)
        bot = world.bot(**HELPDESK)
        bots.append(bot)
        bot.wait_ready()
        users = ("alice", "bob", "carol")
        posts = []
        for i in range(BURST):
            posts.append(world.say(f"112 burst problem {i}", user=users[i % 3],
                                   channel=("helpdesk", "town-square")[i % 2]))
            if i in (60, 140):
                sent = len(posts)
                def some_filed(s: int = sent) -> bool:
                    return len(world.tickets()) >= s // 3
                wait_until(some_filed, 20, "some tickets before the kill")
                bot.kill()
                bot = world.bot(**HELPDESK)
                bots.append(bot)
            if i == 100:
                bot.wait_ready()
                mm.call(world.mm.drop_connections())
        bot.wait_ready()

        def settled() -> bool:
            if len(world.tickets()) < BURST:
                return False
            health = httpx.get(bot.url + "/healthz", timeout=2).json()
            return not any(health["outbox"].values())
        wait_until(settled, 120, f"{BURST} tickets and an empty outbox", interval=0.2)

        names = [t["name"] for t in world.tickets()]
        assert len(names) == BURST
        assert sorted(names) == sorted(f"burst problem {i}" for i in range(BURST))
        for p in posts:
            opened = [r for r in replies_to(world.mm, p["id"])
                      if re.search(rf"Ticket \*\*{linked(world)}\*\* opened", r["message"])]
            assert len(opened) == 1, (p["message"], [r["message"] for r in opened])
        assert bot.stop() == 0
    finally:
        for b in bots:
            if b.proc is not None and b.proc.poll() is None:
                b.kill()
        glpi.stop()
        mm.stop()
