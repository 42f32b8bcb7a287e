"""What a handler gets: the event, and ways to answer it.

`reply` answers in the message's thread, `dm` in a direct message, `ephemeral` only to the user,
`update_post` edits an earlier post, `button` builds a signed button, `spawn` runs slow work after
the handler has answered (a click must be answered within seconds).

Replies carry an idempotency key derived from the event and their order in the handler, so a
handler re-run after a crash, or a post creation retried after a timeout, never posts twice.

A message that came through an outgoing webhook is answered in the webhook's response while the
call is open (`ThreadAnswer`): Mattermost posts that text as a thread reply, no REST call needed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable
from typing import Any, Protocol

from .events import Message
from .mattermost import MattermostAPI, MattermostError
from .signing import Signer

log = logging.getLogger("switchboard.context")

#: Mattermost refuses messages longer than this (in runes).
MAX_MESSAGE = 16383


class Services(Protocol):
    """The part of the bot a handler's context uses (the `Runtime` in the running bot)."""

    api: MattermostAPI
    signer: Signer
    public_url: str
    ephemeral_permission: bool

    def spawn(self, coro: Awaitable[None], name: str = ...) -> Any: ...
    def help_text(self) -> str: ...


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """Keep a message within Mattermost's limit, saying so when it was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 20].rstrip() + "\n… (truncated)"


class ThreadAnswer:
    """The answer to an outgoing webhook's call: thread replies a handler makes while the call is
    open are collected here instead of being posted; once closed, replies go over REST again."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.open = True
        #: Set when the handler run for the message has ended (or was skipped as a duplicate).
        self.finished = asyncio.Event()

    def take(self, text: str) -> bool:
        """Keep a reply for the answer; False when the call has been answered already."""
        if self.open:
            self.texts.append(text)
        return self.open

    def close(self) -> str:
        """End collecting; the text to answer with ("" for nothing)."""
        self.open = False
        return clip("\n\n".join(t for t in self.texts if t))

    async def track(self, work: Awaitable[None]) -> None:
        """Run the handler's work and mark the end of it, however it ends."""
        try:
            await work
        finally:
            self.finished.set()


class Context:
    """One handler run's view of the bot."""

    def __init__(self, services: Services, *, key: str, user_id: str, channel_id: str,
                 root_id: str | None = "", post_id: str = "", attempt: int = 1,
                 message: Message | None = None, answer: ThreadAnswer | None = None) -> None:
        self.services = services
        self.api = services.api
        self.key = key
        self.user_id = user_id
        self.channel_id = channel_id
        self.root_id = root_id
        self.post_id = post_id
        self.attempt = attempt
        self.message = message
        self.answer = answer
        self._n = 0

    def _next_key(self) -> str:
        self._n += 1
        return f"{self.key}:{self._n}"

    async def post(self, channel_id: str, text: str, *, root_id: str = "",
                   attachments: list[dict[str, Any]] | None = None,
                   props: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create a post (exactly once for this handler run and position)."""
        props = dict(props or {})
        if attachments is not None:
            props["attachments"] = attachments
        return await self.api.create_post(channel_id, clip(text), root_id=root_id, props=props,
                                          key=self._next_key(), check_first=self.attempt > 1)

    async def reply(self, text: str, *, attachments: list[dict[str, Any]] | None = None,
                    props: dict[str, Any] | None = None) -> dict[str, Any]:
        """Answer in the thread of the message (a DM reply stays in the DM)."""
        if (self.answer is not None and attachments is None and props is None
                and self.answer.take(text)):
            # Mattermost posts it as the webhook's comment in the thread; no post id is known.
            # The reply still takes its position, so later replies keep their keys whichever
            # way this one went (a re-run after a crash finds them again).
            self._next_key()
            return {"id": "", "channel_id": self.channel_id, "root_id": self.root_id or "",
                    "message": text}
        if self.root_id is None:
            # A click names only its post, which may itself be a reply.
            clicked = await self.api.get_post(self.post_id)
            self.root_id = str(clicked.get("root_id") or clicked.get("id") or "")
        return await self.post(self.channel_id, text, root_id=self.root_id,
                               attachments=attachments, props=props)

    async def dm(self, user_id: str, text: str, *,
                 attachments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Send a direct message to a user."""
        channel_id = await self.api.direct_channel(user_id)
        return await self.post(channel_id, text, attachments=attachments)

    async def ephemeral(self, text: str) -> None:
        """Show a message only to the user. Needs a permission most bots lack; without it the
        message goes to the user in a DM instead."""
        if self.services.ephemeral_permission:
            try:
                await self.api.create_ephemeral(self.user_id, self.channel_id, clip(text),
                                                self.root_id or "")
                return
            except MattermostError as exc:
                if exc.status != 403:
                    raise
                log.warning("ephemeral posts are not permitted; answering in a DM")
        await self.dm(self.user_id, text)

    async def update_post(self, post_id: str, text: str | None = None, *,
                          attachments: list[dict[str, Any]] | None = None,
                          props: dict[str, Any] | None = None) -> dict[str, Any]:
        """Edit an earlier post; props not given are kept."""
        if attachments is not None:
            props = dict(props or {}) | {"attachments": attachments}
        return await self.api.update_post(post_id, None if text is None else clip(text), props)

    async def react(self, emoji: str, post_id: str = "") -> None:
        await self.api.add_reaction(post_id or self.post_id, emoji)

    def spawn(self, coro: Awaitable[None], name: str = "follow-up") -> None:
        """Run slow work after the handler has answered."""
        self.services.spawn(coro, name)

    def button(self, name: str, action: str, subject: str = "",
               data: dict[str, Any] | None = None, *, style: str = "default",
               ttl: float | None = None) -> dict[str, Any]:
        """A button whose click reaches the `action` handler, signed against forgery."""
        context = self.services.signer.pack(action, subject, data, ttl)
        # Mattermost finds the clicked action by id, so ids must differ within a post even for
        # buttons that differ only in their data: the signature's start tells them apart.
        tail = re.sub(r"[^A-Za-z0-9]", "", context["sig"])[:8]
        return {
            "id": (re.sub(r"[^A-Za-z0-9]", "", action + subject)[:40] or "action") + tail,
            "type": "button",
            "name": name,
            "style": style,
            "integration": {
                "url": f"{self.services.public_url}/actions/{action}",
                "context": context,
            },
        }

    async def open_dialog(self, trigger_id: str, callback_id: str, dialog: dict[str, Any], *,
                          subject: str = "", data: dict[str, Any] | None = None,
                          ttl: float = 3600) -> None:
        """Open an interactive dialog; its submission reaches the `callback_id` handler.

        The dialog's `state` is signed: a submission not opened by this bot is refused."""
        body = dict(dialog, callback_id=callback_id, state=json.dumps(
            self.services.signer.pack(callback_id, subject, data, ttl), separators=(",", ":")))
        await self.api.open_dialog(trigger_id, f"{self.services.public_url}/dialogs", body)
