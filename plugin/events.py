"""Typed Mattermost events: a posted message, a button click, a dialog submission, a slash
command, an outgoing webhook's call, an inbound webhook. Decoding is strict about shape and
lenient about extra keys: a frame that does not look like what Mattermost sends is refused with a
short reason, never half-used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

ChannelType = Literal["O", "P", "D", "G", ""]


class BadPayload(ValueError):
    """A payload that is not what Mattermost sends; the message says which part is wrong."""


@dataclass(frozen=True, slots=True)
class Post:
    """A Mattermost post, as `data.post` or a REST body carries it."""

    id: str
    channel_id: str
    user_id: str
    message: str
    create_at: int
    root_id: str = ""
    type: str = ""
    edit_at: int = 0
    delete_at: int = 0
    props: dict[str, Any] = field(default_factory=dict)
    file_ids: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Any) -> Post:
        if not isinstance(d, dict):
            raise BadPayload("post is not an object")
        try:
            pid, cid, uid = d["id"], d["channel_id"], d["user_id"]
        except KeyError as exc:
            raise BadPayload(f"post has no {exc.args[0]}") from None
        if not (isinstance(pid, str) and isinstance(cid, str) and isinstance(uid, str)) or not pid:
            raise BadPayload("post ids must be strings")
        message = d.get("message", "")
        props = d.get("props") or {}
        try:
            return cls(
            id=pid, channel_id=cid, user_id=uid,
            message=message if isinstance(message, str) else "",
            create_at=int(d.get("create_at") or 0),
            root_id=str(d.get("root_id") or ""),
            type=str(d.get("type") or ""),
            edit_at=int(d.get("edit_at") or 0),
            delete_at=int(d.get("delete_at") or 0),
            props=props if isinstance(props, dict) else {},
            file_ids=tuple(str(f) for f in d.get("file_ids") or ()),
            )
        except (TypeError, ValueError):
            raise BadPayload("post fields have the wrong types") from None

    @property
    def thread_id(self) -> str:
        """The root of this post's conversation (the post itself when it is a root)."""
        return self.root_id or self.id

    @property
    def from_bot(self) -> bool:
        return self.props.get("from_bot") in ("true", True)

    @property
    def from_webhook(self) -> bool:
        return self.props.get("from_webhook") in ("true", True)


@dataclass(frozen=True, slots=True)
class Message:
    """A `posted` event (from the stream or recovered by backfill)."""

    post: Post
    channel_type: ChannelType
    channel_name: str = ""
    sender_name: str = ""
    team_id: str = ""
    mentions: tuple[str, ...] = ()
    #: How it reached the bot: "stream", "backfill", "recovery" or "webhook".
    source: str = "stream"
    #: >1 when a handler is re-run after the bot stopped in the middle of it.
    attempt: int = 1
    #: Found after `backfill.max_age`: offered to its author rather than handled (by the
    #: route's `late` handler).
    late: bool = False

    @property
    def text(self) -> str:
        return self.post.message

    @property
    def user_id(self) -> str:
        return self.post.user_id

    @property
    def channel_id(self) -> str:
        return self.post.channel_id

    @property
    def is_direct(self) -> bool:
        return self.channel_type == "D"

    @classmethod
    def from_frame(cls, data: Any) -> Message:
        """Decode a `posted` frame's `data` (whose `post` is a JSON string)."""
        if not isinstance(data, dict):
            raise BadPayload("posted data is not an object")
        raw = data.get("post")
        if not isinstance(raw, str):
            raise BadPayload("posted data has no post string")
        try:
            post = Post.from_dict(json.loads(raw))
        except json.JSONDecodeError:
            raise BadPayload("posted data.post is not JSON") from None
        mentions: tuple[str, ...] = ()
        raw_mentions = data.get("mentions")
        if isinstance(raw_mentions, str) and raw_mentions:
            try:
                decoded = json.loads(raw_mentions)
                if isinstance(decoded, list):
                    mentions = tuple(str(m) for m in decoded)
            except json.JSONDecodeError:
                pass
        ctype = data.get("channel_type", "")
        return cls(
            post=post,
            channel_type=ctype if ctype in ("O", "P", "D", "G") else "",
            channel_name=str(data.get("channel_name", "")),
            sender_name=str(data.get("sender_name", "")),
            team_id=str(data.get("team_id", "")),
            mentions=mentions,
        )


def _text(d: dict[str, Any], key: str, required: bool = True) -> str:
    v = d.get(key, "")
    if v is None:
        v = ""
    if not isinstance(v, str):
        raise BadPayload(f"{key} must be a string")
    if required and not v:
        raise BadPayload(f"{key} is missing")
    return v


@dataclass(frozen=True, slots=True)
class Click:
    """A button press or menu choice, as Mattermost POSTs it to the integration URL."""

    user_id: str
    user_name: str
    channel_id: str
    post_id: str
    trigger_id: str
    team_id: str
    type: str
    context: dict[str, Any]
    selected_option: str = ""

    @classmethod
    def from_body(cls, body: Any) -> Click:
        if not isinstance(body, dict):
            raise BadPayload("the body must be a JSON object")
        context = body.get("context")
        if not isinstance(context, dict):
            raise BadPayload("context is missing")
        selected = context.get("selected_option", "")
        return cls(
            user_id=_text(body, "user_id"), user_name=_text(body, "user_name", False),
            channel_id=_text(body, "channel_id", False), post_id=_text(body, "post_id", False),
            trigger_id=_text(body, "trigger_id", False), team_id=_text(body, "team_id", False),
            type=_text(body, "type", False) or "button", context=context,
            selected_option=selected if isinstance(selected, str) else "",
        )


