"""Outgoing webhooks: Mattermost's call for a post with a trigger word.

The post goes the way a streamed one goes (same routes, same once-only claim, so a post that also
arrives on the stream is handled once). What the handler replies in the thread while the call is
open is the answer, which Mattermost posts as a reply in the thread; later replies go over REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from . import logs
from .config import Settings
from .context import ThreadAnswer
from .events import BadPayload, Message, OutgoingWebhook, Post
from .listener import HTTPError, token_matches
from .mattermost import MattermostAPI, MattermostError
from .pipeline import Pipeline

log = logging.getLogger("switchboard")


class OutgoingWebhooks:
    def __init__(self, settings: Settings, *, api: MattermostAPI, pipeline: Pipeline) -> None:
        self.settings = settings
        self.api = api
        self.pipeline = pipeline

    async def on_outgoing(self, hook: OutgoingWebhook) -> dict[str, Any]:
        listener = self.settings.listener
        if not token_matches(hook.token, [t.get_secret_value()
                                          for t in listener.outgoing_tokens]):
            raise HTTPError(401, "missing or wrong outgoing webhook token")
        logs.set_subject(post=hook.post_id)
        answers = self.pipeline.hook_answers
        if hook.user_id == self.api.bot_id or hook.post_id in answers:
            # The bot's own posts fire outgoing webhooks too: answering them would loop. A
            # second call for a post already being answered adds nothing.
            return {}
        received = time.monotonic()
        # Mattermost waits for the answer only so long: reading the post counts against it.
        deadline = received + listener.action_timeout
        answer = answers[hook.post_id] = ThreadAnswer()
        try:
            try:
                msg = await asyncio.wait_for(self._message(hook), listener.action_timeout / 2)
            except TimeoutError:
                log.info("reading post %s took too long; using the call's fields", hook.post_id)
                msg = hook.message()
            if self.pipeline.ingest(msg, received):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answer.finished.wait(),
                                           max(0.0, deadline - time.monotonic()))
        finally:
            del answers[hook.post_id]
            text = answer.close()
        return {"text": text, "response_type": "comment"} if text else {}

    async def _message(self, hook: OutgoingWebhook) -> Message:
        """The Message for a webhook's post, read over REST for what the call does not carry
        (its thread, props, files); from the call alone when the post cannot be read."""
        try:
            post = Post.from_dict(await self.api.get_post(hook.post_id))
            channel = await self.api.channel(post.channel_id)
        except (MattermostError, BadPayload) as exc:
            log.info("cannot read post %s of an outgoing webhook (%s); using the call's fields",
                     hook.post_id, exc)
            return hook.message()
        # A token lets its holder name any post id: the post must be the one the call is
        # about, in the channel it came from, or a DM could be answered to a stranger.
        if (post.channel_id != hook.channel_id or post.user_id != hook.user_id
                or channel.get("type") != "O"):
            raise HTTPError(403, "the call does not match its post")  # logged by the listener
        return await self.pipeline.rest_message(post, channel, "webhook")
