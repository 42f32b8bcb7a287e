"""A Mattermost 5.36 server simulator on 127.0.0.1, for the tests and the sandbox console.

It speaks the REST API and the websocket event stream with the exact shapes recorded on a real
5.36.1 server (`tests/fixtures/mattermost/`), over real sockets, in a fixed world:

* team `sandbox`; the bot `switchboard` (token given to the constructor) and the humans `alice`,
  `bob`, `carol` and `admin` (system admin), whose tokens are `<name>-token`;
* public `town-square` and `helpdesk` (everyone), public `off-topic` (not the bot), private `ops`
  (bot, alice, admin); direct channels appear on demand.

Tests act as the humans through the Python API (`post_as`, `click`, ...), which has the same
effects as the humans' REST calls, and make the server misbehave with the fault switches
(`drop_connections`, `set_deaf`, `set_down`, `rate_limit`, `fail_next`).

A post whose first link is a bare URL has its page fetched before the post is answered, as the
real server's link previews do (`mm_previews`; the fetches are in `preview_fetches`). With a
`cost_model` (`costs.py`), every request also costs the CPU it costs a real server, paid in
worker processes that compete for the machine's cores.

Run it alone with `python -m plugin.sandbox.mattermost --port 8065`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .costs import CostModel, CpuServer
from .loop_thread import LoopThread
from .mm_core import SandboxCore
from .mm_integrations import Integrations
from .mm_model import JSON, AppError, Post, new_id, router_404_body
from .mm_previews import Fetch, LinkPreviews
from .mm_rest import FailRule, Faults, RateLimiter, RequestRecord, RestApi, fault_error

__all__ = ["AppError", "MattermostSimulator", "RequestRecord", "SimulatorThread"]


class MattermostSimulator:
    """The simulated server. Create, `await start()`, use `url`, `await stop()`.

    Options beyond the basics: `integration_timeout_s` (5.36's hard-coded 30 s for buttons,
    dialogs, commands and webhooks), `trigger_lifetime_s` (3 s for dialog trigger ids),
    `send_queue_limit` (frames queued for one socket before the server drops a slow reader; None
    for no limit), `rate_limit_per_sec`/`rate_limit_burst` (turn on the server's own limiter, which
    also adds `X-Ratelimit-*` headers to every answer), `clock` (the limiter's time source),
    `link_previews`/`link_preview_timeout_s` (fetch the first bare link of new and edited posts;
    on by default) and `cost_model` (the real server's CPU cost per request; off by default).
    """

    #: How many REST clients `flood` posts from when the cost model is on.
    FLOOD_CLIENTS = 8

    def __init__(self, *, bot_token: str = "sandbox-bot-token", host: str = "127.0.0.1",
                 port: int = 0, auth_deadline_s: float = 5.0, integration_timeout_s: float = 30.0,
                 trigger_lifetime_s: float = 3.0, send_queue_limit: int | None = 256,
                 rate_limit_per_sec: float | None = None, rate_limit_burst: int = 100,
                 clock: Callable[[], float] = time.monotonic, link_previews: bool = True,
                 link_preview_timeout_s: float = 5.0, cost_model: CostModel | None = None,
                 ) -> None:
        self._core = SandboxCore(bot_token=bot_token, send_queue_limit=send_queue_limit)
        self._integrations = Integrations(self._core, integration_timeout_s=integration_timeout_s,
                                          trigger_lifetime_s=trigger_lifetime_s)
        self._faults = Faults()
        limiter = (RateLimiter(rate_limit_per_sec, rate_limit_burst, clock)
                   if rate_limit_per_sec else None)
        self._previews = LinkPreviews(enabled=link_previews, timeout_s=link_preview_timeout_s)
        #: The worker processes that pay the cost model (None when it is off).
        self.cpu = CpuServer(cost_model) if cost_model is not None else None
        self._api = RestApi(self._core, self._integrations, self._faults, limiter,
                            auth_deadline_s, self._previews, self.cpu)
        self.host = host
        self.port = port
        self.url = ""
        self.bot_token = bot_token
        self.bot_id = self._core.bot_id
        self.team_id = self._core.team.id
        self._runner: web.AppRunner | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on `host:port` (port 0 picks a free one) and set `url`."""
        if self.cpu is not None:
            await self.cpu.start()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._api.dispatch)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        self.url = f"http://{self.host}:{self.port}"
        self._integrations.site_url = self.url
        await self._integrations.open()

    async def stop(self) -> None:
        """Close every socket (with a close frame) and stop listening."""
        if self._runner is None:
            return
        hub = self._core.hub
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.close_all(1001), 1.0)
        hub.abort_all()
        await self._integrations.close()
        await self._runner.cleanup()
        self._runner = None
        await self._previews.close()
        if self.cpu is not None:
            await self.cpu.stop()

    # -- settings that tests change on the fly --------------------------------------------------

    @property
    def integration_timeout_s(self) -> float:
        """How long the server waits for an integration (30 s on a real 5.36)."""
        return self._integrations.integration_timeout_s

    @integration_timeout_s.setter
    def integration_timeout_s(self, value: float) -> None:
        self._integrations.integration_timeout_s = value

    @property
    def trigger_lifetime_s(self) -> float:
        """How long a dialog trigger id stays usable (3 s on a real 5.36)."""
        return self._integrations.trigger_lifetime_s

    @trigger_lifetime_s.setter
    def trigger_lifetime_s(self, value: float) -> None:
        self._integrations.trigger_lifetime_s = value

    @property
    def auth_deadline_s(self) -> float:
        """How long an unauthenticated socket lives before the server drops it."""
        return self._api.auth_deadline_s

    @auth_deadline_s.setter
    def auth_deadline_s(self, value: float) -> None:
        self._api.auth_deadline_s = value

    @property
    def request_log(self) -> list[RequestRecord]:
        """Every REST request: method, path, status, monotonic time, username, query."""
        return self._api.request_log

    @property
    def preview_fetches(self) -> list[Fetch]:
        """Every link-preview fetch (URL, status or None, monotonic time), oldest first."""
        return self._previews.fetches

    @property
    def ws_connects(self) -> int:
        """How many websocket upgrades were accepted."""
        return self._api.ws_connects

    @property
    def open_sockets(self) -> int:
        """How many websockets are open right now (authenticated or not)."""
        return len(self._core.hub.connections)

    # -- the world ----------------------------------------------------------------------------

    def user_id(self, username: str) -> str:
        """The id of a sandbox user."""
        return self._core.user_named(username).id

    def token(self, username: str) -> str:
        """The REST token of a sandbox user (the bot's is the constructor's)."""
        uid = self.user_id(username)
        return next(t for t, u in self._core.tokens.items() if u == uid)

    def channel_id(self, name: str) -> str:
        """The id of a channel, by name (direct channels: `<id>__<id>`)."""
        return self._core.channel_ref(name).id

    def create_channel(self, name: str, *, display_name: str | None = None,
                       private: bool = False, members: list[str] | None = None) -> str:
        """Add a team channel to the world (no events); members by username."""
        ids = [self.user_id(m) for m in (members or [])]
        ch = self._core.create_channel_record(name, display_name or name.title(),
                                              "P" if private else "O",
                                              self._core.user_by_name["admin"], ids)
        return ch.id

    async def add_member(self, channel: str, username: str, *, by: str = "admin") -> None:
        """Add a user to a channel as `by` would (events and the system post included)."""
        self._core.add_member(self._core.user_named(by), self._core.channel_ref(channel),
                              self.user_id(username))

    async def remove_member(self, channel: str, username: str, *, by: str = "admin") -> None:
        """Remove a user from a channel as `by` would."""
        self._core.remove_member(self._core.user_named(by), self._core.channel_ref(channel),
                                 self.user_id(username))

    def set_status(self, username: str, status: str) -> None:
        """Set someone's presence as if they chose it."""
        self._core.set_status(self.user_id(username), status, manual=status != "online")

    @property
    def server_config(self) -> JSON:
        """The configuration `GET /api/v4/config` shows system admins; change it in place."""
        return self._core.config

    # -- acting as a human ----------------------------------------------------------------------

    async def post_as(self, username: str, channel: str, message: str, *, root_id: str = "",
                      file_ids: list[str] | None = None, props: dict[str, Any] | None = None,
                      create_at: int = 0) -> JSON:
        """Post as `username` into a channel (name or id); returns the post as REST would.

        `create_at` (ms) backdates the post, as a bulk import stores one: for what was posted
        while a bot was away."""
        user = self._core.user_named(username)
        body: JSON = {"channel_id": self._core.channel_ref(channel).id, "message": message,
                      "root_id": root_id}
        if file_ids:
            body["file_ids"] = file_ids
        if props is not None:
            body["props"] = props
        view = self._core.post_view(await self._create(user, body, create_at))
        await _yield()
        return view

    def direct_channel_id(self, username: str) -> str:
        """The id of `username`'s direct channel with the bot (opened if needed)."""
        user = self._core.user_named(username)
        ch, _ = self._core.direct_channel([user.id, self.bot_id], user)
        return ch.id

    async def dm_as(self, username: str, message: str, *, root_id: str = "") -> JSON:
        """Post as `username` in their direct channel with the bot (opened if needed)."""
        user = self._core.user_named(username)
        ch, _ = self._core.direct_channel([user.id, self.bot_id], user)
        post = await self._create(user, {"channel_id": ch.id, "message": message,
                                         "root_id": root_id})
        await _yield()
        return self._core.post_view(post)

    async def edit_as(self, username: str, post_id: str, message: str) -> JSON:
        """Change a post's message as `username` (a patch: other fields stay)."""
        post = self._core.editable_post(self._core.user_named(username), post_id)
        await self._charge("post_edit")
        await self._api.preview(message, post.props, post.create_at)
        view = self._core.post_view(self._core.edit_post(post, message, dict(post.props)))
        await _yield()
        return view

    async def delete_as(self, username: str, post_id: str) -> None:
        """Delete a post as `username`."""
        await self._charge("post_delete")
        self._core.delete_post(self._core.user_named(username), post_id)
        await _yield()

    async def upload_file(self, username: str, channel: str, name: str, data: bytes) -> str:
        """Upload a file as `username`; returns its id, for `post_as(file_ids=...)`."""
        info = self._core.upload(self._core.user_named(username),
                                 self._core.channel_ref(channel).id, [(name, data, "")])
        return info[0].id

    async def click(self, username: str, post_id: str, action_id: str,
                    selected_option: str | None = None) -> tuple[int, JSON]:
        """Click a button (or pick a menu option) as `username`, exactly as the server does it.

        Returns what the clicking client gets: `(200, {"status": "OK", "trigger_id": ...})`, or
        the error status and AppError body (400 when the integration fails in any way).
        """
        if not re.fullmatch(r"[A-Za-z0-9]+", action_id):
            # The route itself does not match such ids: the router's own 404.
            return 404, router_404_body(f"/api/v4/posts/{post_id}/actions/{action_id}")
        try:
            body = await self._integrations.click(self._core.user_named(username), post_id,
                                                  action_id, selected_option)
        except AppError as err:
            return err.status, err.body(new_id())
        return 200, body

    def dialogs(self, username: str) -> list[JSON]:
        """Dialogs opened for `username` ({trigger_id, url, dialog}), oldest first."""
        uid = self._core.user_named(username).id
        return [payload for user_id, payload in self._integrations.opened_dialogs
                if user_id == uid]

    async def submit_dialog(self, username: str, opened: JSON, submission: JSON, *,
                            channel: str = "", cancelled: bool = False) -> tuple[int, JSON]:
        """Submit (or cancel) an opened dialog as `username`, as the web client does."""
        dialog = opened["dialog"]
        body = {"url": opened["url"], "callback_id": dialog.get("callback_id", ""),
                "state": dialog.get("state", ""),
                "channel_id": self._core.channel_ref(channel).id if channel else "",
                "team_id": self.team_id, "submission": submission, "cancelled": cancelled}
        try:
            return 200, await self._integrations.submit_dialog(
                self._core.user_named(username), body)
        except AppError as err:
            return err.status, err.body(new_id())

    # -- what happened ------------------------------------------------------------------------

    def posts(self, channel: str | None = None) -> list[JSON]:
        """Stored live posts (integrations included), oldest first; one channel or all."""
        if channel is not None:
            found: list[Post] = list(self._core.channel_posts[self._core.channel_ref(channel).id])
        else:
            found = [p for ps in self._core.channel_posts.values() for p in ps]
        found = sorted((p for p in found if p.live), key=lambda p: (p.create_at, p.seq))
        return [self._core.post_view(p, keep_integrations=True) for p in found]

    def commands(self) -> list[JSON]:
        """The custom slash commands, tokens included, in creation order."""
        return [c.json() for c in self._integrations.commands.values()]

    @property
    def only_admin_commands(self) -> bool:
        """Only system admins hold `manage_slash_commands` (off: every team member does)."""
        return self._integrations.only_admin_commands

    @only_admin_commands.setter
    def only_admin_commands(self, value: bool) -> None:
        self._integrations.only_admin_commands = value

    def ephemerals(self, username: str) -> list[JSON]:
        """Ephemeral posts delivered to a user, oldest first."""
        return list(self._core.ephemeral_log.get(self.user_id(username), []))

    def sent_at(self, post_id: str) -> float | None:
        """Monotonic time the `posted` event of a post was written to a bot socket."""
        return self._core.hub.sent_at.get(post_id)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll `predicate` until it holds; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.01)

    # -- faults -------------------------------------------------------------------------------

    async def drop_connections(self, *, close_frame: bool = False) -> None:
        """End every websocket: TCP abort (clients see 1006) or a 1001 close frame."""
        if close_frame:
            await self._core.hub.close_all(1001)
        else:
            self._core.hub.abort_all()

    def set_deaf(self, deaf: bool) -> None:
        """Keep sockets open and answering pings, but deliver no events (they are still stored)."""
        self._core.hub.deaf = deaf

    def set_down(self, down: bool) -> None:
        """Answer everything with 503 and drop every socket, until switched back."""
        self._faults.down = down
        if down:
            self._core.hub.abort_all()

    def rate_limit(self, count: int, retry_after: int = 1, *,
                   include_websocket: bool = False) -> None:
        """The next `count` REST requests get the recorded 429 `limit exceeded`."""
        self._faults.rate_limited = count
        self._faults.retry_after = retry_after
        self._faults.rate_limit_websocket = include_websocket

    def fail_next(self, method: str, path_regex: str, status: int, count: int = 1, *,
                  error_id: str | None = None, message: str | None = None,
                  handled: bool = False) -> None:
        """The next `count` requests matching method (or `*`) and path get an AppError `status`;
        with `handled`, after the request has taken effect (a post is stored, then 500)."""
        default_id, default_message = fault_error(status)
        self._faults.rules.append(FailRule(method.upper(), re.compile(path_regex), status, count,
                                           error_id or default_id, message or default_message,
                                           handled))

    async def flood(self, channel: str, username: str, messages: list[str]) -> None:
        """Store and broadcast many posts as fast as possible (for benchmarks).

        With the cost model on, they come as from `FLOOD_CLIENTS` REST clients at once, each
        post paid for as a REST one is (so not quite in order)."""
        user = self._core.user_named(username)
        channel_id = self._core.channel_ref(channel).id
        if self.cpu is not None:
            pending = iter(messages)

            async def client() -> None:
                for message in pending:
                    await self._create(user, {"channel_id": channel_id, "message": message})
            await asyncio.gather(*(client() for _ in range(self.FLOOD_CLIENTS)))
            return
        create = self._core.create_post
        for message in messages:
            create(user, {"channel_id": channel_id, "message": message})
            # Let the socket writers drain between posts, as a real server's would.
            await asyncio.sleep(0)

    def messages(self, channel: str, start: int = 0) -> tuple[list[tuple[str, str, str]], int]:
        """Cheaply, for benchmarks: `(user_id, root_id, message)` of the live posts stored in a
        channel from position `start` on, and the position to start from next time."""
        stored = self._core.channel_posts[self._core.channel_ref(channel).id]
        end = len(stored)
        return [(p.user_id, p.root_id, p.message) for p in stored[start:end] if p.live], end

    async def _charge(self, kind: str) -> None:
        if self.cpu is not None:
            await self.cpu.charge(kind)

    async def _create(self, user: Any, body: JSON, create_at: int = 0) -> Post:
        """A post created as a REST call would: paid for, its link previewed, then stored."""
        await self._charge("post_create")
        post, ch, file_ids = self._core.prepare_post(user, body)
        if create_at:
            post.create_at = create_at
        await self._api.preview(post.message, post.props)
        return self._core.save_post(user, post, ch, file_ids)


