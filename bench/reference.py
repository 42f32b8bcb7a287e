"""A bare helpdesk bot, the yardstick for Switchboard in the helpdesk benchmark.

It listens to `posted` events on the websocket and, for each `112 …` message, makes one POST to
the tracker's ticket endpoint (GLPI), then one reply in the thread with the ticket's number as a
markdown link `[#N](url)`. Nothing else: no store, no retries, no permission checks.

It is as lean as a bare bot is: its HTTP is hand-written HTTP/1.1 on keep-alive connections (one
pool of 16 to the tracker, as many as it serves at a time, and one of 8 to Mattermost, as many
replies in flight as the bare bot measured on a real server had), read by an asyncio protocol
as the bytes arrive. On a general-purpose HTTP client the same bot spends two to five times the
CPU on the same burst (0.5–0.8 s per 1,000 tickets is what the bare bot spent on a real server),
and every CPU-second a bot spends is one the server on the same cores does not get.

    python -m bench.reference --mm-url URL --token TOKEN --glpi-url API_URL --glpi-token TOKEN

It prints `ready` once the websocket has said hello, and runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import connect

#: Keep-alive connections, each carrying one request at a time: to the tracker (as many as it
#: serves at a time) and to Mattermost (as many replies in flight as the real bare bot had).
TRACKER_IN_FLIGHT = 16
MM_IN_FLIGHT = 8


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: a request written, its answer read from the bytes
    as they come (answers carry a Content-Length, as both servers send)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.open = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc or ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1").lower()
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name == "content-length":
                length = int(value)
            elif name == "connection" and "close" in value:
                self.open = False
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4:end + 4 + length]
        self.buffer = b""
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((int(head[9:12]), body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.answer


class Pool:
    """Keep-alive connections to one server, at most `size` of them, one request on each at a
    time."""

    def __init__(self, url: str, size: int, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in
                             {"Host": parts.netloc, **headers}.items())
        self.slots = asyncio.Semaphore(size)
        self.idle: list[Connection] = []

    async def request(self, method: str, path: str, body: Any = None,
                      headers: str = "") -> tuple[int, Any]:
        data = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {self.prefix}{path} HTTP/1.1\r\n{self.fixed}{headers}"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        async with self.slots:
            while self.idle and not self.idle[-1].open:
                self.idle.pop()
            if self.idle:
                conn = self.idle.pop()
            else:
                _, conn = await asyncio.get_running_loop().create_connection(
                    Connection, self.host, self.port)
            status, raw = await conn.request(head.encode() + data)
            if conn.open:
                self.idle.append(conn)
            elif conn.transport is not None:
                conn.transport.close()
        return status, json.loads(raw) if raw else None


class ReferenceBot:
    def __init__(self, mm_url: str, token: str, glpi_url: str, glpi_token: str) -> None:
        self.mm_url = mm_url.rstrip("/")
        self.token = token
        self.glpi_api = glpi_url.rstrip("/")
        self.glpi_web = self.glpi_api.removesuffix("/apirest.php")
        self.glpi_token = glpi_token
        self.mm = Pool(self.mm_url + "/api/v4", MM_IN_FLIGHT, {"Authorization": f"Bearer {token}"})
        self.glpi = Pool(self.glpi_api, TRACKER_IN_FLIGHT, {})
        self.session = ""
        self.bot_id = ""
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        self.bot_id = (await self.mm.request("GET", "/users/me"))[1]["id"]
        answer = await self.glpi.request("GET", "/initSession",
                                         headers=f"Authorization: user_token {self.glpi_token}\r\n")
        self.session = f"Session-Token: {answer[1]['session_token']}\r\n"
        ws_url = "ws" + self.mm_url.removeprefix("http") + "/api/v4/websocket"
        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {self.token}"},
                           max_size=None, compression=None) as ws:
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
        _, created = await self.glpi.request(
            "POST", "/Ticket", {"input": {"name": title, "content": title}}, self.session)
        number = created["id"]
        url = f"{self.glpi_web}/front/ticket.form.php?id={number}"
        await self.mm.request("POST", "/posts", {
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
