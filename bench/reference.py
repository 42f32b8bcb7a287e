"""A bare helpdesk bot, the yardstick for Switchboard in the helpdesk benchmark.

It listens to `posted` events on the websocket and, for each `112 …` message, makes one POST to
the tracker's ticket endpoint (GLPI), then one reply in the thread with the ticket's number as a
markdown link `[#N](url)`. Nothing else: no store, no retries, no permission checks.

    python -m bench.reference --mm-url URL --token TOKEN --glpi-url API_URL --glpi-token TOKEN

It prints `ready` once the websocket has said hello, and runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import httpx
from websockets.asyncio.client import connect

#: Requests on the wire at once: to the tracker (as many as it serves at a time) and to
#: Mattermost (as many replies in flight as the real bare bot had).
TRACKER_IN_FLIGHT = 16
MM_IN_FLIGHT = 8


class ReferenceBot:
    def __init__(self, mm_url: str, token: str, glpi_url: str, glpi_token: str) -> None:
        self.mm_url = mm_url.rstrip("/")
        self.token = token
        self.glpi_api = glpi_url.rstrip("/")
        self.glpi_web = self.glpi_api.removesuffix("/apirest.php")
        self.glpi_token = glpi_token
        # The semaphores below bound the requests; a pool that never queues stays cheap.
        self.mm = httpx.AsyncClient(
            base_url=self.mm_url + "/api/v4", headers={"Authorization": f"Bearer {token}"},
            timeout=60, limits=httpx.Limits(max_connections=None,
                                            max_keepalive_connections=MM_IN_FLIGHT))
        self.glpi = httpx.AsyncClient(
            base_url=self.glpi_api, timeout=60,
            limits=httpx.Limits(max_connections=None,
                                max_keepalive_connections=TRACKER_IN_FLIGHT))
        self.glpi_slots = asyncio.Semaphore(TRACKER_IN_FLIGHT)
        self.mm_slots = asyncio.Semaphore(MM_IN_FLIGHT)
        self.session = ""
        self.bot_id = ""
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.bot_id = (await self.mm.get("/users/me")).json()["id"]
        answer = await self.glpi.get("/initSession",
                                     headers={"Authorization": f"user_token {self.glpi_token}"})
        self.session = answer.json()["session_token"]

    async def run(self) -> None:
        await self.start()
        ws_url = "ws" + self.mm_url.removeprefix("http") + "/api/v4/websocket"
        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {self.token}"},
                           max_size=None) as ws:
            await ws.recv()  # hello
            print("ready", flush=True)
            async for frame in ws:
                event = json.loads(frame)
                if event.get("event") != "posted":
                    continue
                post = json.loads(event["data"]["post"])
                if post["user_id"] == self.bot_id or not post["message"].startswith("112 "):
                    continue
                task = asyncio.create_task(self.handle(post))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def handle(self, post: dict[str, Any]) -> None:
        title = post["message"][4:].strip() or "(no title)"
        async with self.glpi_slots:
            created = await self.glpi.post("/Ticket", headers={"Session-Token": self.session},
                                           json={"input": {"name": title, "content": title}})
        number = created.json()["id"]
        url = f"{self.glpi_web}/front/ticket.form.php?id={number}"
        async with self.mm_slots:
            await self.mm.post("/posts", json={
                "channel_id": post["channel_id"], "root_id": post["root_id"] or post["id"],
                "message": f":ticket: Ticket [#{number}]({url}) opened in GLPI: {title}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reference")
    parser.add_argument("--mm-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--glpi-url", required=True)
    parser.add_argument("--glpi-token", required=True)
    args = parser.parse_args(argv)
    bot = ReferenceBot(args.mm_url, args.token, args.glpi_url, args.glpi_token)
    try:
        asyncio.run(bot.run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