async def _yield() -> None:
    # A real request takes a round trip: let the socket writers run, so a test posting in a
    # tight loop does not pile frames up past the slow-reader limit.
    await asyncio.sleep(0)


class SimulatorThread(LoopThread[MattermostSimulator]):
    """Runs a MattermostSimulator on its own event loop in a daemon thread (for sync code)."""

    name = "mattermost-simulator"

    def __init__(self, **simulator_kwargs: Any) -> None:
        super().__init__(lambda: MattermostSimulator(**simulator_kwargs))


def main(argv: list[str] | None = None) -> int:
    """`python -m plugin.sandbox.mattermost`: run the simulator until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m plugin.sandbox.mattermost",
                                     description="A Mattermost 5.36 simulator on 127.0.0.1.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8065)
    parser.add_argument("--bot-token", default="sandbox-bot-token")
    args = parser.parse_args(argv)

    async def serve() -> None:
        sim = MattermostSimulator(bot_token=args.bot_token, host=args.host, port=args.port)
        await sim.start()
        print(f"Mattermost simulator listening on {sim.url}", flush=True)
        print(f"  team: sandbox ({sim.team_id})")
        print(f"  bot:  switchboard ({sim.bot_id}) token {args.bot_token}")
        for name in ("alice", "bob", "carol", "admin"):
            print(f"  user: {name} ({sim.user_id(name)}) token {name}-token")
        for name in ("town-square", "helpdesk", "off-topic", "ops"):
            print(f"  channel: {name} ({sim.channel_id(name)})")
        print("Ctrl-C stops it.", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
