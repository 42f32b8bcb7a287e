"""The application layer of the simulated server: the world, permissions, posts and their events.

Every change goes through here whether it comes from REST or from the Python API, so a test that
acts "as alice" through the simulator gets exactly what alice's REST call would have caused.
Permission checks follow 5.36's order (a permission failure answers before validation), which is why
posting into an unknown channel is a 403 rather than a 404.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterable
from typing import Any

from .mm_model import (
    JSON,
    MAX_MESSAGE_RUNES,
    AppError,
    Channel,
    Clock,
    FileInfo,
    Member,
    Post,
    Reaction,
    Status,
    Team,
    User,
    body_param_error,
    channel_not_found,
    go_json,
    is_id,
    mentioned_names,
    new_id,
    normalise_attachments,
    parse_hashtags,
    permission_error,
    post_json,
    post_not_found,
    user_json,
    user_not_found,
)
from .mm_ws import Hub

#: Props a click's `update` cannot change: they survive a props replacement.
RETAINED_PROPS = ("from_webhook", "override_username", "override_icon_url")

_HUMANS = (("alice", "Alice", "Archer", "system_user"), ("bob", "Bob", "Baker", "system_user"),
           ("carol", "Carol", "Chen", "system_user"),
           ("admin", "Ada", "Admin", "system_user system_admin"))


def server_config() -> JSON:
    """The part of the server's configuration (`GET /config`) the bot's operators care about.

    The sandbox lets integrations call loopback addresses (see `mm_integrations._check_url`),
    which is what these settings say; a real server's default list is empty."""
    return {"ServiceSettings": {
        "SiteURL": "", "EnableBotAccountCreation": True, "EnableUserAccessTokens": True,
        "AllowedUntrustedInternalConnections": "localhost 127.0.0.0/8 ::1",
        "EnableInsecureOutgoingConnections": False, "OutgoingIntegrationRequestsTimeout": 30,
        "EnablePostUsernameOverride": False, "EnablePostIconOverride": False}}


