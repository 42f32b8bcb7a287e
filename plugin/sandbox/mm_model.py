"""Records of the simulated Mattermost 5.36 server and their exact wire shapes.

Everything here is plain data: ids, timestamps, the Go-compatible JSON encoder, the AppError type
and one renderer per record kind. Key order matters to the conformance test, so each renderer writes
the keys in the order Mattermost's Go structs declare them, and every Go *map* (props, websocket
`data`, integration context) is written with sorted keys, as Go's encoder does.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

VERSION = "5.36.1"
#: `X-Version-Id` and hello's `server_version`: version, build number, config hash, licensed flag.
VERSION_ID = f"{VERSION}.{VERSION}.8f0b4e1d2c3a49b5a6c7d8e9f0a1b2c3.false"
MAX_MESSAGE_RUNES = 16383

_STD32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_MM32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
_TO_MM = str.maketrans(_STD32, _MM32)
ID_RE = re.compile(r"^[a-z0-9]{26}$")

JSON = dict[str, Any]


def new_id() -> str:
    """A 26-character id in Mattermost's own base32 alphabet (16 random bytes)."""
    return base64.b32encode(os.urandom(16)).decode("ascii")[:26].translate(_TO_MM)


def is_id(value: object) -> bool:
    """Whether `value` has the shape of a Mattermost id."""
    return isinstance(value, str) and ID_RE.match(value) is not None


class Clock:
    """Millisecond wall clock that never goes backwards: storage order is `create_at` order."""

    def __init__(self) -> None:
        self._last = 0

    def now_ms(self) -> int:
        """Current time in ms; equal values are allowed (the real server has them too)."""
        now = int(time.time() * 1000)
        if now < self._last:
            now = self._last
        self._last = now
        return now


_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                             "\u2028": "\\u2028", "\u2029": "\\u2029"})


