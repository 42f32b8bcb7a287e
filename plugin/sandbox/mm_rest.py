"""The HTTP side of the simulated server: one dispatcher in front of the route table.

aiohttp's own router is not used for the API: Mattermost answers unknown routes, malformed ids in
paths and wrong methods in ways of its own (a `text/plain` 404 with a JSON body and no request id),
and the faults (down, rate limit, injected failures) must apply before any route runs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from aiohttp import web

from .costs import CostModel, CpuServer
from .mm_core import SandboxCore
from .mm_handlers import Ctx, Handler, Handlers
from .mm_integrations import Integrations
from .mm_model import AppError, go_json, new_id, router_404_body, session_error
from .mm_previews import LinkPreviews
from .mm_ws import Hub, bearer_token, websocket_endpoint


class RequestRecord(NamedTuple):
    """One REST request as the simulator saw it."""

    method: str
    path: str
    status: int
    time: float
    user: str | None
    query: str = ""


@dataclass
class FailRule:
    """An injected failure: the next `count` matching requests get `status`.

    With `handled`, a request is carried out first (a created post is stored and broadcast) and
    only its answer is replaced, as when a server fails after committing; an error the request
    meets on its own is answered as it is.
    """

    method: str
    pattern: re.Pattern[str]
    status: int
    count: int
    error_id: str
    message: str
    handled: bool = False

    def error(self) -> AppError:
        return AppError(self.status, self.error_id, self.message)


_FAULT_ERRORS = {
    400: ("api.context.invalid_body_param.app_error", "Invalid or missing body in request body."),
    401: ("api.context.session_expired.app_error",
          "Invalid or expired session, please login again."),
    403: ("api.context.permissions.app_error", "You do not have the appropriate permissions."),
    404: ("app.post.get.app_error", "Unable to get the post."),
    500: ("app.post.save.app_error", "Unable to save the Post."),
    503: ("api.context.server_busy.app_error",
          "Server is busy, non-critical services are temporarily unavailable."),
}


def fault_error(status: int) -> tuple[str, str]:
    """A plausible Mattermost error id and text for an injected status."""
    return _FAULT_ERRORS.get(status, ("api.sandbox.injected.app_error",
                                      "The sandbox was told to fail this request."))


@dataclass
class Faults:
    """Switches the tests flip to make the server misbehave."""

    down: bool = False
    rate_limited: int = 0
    retry_after: int = 1
    rate_limit_websocket: bool = False
    rules: list[FailRule] = field(default_factory=list)


class RateLimiter:
    """Mattermost's limiter (GCRA from the `throttled` library), keyed by remote address.

    Computed in integer nanoseconds so `X-Ratelimit-*` values match the recorded ones exactly.
    """

    def __init__(self, per_sec: float, burst: int, clock: Callable[[], float]) -> None:
        self.interval = int(1_000_000_000 / per_sec)
        self.limit = burst + 1
        self.tolerance = self.interval * (burst + 1)
        self.clock = clock
        self.tat: dict[str, int] = {}

    def take(self, key: str) -> tuple[bool, dict[str, str]]:
        """Whether the request is limited, and the headers that go with the answer."""
        now = int(self.clock() * 1_000_000_000)
        tat = max(self.tat.get(key, now), now)
        new_tat = tat + self.interval
        allow_at = new_tat - self.tolerance
        retry_after = -1
        if now < allow_at:
            limited = True
            retry_after = allow_at - now
            ttl = tat - now
        else:
            limited = False
            self.tat[key] = new_tat
            ttl = new_tat - now
        spare = self.tolerance - ttl
        remaining = spare // self.interval if spare >= 0 else 0
        headers = {"X-Ratelimit-Limit": str(self.limit), "X-Ratelimit-Remaining": str(remaining),
                   "X-Ratelimit-Reset": str(-(-ttl // 1_000_000_000))}
        if retry_after >= 0:
            headers["Retry-After"] = str(-(-retry_after // 1_000_000_000))
        return limited, headers


class Route(NamedTuple):
    """One API route: its method, path pattern, handler and whether it needs a session."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool


def _pattern(template: str) -> re.Pattern[str]:
    # `{x}` is an id-like segment, `{x:name}` a username/name segment, as in the server's routes.
    def repl(m: re.Match[str]) -> str:
        name, _, kind = m.group(1).partition(":")
        chars = {"": "A-Za-z0-9", "name": r"A-Za-z0-9_\-.", "emoji": r"A-Za-z0-9_\-+"}[kind]
        return f"(?P<{name}>[{chars}]+)"
    return re.compile("^" + re.sub(r"\{([^}]+)\}", repl, template) + "$")