class SandboxCore:
    """State and behaviour of the sandbox server (no HTTP in here)."""

    def __init__(self, *, bot_token: str, send_queue_limit: int | None) -> None:
        self.clock = Clock()
        now = self.clock.now_ms()
        self.users: dict[str, User] = {}
        self.user_by_name: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.statuses: dict[str, Status] = {}
        self.channels: dict[str, Channel] = {}
        self.posts: dict[str, Post] = {}
        self.channel_posts: dict[str, list[Post]] = {}
        self.reply_counts: dict[str, int] = {}
        self.reactions: dict[str, list[Reaction]] = {}
        self.files: dict[str, FileInfo] = {}
        self.ephemeral_log: dict[str, list[JSON]] = {}
        #: What `GET /config` answers to system admins; tests may change it.
        self.config: JSON = server_config()
        self._seq = 0
        #: Called after every stored post (outgoing webhooks hang off this).
        self.after_post: Callable[[Post, Channel], None] | None = None

        self.team = Team(id=new_id(), name="sandbox", display_name="Sandbox", create_at=now,
                         invite_id=new_id())
        bot = self._add_user("switchboard", "Switchboard", "", "system_user", now, is_bot=True)
        bot.bot_description = "Switchboard chat-ops bot"
        self.bot_id = bot.id
        self.tokens[bot_token] = bot.id
        for name, first, last, roles in _HUMANS:
            user = self._add_user(name, first, last, roles, now)
            self.tokens[f"{name}-token"] = user.id
        self.hub = Hub(self, self.bot_id, send_queue_limit)

        everyone = list(self.users)
        humans = [u for u in everyone if u != self.bot_id]
        admin = self.user_by_name["admin"]
        self.create_channel_record("town-square", "Town Square", "O", "", everyone)
        self.create_channel_record("helpdesk", "Helpdesk", "O", admin, everyone)
        self.create_channel_record("off-topic", "Off-Topic", "O", "", humans)
        self.create_channel_record("ops", "Ops", "P", admin,
                                   [self.bot_id, self.user_by_name["alice"], admin])

    def _add_user(self, name: str, first: str, last: str, roles: str, now: int, *,
                  is_bot: bool = False) -> User:
        user = User(id=new_id(), username=name, email=f"{name}@sandbox.local", first_name=first,
                    last_name=last, roles=roles, create_at=now, update_at=now, is_bot=is_bot)
        self.users[user.id] = user
        self.user_by_name[name] = user.id
        self.statuses[user.id] = Status(user_id=user.id)
        return user

    def create_channel_record(self, name: str, display_name: str, kind: str, creator_id: str,
                              member_ids: Iterable[str]) -> Channel:
        """Create a team channel directly (world set-up and test helpers; no events)."""
        now = self.clock.now_ms()
        ch = Channel(id=new_id(), team_id=self.team.id, type=kind, name=name,
                     display_name=display_name, creator_id=creator_id, create_at=now)
        for uid in member_ids:
            ch.members[uid] = Member(user_id=uid, last_update_at=now)
        self.channels[ch.id] = ch
        self.channel_posts[ch.id] = []
        return ch

    # -- look-ups ------------------------------------------------------------------------------

    def user_for_token(self, token: str) -> str | None:
        """The user id a token belongs to."""
        return self.tokens.get(token)

    def user(self, user_id: str) -> User:
        """A user by id, or the 404 the server gives."""
        user = self.users.get(user_id)
        if user is None:
            raise user_not_found()
        return user

    def user_named(self, username: str) -> User:
        """A user by username (Python API)."""
        uid = self.user_by_name.get(username.lstrip("@").lower())
        if uid is None:
            raise KeyError(f"no sandbox user {username!r}")
        return self.users[uid]

    def channel(self, channel_id: str) -> Channel:
        """A channel by id, or the 404 the server gives."""
        ch = self.channels.get(channel_id)
        if ch is None:
            raise channel_not_found()
        return ch

    def channel_ref(self, ref: str) -> Channel:
        """A channel by id or by name (Python API)."""
        if ref in self.channels:
            return self.channels[ref]
        for ch in self.channels.values():
            if ch.name == ref:
                return ch
        raise KeyError(f"no sandbox channel {ref!r}")

    def channel_member_ids(self, channel_id: str) -> Iterable[str]:
        """Who receives a channel's events."""
        ch = self.channels.get(channel_id)
        return ch.members.keys() if ch is not None else ()

    def can_read(self, user: User, ch: Channel) -> bool:
        """Channel membership (or system admin): reading posts, posting, clicking."""
        return user.id in ch.members or user.is_admin

    def can_view(self, user: User, ch: Channel) -> bool:
        """Membership, or a public channel of the user's team: single posts and channel info."""
        return self.can_read(user, ch) or ch.type == "O"

    def readable_post(self, user: User, post_id: str) -> Post:
        """A live post the user may read: 404 when absent or deleted, 403 when not allowed."""
        post = self.posts.get(post_id)
        if post is None or not post.live:
            raise post_not_found()
        if not self.can_view(user, self.channels[post.channel_id]):
            raise permission_error()
        return post

    # -- rendering ----------------------------------------------------------------------------

    def post_view(self, post: Post, *, single: bool = False, keep_integrations: bool = False,
                  ) -> JSON:
        """A post as the server sends it (`single`: GET /posts/{id}, which reports no replies)."""
        reply_count = 0 if single else self.reply_counts.get(post.root_id or post.id, 0)
        return post_json(post, reply_count=reply_count, metadata=self._metadata(post),
                         keep_integrations=keep_integrations)

    def _metadata(self, post: Post) -> JSON:
        meta: JSON = {}
        attachments = post.props.get("attachments") if post.props else None
        if isinstance(attachments, list) and attachments:
            meta["embeds"] = [{"type": "message_attachment"}]
        if post.file_ids:
            meta["files"] = [self.files[f].json() for f in post.file_ids if f in self.files]
        reactions = self.reactions.get(post.id)
        if reactions:
            meta["reactions"] = [r.json() for r in reactions]
        return meta

    def sender_name(self, post: Post) -> str:
        """`System`, a webhook's override name, or `@username`."""
        if post.type.startswith("system_"):
            return "System"
        props = post.props
        if props.get("from_webhook") == "true" and props.get("override_username"):
            return str(props["override_username"])
        user = self.users.get(post.user_id)
        return "@" + (user.username if user else "")

    # -- posts --------------------------------------------------------------------------------

    def create_post(self, actor: User, body: Any, *, set_online: bool = True) -> Post:
        """`POST /api/v4/posts` with 5.36's checks, in 5.36's order."""
        post, ch, file_ids = self.prepare_post(actor, body)
        return self.save_post(actor, post, ch, file_ids, set_online=set_online)

    def prepare_post(self, actor: User, body: Any) -> tuple[Post, Channel, list[Any]]:
        """A new post checked and built but not stored yet (with the file ids it asks for)."""
        if not isinstance(body, dict):
            raise body_param_error("post")
        channel_id = body.get("channel_id")
        ch = self.channels.get(channel_id) if isinstance(channel_id, str) else None
        if ch is None or not self.can_read(actor, ch):
            raise permission_error()
        message = body.get("message", "")
        root_id = body.get("root_id", "") or ""
        props = body.get("props") or {}
        file_ids = body.get("file_ids") or []
        if not isinstance(message, str) or not isinstance(root_id, str) \
                or not isinstance(props, dict) or not isinstance(file_ids, list):
            raise body_param_error("post")
        if root_id:
            root = self.posts.get(root_id)
            if root is None or not root.live or root.root_id:
                raise AppError(400, "api.post.create_post.root_id.app_error",
                               "Invalid RootId parameter.")
            if root.channel_id != ch.id:
                raise AppError(400, "api.post.create_post.channel_root_id.app_error",
                               "Invalid ChannelId for RootId parameter.")
        if len(message) > MAX_MESSAGE_RUNES:
            raise AppError(400, "model.post.is_valid.msg.app_error", "Invalid message.")
        props = dict(props)
        if "attachments" in props:
            props["attachments"] = normalise_attachments(props["attachments"])
        if actor.is_bot:
            props["from_bot"] = "true"
        post_type = body.get("type", "")
        pending = body.get("pending_post_id", "")
        post = Post(id=new_id(), create_at=0, user_id=actor.id, channel_id=ch.id, message=message,
                    props=props, root_id=root_id, parent_id=root_id,
                    type=post_type if isinstance(post_type, str) else "",
                    pending_post_id=pending if isinstance(pending, str) else "")
        return post, ch, file_ids

    def save_post(self, actor: User, post: Post, ch: Channel, file_ids: list[Any], *,
                  set_online: bool = True) -> Post:
        """Store a post from `prepare_post`: its files claimed, broadcast, the author active."""
        claimed = [f for f in file_ids if isinstance(f, str) and f in self.files
                   and self.files[f].user_id == actor.id and not self.files[f].post_id]
        for fid in claimed:
            self.files[fid].post_id = post.id
        post.file_ids = claimed
        self.insert_post(post, ch)
        if set_online:
            self.set_online(actor.id)
        if "from_webhook" not in post.props and "from_bot" not in post.props:
            self.mark_viewed(actor.id, [ch.id])
        return post

    def insert_post(self, post: Post, ch: Channel) -> None:
        """Store a new post, update counters and broadcast `posted`."""
        now = self.clock.now_ms()
        if not post.create_at:
            post.create_at = now
        post.update_at = post.create_at
        if post.message:
            post.hashtags = parse_hashtags(post.message)
        self._seq += 1
        post.seq = self._seq
        self.posts[post.id] = post
        self.channel_posts[ch.id].append(post)
        if post.root_id:
            self.reply_counts[post.root_id] = self.reply_counts.get(post.root_id, 0) + 1
            root = self.posts.get(post.root_id)
            if root is not None:
                root.update_at = post.create_at  # 5.36 bumps the root so `since` finds it
        else:
            ch.total_msg_count_root += 1
        ch.total_msg_count += 1
        ch.last_post_at = post.create_at
        self._publish_posted(post, ch)
        if self.after_post is not None:
            self.after_post(post, ch)

    def _mentions(self, post: Post, ch: Channel) -> list[str]:
        if ch.type == "D":
            return [u for u in ch.members if u != post.user_id] or [post.user_id]
        found: list[str] = []
        if post.type == "system_add_to_channel":
            added = post.props.get("addedUserId")
            if isinstance(added, str) and added in ch.members:
                found.append(added)
        for name in mentioned_names(post.message):
            if name in ("channel", "all", "here"):
                found.extend(u for u in ch.members if u != post.user_id)
                continue
            uid = self.user_by_name.get(name)
            if uid is not None and uid in ch.members and uid != post.user_id:
                found.append(uid)
        return list(dict.fromkeys(found))

    def _publish_posted(self, post: Post, ch: Channel) -> None:
        mentions = self._mentions(post, ch)
        for uid in mentions:
            member = ch.members.get(uid)
            if member is not None:
                member.mention_count += 1
        if not self.hub.by_user:
            return  # nobody is connected: skip the serialisation work
        sender = self.users.get(post.user_id)
        data: JSON = {
            "channel_display_name": ("@" + sender.username if sender else "")
            if ch.type == "D" else ch.display_name,
            "channel_name": ch.name, "channel_type": ch.type,
            "post": go_json(self.post_view(post)), "sender_name": self.sender_name(post),
            "set_online": True, "team_id": ch.team_id}
        if mentions:
            data["mentions"] = go_json(mentions)
        if post.file_ids:
            kinds = {self.files[f].mime_type.startswith("image/") for f in post.file_ids
                     if f in self.files}
            if True in kinds:
                data["image"] = "true"
            if False in kinds:
                data["otherFile"] = "true"
        self.hub.publish("posted", data, channel_id=ch.id, marker=post.id)

    def editable_post(self, actor: User, post_id: str) -> Post:
        """A post the actor may edit; an unknown post is a 403 too (permission comes first)."""
        post = self.posts.get(post_id)
        if post is None or not post.live:
            raise permission_error()
        ch = self.channels[post.channel_id]
        if not self.can_read(actor, ch) or (post.user_id != actor.id and not actor.is_admin):
            raise permission_error()
        return post

    def edit_post(self, post: Post, message: str, props: JSON, *, file_ids: list[str] | None = None,
                  ) -> Post:
        """Apply an edit: keep an edit-history copy, bump `update_at`/`edit_at`, `post_edited`."""
        if post.type.startswith("system_"):
            raise AppError(400, "api.post.update_post.system_message.app_error",
                           "Unable to update system message.")
        now = self.clock.now_ms()
        history = Post(id=new_id(), create_at=post.create_at, user_id=post.user_id,
                       channel_id=post.channel_id, message=post.message, props=dict(post.props),
                       root_id=post.root_id, parent_id=post.parent_id, type=post.type,
                       update_at=now, edit_at=post.edit_at, delete_at=now,
                       original_id=post.id, hashtags=post.hashtags, file_ids=list(post.file_ids),
                       seq=post.seq)
        changed = message != post.message or props.get("attachments") != post.props.get(
            "attachments") or (file_ids is not None and file_ids != post.file_ids)
        post.message = message
        post.props = props
        post.hashtags = parse_hashtags(message)
        if file_ids is not None:
            post.file_ids = file_ids
        post.update_at = now
        if changed:
            post.edit_at = now
        self.posts[history.id] = history
        self.channel_posts[post.channel_id].append(history)
        self.hub.publish("post_edited", {"post": go_json(self.post_view(post))},
                         channel_id=post.channel_id)
        return post

    def delete_post(self, actor: User, post_id: str) -> None:
        """`DELETE /api/v4/posts/{id}`: the post and its replies; one `post_deleted` event."""
        post = self.posts.get(post_id)
        if post is None or not post.live:
            raise permission_error()
        ch = self.channels[post.channel_id]
        if not self.can_read(actor, ch) or (post.user_id != actor.id and not actor.is_admin):
            raise permission_error()
        before = go_json(self.post_view(post))
        now = self.clock.now_ms()
        doomed = [post] if post.root_id else [post] + [
            p for p in self.channel_posts[ch.id] if p.root_id == post.id and p.live]
        for p in doomed:
            p.delete_at = now
            p.update_at = now
            p.props = {**p.props, "deleteBy": actor.id}
            if p.root_id:
                self.reply_counts[p.root_id] = max(0, self.reply_counts.get(p.root_id, 0) - 1)
        self.hub.publish("post_deleted", {"post": before}, channel_id=ch.id)

    def send_ephemeral(self, user_id: str, post: Post) -> JSON:
        """Deliver an ephemeral post to one user only (nothing is stored)."""
        post.type = "system_ephemeral"
        post.update_at = 0
        view = post_json(post, reply_count=0, metadata={})
        self.ephemeral_log.setdefault(user_id, []).append(view)
        self.hub.publish("ephemeral_message", {"post": go_json(view)}, user_id=user_id,
                         channel_id=post.channel_id)
        return view

    # -- reactions, typing, viewing -------------------------------------------------------------

    def add_reaction(self, actor: User, body: Any) -> Reaction:
        """`POST /api/v4/reactions` (200, not 201)."""
        if not isinstance(body, dict):
            raise body_param_error("reaction")
        user_id, post_id, emoji = (body.get("user_id"), body.get("post_id"),
                                   body.get("emoji_name"))
        if user_id != actor.id:
            raise permission_error()
        if not isinstance(post_id, str) or not isinstance(emoji, str):
            raise body_param_error("reaction")
        post = self.posts.get(post_id)
        if post is None or not post.live or not self.can_read(actor,
                                                              self.channels[post.channel_id]):
            raise permission_error()
        if not emoji or len(emoji) > 64 or not all(c.isalnum() or c in "-+_" for c in emoji):
            raise AppError(400, "model.reaction.is_valid.emoji_name.app_error",
                           "Invalid emoji name.")
        now = self.clock.now_ms()
        existing = self.reactions.setdefault(post.id, [])
        reaction = next((r for r in existing if r.user_id == actor.id and r.emoji_name == emoji),
                        None)
        if reaction is None:
            reaction = Reaction(actor.id, post.id, emoji, now, now)
            existing.append(reaction)
        post.has_reactions = True
        post.update_at = now
        self.hub.publish("reaction_added", {"reaction": go_json(reaction.json())},
                         channel_id=post.channel_id)
        return reaction

    def remove_reaction(self, actor: User, user_id: str, post_id: str, emoji: str) -> None:
        """`DELETE /users/{uid}/posts/{pid}/reactions/{name}`; the event says `create_at: 0`."""
        if user_id != actor.id and not actor.is_admin:
            raise permission_error()
        post = self.posts.get(post_id)
        if post is None or not self.can_read(actor, self.channels[post.channel_id]):
            raise permission_error()
        now = self.clock.now_ms()
        reactions = self.reactions.get(post_id, [])
        self.reactions[post_id] = [r for r in reactions
                                   if not (r.user_id == user_id and r.emoji_name == emoji)]
        post.has_reactions = bool(self.reactions[post_id])
        post.update_at = now
        gone = Reaction(user_id, post_id, emoji, 0, now)
        self.hub.publish("reaction_removed", {"reaction": go_json(gone.json())},
                         channel_id=post.channel_id)

    def typing(self, actor: User, user_id: str, channel_id: Any, parent_id: Any) -> None:
        """`POST /users/{id}/typing`: a `typing` event to everyone else in the channel."""
        if user_id != actor.id and not actor.is_admin:
            raise permission_error()
        if not isinstance(channel_id, str) or not is_id(channel_id):
            raise body_param_error("channel_id")
        self.ws_user_typing(user_id, channel_id, parent_id if isinstance(parent_id, str) else "")

    def ws_user_typing(self, user_id: str, channel_id: str, parent_id: str) -> None:
        """Typing from REST or from the websocket `user_typing` action."""
        ch = self.channels.get(channel_id)
        if ch is None or not self.can_read(self.users[user_id], ch):
            raise permission_error()
        self.hub.publish("typing", {"parent_id": parent_id, "user_id": user_id},
                         channel_id=ch.id, omit=user_id)

    def mark_viewed(self, user_id: str, channel_ids: list[str]) -> JSON:
        """Mark channels read: `channel_viewed` goes to the viewer only."""
        times: JSON = {}
        for cid in channel_ids:
            ch = self.channels.get(cid)
            member = ch.members.get(user_id) if ch is not None else None
            if ch is None or member is None:
                continue
            member.last_viewed_at = ch.last_post_at
            member.mention_count = 0
            times[cid] = ch.last_post_at
            self.hub.publish("channel_viewed", {"channel_id": cid}, user_id=user_id)
        return times

    # -- channels -----------------------------------------------------------------------------

    def direct_channel(self, user_ids: Any, actor: User) -> tuple[Channel, bool]:
        """`POST /channels/direct`: find or create; `direct_added` only on creation."""
        if not isinstance(user_ids, list) or len(user_ids) != 2 \
                or not all(isinstance(u, str) and is_id(u) for u in user_ids):
            raise body_param_error("user_ids")
        if actor.id not in user_ids and not actor.is_admin:
            raise permission_error()
        for uid in user_ids:
            self.user(uid)
        first, second = user_ids
        name = "__".join(sorted((first, second)))
        for ch in self.channels.values():
            if ch.type == "D" and ch.name == name:
                return ch, False
        now = self.clock.now_ms()
        ch = Channel(id=new_id(), team_id="", type="D", name=name, display_name="",
                     creator_id=first, create_at=now)
        for uid in dict.fromkeys((first, second)):
            ch.members[uid] = Member(user_id=uid, last_update_at=now)
        self.channels[ch.id] = ch
        self.channel_posts[ch.id] = []
        self.hub.publish("direct_added", {"creator_id": first, "teammate_id": second},
                         channel_id=ch.id)
        return ch, True

    def create_channel(self, actor: User, body: Any) -> Channel:
        """`POST /api/v4/channels` (the creator becomes a member and channel admin)."""
        if not isinstance(body, dict):
            raise body_param_error("channel")
        name, display, kind = body.get("name"), body.get("display_name"), body.get("type")
        if body.get("team_id") != self.team.id:
            raise permission_error()
        if kind not in ("O", "P") or not isinstance(display, str) or not display:
            raise body_param_error("channel")
        if not isinstance(name, str) or len(name) < 2 or not all(
                c.isdigit() or ("a" <= c <= "z") or c in "-_" for c in name):
            raise AppError(400, "model.channel.is_valid.2_or_more.app_error",
                           "Name must be 2 or more lowercase alphanumeric characters.")
        if any(c.name == name and c.team_id == self.team.id for c in self.channels.values()):
            raise AppError(400, "store.sql_channel.save_channel.exists.app_error",
                           "A channel with that name already exists on the same team.")
        ch = self.create_channel_record(name, display, kind, actor.id, [actor.id])
        ch.members[actor.id].roles = "channel_user channel_admin"
        return ch

    def add_member(self, actor: User, ch: Channel, user_id: Any) -> Member:
        """Add a user to a team channel: `user_added` then a system post."""
        if ch.type == "D":
            raise AppError(400, "api.channel.add_user_to_channel.type.app_error",
                           "Can not add user to this channel type.")
        if not isinstance(user_id, str) or not is_id(user_id):
            raise body_param_error("user_id")
        joining_self = user_id == actor.id and ch.type == "O"
        if not (self.can_read(actor, ch) or joining_self):
            raise permission_error()
        user = self.user(user_id)
        if user_id in ch.members:
            return ch.members[user_id]
        member = Member(user_id=user_id, last_update_at=self.clock.now_ms())
        ch.members[user_id] = member
        self.hub.publish("user_added", {"team_id": ch.team_id, "user_id": user_id},
                         channel_id=ch.id)
        if joining_self:
            self.insert_post(Post(id=new_id(), create_at=0, user_id=user.id, channel_id=ch.id,
                                  message=f"{user.username} joined the channel.",
                                  props={"username": user.username},
                                  type="system_join_channel"), ch)
        else:
            self.insert_post(Post(id=new_id(), create_at=0, user_id=actor.id, channel_id=ch.id,
                                  message=f"{user.username} added to the channel by "
                                          f"{actor.username}.",
                                  props={"addedUserId": user.id, "addedUsername": user.username,
                                         "userId": actor.id, "username": actor.username},
                                  type="system_add_to_channel"), ch)
        return member

    def remove_member(self, actor: User, ch: Channel, user_id: str) -> None:
        """Remove a user: `user_removed` to the channel and to the removed user, then a post."""
        if ch.type == "D":
            raise AppError(400, "api.channel.remove_user_from_channel.app_error",
                           "Can not remove user from this channel type.")
        if ch.name == "town-square":
            raise AppError(400, "api.channel.remove.default.app_error",
                           f"Unable to remove user from the default channel {ch.name}.")
        if not (self.can_read(actor, ch) or user_id == actor.id):
            raise permission_error()
        user = self.user(user_id)
        if user_id not in ch.members:
            return
        del ch.members[user_id]
        self.hub.publish("user_removed", {"remover_id": actor.id, "user_id": user_id},
                         channel_id=ch.id)
        self.hub.publish("user_removed", {"channel_id": ch.id, "remover_id": actor.id},
                         user_id=user_id)
        if user_id == actor.id:
            post = Post(id=new_id(), create_at=0, user_id=user.id, channel_id=ch.id,
                        message=f"{user.username} left the channel.",
                        props={"username": user.username}, type="system_leave_channel")
        else:
            post = Post(id=new_id(), create_at=0, user_id=actor.id, channel_id=ch.id,
                        message=f"{user.username} was removed from the channel.",
                        props={"removedUserId": user.id, "removedUsername": user.username},
                        type="system_remove_from_channel")
        self.insert_post(post, ch)

    # -- statuses and roles ---------------------------------------------------------------------

    def set_status(self, user_id: str, status: str, *, manual: bool) -> Status:
        """Change presence; `status_change` goes to that user only (as 5.36 does)."""
        st = self.statuses[user_id]
        now = self.clock.now_ms()
        if status == "online":
            st.last_activity_at = now
        changed = st.status != status
        st.status, st.manual = status, manual
        if changed:
            self.hub.publish("status_change", {"status": status, "user_id": user_id},
                             user_id=user_id)
        return st

    def set_online(self, user_id: str) -> None:
        """Activity makes a user online unless they chose away/dnd themselves."""
        st = self.statuses[user_id]
        if st.status == "online" or (st.manual and st.status != "offline"):
            st.last_activity_at = self.clock.now_ms()
            return
        self.set_status(user_id, "online", manual=False)

    def on_connect(self, user_id: str) -> None:
        """A user's first socket authenticated."""
        self.set_online(user_id)

    def on_disconnect(self, user_id: str) -> None:
        """A user's last socket ended."""
        st = self.statuses[user_id]
        if not st.manual:
            st.status = "offline"

    def ws_statuses(self, user_ids: list[str] | None) -> JSON:
        """`{user_id: status}` for the websocket status actions."""
        ids = user_ids if user_ids is not None else list(self.statuses)
        return {u: self.statuses[u].status for u in ids if u in self.statuses}

    def set_roles(self, actor: User, user_id: str, roles: Any) -> None:
        """`PUT /users/{id}/roles` (admins only); `user_role_updated` to that user."""
        if not actor.is_admin:
            raise permission_error()
        user = self.user(user_id)
        if not isinstance(roles, str) or "system_user" not in roles.split():
            raise body_param_error("roles")
        user.roles = roles
        user.update_at = self.clock.now_ms()
        self.hub.publish("user_role_updated", {"roles": roles, "user_id": user_id},
                         user_id=user_id)

    #: What `PUT /users/{id}/patch` may change here (the server takes more profile fields).
    PATCHABLE = ("nickname", "first_name", "last_name", "locale")

    def patch_user(self, actor: User, user_id: str, patch: dict[str, Any]) -> User:
        """`PUT /users/{id}/patch`; `user_updated` to everyone."""
        if actor.id != user_id and not actor.is_admin:
            raise permission_error()
        user = self.user(user_id)
        for key in self.PATCHABLE:
            value = patch.get(key)
            if key in patch and not isinstance(value, str):
                raise body_param_error("user")
            if isinstance(value, str) and hasattr(user, key):
                setattr(user, key, value)
        user.update_at = self.clock.now_ms()
        self.hub.publish("user_updated", {"user": user_json(user, full=False)})
        return user

    # -- files ----------------------------------------------------------------------------------

    def upload(self, actor: User, channel_id: str, files: list[tuple[str, bytes, str]],
               ) -> list[FileInfo]:
        """`POST /api/v4/files`: store uploads until a post claims them."""
        ch = self.channels.get(channel_id)
        if ch is None or not self.can_read(actor, ch):
            raise permission_error()
        infos = []
        for name, data, content_type in files:
            ext = name.rsplit(".", 1)[1].lower() if "." in name else ""
            mime = mimetypes.guess_type(name)[0] or content_type or "application/octet-stream"
            if mime.startswith("text/") and "charset" not in mime:
                mime += "; charset=utf-8"
            info = FileInfo(id=new_id(), user_id=actor.id, create_at=self.clock.now_ms(),
                            name=name, extension=ext, mime_type=mime, data=data)
            self.files[info.id] = info
            infos.append(info)
        return infos

    def readable_file(self, actor: User, file_id: str) -> FileInfo:
        """A file the actor may fetch: its uploader, or a reader of the post's channel."""
        info = self.files.get(file_id)
        if info is None:
            raise AppError(404, "app.file_info.get.app_error", "Unable to get the file info.")
        if info.user_id != actor.id:
            post = self.posts.get(info.post_id)
            if post is None or not self.can_read(actor, self.channels[post.channel_id]):
                raise permission_error()
        return info