def go_json(obj: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, UTF-8, with <, > and & escaped.

    Those three characters can only occur inside JSON strings, so escaping the whole text is safe.
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        text = text.translate(_GO_ESCAPES)
    return text


def sorted_deep(value: Any) -> Any:
    """Sort every dict's keys recursively: how Go writes a decoded `map[string]interface{}`."""
    if isinstance(value, dict):
        return {k: sorted_deep(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sorted_deep(v) for v in value]
    return value


class AppError(Exception):
    """Mattermost's error: `{id, message, detailed_error, request_id, status_code}` on the wire."""

    def __init__(self, status: int, error_id: str, message: str, detailed: str = "") -> None:
        super().__init__(f"{status} {error_id}: {message}")
        self.status = status
        self.error_id = error_id
        self.message = message
        self.detailed = detailed

    def body(self, request_id: str) -> JSON:
        """The JSON body for this error, tied to the response's `X-Request-Id`."""
        return {"id": self.error_id, "message": self.message, "detailed_error": self.detailed,
                "request_id": request_id, "status_code": self.status}


# The errors the recordings show, with Mattermost's own English texts.
def permission_error() -> AppError:
    """403 for any missing permission (the server never says which one)."""
    return AppError(403, "api.context.permissions.app_error",
                    "You do not have the appropriate permissions.")


def session_error() -> AppError:
    """401 for a missing, unknown or revoked token."""
    return AppError(401, "api.context.session_expired.app_error",
                    "Invalid or expired session, please login again.")


def body_param_error(name: str) -> AppError:
    """400 for a body that is not JSON or lacks a required field."""
    return AppError(400, "api.context.invalid_body_param.app_error",
                    f"Invalid or missing {name} in request body.")


def url_param_error(name: str) -> AppError:
    """400 for a path parameter that matched the route but is not a valid id."""
    return AppError(400, "api.context.invalid_url_param.app_error",
                    f"Invalid or missing {name} parameter in request URL.")


def param_error(name: str) -> AppError:
    """400 for an unparsable query parameter."""
    return AppError(400, "api.context.invalid_param.app_error", f"Invalid {name} parameter.")


def post_not_found() -> AppError:
    """404 for an unknown or deleted post."""
    return AppError(404, "app.post.get.app_error", "Unable to get the post.")


def user_not_found() -> AppError:
    """404 for an unknown user id."""
    return AppError(404, "app.user.missing_account.const", "Unable to find the user.")


def channel_not_found() -> AppError:
    """404 for an unknown channel id."""
    return AppError(404, "app.channel.get.existing.app_error",
                    "Unable to find the existing channel.")


def integration_error() -> AppError:
    """400 for any failure of an action or dialog integration (timeouts, 500s, bad bodies)."""
    return AppError(400, "api.post.do_action.action_integration.app_error",
                    "Action integration error.")


def router_404_body(path: str) -> JSON:
    """The body of a 404 from the router itself: no request id, a detailed error naming the url."""
    return {"id": "api.context.404.app_error", "message": "Sorry, we could not find the page.",
            "detailed_error": f"There doesn't appear to be an api call for the url='{path}'.  "
                              "Typo? are you missing a team_id or user_id as part of the url?",
            "status_code": 404}


@dataclass(slots=True)
class User:
    """A user account; bots are users with `is_bot`."""

    id: str
    username: str
    email: str
    first_name: str
    last_name: str
    roles: str
    create_at: int
    is_bot: bool = False
    bot_description: str = ""
    update_at: int = 0
    #: The language the user chose in their settings (`locale` of the user object).
    locale: str = "en"

    @property
    def is_admin(self) -> bool:
        """System admins pass every permission check."""
        return "system_admin" in self.roles.split()


def user_json(u: User, *, full: bool) -> JSON:
    """A user as `users/me` (full) or as anyone else sees it (sanitised)."""
    d: JSON = {"id": u.id, "create_at": u.create_at, "update_at": u.update_at, "delete_at": 0,
               "username": u.username, "auth_data": "", "auth_service": "", "email": u.email,
               "nickname": "", "first_name": u.first_name, "last_name": u.last_name,
               "position": "", "roles": u.roles}
    if full:
        d["notify_props"] = {"channel": "true", "comments": "never", "desktop": "mention",
                             "desktop_sound": "true", "email": "true", "first_name": "false",
                             "mention_keys": "", "push": "mention", "push_status": "away"}
        d["last_password_update"] = u.create_at
    d["locale"] = u.locale
    d["timezone"] = {"automaticTimezone": "", "manualTimezone": "", "useAutomaticTimezone": "true"}
    if u.is_bot:
        d["is_bot"] = True
        d["bot_description"] = u.bot_description
    d["disable_welcome_email"] = False
    return d


@dataclass(slots=True)
class Status:
    """Presence of one user, as `GET /users/{id}/status` returns it."""

    user_id: str
    status: str = "offline"
    manual: bool = False
    last_activity_at: int = 0

    def json(self) -> JSON:
        """Wire form."""
        return {"user_id": self.user_id, "status": self.status, "manual": self.manual,
                "last_activity_at": self.last_activity_at}


@dataclass(slots=True)
class Team:
    """The one team of the sandbox world."""

    id: str
    name: str
    display_name: str
    create_at: int
    invite_id: str

    def json(self) -> JSON:
        """Wire form."""
        return {"id": self.id, "create_at": self.create_at, "update_at": self.create_at,
                "delete_at": 0, "display_name": self.display_name, "name": self.name,
                "description": "", "email": "", "type": "O", "company_name": "",
                "allowed_domains": "", "invite_id": self.invite_id, "allow_open_invite": False,
                "scheme_id": None, "group_constrained": None, "policy_id": None}


@dataclass(slots=True)
class Member:
    """One user's membership of one channel."""

    user_id: str
    roles: str = "channel_user"
    last_viewed_at: int = 0
    mention_count: int = 0
    last_update_at: int = 0

    def json(self, channel_id: str) -> JSON:
        """Wire form."""
        return {"channel_id": channel_id, "user_id": self.user_id, "roles": self.roles,
                "last_viewed_at": self.last_viewed_at, "msg_count": 0,
                "mention_count": self.mention_count, "mention_count_root": self.mention_count,
                "msg_count_root": 0,
                "notify_props": {"desktop": "default", "email": "default",
                                 "ignore_channel_mentions": "default", "mark_unread": "all",
                                 "push": "default"},
                "last_update_at": self.last_update_at, "scheme_guest": False,
                "scheme_user": True, "scheme_admin": "channel_admin" in self.roles,
                "explicit_roles": ""}


@dataclass(slots=True)
class Channel:
    """A channel: `O` public, `P` private, `D` direct."""

    id: str
    team_id: str
    type: str
    name: str
    display_name: str
    creator_id: str
    create_at: int
    members: dict[str, Member] = field(default_factory=dict)
    last_post_at: int = 0
    total_msg_count: int = 0
    total_msg_count_root: int = 0

    def json(self) -> JSON:
        """Wire form (`shared` is false for DMs and null for team channels, as recorded)."""
        return {"id": self.id, "create_at": self.create_at, "update_at": self.create_at,
                "delete_at": 0, "team_id": self.team_id, "type": self.type,
                "display_name": self.display_name, "name": self.name, "header": "",
                "purpose": "", "last_post_at": self.last_post_at,
                "total_msg_count": self.total_msg_count, "extra_update_at": 0,
                "creator_id": self.creator_id, "scheme_id": None, "props": None,
                "group_constrained": None, "shared": False if self.type in "DG" else None,
                "total_msg_count_root": self.total_msg_count_root, "policy_id": None}


@dataclass(slots=True)
class FileInfo:
    """An uploaded file; `post_id` is set once a post claims it."""

    id: str
    user_id: str
    create_at: int
    name: str
    extension: str
    mime_type: str
    data: bytes
    post_id: str = ""

    def json(self) -> JSON:
        """Wire form; `channel_id` stays empty, as 5.36 leaves it."""
        d: JSON = {"id": self.id, "user_id": self.user_id}
        if self.post_id:
            d["post_id"] = self.post_id
        d.update({"channel_id": "", "create_at": self.create_at, "update_at": self.create_at,
                  "delete_at": 0, "name": self.name, "extension": self.extension,
                  "size": len(self.data), "mime_type": self.mime_type, "mini_preview": None,
                  "remote_id": ""})
        return d


@dataclass(slots=True)
class Reaction:
    """An emoji reaction on a post."""

    user_id: str
    post_id: str
    emoji_name: str
    create_at: int
    update_at: int

    def json(self) -> JSON:
        """Wire form."""
        return {"user_id": self.user_id, "post_id": self.post_id, "emoji_name": self.emoji_name,
                "create_at": self.create_at, "update_at": self.update_at, "delete_at": 0,
                "remote_id": ""}


@dataclass(slots=True)
class Post:
    """A stored post. `props` keeps action integrations; they are stripped on the way out."""

    id: str
    create_at: int
    user_id: str
    channel_id: str
    message: str
    props: JSON
    root_id: str = ""
    parent_id: str = ""
    type: str = ""
    update_at: int = 0
    edit_at: int = 0
    delete_at: int = 0
    is_pinned: bool = False
    original_id: str = ""
    hashtags: str = ""
    file_ids: list[str] = field(default_factory=list)
    pending_post_id: str = ""
    has_reactions: bool = False
    #: Storage order, to break ties between posts created in the same millisecond.
    seq: int = 0

    @property
    def live(self) -> bool:
        """Neither deleted nor an edit-history copy."""
        return self.delete_at == 0


def client_props(props: JSON, *, keep_integrations: bool = False) -> JSON:
    """Props as clients see them: sorted like a Go map, integrations removed from actions."""
    out: JSON = {}
    for key in sorted(props):
        value = props[key]
        if key == "attachments" and isinstance(value, list):
            out[key] = [_client_attachment(a, keep_integrations) if isinstance(a, dict) else a
                        for a in value]
        else:
            out[key] = sorted_deep(value)
    return out


def _client_attachment(att: JSON, keep: bool) -> JSON:
    actions = att.get("actions")
    if keep or not actions:
        return att
    out = dict(att)
    out["actions"] = [{k: v for k, v in a.items() if k != "integration"} for a in actions]
    return out


def post_json(p: Post, *, reply_count: int, metadata: JSON,
              keep_integrations: bool = False) -> JSON:
    """A post in Mattermost's field order (deleted posts lose their text, as on the wire)."""
    deleted = p.delete_at > 0
    d: JSON = {"id": p.id, "create_at": p.create_at, "update_at": p.update_at,
               "edit_at": p.edit_at, "delete_at": p.delete_at, "is_pinned": p.is_pinned,
               "user_id": p.user_id, "channel_id": p.channel_id, "root_id": p.root_id,
               "parent_id": p.parent_id, "original_id": p.original_id,
               "message": "" if deleted else p.message, "type": p.type,
               "props": client_props(p.props, keep_integrations=keep_integrations) if p.props
               else {},
               "hashtags": p.hashtags}
    if p.file_ids:
        d["file_ids"] = list(p.file_ids)
    d["pending_post_id"] = p.pending_post_id
    if p.has_reactions:
        d["has_reactions"] = True
    d["reply_count"] = reply_count
    d["last_reply_at"] = 0
    d["participants"] = None
    d["is_following"] = False
    d["metadata"] = {} if deleted else metadata
    return d


# -- attachments and actions -----------------------------------------------------------------

_ATTACHMENT_STRINGS = ("fallback", "color", "pretext", "author_name", "author_link",
                       "author_icon", "title", "title_link", "text")
_ATTACHMENT_TAIL = ("image_url", "thumb_url", "footer", "footer_icon")


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _bool(value: Any) -> bool:
    # Slack-compatible booleans accept "true"/"false" strings too.
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def normalise_attachments(raw: Any) -> Any:
    """Give each attachment every field, in order, and each action an id (as 5.36 does on save)."""
    if not isinstance(raw, list):
        return raw
    out: list[Any] = []
    for att in raw:
        if not isinstance(att, dict):
            continue
        a: JSON = {"id": att.get("id", 0) if isinstance(att.get("id", 0), int) else 0}
        for key in _ATTACHMENT_STRINGS:
            a[key] = _str(att.get(key))
        fields = att.get("fields")
        if isinstance(fields, list):
            a["fields"] = [{"title": _str(f.get("title")), "value": f.get("value", ""),
                            "short": _bool(f.get("short", False))}
                           for f in fields if isinstance(f, dict)]
        else:
            a["fields"] = None
        for key in _ATTACHMENT_TAIL:
            a[key] = _str(att.get(key))
        a["ts"] = att.get("ts")
        actions = att.get("actions")
        if isinstance(actions, list) and actions:
            a["actions"] = [_normalise_action(x) for x in actions if isinstance(x, dict)]
        out.append(a)
    return out


def _normalise_action(raw: JSON) -> JSON:
    a: JSON = {"id": _str(raw.get("id")) or new_id(), "type": _str(raw.get("type")),
               "name": _str(raw.get("name"))}
    if raw.get("disabled"):
        a["disabled"] = True
    for key in ("style", "data_source"):
        if _str(raw.get(key)):
            a[key] = raw[key]
    options = raw.get("options")
    if isinstance(options, list) and options:
        a["options"] = [{"text": _str(o.get("text")), "value": _str(o.get("value"))}
                        for o in options if isinstance(o, dict)]
    if _str(raw.get("default_option")):
        a["default_option"] = raw["default_option"]
    integration = raw.get("integration")
    if isinstance(integration, dict):
        i: JSON = {}
        if _str(integration.get("url")):
            i["url"] = integration["url"]
        if integration.get("context"):
            i["context"] = integration["context"]
        a["integration"] = i
    return a


def find_action(props: JSON, action_id: str) -> JSON | None:
    """The stored action (with its integration) of that id, if the post has one."""
    for att in props.get("attachments") or []:
        if isinstance(att, dict):
            for action in att.get("actions") or []:
                if isinstance(action, dict) and action.get("id") == action_id:
                    return action
    return None


def normalise_dialog(raw: JSON) -> JSON:
    """An interactive dialog with every field present, in the order the server sends it."""
    elements = raw.get("elements")
    els: list[JSON] | None = None
    if isinstance(elements, list):
        els = []
        for e in elements:
            if not isinstance(e, dict):
                continue
            opts = e.get("options")
            els.append({"display_name": _str(e.get("display_name")), "name": _str(e.get("name")),
                        "type": _str(e.get("type")), "subtype": _str(e.get("subtype")),
                        "default": _str(e.get("default")),
                        "placeholder": _str(e.get("placeholder")),
                        "help_text": _str(e.get("help_text")),
                        "optional": _bool(e.get("optional", False)),
                        "min_length": e.get("min_length", 0) if isinstance(e.get("min_length"), int)
                        else 0,
                        "max_length": e.get("max_length", 0) if isinstance(e.get("max_length"), int)
                        else 0,
                        "data_source": _str(e.get("data_source")),
                        "options": [{"text": _str(o.get("text")), "value": _str(o.get("value"))}
                                    for o in opts if isinstance(o, dict)]
                        if isinstance(opts, list) else None})
    return {"callback_id": _str(raw.get("callback_id")), "title": _str(raw.get("title")),
            "introduction_text": _str(raw.get("introduction_text")),
            "icon_url": _str(raw.get("icon_url")), "elements": els,
            "submit_label": _str(raw.get("submit_label")),
            "notify_on_cancel": _bool(raw.get("notify_on_cancel", False)),
            "state": _str(raw.get("state"))}


# -- message text ---------------------------------------------------------------------------------

_HASHTAG_RE = re.compile(r"^#[^\W\d_][\w\-.]*[^\W_]$")
_SLACK_LINK_RE = re.compile(r"<([^<>|]+)\|([^<>]+)>")
_MENTION_RE = re.compile(r"@([a-z0-9][a-z0-9._-]*)", re.IGNORECASE)


def parse_hashtags(message: str) -> str:
    """The space-separated `#tags` of a message, as the server fills `hashtags`."""
    if "#" not in message:
        return ""
    tags: list[str] = []
    for word in message.split():
        word = word.rstrip(".,:;!?)")
        if word.startswith("#") and len(word) > 1 and _HASHTAG_RE.match(word) \
                and word not in tags:
            tags.append(word)
    return " ".join(tags)


def slack_links_to_markdown(text: str) -> str:
    """`<url|label>` → `[label](url)`, as the server rewrites integration replies."""
    return _SLACK_LINK_RE.sub(r"[\2](\1)", text) if "<" in text else text


def mentioned_names(message: str) -> list[str]:
    """Lower-cased `@names` in order of appearance (trailing punctuation tried both ways)."""
    if "@" not in message:
        return []
    names: list[str] = []
    for m in _MENTION_RE.finditer(message):
        name = m.group(1).lower()
        names.append(name)
        stripped = name.rstrip("._-")
        if stripped != name:
            names.append(stripped)
    return names
