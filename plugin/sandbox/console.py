"""A terminal chat client for the sandbox: type as a user, see the bot's replies and buttons.

It is an ordinary Mattermost client — REST to post and click, the websocket to watch — so what a
person sees here is what the bot really did over the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

HELP = """\
Type a message and press Enter to post it in the current channel.
  /dm              talk to the bot in a direct message
  /channel NAME    switch channel (helpdesk, town-square, ops)
  /r TEXT          reply in the thread of the last message shown
  N                press button number N
  /help            this text        /quit  leave (also Ctrl-D)"""


class Console:
    def __init__(self, url: str, token: str, *, channel: str = "helpdesk",
                 stdin: IO[str] | None = None, out: Callable[[str], None] | None = None,
                 bot_username: str = "switchboard") -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.channel_name = channel
        self.stdin = stdin or sys.stdin
        self.out = out or (lambda line: print(line, flush=True))
        self.bot_username = bot_username
        self.http = httpx.AsyncClient(base_url=self.url + "/api/v4", timeout=35,
                                      headers={"Authorization": f"Bearer {token}"})
        self.me: dict[str, Any] = {}
        self.users: dict[str, str] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.channel_id = ""
        self.buttons: list[tuple[str, str, str]] = []
        self.last_root = ""

    # --- REST -----------------------------------------------------------------------------------
    async def _get(self, path: str) -> Any:
        r = await self.http.get(path)
        r.raise_for_status()
        return r.json()

    async def _post(self, path: str, body: Any) -> httpx.Response:
        return await self.http.post(path, json=body)

    async def _username(self, user_id: str) -> str:
        if user_id not in self.users:
            try:
                self.users[user_id] = str((await self._get(f"/users/{user_id}"))["username"])
            except (httpx.HTTPError, KeyError):
                self.users[user_id] = user_id[:8]
        return self.users[user_id]

    async def setup(self) -> None:
        self.me = await self._get("/users/me")
        self.users[self.me["id"]] = self.me["username"]
        for team in await self._get("/users/me/teams"):
            for ch in await self._get(f"/users/{self.me['id']}/teams/{team['id']}/channels"):
                self.channels[ch["id"]] = ch
        bot = await self._get(f"/users/username/{self.bot_username}")
        self.users[bot["id"]] = bot["username"]
        r = await self._post("/channels/direct", [self.me["id"], bot["id"]])
        r.raise_for_status()
        dm = r.json()
        dm["display_name"] = f"@{self.bot_username}"
        self.channels[dm["id"]] = dm
        self.dm_id = dm["id"]
        self._switch(self.channel_name)

    def _switch(self, name: str) -> bool:
        for cid, ch in self.channels.items():
            if ch.get("name") == name or ch.get("display_name") == name:
                self.channel_id = cid
                self.channel_name = str(ch.get("name"))
                return True
        return False

    def _label(self, channel_id: str) -> str:
        ch = self.channels.get(channel_id)
        if ch is None:
            return "?"
        if ch.get("type") == "D":
            return f"DM @{self.bot_username}"
        return f"~{ch.get('name')}"

    # --- rendering ------------------------------------------------------------------------------
    async def render(self, post: dict[str, Any], verb: str = "") -> None:
        who = await self._username(str(post.get("user_id", "")))
        where = self._label(str(post.get("channel_id", "")))
        thread = " (thread)" if post.get("root_id") else ""
        self.last_root = str(post.get("root_id") or post.get("id") or self.last_root)
        text = str(post.get("message", ""))
        head = f"[{where}{thread}] @{who}{' ' + verb if verb else ''}: "
        lines = text.splitlines() or [""]
        self.out(head + lines[0])
        for line in lines[1:]:
            self.out("    " + line)
        for att in (post.get("props") or {}).get("attachments") or []:
            for key in ("pretext", "title", "text"):
                if att.get(key):
                    for line in str(att[key]).splitlines():
                        self.out(f"    | {line}")
            for field in att.get("fields") or []:
                self.out(f"    | {field.get('title')}: {field.get('value')}")
            labels = []
            for action in att.get("actions") or []:
                self.buttons.append((str(post["id"]), str(action.get("id")),
                                     str(action.get("name"))))
                labels.append(f"[{len(self.buttons)}] {action.get('name')}")
            if labels:
                self.out("    " + "   ".join(labels))

    async def on_frame(self, frame: dict[str, Any]) -> None:
        event = frame.get("event")
        data = frame.get("data") or {}
        if event in ("posted", "post_edited", "ephemeral_message"):
            try:
                post = json.loads(data.get("post", "{}"))
            except ValueError:
                return
            if event == "posted" and post.get("user_id") == self.me.get("id"):
                return
            verb = {"post_edited": "(edited)", "ephemeral_message": "(only you see this)"}
            await self.render(post, verb.get(str(event), ""))
        elif event == "reaction_added":
            try:
                reaction = json.loads(data.get("reaction", "{}"))
            except ValueError:
                return
            if reaction.get("user_id") != self.me.get("id"):
                who = await self._username(str(reaction.get("user_id", "")))
                self.out(f"    (@{who} reacted :{reaction.get('emoji_name')}:)")

    # --- input ----------------------------------------------------------------------------------
    def _start_reader(self, queue: asyncio.Queue[str | None]) -> None:
        loop = asyncio.get_running_loop()

        def read() -> None:
            # A daemon thread: a blocked readline never holds up the process's exit.
            for line in self.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=read, name="console-input", daemon=True).start()

    async def handle(self, line: str) -> bool:
        """One typed line; False to leave."""
        line = line.strip()
        if not line:
            return True
        if line in ("/quit", "/exit"):
            return False
        if line == "/help":
            self.out(HELP)
        elif line == "/dm":
            self.channel_id = self.dm_id
            self.out(f"Now talking to @{self.bot_username} directly.")
        elif line.startswith("/channel"):
            name = line.partition(" ")[2].strip().lstrip("~")
            self.out(f"Now in ~{name}." if self._switch(name) else f"No channel {name!r}.")
        elif line.startswith("/r "):
            await self.send(line[3:], self.last_root)
        elif line.isdigit():
            await self.press(int(line))
        else:
            await self.send(line, "")
        return True

    async def send(self, text: str, root_id: str) -> None:
        body: dict[str, Any] = {"channel_id": self.channel_id, "message": text}
        if root_id:
            body["root_id"] = root_id
        r = await self._post("/posts", body)
        if r.status_code != 201:
            self.out(f"(could not post: {r.status_code} {r.text[:200]})")

    async def press(self, number: int) -> None:
        if not 1 <= number <= len(self.buttons):
            self.out(f"(no button {number})")
            return
        post_id, action_id, name = self.buttons[number - 1]
        r = await self._post(f"/posts/{post_id}/actions/{action_id}", {})
        if r.status_code != 200:
            self.out(f"(pressing {name!r} failed: {r.status_code})")

    async def run(self) -> int:
        try:
            await self.setup()
        except httpx.HTTPError as exc:
            self.out(f"(cannot reach the sandbox: {exc})")
            return 1
        self.out(HELP)
        self.out(f"You are @{self.me['username']} in ~{self.channel_name}.")
        ws_url = "ws" + self.url[4:] + "/api/v4/websocket"
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._start_reader(queue)
        try:
            async with connect(ws_url, additional_headers={
                    "Authorization": f"Bearer {self.token}"}) as ws:
                watcher = asyncio.create_task(self._watch(ws))
                try:
                    while True:
                        line = await queue.get()
                        if line is None or not await self.handle(line):
                            break
                finally:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
        finally:
            await self.http.aclose()
        return 0

    async def _watch(self, ws: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(frame, dict):
                    await self.on_frame(frame)


async def run_console(url: str, token: str, *, channel: str = "helpdesk") -> int:
    """`switchboard console`: attach to a running sandbox."""
    return await Console(url, token, channel=channel).run()