@dataclass(frozen=True, slots=True)
class DialogSubmission:
    """An interactive dialog's submit (or cancel)."""

    callback_id: str
    state: str
    user_id: str
    channel_id: str
    team_id: str
    submission: dict[str, Any]
    cancelled: bool

    @classmethod
    def from_body(cls, body: Any) -> DialogSubmission:
        if not isinstance(body, dict):
            raise BadPayload("the body must be a JSON object")
        submission = body.get("submission") or {}
        if not isinstance(submission, dict):
            raise BadPayload("submission must be an object")
        return cls(
            callback_id=_text(body, "callback_id"), state=_text(body, "state", False),
            user_id=_text(body, "user_id"), channel_id=_text(body, "channel_id", False),
            team_id=_text(body, "team_id", False), submission=submission,
            cancelled=bool(body.get("cancelled", False)),
        )


@dataclass(frozen=True, slots=True)
class SlashCommand:
    """A custom slash command's request (form-encoded)."""

    command: str
    text: str
    user_id: str
    user_name: str
    channel_id: str
    channel_name: str
    team_id: str
    trigger_id: str
    response_url: str

    @classmethod
    def from_form(cls, form: dict[str, str]) -> SlashCommand:
        command = form.get("command", "")
        if not command.startswith("/"):
            raise BadPayload("command is missing")
        if not form.get("user_id"):
            raise BadPayload("user_id is missing")
        return cls(command=command, text=form.get("text", ""), user_id=form["user_id"],
                   user_name=form.get("user_name", ""), channel_id=form.get("channel_id", ""),
                   channel_name=form.get("channel_name", ""), team_id=form.get("team_id", ""),
                   trigger_id=form.get("trigger_id", ""),
                   response_url=form.get("response_url", ""))


@dataclass(frozen=True, slots=True)
class OutgoingWebhook:
    """A Mattermost outgoing webhook's call: a post in a public channel began with a trigger word.

    Mattermost sends it as JSON (`timestamp` in milliseconds) or as a form (`timestamp` in
    seconds, every value a string); both decode to the same fields, the time in milliseconds.
    """

    token: str
    team_id: str
    team_domain: str
    channel_id: str
    channel_name: str
    timestamp: int
    user_id: str
    user_name: str
    post_id: str
    text: str
    trigger_word: str
    file_ids: tuple[str, ...] = ()

    @classmethod
    def from_body(cls, body: Any, *, form: bool = False) -> OutgoingWebhook:
        """Decode a JSON body (`form=False`) or a form's fields (`form=True`)."""
        if not isinstance(body, dict):
            raise BadPayload("the body must be an object")
        raw_time = body.get("timestamp", 0)
        if isinstance(raw_time, bool) or not isinstance(raw_time, int | float | str):
            raise BadPayload("timestamp must be a number")
        try:
            timestamp = int(float(raw_time)) if raw_time != "" else 0
        except ValueError:
            raise BadPayload("timestamp must be a number") from None
        if timestamp < 0:
            raise BadPayload("timestamp must not be negative")
        if form:
            timestamp *= 1000
        raw_files = body.get("file_ids", "")
        if isinstance(raw_files, list):  # the field is a comma-joined string; accept a list
            files = tuple(str(f) for f in raw_files if f)
        elif isinstance(raw_files, str) or raw_files is None:
            files = tuple(f for f in (raw_files or "").split(",") if f)
        else:
            raise BadPayload("file_ids must be a string")
        return cls(
            token=_text(body, "token", False), team_id=_text(body, "team_id", False),
            team_domain=_text(body, "team_domain", False),
            channel_id=_text(body, "channel_id"), channel_name=_text(body, "channel_name", False),
            timestamp=timestamp, user_id=_text(body, "user_id"),
            user_name=_text(body, "user_name", False), post_id=_text(body, "post_id"),
            text=_text(body, "text", False), trigger_word=_text(body, "trigger_word", False),
            file_ids=files)

    def post(self) -> Post:
        """The triggering post as far as the call tells it (no root, props or type)."""
        return Post(id=self.post_id, channel_id=self.channel_id, user_id=self.user_id,
                    message=self.text, create_at=self.timestamp, file_ids=self.file_ids)

    def message(self, post: Post | None = None, channel_type: ChannelType = "O") -> Message:
        """The same event the stream delivers for this post. `post` is the post as read over
        REST, when it could be; outgoing webhooks fire only in public channels."""
        return Message(post=post or self.post(), channel_type=channel_type,
                       channel_name=self.channel_name,
                       sender_name=f"@{self.user_name}" if self.user_name else "",
                       team_id=self.team_id, source="webhook")


@dataclass(frozen=True, slots=True)
class Webhook:
    """An inbound webhook call: its name (from the URL), parsed body and headers."""

    name: str
    body: Any
    headers: dict[str, str]
