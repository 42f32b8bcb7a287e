"""The REST handlers of the simulated server, one method per route.

`RestApi` (in `mm_rest`) routes requests here after the faults and authentication have run; each
handler turns a request into a call on the core and the core's answer into Mattermost's JSON.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .costs import CpuServer
from .mm_core import SandboxCore
from .mm_integrations import Integrations
from .mm_model import (
    JSON,
    VERSION,
    VERSION_ID,
    AppError,
    Channel,
    Post,
    User,
    body_param_error,
    go_json,
    is_id,
    new_id,
    normalise_attachments,
    param_error,
    permission_error,
    url_param_error,
    user_json,
)
from .mm_previews import LinkPreviews


class Ctx:
    """What a handler gets: the request, path parameters and the authenticated user."""

    def __init__(self, request: web.Request, params: dict[str, str], request_id: str) -> None:
        self.request = request
        self.params = params
        self.request_id = request_id
        self.session_user: User | None = None
        self.extra_headers: dict[str, str] = {}

    @property
    def user(self) -> User:
        """The session's user (only on routes that require a session)."""
        assert self.session_user is not None
        return self.session_user

    async def body(self, name: str) -> Any:
        """The JSON body, or the server's 400 naming `name`."""
        raw = await self.request.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise body_param_error(name) from None

    def id_param(self, key: str) -> str:
        """A path id that matched `[A-Za-z0-9]+` but must also be a real 26-char id."""
        value = self.params[key]
        if key == "user_id" and value == "me":
            return self.user.id
        if not is_id(value):
            raise url_param_error(key)
        return value

    def int_query(self, key: str, default: int, maximum: int | None = None) -> int:
        """A non-negative integer query parameter."""
        raw = self.request.query.get(key)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise param_error(key) from None
        if value < 0:
            raise param_error(key)
        return min(value, maximum) if maximum is not None else value


Handler = Callable[[Ctx], Awaitable[web.StreamResponse]]


