"""A terminal chat client for the sandbox: type as a user, see the bot's replies and buttons.

It is an ordinary Mattermost client — REST to post and click, the websocket to watch — so what a
person sees here is what the bot really did over the wire. Messages are shown as Mattermost would
show them, in a terminal (`terminal.py`), and each button on show has a number to type
(`buttons.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Literal

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .buttons import Button, ButtonNumbers, label
from .terminal import can_show_emoji, clean, render_markdown, wants_ansi

HELP = """\
Type a message and press Enter to post it in the current channel.
  /dm              talk to the bot in a direct message from now on
  /dm TEXT         send TEXT to the bot in a direct message (and stay where you are)
  /channel NAME    switch channel (helpdesk, town-square, ops)
  /r TEXT          reply in the thread of the last message shown
  N                press the button shown as [N] (any other number is an ordinary message)
  //TEXT           post a message that starts with a slash, /TEXT
  /help            this text        /quit  leave (also Ctrl-D)
Other /commands are Mattermost slash commands."""

#: What Mattermost answers when the integration behind a button refused the click (any status
#: but 200: an expired or already-decided button) or did not answer at all.
INTEGRATION_ERROR = "api.post.do_action.action_integration.app_error"

# --- what a typed line means -----------------------------------------------------------------

@dataclass(frozen=True)
class Typed:
    """One typed line, understood.

    `post`: `text` goes to the current channel, or the bot's DM when `to_dm`; `reply`: `text`
    goes to the thread of the last message shown; `press`: button `number`; `switch_dm`;
    `channel`: switch to `text`; `slash`: `text` is a Mattermost slash command; `usage`: `text`
    says how a console command is used; `help`, `quit`, `nothing`.
    """

    kind: Literal["post", "reply", "press", "switch_dm", "channel", "slash", "usage", "help",
                  "quit", "nothing"]
    text: str = ""
    number: int = 0
    to_dm: bool = False


_NUMBER = re.compile(r"[0-9]+")


def parse(line: str, is_button: Callable[[int], bool]) -> Typed:
    """What a typed line asks for; `is_button(n)` says whether a button [n] is on show."""
    line = line.strip()
    if not line:
        return Typed("nothing")
    if line.startswith("//"):
        return Typed("post", line[1:])
    if line.startswith("/"):
        word, *more = line.split(None, 1)
        word, rest = word.lower(), more[0].strip() if more else ""
        if word in ("/quit", "/exit"):
            return Typed("quit")
        if word == "/help":
            return Typed("help")
        if word == "/dm":
            return Typed("post", rest, to_dm=True) if rest else Typed("switch_dm")
        if word == "/r":
            return Typed("reply", rest) if rest else Typed(
                "usage", "/r TEXT replies in the thread of the last message shown.")
        if word == "/channel":
            return Typed("channel", rest.lstrip("~")) if rest else Typed(
                "usage", "/channel NAME switches channel (helpdesk, town-square, ops).")
        return Typed("slash", line)
    if _NUMBER.fullmatch(line) and is_button(int(line)):
        return Typed("press", number=int(line))
    return Typed("post", line)


def _error_text(r: httpx.Response) -> str:
    """Mattermost's own words for a failed call, or its status."""
    try:
        body = r.json()
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    return f"{r.status_code}: {clean(str(message))}" if message else str(r.status_code)


