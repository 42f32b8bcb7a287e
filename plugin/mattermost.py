"""Mattermost's REST API through mattermostdriver's endpoints, made fit for a long-running bot.

Only the driver's endpoint catalogue is used, loaded without the rest of the driver
(`mm_catalog`); the HTTP layer is `mm_http.AsyncClient`, on the event loop: pooled connections
(at most `connections` calls in flight), a timeout on every call, retries on 429 (honouring
Retry-After) and on 5xx and connection failures with backoff, and errors mapped to
`MattermostError` with Mattermost's error id. No call takes a thread.

Creating a post is not idempotent, so it is never blindly retried: a post carries an idempotency key
in its props, and after a failure the thread is searched for that key before posting again (a 5.36
server can answer 500 to two simultaneous first replies in one thread).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

from .mm_catalog import Endpoints
from .mm_http import (
    AsyncClient,
    MattermostAuthError,
    MattermostError,
    RetryPolicy,
    retry_after_seconds,
)

__all__ = ["KEY_PROP", "MattermostAPI", "MattermostAuthError", "MattermostError",
           "retry_after_seconds"]

log = logging.getLogger("switchboard.mattermost")

T = TypeVar("T")

#: Props key holding a reply's idempotency key.
KEY_PROP = "switchboard_key"


class MattermostAPI:
    """Async facade over the driver's endpoints, whose calls run on the caller's event loop.

    `connections` bounds the calls in flight (the pooled connections)."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0, retries: int = 4,
                 max_retry_after: float = 30.0, connections: int = 8, verify: bool | str = True,
                 lookback: float = 24 * 3600) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme or "http"
        port = parts.port or (443 if scheme == "https" else 80)
        client_cls = type("SwitchboardClient", (AsyncClient,), {
            "policy": RetryPolicy(retries, max_retry_after),
            "limit": connections})
        #: The endpoint groups (`driver.posts`, `driver.users`, ...) over the client.
        self.driver = Endpoints(client_cls({
            "url": parts.hostname or "localhost",
            "port": port,
            "scheme": scheme,
            "basepath": (parts.path.rstrip("/") or "") + "/api/v4",
            "token": token,
            "verify": verify,
            "request_timeout": timeout,
        }))
        self.base_url = url.rstrip("/")
        #: How far back (seconds) a post's idempotency key is looked for outside threads.
        self.lookback = lookback
        self.ws_url = ("wss" if scheme == "https" else "ws") + self.base_url[len(scheme):] \
            + "/api/v4/websocket"
        self._users: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        #: Channel ids by the `team/channel` names configured for them.
        self._channel_refs: dict[str, str] = {}
        self._teams: dict[str, dict[str, Any]] = {}
        self.me: dict[str, Any] = {}

    @overload
    async def call(self, fn: Callable[[Endpoints], Awaitable[T]]) -> T: ...
    @overload
    async def call(self, fn: Callable[[Endpoints], T]) -> T: ...

    async def call(self, fn: Callable[[Endpoints], Awaitable[T] | T]) -> T:
        """One driver call, e.g. `call(lambda d: d.teams.get_team_by_name(name))`: the endpoint
        method's coroutine is awaited here, in the caller's task (and so its log context)."""
        result = fn(self.driver)
        if inspect.isawaitable(result):
            return await result
        return result

    async def aclose(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        await self.driver.client.aclose()

    def close(self) -> None:
        """Close the pooled connections without waiting: on a running loop, in a task that
        the loop must still get to run (`aclose` waits for it)."""
        self.driver.client.close()

    # --- identity -----------------------------------------------------------------------------
    async def login(self) -> dict[str, Any]:
        """Who the bot is; raises MattermostAuthError for a bad token."""
        self.me = await self.call(lambda d: d.users.get_user("me"))
        return self.me

    @property
    def bot_id(self) -> str:
        return str(self.me.get("id", ""))

    async def _cached(self, cache: dict[str, dict[str, Any]], key: str,
                      fetch: Callable[[Endpoints], Awaitable[dict[str, Any]]]
                      ) -> dict[str, Any]:
        found = cache.get(key)
        if found is None:
            found = cache[key] = dict(await self.call(fetch))
        return found

    async def user(self, user_id: str) -> dict[str, Any]:
        return await self._cached(self._users, user_id, lambda d: d.users.get_user(user_id))

    async def user_by_name(self, username: str) -> dict[str, Any]:
        """A user by user name (without the `@`)."""
        name = username.lstrip("@")
        return dict(await self.call(lambda d: d.users.get_user_by_username(name)))

    def forget_user(self, user_id: str) -> None:
        """Drop a cached user (their profile changed), so the next look-up fetches it."""
        self._users.pop(user_id, None)

    # --- channels -----------------------------------------------------------------------------
    async def channel(self, channel_id: str) -> dict[str, Any]:
        return await self._cached(self._channels, channel_id,
                                  lambda d: d.channels.get_channel(channel_id))

    async def channel_id(self, ref: str) -> str:
        """The id of a channel given as `team/channel` (names) or as an id; cached."""
        found = self._channel_refs.get(ref)
        if found is None:
            if "/" in ref:
                team_name, _sep, channel_name = ref.partition("/")
                team = await self.call(lambda d: d.teams.get_team_by_name(team_name))
                channel = await self.call(lambda d: d.channels.get_channel_by_name(
                    team["id"], channel_name))
                found = str(channel["id"])
            else:
                found = str((await self.channel(ref))["id"])
            self._channel_refs[ref] = found
        return found

    async def my_channels(self) -> list[dict[str, Any]]:
        """Every channel the bot is in, DMs and group messages included, without duplicates."""
        seen: dict[str, dict[str, Any]] = {}
        for team in await self._fetch_teams():
            tid = team["id"]
            chans: list[dict[str, Any]] = await self.call(
                lambda d, tid=tid: d.channels.get_channels_for_user(  # type: ignore[misc]
                    self.bot_id, tid))
            for ch in chans:
                if not ch.get("delete_at"):
                    seen[ch["id"]] = ch
        self._channels.update(seen)
        return list(seen.values())

    async def _fetch_teams(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call(lambda d: d.teams.get_user_teams("me"))
        self._teams = {t["id"]: t for t in found}
        return found

    async def teams(self) -> list[dict[str, Any]]:
        """The bot's teams (cached; refreshed whenever the channels are listed)."""
        if not self._teams:
            await self._fetch_teams()
        return list(self._teams.values())

    async def team(self, team_id: str) -> dict[str, Any]:
        return await self._cached(self._teams, team_id, lambda d: d.teams.get_team(team_id))

    async def permalink(self, post_id: str, channel: dict[str, Any] | None) -> str:
        """A post's permalink under its channel's team (a direct channel: the bot's first
        team); without a channel, or when the team cannot be read, the form without a team."""
        team_name = ""
        if channel is not None:
            try:
                team_id = str(channel.get("team_id") or "")
                if team_id:
                    team_name = str((await self.team(team_id)).get("name", ""))
                else:
                    teams = await self.teams()
                    team_name = str(teams[0].get("name", "")) if teams else ""
            except MattermostError as exc:
                log.warning("cannot name the team of channel %s: %s", channel.get("id"), exc)
        base = self.base_url
        return f"{base}/{team_name}/pl/{post_id}" if team_name else f"{base}/pl/{post_id}"

    async def is_member(self, channel_id: str, user_id: str) -> bool:
        """Whether a user is in a channel (False when the bot may not tell)."""
        return await self._exists(f"/channels/{channel_id}/members/{user_id}")

    async def is_team_member(self, team_id: str, user_id: str) -> bool:
        return await self._exists(f"/teams/{team_id}/members/{user_id}")

    async def _exists(self, path: str) -> bool:
        try:
            await self.call(lambda d: d.client.get(path))
            return True
        except MattermostError as exc:
            if exc.status in (403, 404):
                return False
            raise

    async def file(self, file_id: str) -> tuple[dict[str, Any], bytes]:
        """A file's info and bytes."""
        info: dict[str, Any] = await self.call(
            lambda d: d.client.get(f"/files/{file_id}/info"))
        response = await self.call(
            lambda d: d.client.make_request("get", f"/files/{file_id}"))
        return info, bytes(response.content)

    async def direct_channel(self, user_id: str) -> str:
        ch = await self.call(lambda d: d.channels.create_direct_message_channel(
            [self.bot_id, user_id]))
        self._channels[ch["id"]] = ch
        return str(ch["id"])

    async def join_channel(self, channel_id: str) -> None:
        """Add the bot to a channel (a public one, or one it may manage)."""
        await self.call(lambda d: d.client.post(f"/channels/{channel_id}/members",
                                                {"user_id": self.bot_id}))

    async def view_channel(self, channel_id: str) -> None:
        await self.call(lambda d: d.client.post(
            "/channels/members/me/view", {"channel_id": channel_id}))

    # --- posts --------------------------------------------------------------------------------
    #: `?since=` answers at most this many posts, unpaged.
    since_limit = 1000
    page_size = 200

    async def posts_since(self, channel_id: str, since_ms: int) -> list[dict[str, Any]]:
        """Live posts created or changed after `since_ms`, oldest first."""
        body = await self.call(lambda d: d.posts.get_posts_for_channel(
            channel_id, params={"since": since_ms}))
        posts: dict[str, dict[str, Any]] = body.get("posts") or {}
        if len(posts) >= self.since_limit:
            # The answer may be cut short: walk the channel newest first down to `since_ms`.
            posts = {}
            for page in range(1000):
                params = {"page": page, "per_page": self.page_size}
                body = await self.call(
                    lambda d, params=params: d.posts.get_posts_for_channel(  # type: ignore[misc]
                        channel_id, params=params))
                batch: dict[str, dict[str, Any]] = body.get("posts") or {}
                posts.update(batch)
                oldest = min((int(p.get("create_at") or 0) for p in batch.values()), default=0)
                if len(body.get("order") or []) < self.page_size or oldest <= since_ms:
                    break
        live = [p for p in posts.values() if not p.get("delete_at")]
        live.sort(key=lambda p: (p.get("create_at", 0), p.get("id", "")))
        return live

    async def get_post(self, post_id: str) -> dict[str, Any]:
        return dict(await self.call(lambda d: d.posts.get_post(post_id)))

    async def thread(self, post_id: str) -> list[dict[str, Any]]:
        body = await self.call(lambda d: d.posts.get_thread(post_id))
        return list((body.get("posts") or {}).values())

    async def create_post(self, channel_id: str, message: str, *, root_id: str = "",
                          props: dict[str, Any] | None = None, key: str = "",
                          check_first: bool = False) -> dict[str, Any]:
        """Create a post exactly once per `key`.

        With a key, a failed attempt (5xx, timeout, dropped connection) is followed by a look for
        a post carrying the key before the next attempt; `check_first` looks before the first try
        too (for a handler re-run after a crash).
        """
        props = dict(props or {})
        if key:
            props[KEY_PROP] = key
        body: dict[str, Any] = {"channel_id": channel_id, "message": message}
        if root_id:
            body["root_id"] = root_id
        if props:
            body["props"] = props
        policy: RetryPolicy = self.driver.client.policy
        attempt = 0
        while True:
            if key and (check_first or attempt > 0):
                found = await self._find_keyed(channel_id, root_id, key)
                if found is not None:
                    return found
            attempt += 1
            try:
                return dict(await self.call(lambda d: d.posts.create_post(body)))
            except MattermostError as exc:
                if (exc.status and exc.status < 500) or attempt > policy.retries:
                    raise
                log.warning("creating a post failed (%s); retrying", exc.status or "no answer")
                await asyncio.sleep(min(0.2 * 2 ** attempt, 5.0) * (0.5 + random.random()))

    async def _find_keyed(self, channel_id: str, root_id: str, key: str
                          ) -> dict[str, Any] | None:
        try:
            if root_id:
                candidates = await self.thread(root_id)
            else:
                since = int(time.time() * 1000) - int(self.lookback * 1000)
                candidates = await self.posts_since(channel_id, since)
        except MattermostError:
            return None
        for post in candidates:
            if (post.get("props") or {}).get(KEY_PROP) == key and not post.get("delete_at"):
                return post
        return None

    async def update_post(self, post_id: str, message: str | None = None,
                          props: dict[str, Any] | None = None) -> dict[str, Any]:
        """Patch a post: absent fields are kept (Mattermost keeps props when none are sent)."""
        patch: dict[str, Any] = {}
        if message is not None:
            patch["message"] = message
        if props is not None:
            patch["props"] = props
        return dict(await self.call(lambda d: d.posts.patch_post(post_id, patch)))

    async def create_ephemeral(self, user_id: str, channel_id: str, message: str,
                               root_id: str = "") -> dict[str, Any]:
        post: dict[str, Any] = {"channel_id": channel_id, "message": message}
        if root_id:
            post["root_id"] = root_id
        return dict(await self.call(lambda d: d.posts.create_ephemeral_post(
            {"user_id": user_id, "post": post})))

    async def add_reaction(self, post_id: str, emoji: str) -> None:
        await self.call(lambda d: d.reactions.create_reaction({
            "user_id": self.bot_id, "post_id": post_id, "emoji_name": emoji}))

    # --- slash commands -----------------------------------------------------------------------
    async def team_by_name(self, name: str) -> dict[str, Any]:
        return dict(await self.call(lambda d: d.teams.get_team_by_name(name)))

    async def my_teams(self) -> list[dict[str, Any]]:
        """The teams of the token's own account (not cached)."""
        return await self._fetch_teams()

    async def custom_commands(self, team_id: str) -> list[dict[str, Any]]:
        """A team's custom slash commands, verification tokens included (needs
        `manage_slash_commands` in the team)."""
        found = await self.call(lambda d: d.client.get(
            "/commands", params={"team_id": team_id, "custom_only": "true"}))
        return [dict(c) for c in found] if isinstance(found, list) else []

    async def create_command(self, command: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.call(lambda d: d.client.post("/commands", command)))

    async def update_command(self, command: dict[str, Any]) -> dict[str, Any]:
        """Replace a command (Mattermost keeps its id, token and creator)."""
        command_id = str(command["id"])
        return dict(await self.call(lambda d: d.client.put(f"/commands/{command_id}", command)))

    async def open_dialog(self, trigger_id: str, url: str, dialog: dict[str, Any]) -> None:
        await self.call(lambda d: d.client.post("/actions/dialogs/open", {
            "trigger_id": trigger_id, "url": url, "dialog": dialog}))