class Handlers:
    """Every route's handler, and the helpers that write answers with the server's headers."""

    core: SandboxCore
    integrations: Integrations
    previews: LinkPreviews
    costs: CpuServer | None

    async def preview(self, message: str, props: JSON, create_at_ms: int | None = None,
                      ) -> None:
        """The link preview a new or edited post needs, fetched (and paid for) before it is
        stored and answered."""
        at = create_at_ms if create_at_ms is not None else self.core.clock.now_ms()
        if await self.previews.fetch_for(message, props, at) and self.costs:
            await self.costs.charge("link_preview")

    def _headers(self, ctx: Ctx, etag: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "X-Request-Id": ctx.request_id,
                   "X-Version-Id": VERSION_ID}
        if ctx.request.method == "GET":
            headers["Expires"] = "0"
        if etag:
            headers["Etag"] = etag
        headers.update(ctx.extra_headers)
        return headers

    def ok(self, ctx: Ctx, body: Any, status: int = 200, etag: str | None = None,
           ) -> web.Response:
        """A JSON answer with the server's usual headers."""
        return web.Response(status=status, body=go_json(body).encode(),
                            headers=self._headers(ctx, etag))

    def _error(self, ctx: Ctx, err: AppError, token: str) -> web.Response:
        headers = self._headers(ctx)
        if err.status == 401 and token:
            headers["Set-Cookie"] = "MMAUTHTOKEN=; Path=/; Max-Age=0; HttpOnly"
        return web.Response(status=err.status, body=go_json(err.body(ctx.request_id)).encode(),
                            headers=headers)

    # -- handlers: system and users -------------------------------------------------------------

    async def no_op(self, ctx: Ctx) -> web.StreamResponse:
        """Placeholder for the websocket route (served before handlers run)."""
        raise AssertionError("unreachable")

    async def ping(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /system/ping`."""
        return self.ok(ctx, {"AndroidLatestVersion": "", "AndroidMinVersion": "",
                             "DesktopLatestVersion": "", "DesktopMinVersion": "",
                             "IosLatestVersion": "", "IosMinVersion": "", "status": "OK"})

    async def get_config(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /config`: system admins only (`manage_system`); others get the plain 403."""
        if not ctx.user.is_admin:
            raise permission_error()
        return self.ok(ctx, self.core.config)

    def _user_etag(self, user: User) -> str:
        return f"{VERSION}.{user.id}.{user.update_at}..0.true.true.0"

    async def get_user(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /users/{id}` (`me` included): full for oneself, sanitised for others."""
        user = self.core.user(ctx.id_param("user_id"))
        return self.ok(ctx, _user(user, full=user.id == ctx.user.id),
                       etag=self._user_etag(user))

    async def user_by_name(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /users/username/{name}`."""
        uid = self.core.user_by_name.get(ctx.params["username"].lower())
        if uid is None:
            raise AppError(404, "app.user.get_by_username.app_error",
                           "Unable to find an existing account matching your username for this "
                           "team. This team may require an invite from the team owner to join.")
        user = self.core.users[uid]
        return self.ok(ctx, _user(user, full=user.id == ctx.user.id),
                       etag=self._user_etag(user))

    async def list_users(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /users?page=&per_page=`."""
        page, per_page = ctx.int_query("page", 0), ctx.int_query("per_page", 60, 200)
        users = sorted(self.core.users.values(), key=lambda u: u.username)
        chunk = users[page * per_page:(page + 1) * per_page]
        return self.ok(ctx, [_user(u, full=False) for u in chunk])

    async def users_by_ids(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /users/ids`: the known ones, in the order asked, all sanitised."""
        ids = await ctx.body("user_ids")
        if not isinstance(ids, list) or not ids:
            raise body_param_error("user_ids")
        return self.ok(ctx, [_user(self.core.users[i], full=False) for i in ids
                             if isinstance(i, str) and i in self.core.users])

    async def user_teams(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /users/{id}/teams`."""
        uid = ctx.id_param("user_id")
        if uid != ctx.user.id and not ctx.user.is_admin:
            raise permission_error()
        self.core.user(uid)
        return self.ok(ctx, [self.core.team.json()])

    async def user_channels(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /users/{id}/teams/{tid}/channels`: the team's channels and the user's DMs."""
        uid, tid = ctx.id_param("user_id"), ctx.id_param("team_id")
        if uid != ctx.user.id and not ctx.user.is_admin:
            raise permission_error()
        if tid != self.core.team.id:
            raise permission_error()
        mine = [c for c in self.core.channels.values()
                if uid in c.members and c.team_id in (tid, "")]
        mine.sort(key=lambda c: c.display_name.lower())
        latest = max((c.last_post_at for c in mine), default=0)
        return self.ok(ctx, [c.json() for c in mine],
                       etag=f"{VERSION}.{mine[-1].id if mine else ''}.{latest}.0.{len(mine)}")

    async def get_status(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /users/{id}/status`."""
        uid = ctx.id_param("user_id")
        self.core.user(uid)
        return self.ok(ctx, self.core.statuses[uid].json())

    async def put_status(self, ctx: Ctx) -> web.StreamResponse:
        """`PUT /users/{id}/status`: manual unless set to online."""
        uid = ctx.id_param("user_id")
        body = await ctx.body("status")
        if uid != ctx.user.id and not ctx.user.is_admin:
            raise permission_error()
        if not isinstance(body, dict) or body.get("user_id") != uid:
            raise body_param_error("user_id")
        status = body.get("status")
        if status not in ("online", "away", "dnd", "offline"):
            raise body_param_error("status")
        st = self.core.set_status(uid, status, manual=status != "online")
        return self.ok(ctx, st.json())

    async def statuses_by_ids(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /users/status/ids`."""
        ids = await ctx.body("user_ids")
        if not isinstance(ids, list) or not ids:
            raise body_param_error("user_ids")
        return self.ok(ctx, [self.core.statuses[i].json() for i in ids
                             if isinstance(i, str) and i in self.core.statuses])

    async def put_roles(self, ctx: Ctx) -> web.StreamResponse:
        """`PUT /users/{id}/roles` (system admins only)."""
        uid = ctx.id_param("user_id")
        body = await ctx.body("roles")
        self.core.set_roles(ctx.user, uid, body.get("roles") if isinstance(body, dict) else None)
        return self.ok(ctx, {"status": "OK"})

    async def patch_user(self, ctx: Ctx) -> web.StreamResponse:
        """`PUT /users/{id}/patch`: oneself, or anyone for a system admin."""
        uid = ctx.id_param("user_id")
        body = await ctx.body("user")
        if not isinstance(body, dict):
            raise body_param_error("user")
        user = self.core.patch_user(ctx.user, uid, body)
        return self.ok(ctx, _user(user, full=user.id == ctx.user.id),
                       etag=self._user_etag(user))

    async def typing(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /users/{id}/typing`."""
        uid = ctx.id_param("user_id")
        body = await ctx.body("typing")
        if not isinstance(body, dict):
            raise body_param_error("typing")
        self.core.typing(ctx.user, uid, body.get("channel_id"), body.get("parent_id", ""))
        return self.ok(ctx, {"status": "OK"})

    async def delete_reaction(self, ctx: Ctx) -> web.StreamResponse:
        """`DELETE /users/{uid}/posts/{pid}/reactions/{emoji}`."""
        self.core.remove_reaction(ctx.user, ctx.id_param("user_id"), ctx.id_param("post_id"),
                                  ctx.params["emoji_name"])
        return self.ok(ctx, {"status": "OK"})

    # -- handlers: teams and channels -----------------------------------------------------------

    async def get_team(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /teams/{id}`."""
        if ctx.id_param("team_id") != self.core.team.id:
            raise AppError(404, "app.team.get.find.app_error",
                           "Unable to find the existing team.")
        return self.ok(ctx, self.core.team.json())

    async def team_member(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /teams/{id}/members/{uid}`: every user of the sandbox is on its one team."""
        if ctx.id_param("team_id") != self.core.team.id:
            raise permission_error()
        uid = ctx.id_param("user_id")
        if uid not in self.core.users:
            raise AppError(404, "app.team.get_member.missing.app_error",
                           "No team member found for that user ID and team ID.")
        user = self.core.users[uid]
        roles = "team_user team_admin" if user.is_admin else "team_user"
        return self.ok(ctx, {"team_id": self.core.team.id, "user_id": uid, "roles": roles,
                             "delete_at": 0, "scheme_guest": False, "scheme_user": True,
                             "scheme_admin": user.is_admin, "explicit_roles": ""})

    async def team_by_name(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /teams/name/{name}`."""
        if ctx.params["team_name"] != self.core.team.name:
            raise AppError(404, "app.team.get_by_name.missing.app_error",
                           "Unable to find the existing team.")
        return self.ok(ctx, self.core.team.json())

    async def team_channels(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /teams/{id}/channels`: public channels, paged, by display name."""
        if ctx.id_param("team_id") != self.core.team.id:
            raise permission_error()
        page, per_page = ctx.int_query("page", 0), ctx.int_query("per_page", 60, 200)
        public = sorted((c for c in self.core.channels.values()
                         if c.type == "O" and c.team_id == self.core.team.id),
                        key=lambda c: c.display_name.lower())
        return self.ok(ctx, [c.json() for c in public[page * per_page:(page + 1) * per_page]])

    async def channel_by_name(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /teams/{id}/channels/name/{name}`."""
        tid = ctx.id_param("team_id")
        found = [c for c in self.core.channels.values()
                 if c.team_id == tid and c.name == ctx.params["channel_name"]]
        if not found:
            raise AppError(404, "app.channel.get_by_name.missing.app_error",
                           "Channel does not exist.")
        if not self.core.can_view(ctx.user, found[0]):
            raise permission_error()
        return self.ok(ctx, found[0].json())

    async def get_channel(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /channels/{id}`."""
        ch = self.core.channel(ctx.id_param("channel_id"))
        if not self.core.can_view(ctx.user, ch):
            raise permission_error()
        return self.ok(ctx, ch.json())

    async def create_channel(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /channels` → 201."""
        ch = self.core.create_channel(ctx.user, await ctx.body("channel"))
        return self.ok(ctx, ch.json(), 201)

    async def direct_channel(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /channels/direct` → 201 every time."""
        ch, _ = self.core.direct_channel(await ctx.body("user_ids"), ctx.user)
        return self.ok(ctx, ch.json(), 201)

    async def view_channel(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /channels/members/me/view`."""
        if ctx.id_param("user_id") != ctx.user.id:
            raise permission_error()
        body = await ctx.body("channel_view")
        if not isinstance(body, dict) or not isinstance(body.get("channel_id"), str):
            raise body_param_error("channel_view")
        ids = [c for c in (body.get("channel_id"), body.get("prev_channel_id"))
               if isinstance(c, str) and c]
        times = self.core.mark_viewed(ctx.user.id, ids)
        return self.ok(ctx, {"status": "OK", "last_viewed_at_times": dict(sorted(times.items()))})

    async def get_member(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /channels/{id}/members/{uid}` (`me` included)."""
        ch = self.core.channel(ctx.id_param("channel_id"))
        uid = ctx.id_param("user_id")
        if not self.core.can_read(ctx.user, ch):
            raise permission_error()
        member = ch.members.get(uid)
        if member is None:
            raise AppError(404, "app.channel.get_member.missing.app_error",
                           "No channel member found for that user ID and channel ID.")
        return self.ok(ctx, member.json(ch.id))

    async def add_member(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /channels/{id}/members` → 201."""
        ch = self.core.channel(ctx.id_param("channel_id"))
        body = await ctx.body("user_id")
        member = self.core.add_member(ctx.user, ch, body.get("user_id")
                                      if isinstance(body, dict) else None)
        return self.ok(ctx, member.json(ch.id), 201)

    async def remove_member(self, ctx: Ctx) -> web.StreamResponse:
        """`DELETE /channels/{id}/members/{uid}`."""
        ch = self.core.channel(ctx.id_param("channel_id"))
        self.core.remove_member(ctx.user, ch, ctx.id_param("user_id"))
        return self.ok(ctx, {"status": "OK"})

    async def channel_posts(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /channels/{id}/posts` with `since`, `after`, `before` or plain paging."""
        ch = self.core.channel(ctx.id_param("channel_id"))
        query = ctx.request.query
        since_raw = query.get("since", "")
        since = 0
        if since_raw:
            try:
                since = int(since_raw)
            except ValueError:
                raise param_error("since") from None
        page, per_page = ctx.int_query("page", 0), ctx.int_query("per_page", 60, 200)
        if not self.core.can_read(ctx.user, ch):
            raise permission_error()
        body, etag = post_list(self.core, ch, since=since, after=query.get("after", ""),
                               before=query.get("before", ""), page=page, per_page=per_page)
        return self.ok(ctx, body, etag=etag)

    # -- handlers: posts ----------------------------------------------------------------------

    async def create_post(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /posts` → 201."""
        body = await ctx.body("post")
        set_online = ctx.request.query.get("set_online", "true") != "false"
        post, ch, file_ids = self.core.prepare_post(ctx.user, body)
        await self.preview(post.message, post.props)
        post = self.core.save_post(ctx.user, post, ch, file_ids, set_online=set_online)
        return self.ok(ctx, self.core.post_view(post), 201)

    async def ephemeral(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /posts/ephemeral`: system admins only (a plain bot gets 403)."""
        if not ctx.user.is_admin:
            raise permission_error()
        body = await ctx.body("post")
        inner = body.get("post") if isinstance(body, dict) else None
        target = body.get("user_id") if isinstance(body, dict) else None
        if not isinstance(target, str) or not is_id(target):
            raise body_param_error("user_id")
        if not isinstance(inner, dict):
            raise body_param_error("post")
        ch = self.core.channel(inner.get("channel_id", "")
                               if isinstance(inner.get("channel_id"), str) else "")
        root = inner.get("root_id", "")
        props = inner.get("props")
        post = Post(id=new_id(), create_at=self.core.clock.now_ms(), user_id=ctx.user.id,
                    channel_id=ch.id, message=str(inner.get("message", "")),
                    props=dict(props) if isinstance(props, dict) else {},
                    root_id=root if isinstance(root, str) else "")
        return self.ok(ctx, self.core.send_ephemeral(target, post), 201)

    async def get_post(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /posts/{id}` (404 once deleted)."""
        post = self.core.readable_post(ctx.user, ctx.id_param("post_id"))
        return self.ok(ctx, self.core.post_view(post, single=True),
                       etag=f"{VERSION}.{post.id}.{post.update_at}")

    async def update_post(self, ctx: Ctx) -> web.StreamResponse:
        """`PUT /posts/{id}`: a full update; the body must carry the same id."""
        pid = ctx.id_param("post_id")
        body = await ctx.body("post")
        if not isinstance(body, dict):
            raise body_param_error("post")
        if body.get("id") != pid:
            raise body_param_error("id")
        post = self.core.editable_post(ctx.user, pid)
        message = body.get("message", "")
        props = body.get("props") or {}
        if not isinstance(message, str) or not isinstance(props, dict):
            raise body_param_error("post")
        props = dict(props)
        if "attachments" in props:
            props["attachments"] = normalise_attachments(props["attachments"])
        file_ids = body.get("file_ids") or []
        await self.preview(message, props, post.create_at)
        post = self.core.edit_post(post, message, props,
                                   file_ids=[f for f in file_ids if isinstance(f, str)]
                                   if isinstance(file_ids, list) else [])
        return self.ok(ctx, self.core.post_view(post))

    async def patch_post(self, ctx: Ctx) -> web.StreamResponse:
        """`PUT /posts/{id}/patch`: only the given fields change."""
        pid = ctx.id_param("post_id")
        body = await ctx.body("patch")
        if not isinstance(body, dict):
            raise body_param_error("patch")
        post = self.core.editable_post(ctx.user, pid)
        message = body.get("message", post.message)
        props = body.get("props", post.props)
        if not isinstance(message, str) or not isinstance(props, dict):
            raise body_param_error("patch")
        props = dict(props)
        if "attachments" in props and "props" in body:
            props["attachments"] = normalise_attachments(props["attachments"])
        if isinstance(body.get("is_pinned"), bool):
            post.is_pinned = body["is_pinned"]
        await self.preview(message, props, post.create_at)
        post = self.core.edit_post(post, message, props)
        return self.ok(ctx, self.core.post_view(post))

    async def delete_post(self, ctx: Ctx) -> web.StreamResponse:
        """`DELETE /posts/{id}`."""
        self.core.delete_post(ctx.user, ctx.id_param("post_id"))
        return self.ok(ctx, {"status": "OK"})

    async def thread(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /posts/{id}/thread`: the asked id first, then the whole thread newest first."""
        post = self.core.readable_post(ctx.user, ctx.id_param("post_id"))
        root_id = post.root_id or post.id
        members = [p for p in self.core.channel_posts[post.channel_id]
                   if p.live and (p.id == root_id or p.root_id == root_id)]
        members.sort(key=lambda p: p.create_at, reverse=True)
        posts = {p.id: self.core.post_view(p) for p in sorted(members, key=lambda p: p.id)}
        latest = max(p.update_at for p in members)
        return self.ok(ctx, {"order": [post.id] + [p.id for p in members], "posts": posts,
                             "next_post_id": "", "prev_post_id": ""},
                       etag=f"{VERSION}.{post.id}.{root_id}.{latest}")

    async def post_reactions(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /posts/{id}/reactions`."""
        post = self.core.readable_post(ctx.user, ctx.id_param("post_id"))
        return self.ok(ctx, [r.json() for r in self.core.reactions.get(post.id, [])])

    async def add_reaction(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /reactions` → 200."""
        reaction = self.core.add_reaction(ctx.user, await ctx.body("reaction"))
        return self.ok(ctx, reaction.json())

    async def click(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /posts/{id}/actions/{action}`: the body may be empty, `{}` or a selection."""
        pid = ctx.id_param("post_id")
        raw = await ctx.request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = {}
        selected = body.get("selected_option") if isinstance(body, dict) else None
        reply = await self.integrations.click(ctx.user, pid, ctx.params["action_id"],
                                              selected if isinstance(selected, str) else None)
        return self.ok(ctx, reply)

    # -- handlers: files ----------------------------------------------------------------------

    async def upload(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /files` (multipart: `channel_id` and one or more `files`) → 201."""
        if not ctx.request.content_type.startswith("multipart/"):
            raise AppError(400, "api.file.upload_file.bad_parse.app_error",
                           "Unable to upload file. Header cannot be parsed.")
        form = await ctx.request.post()
        channel_id = form.get("channel_id")
        if not isinstance(channel_id, str) or not is_id(channel_id):
            raise param_error("channel_id")
        files = []
        for value in form.getall("files", []):
            if isinstance(value, web.FileField):
                files.append((value.filename, value.file.read(), value.content_type))
        if not files:
            raise AppError(400, "api.file.upload_file.incorrect_number_of_files.app_error",
                           "Unable to upload files. Incorrect number of files specified.")
        infos = self.core.upload(ctx.user, channel_id, files)
        client_ids = form.getall("client_ids", [])
        return self.ok(ctx, {"file_infos": [i.json() for i in infos],
                             "client_ids": [c for c in client_ids if isinstance(c, str)]}, 201)

    async def download(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /files/{id}`: the bytes, as an attachment."""
        info = self.core.readable_file(ctx.user, ctx.id_param("file_id"))
        headers = self._headers(ctx)
        headers["Content-Type"] = info.mime_type
        headers["Content-Disposition"] = (f'attachment;filename="{info.name}"; '
                                          f"filename*=UTF-8''{quote(info.name)}")
        return web.Response(body=info.data, headers=headers)

    async def file_info(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /files/{id}/info`."""
        return self.ok(ctx, self.core.readable_file(ctx.user, ctx.id_param("file_id")).json())

    # -- handlers: dialogs, commands, webhooks --------------------------------------------------

    async def open_dialog(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /actions/dialogs/open` (no session needed: the trigger id is the credential)."""
        return self.ok(ctx, self.integrations.open_dialog(await ctx.body("dialog")))

    async def submit_dialog(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /actions/dialogs/submit`."""
        body = await ctx.body("dialog")
        return self.ok(ctx, await self.integrations.submit_dialog(ctx.user, body))

    async def create_command(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /commands` → 201."""
        cmd = self.integrations.create_command(ctx.user, await ctx.body("command"))
        return self.ok(ctx, cmd.json(), 201)

    async def list_commands(self, ctx: Ctx) -> web.StreamResponse:
        """`GET /commands?team_id=&custom_only=` (custom_only parses as Go's ParseBool)."""
        query = ctx.request.query
        custom = query.get("custom_only", "") in ("1", "t", "T", "TRUE", "true", "True")
        return self.ok(ctx, self.integrations.list_commands(ctx.user, query.get("team_id", ""),
                                                            custom))

    async def update_command(self, ctx: Ctx) -> web.StreamResponse:
        """`PUT /commands/{id}`."""
        command_id = ctx.id_param("command_id")
        body = await ctx.body("command")
        cmd = self.integrations.update_command(ctx.user, command_id, body)
        return self.ok(ctx, cmd.json())

    async def execute_command(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /commands/execute`."""
        body = await ctx.body("command_args")
        return self.ok(ctx, await self.integrations.execute_command(ctx.user, body))

    async def create_incoming(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /hooks/incoming` → 201."""
        hook = self.integrations.create_incoming(ctx.user, await ctx.body("incoming_webhook"))
        return self.ok(ctx, hook.json(), 201)

    async def create_outgoing(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /hooks/outgoing` → 201."""
        hook = self.integrations.create_outgoing(ctx.user, await ctx.body("outgoing_webhook"))
        return self.ok(ctx, hook.json(), 201)

    def _plain_ok(self, ctx: Ctx) -> web.Response:
        headers = self._headers(ctx)
        headers["Content-Type"] = "text/plain"
        return web.Response(body=b"ok", headers=headers)

    async def command_webhook(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /hooks/commands/{id}`: a command's `response_url`."""
        self.integrations.command_webhook(ctx.params["hook_id"], await ctx.request.read())
        return self._plain_ok(ctx)

    async def incoming_webhook(self, ctx: Ctx) -> web.StreamResponse:
        """`POST /hooks/{id}`: JSON, or a Slack-style `payload=` form."""
        request = ctx.request
        parse_error = AppError(400, "model.incoming_hook.parse_data.app_error",
                               "Unable to parse incoming data.")
        payload: Any
        if request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            raw_payload = form.get("payload", "")
            try:
                payload = json.loads(raw_payload if isinstance(raw_payload, str) else "")
            except ValueError:
                raise parse_error from None
        elif request.content_type.startswith("multipart/"):
            payload = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        else:
            try:
                payload = json.loads(await request.read())
            except ValueError:
                raise parse_error from None
        self.integrations.incoming_post(ctx.params["hook_id"], payload)
        return self._plain_ok(ctx)


def _user(user: User, *, full: bool) -> JSON:
    return user_json(user, full=full)


def post_list(core: SandboxCore, ch: Channel, *, since: int, after: str, before: str, page: int,
              per_page: int) -> tuple[JSON, str | None]:
    """The body of `GET /channels/{id}/posts` and its Etag, with 5.36's cursor rules."""
    every = core.channel_posts[ch.id]
    if since > 0:
        changed = [p for p in every if p.update_at > since]
        ids = {p.id for p in changed}
        for p in list(changed):
            root = core.posts.get(p.root_id) if p.root_id else None
            if root is not None and root.id not in ids:
                ids.add(root.id)
                changed.append(root)
        changed.sort(key=_order_key, reverse=True)
        posts = {p.id: core.post_view(p) for p in sorted(changed, key=lambda p: p.id)}
        return ({"order": [p.id for p in changed], "posts": posts, "next_post_id": "",
                 "prev_post_id": ""}, None)
    live = sorted((p for p in every if p.live), key=_order_key)
    start, end = page * per_page, (page + 1) * per_page
    next_id: str | None = None
    prev_id: str | None = None
    if after:
        ref = core.posts.get(after)
        newer = [p for p in live if ref is not None and ref.channel_id == ch.id
                 and _order_key(p) > _order_key(ref)]
        chunk = list(reversed(newer[start:end]))
        if page == 0:
            prev_id = after
        if len(chunk) < per_page:
            next_id = ""
    elif before:
        ref = core.posts.get(before)
        older = [p for p in reversed(live) if ref is not None and ref.channel_id == ch.id
                 and _order_key(p) < _order_key(ref)]
        chunk = older[start:end]
        if page == 0:
            next_id = before
        if len(chunk) < per_page:
            prev_id = ""
    else:
        chunk = list(reversed(live))[start:end]
    if chunk:
        if next_id is None:
            newest = _order_key(chunk[0])
            next_id = next((p.id for p in live if _order_key(p) > newest), "")
        if prev_id is None:
            oldest = _order_key(chunk[-1])
            prev_id = next((p.id for p in reversed(live) if _order_key(p) < oldest), "")
    included = {p.id: p for p in chunk}
    roots = {p.root_id or p.id for p in chunk}
    for p in live:
        if p.id in roots or p.root_id in roots:
            included.setdefault(p.id, p)
    posts = {pid: core.post_view(included[pid]) for pid in sorted(included)}
    latest = max((p.update_at for p in every), default=0)
    return ({"order": [p.id for p in chunk], "posts": posts, "next_post_id": next_id or "",
             "prev_post_id": prev_id or ""}, f"{VERSION}.{latest}")


def _order_key(p: Post) -> tuple[int, int]:
    return (p.create_at, p.seq)