class Console:
    def __init__(self, url: str, token: str, *, channel: str = "helpdesk",
                 stdin: IO[str] | None = None, out: Callable[[str], None] | None = None,
                 bot_username: str = "switchboard", ansi: bool | None = None,
                 emoji: bool | None = None, http: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.channel_name = channel
        self.stdin = stdin or sys.stdin
        self.out = out or (lambda line: print(line, flush=True))
        self.ansi = wants_ansi(sys.stdout) if ansi is None else ansi
        self.emoji = can_show_emoji(sys.stdout) if emoji is None else emoji
        self.bot_username = bot_username
        self.http = http or httpx.AsyncClient(base_url=self.url + "/api/v4", timeout=35,
                                              headers={"Authorization": f"Bearer {token}"})
        self.me: dict[str, Any] = {}
        self.bot_id = ""
        self.users: dict[str, str] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.channel_id = ""
        self.dm_id = ""
        self.button_numbers = ButtonNumbers()
        #: Where `/r` goes: the channel and thread root of the last message shown.
        self.last_thread: tuple[str, str] | None = None

    @property
    def buttons(self) -> dict[int, Button]:
        """The buttons on show, by number."""
        return self.button_numbers.shown

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
                self.users[user_id] = clean(str((await self._get(f"/users/{user_id}"))
                                                ["username"]))
            except (httpx.HTTPError, KeyError, ValueError):
                self.users[user_id] = user_id[:8]
        return self.users[user_id]

    async def setup(self) -> None:
        self.me = await self._get("/users/me")
        self.users[self.me["id"]] = self.me["username"]
        for team in await self._get("/users/me/teams"):
            for ch in await self._get(f"/users/{self.me['id']}/teams/{team['id']}/channels"):
                self.channels[ch["id"]] = ch
        bot = await self._get(f"/users/username/{self.bot_username}")
        self.bot_id = str(bot["id"])
        self.users[self.bot_id] = bot["username"]
        r = await self._post("/channels/direct", [self.me["id"], self.bot_id])
        r.raise_for_status()
        dm = r.json()
        dm["display_name"] = f"@{self.bot_username}"
        self.channels[dm["id"]] = dm
        self.dm_id = dm["id"]
        self._switch(self.channel_name)

    def _switch(self, name: str) -> bool:
        for cid, ch in self.channels.items():
            if ch.get("type") != "D" and (ch.get("name") == name
                                          or ch.get("display_name") == name):
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
        return f"~{clean(str(ch.get('name')))}"

    # --- rendering ------------------------------------------------------------------------------
    def md(self, text: str) -> str:
        return render_markdown(text, ansi=self.ansi, emoji=self.emoji)

    async def render(self, post: dict[str, Any], *, edited: bool = False,
                     ephemeral: bool = False) -> None:
        user_id = str(post.get("user_id", ""))
        channel_id = str(post.get("channel_id", ""))
        if ephemeral and user_id in ("", self.me.get("id")):
            # Mattermost files the answer to a click under the clicker; it is the bot's.
            user_id = self.bot_id
        who = await self._username(user_id)
        direct = self.channels.get(channel_id, {}).get("type") == "D"
        notes = []
        if edited:
            notes.append("(edited)")
        if ephemeral or (direct and channel_id != self.channel_id
                         and user_id != self.me.get("id")):
            notes.append("(only you see this)")
        thread = " (thread)" if post.get("root_id") else ""
        head = f"[{self._label(channel_id)}{thread}] @{who}{''.join(' ' + n for n in notes)}: "
        post_id = str(post.get("id") or "")
        root_id = str(post.get("root_id") or "")
        # `/r` answers the newest message; an older one brought up to date does not count, nor
        # does an ephemeral one outside a thread (it is not kept, so it has no thread).
        target = root_id or ("" if ephemeral else post_id)
        if target and not edited:
            self.last_thread = (channel_id, target)
        lines = self.md(str(post.get("message", ""))).splitlines() or [""]
        self.out(head + lines[0])
        for line in lines[1:]:
            self.out("    " + line)
        attachments = [att for att in (post.get("props") or {}).get("attachments") or []
                       if isinstance(att, dict)]
        buttons = [(str(action.get("id")), clean(str(action.get("name"))))
                   for att in attachments for action in att.get("actions") or []
                   if isinstance(action, dict)]
        numbers: dict[str, int] = {}
        if not ephemeral and post_id:  # an ephemeral post is not kept, so cannot be pressed
            numbers = self.button_numbers.number(post_id, buttons)
        for att in attachments:
            self._render_attachment(att)
            shown = [label(action, numbers) for action in att.get("actions") or []
                     if isinstance(action, dict)]
            if shown:
                self.out("    " + "   ".join(shown))

    def _render_attachment(self, att: dict[str, Any]) -> None:
        title = str(att.get("title") or "")
        if title and att.get("title_link"):
            title = f"{title} ({att['title_link']})"
        for part in (att.get("pretext"), title, att.get("text")):
            if part:
                for line in self.md(str(part)).splitlines():
                    self.out(f"    | {line}")
        for field in att.get("fields") or []:
            if isinstance(field, dict):
                self.out(f"    | {self.md(str(field.get('title') or ''))}: "
                         f"{self.md(str(field.get('value') or ''))}")

    async def on_frame(self, frame: dict[str, Any]) -> None:
        event = frame.get("event")
        data = frame.get("data") or {}
        if event in ("posted", "post_edited", "ephemeral_message", "post_deleted"):
            try:
                post = json.loads(data.get("post", "{}"))
            except ValueError:
                return
            if not isinstance(post, dict):
                return
            if event == "post_deleted":
                numbers = self.button_numbers.retire(str(post.get("id") or ""))
                if numbers:
                    self.out(f"    (a message was deleted; its buttons "
                             f"{' '.join(f'[{n}]' for n in numbers)} are gone)")
                return
            if event == "posted" and post.get("user_id") == self.me.get("id"):
                return
            await self.render(post, edited=event == "post_edited",
                              ephemeral=event == "ephemeral_message")
        elif event == "reaction_added":
            try:
                reaction = json.loads(data.get("reaction", "{}"))
            except ValueError:
                return
            if isinstance(reaction, dict) and reaction.get("user_id") != self.me.get("id"):
                who = await self._username(str(reaction.get("user_id", "")))
                emoji = self.md(f":{reaction.get('emoji_name')}:")
                self.out(f"    (@{who} reacted {emoji})")

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
        typed = parse(line, lambda n: n in self.buttons)
        match typed.kind:
            case "quit":
                return False
            case "help":
                self.out(HELP)
            case "usage":
                self.out(f"({typed.text})")
            case "switch_dm":
                self.channel_id = self.dm_id
                self.out(f"Now talking to @{self.bot_username} directly "
                         f"(/channel {self._home()} to go back).")
            case "channel":
                name = typed.text
                if self._switch(name):
                    self.out(f"Now in ~{self.channel_name}.")
                else:
                    self.out(f"(no channel {name!r}; there are {self._channel_names()})")
            case "reply":
                if self.last_thread is None:
                    self.out("(nothing to reply to yet: /r answers the last message shown)")
                else:
                    channel_id, root_id = self.last_thread
                    await self.send(typed.text, channel_id, root_id)
            case "press":
                await self.press(typed.number)
            case "slash":
                await self.slash(typed.text)
            case "post":
                await self.send(typed.text, self.dm_id if typed.to_dm else self.channel_id, "")
        return True

    def _home(self) -> str:
        names = [str(ch.get("name")) for ch in self.channels.values() if ch.get("type") != "D"]
        return "helpdesk" if "helpdesk" in names else (names[0] if names else "NAME")

    def _channel_names(self) -> str:
        return ", ".join(sorted(str(ch.get("name")) for ch in self.channels.values()
                                if ch.get("type") != "D"))

    async def send(self, text: str, channel_id: str, root_id: str) -> None:
        body: dict[str, Any] = {"channel_id": channel_id, "message": text}
        if root_id:
            body["root_id"] = root_id
        r = await self._post("/posts", body)
        if r.status_code != 201:
            self.out(f"(could not post: {_error_text(r)})")
            return
        post = r.json()
        self.last_thread = (channel_id, str(post.get("root_id") or post.get("id") or root_id))

    async def slash(self, command: str) -> None:
        r = await self._post("/commands/execute",
                             {"channel_id": self.channel_id, "command": command})
        if r.status_code == 404:
            word = command.split()[0]
            self.out(f"(no command {word} here: /help lists the console's commands; to post a "
                     f"message that starts with /, type //{command[1:]})")
        elif r.status_code != 200:
            self.out(f"({command.split()[0]} failed: {_error_text(r)})")

    async def press(self, number: int) -> None:
        button = self.buttons.get(number)
        if button is None:
            self.out(f"(no button [{number}] is on show)")
            return
        r = await self._post(f"/posts/{button.post_id}/actions/{button.action_id}", {})
        if r.status_code == 200:
            return
        try:
            error_id = r.json().get("id")
        except (ValueError, AttributeError):
            error_id = None
        name = f"[{number}] {button.name}"
        if r.status_code == 400 and error_id == INTEGRATION_ERROR:
            self.out(f"(This button is out of date: the bot turned down {name} — it has expired "
                     "or was already decided — or the bot did not answer. Nothing was done.)")
        elif r.status_code == 403:
            self.button_numbers.retire(button.post_id)
            self.out(f"(This button is out of date: the message of {name} is gone. "
                     "Nothing was done.)")
        elif r.status_code == 404:
            self.out(f"(This button is out of date: the message of {name} has changed. "
                     "Nothing was done; here it is now:)")
            # Shown again first, so that its new buttons do not take the stale one's number.
            await self._refresh(button.post_id)
            self.button_numbers.retire(button.post_id, button.action_id)
        else:
            self.out(f"(pressing {name} failed: {_error_text(r)})")

    async def _refresh(self, post_id: str) -> None:
        try:
            post = await self._get(f"/posts/{post_id}")
        except (httpx.HTTPError, ValueError):
            return
        if isinstance(post, dict):
            await self.render(post)

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
