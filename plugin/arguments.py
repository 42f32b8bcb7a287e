"""The arguments a handler may ask for by name, per kind of handler: one table.

A handler receives only the arguments it names. `Router` checks each name against this table (and
against what the route's filters declare they capture) when the handler is registered, so a
misspelt argument stops the bot at start with the name and the known names, instead of failing
at run time behind an apology. The builders below are the only places these arguments are made;
a test holds each builder to its row of the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .context import Context
    from .events import Click, DialogSubmission, Message, SlashCommand, Webhook
    from .signing import Payload

Kind = Literal["message", "command", "action", "dialog", "slash", "webhook"]

_MESSAGE = frozenset({"ctx", "event", "post", "text", "user_id", "channel_id"})

#: What each kind of handler may name (filters add their captures to message and command).
ARGUMENTS: dict[Kind, frozenset[str]] = {
    "message": _MESSAGE,
    "command": _MESSAGE,
    "action": frozenset({"ctx", "event", "click", "payload", "subject", "data", "user_id",
                         "channel_id", "post_id"}),
    "dialog": frozenset({"ctx", "event", "submission", "payload", "subject", "data",
                         "cancelled", "user_id", "channel_id"}),
    "slash": frozenset({"ctx", "event", "command", "text", "user_id", "channel_id"}),
    "webhook": frozenset({"ctx", "event", "hook", "body"}),
}


class DeclarationError(ValueError):
    """A feature declared something the bot cannot run: the message says what and where."""


class UnknownArgument(DeclarationError):
    """A handler names an argument that its kind of handler is never given."""


def check(kind: Kind, handler: str, params: Iterable[str], captures: Iterable[str] = ()
          ) -> None:
    """Refuse a handler that asks for a name it would never be given."""
    known = ARGUMENTS[kind] | frozenset(captures)
    unknown = sorted(set(params) - known)
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        raise UnknownArgument(
            f"{kind} handler {handler!r} asks for {names}, which a {kind} handler is never "
            f"given; known names: {', '.join(sorted(known))}")


def for_message(ctx: Context, msg: Message, captured: dict[str, Any]) -> dict[str, Any]:
    post = msg.post
    return {"ctx": ctx, "event": msg, "post": post, "text": post.message,
            "user_id": post.user_id, "channel_id": post.channel_id} | captured


def for_click(ctx: Context, click: Click, payload: Payload) -> dict[str, Any]:
    return {"ctx": ctx, "event": click, "click": click, "payload": payload,
            "subject": payload.subject, "data": payload.data, "user_id": click.user_id,
            "channel_id": click.channel_id, "post_id": click.post_id}


def for_dialog(ctx: Context, submission: DialogSubmission, payload: Payload) -> dict[str, Any]:
    return {"ctx": ctx, "event": submission, "submission": submission.submission,
            "payload": payload, "subject": payload.subject, "data": payload.data,
            "cancelled": submission.cancelled, "user_id": submission.user_id,
            "channel_id": submission.channel_id}


def for_slash(ctx: Context, command: SlashCommand) -> dict[str, Any]:
    return {"ctx": ctx, "event": command, "command": command, "text": command.text,
            "user_id": command.user_id, "channel_id": command.channel_id}


def for_webhook(ctx: Context, hook: Webhook) -> dict[str, Any]:
    return {"ctx": ctx, "event": hook, "hook": hook, "body": hook.body}