class RestApi(Handlers):
    """Dispatches every HTTP request of the simulator, websocket upgrades included."""

    def __init__(self, core: SandboxCore, integrations: Integrations, faults: Faults,
                 limiter: RateLimiter | None, auth_deadline_s: float,
                 previews: LinkPreviews | None = None, costs: CpuServer | None = None) -> None:
        self.core = core
        self.previews = previews or LinkPreviews()
        self.costs = costs
        self.integrations = integrations
        self.hub: Hub = core.hub
        self.faults = faults
        self.limiter = limiter
        self.auth_deadline_s = auth_deadline_s
        self.request_log: list[RequestRecord] = []
        self.ws_connects = 0
        self.routes = self._routes()

    # -- dispatch -----------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """The single aiohttp handler."""
        path, method = request.path, request.method
        is_ws = path == "/api/v4/websocket"
        rl_headers: dict[str, str] = {}
        if self.limiter is not None:
            limited, rl_headers = self.limiter.take(request.remote or "")
            if limited:
                return self._log(request, _limit_exceeded(rl_headers), is_ws)
        if self.faults.rate_limited > 0 and (not is_ws or self.faults.rate_limit_websocket):
            self.faults.rate_limited -= 1
            after = str(self.faults.retry_after)
            return self._log(request, _limit_exceeded({
                "X-Ratelimit-Limit": str(self.limiter.limit if self.limiter else 101),
                "X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": after,
                "Retry-After": after}), is_ws)
        ctx = Ctx(request, {}, new_id())
        ctx.extra_headers = rl_headers
        token = bearer_token(request)
        uid = self.core.user_for_token(token) if token else None
        ctx.session_user = self.core.users.get(uid) if uid else None
        if self.faults.down:
            err = AppError(503, *fault_error(503))
            return self._log(request, self._error(ctx, err, token), is_ws)
        route, params, path_matched = self._match(method, path)
        if route is None:
            if path_matched:
                resp = web.Response(status=405, headers=rl_headers)
            else:
                body = go_json(router_404_body(request.path)).encode()
                resp = web.Response(status=404, body=body,
                                    headers={"Content-Type": "text/plain; charset=utf-8",
                                             **rl_headers})
            return self._log(request, resp, is_ws)
        ctx.params = params
        if is_ws:
            self.ws_connects += 1
            return await websocket_endpoint(request, self.hub, self.auth_deadline_s)
        try:
            injected = self._injected(method, path)
            if injected is not None and not injected.handled:
                raise injected.error()
            if route.auth and ctx.session_user is None:
                raise session_error()
            kind = CostModel.kind_of(method, path) if self.costs is not None else None
            if self.costs is not None and kind is not None:
                await self.costs.charge(kind)
            answer = await route.handler(ctx)
            if injected is not None:
                raise injected.error()
        except AppError as err:
            answer = self._error(ctx, err, token)
        return self._log(request, answer, False, ctx)

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        path_matched = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m is None:
                continue
            path_matched = True
            if route.method == method:
                return route, m.groupdict(), True
        return None, {}, path_matched

    def _injected(self, method: str, path: str) -> FailRule | None:
        for rule in self.faults.rules:
            if rule.method in ("*", method) and rule.pattern.search(path):
                rule.count -= 1
                if rule.count <= 0:
                    self.faults.rules.remove(rule)
                return rule
        return None

    def _log(self, request: web.Request, resp: web.StreamResponse, is_ws: bool,
             ctx: Ctx | None = None) -> web.StreamResponse:
        if not is_ws:
            who = ctx.session_user if ctx is not None else None
            user = who.username if who is not None else None
            self.request_log.append(RequestRecord(request.method, request.path, resp.status,
                                                  time.monotonic(), user,
                                                  request.query_string))
        return resp

    # -- route table ----------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        table: list[tuple[str, str, Handler, bool]] = [
            ("GET", "/api/v4/websocket", self.no_op, False),
            ("GET", "/api/v4/system/ping", self.ping, False),
            ("GET", "/api/v4/config", self.get_config, True),
            ("GET", "/api/v4/users", self.list_users, True),
            ("POST", "/api/v4/users/ids", self.users_by_ids, True),
            ("POST", "/api/v4/users/status/ids", self.statuses_by_ids, True),
            ("GET", "/api/v4/users/username/{username:name}", self.user_by_name, True),
            ("GET", "/api/v4/users/{user_id}", self.get_user, True),
            ("GET", "/api/v4/users/{user_id}/teams", self.user_teams, True),
            ("GET", "/api/v4/users/{user_id}/teams/{team_id}/channels", self.user_channels, True),
            ("GET", "/api/v4/users/{user_id}/status", self.get_status, True),
            ("PUT", "/api/v4/users/{user_id}/status", self.put_status, True),
            ("PUT", "/api/v4/users/{user_id}/roles", self.put_roles, True),
            ("PUT", "/api/v4/users/{user_id}/patch", self.patch_user, True),
            ("POST", "/api/v4/users/{user_id}/typing", self.typing, True),
            ("DELETE", "/api/v4/users/{user_id}/posts/{post_id}/reactions/{emoji_name:emoji}",
             self.delete_reaction, True),
            ("GET", "/api/v4/teams/{team_id}/members/{user_id}", self.team_member, True),
            ("GET", "/api/v4/teams/name/{team_name:name}", self.team_by_name, True),
            ("GET", "/api/v4/teams/{team_id}", self.get_team, True),
            ("GET", "/api/v4/teams/{team_id}/channels", self.team_channels, True),
            ("GET", "/api/v4/teams/{team_id}/channels/name/{channel_name:name}",
             self.channel_by_name, True),
            ("POST", "/api/v4/channels", self.create_channel, True),
            ("POST", "/api/v4/channels/direct", self.direct_channel, True),
            ("POST", "/api/v4/channels/members/{user_id}/view", self.view_channel, True),
            ("GET", "/api/v4/channels/{channel_id}", self.get_channel, True),
            ("GET", "/api/v4/channels/{channel_id}/posts", self.channel_posts, True),
            ("POST", "/api/v4/channels/{channel_id}/members", self.add_member, True),
            ("GET", "/api/v4/channels/{channel_id}/members/{user_id}", self.get_member, True),
            ("DELETE", "/api/v4/channels/{channel_id}/members/{user_id}", self.remove_member,
             True),
            ("POST", "/api/v4/posts", self.create_post, True),
            ("POST", "/api/v4/posts/ephemeral", self.ephemeral, True),
            ("GET", "/api/v4/posts/{post_id}", self.get_post, True),
            ("PUT", "/api/v4/posts/{post_id}", self.update_post, True),
            ("DELETE", "/api/v4/posts/{post_id}", self.delete_post, True),
            ("PUT", "/api/v4/posts/{post_id}/patch", self.patch_post, True),
            ("GET", "/api/v4/posts/{post_id}/thread", self.thread, True),
            ("GET", "/api/v4/posts/{post_id}/reactions", self.post_reactions, True),
            ("POST", "/api/v4/posts/{post_id}/actions/{action_id}", self.click, True),
            ("POST", "/api/v4/reactions", self.add_reaction, True),
            ("POST", "/api/v4/files", self.upload, True),
            ("GET", "/api/v4/files/{file_id}", self.download, True),
            ("GET", "/api/v4/files/{file_id}/info", self.file_info, True),
            ("POST", "/api/v4/actions/dialogs/open", self.open_dialog, False),
            ("POST", "/api/v4/actions/dialogs/submit", self.submit_dialog, True),
            ("POST", "/api/v4/commands", self.create_command, True),
            ("GET", "/api/v4/commands", self.list_commands, True),
            ("PUT", "/api/v4/commands/{command_id}", self.update_command, True),
            ("POST", "/api/v4/commands/execute", self.execute_command, True),
            ("POST", "/api/v4/hooks/incoming", self.create_incoming, True),
            ("POST", "/api/v4/hooks/outgoing", self.create_outgoing, True),
            ("POST", "/hooks/commands/{hook_id}", self.command_webhook, False),
            ("POST", "/hooks/{hook_id}", self.incoming_webhook, False),
        ]
        return [Route(m, _pattern(t), h, a) for m, t, h, a in table]


def _limit_exceeded(headers: dict[str, str]) -> web.Response:
    # Written by the limiter in front of the API: plain text and no request/version ids.
    return web.Response(status=429, body=b"limit exceeded\n",
                        headers={"Content-Type": "text/plain; charset=utf-8",
                                 "X-Content-Type-Options": "nosniff", **headers})

