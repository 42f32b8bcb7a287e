"""The message pipeline: every post, however it arrived, to its handler exactly once.

A post comes live from the stream (`on_frame`), from a backfill after a gap, through an outgoing
webhook's call, or from recovery after a restart. `ingest` decides cheaply, on the loop, whether
any handler wants it; the dispatcher runs the handler in its conversation's order; the run is
claimed in the store first (so it happens once, whichever way and however often the post came)
and marked done after.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import time
from typing import Any

from bridge.http1 import requests_wait_for

from . import arguments, logs
from .config import Settings
from .context import Context, ThreadAnswer
from .cursors import CursorTracker
from .dispatch import Dispatcher
from .events import BadPayload, Message, Post
from .locales import Locales
from .mattermost import MattermostAPI, MattermostError
from .metrics import Metrics
from .router import Match, RouteTable
from .runtime import Runtime
from .store import Store, StoreError

log = logging.getLogger("switchboard")


class Pipeline:
    #: Posts remembered as delivered by the stream (far more than a backfill overlap holds).
    SEEN_LIVE = 50_000

    def __init__(self, settings: Settings, *, api: MattermostAPI, store: Store,
                 routes: RouteTable, dispatcher: Dispatcher, cursors: CursorTracker,
                 metrics: Metrics, locales: Locales, runtime: Runtime) -> None:
        self.settings = settings
        self.api = api
        self.store = store
        self.routes = routes
        self.dispatcher = dispatcher
        self.cursors = cursors
        self.metrics = metrics
        self.locales = locales
        self.runtime = runtime
        #: "@botname", known once logged in: a command in a channel starts with it.
        self.mention = ""
        #: Outgoing webhook calls waiting for their post's handler, by post id.
        self.hook_answers: dict[str, ThreadAnswer] = {}
        self.seen_live: collections.OrderedDict[str, None] = collections.OrderedDict()
        # The metrics every post touches, bound once (a lookup by label costs more than the
        # count itself).
        self._received: dict[str, Any] = {}
        self._handled = metrics.handled.labels("message")
        self._failed = metrics.handler_errors.labels("message")
        self._latency = metrics.latency.labels("message")

    # --- ways a post arrives --------------------------------------------------------------------
    def on_frame(self, frame: dict[str, Any]) -> None:
        """Every websocket event; runs on the receive loop, so it stays cheap."""
        event = frame.get("event")
        counter = self._received.get(event) if isinstance(event, str) else None
        if counter is None:
            name = event if isinstance(event, str) else "?"
            counter = self._received[name] = self.metrics.events_received.labels(name)
        counter.inc()
        self.metrics.last_event.set(time.time())
        if event != "posted":
            if event == "user_updated":
                self.locales.user_changed(frame.get("data"))
            return
        data = frame.get("data")
        if self._own(data):
            return  # the bot's own post (every reply comes back this way): nothing to do
        try:
            msg = Message.from_frame(data)
        except BadPayload as exc:
            log.warning("ignored a malformed posted event: %s", exc)
            return
        self.ingest(msg, time.monotonic())

    def _own(self, data: Any) -> bool:
        """Whether a `posted` event carries the bot's own post, told without decoding it:
        Mattermost writes the post's `user_id` before its message and props, so the first
        `"user_id":"` of the post's JSON is the author's (a quote in a message or a prop is
        escaped, or comes later)."""
        post = data.get("post") if isinstance(data, dict) else None
        bot = self.api.bot_id
        if not isinstance(post, str) or not bot:
            return False
        at = post.find('"user_id":"')
        return at >= 0 and post.startswith(bot + '"', at + 11)

    def ingest(self, msg: Message, received: float) -> bool:
        """Hand a message to its handler (once, whichever way it came); False when none
        wants it."""
        post = msg.post
        self.cursors.observe(post.channel_id, post.create_at)
        if msg.source == "stream":
            # Backfill reads posts as they are now: one seen live and edited since must not be
            # taken again for its new text (edits are not requests).
            self.seen_live[post.id] = None
            if len(self.seen_live) > self.SEEN_LIVE:
                self.seen_live.popitem(last=False)
        if post.user_id == self.api.bot_id or post.type or post.delete_at:
            return False
        d = self.settings.dispatch
        if (d.ignore_bots and post.from_bot) or (d.ignore_webhooks and post.from_webhook):
            return False
        late = msg.source == "backfill" and post.create_at < self._oldest_ms()
        if late and post.create_at < self._offer_floor_ms():
            return False
        match = self.routes.match_message(msg, self.mention)
        if late:
            # Too old to answer: offered to its author, where its route knows how.
            if match is None or match.route.options.get("late") is None:
                return False
            msg = dataclasses.replace(msg, late=True)
        elif match is None:
            if post.root_id and msg.source != "webhook" and self.dispatcher.busy(post.root_id):
                # The thread's first message is still being handled, and its handler may be
                # what makes replies matter (a request linking its thread to a ticket): look
                # again when this reply's turn comes in the thread's order.
                self._defer(msg, received)
            return False
        self.cursors.hold(post.channel_id, post.id, post.create_at)
        self.metrics.in_flight.inc()
        answer = self.hook_answers.get(post.id) if msg.source == "webhook" else None
        if answer is None:
            self.dispatcher.submit(post.thread_id, lambda: self.handle(msg, match, received))
        else:
            self.dispatcher.submit(post.thread_id, lambda: answer.track(
                self.handle(msg, match, received)))
        return True

    def _oldest_ms(self) -> float:
        """Posts older than this are never answered (`backfill.max_age`)."""
        return time.time() * 1000 - self.settings.backfill.max_age * 1000

    def _offer_floor_ms(self) -> float:
        """Posts older than this are not even offered (`backfill.offer_max_age`)."""
        return time.time() * 1000 - self.settings.backfill.offer_max_age * 1000

    def _defer(self, msg: Message, received: float) -> None:
        post = msg.post
        self.cursors.hold(post.channel_id, post.id, post.create_at)
        self.metrics.in_flight.inc()

        async def again() -> None:
            match = self.routes.match_message(msg, self.mention)
            if match is not None:
                await self.handle(msg, match, received)
            else:
                self.cursors.release(post.channel_id, post.id)
                self.metrics.in_flight.dec()
        self.dispatcher.submit(post.thread_id, again)

    # --- one handler run ------------------------------------------------------------------------
    async def handle(self, msg: Message, match: Match, received: float) -> None:
        post = msg.post
        # Jobs run one after another in their conversation's task: each names its own post,
        # and the tasks its handler spawns inherit it.
        logs.set_subject(post=post.id, alert="")
        # The claim of a post read from Mattermost is not waited onto the disk: the handler's
        # requests wait for it instead (a durable write it makes carries it along for free).
        # Lost to a power cut, with everything written after it, the post is read again. An
        # outgoing webhook's call is answered in its response, which nothing can hold back.
        lazy = msg.source != "webhook"
        try:
            claimed = True if msg.attempt > 1 else await self._claim(post, durable=not lazy)
        except StoreError:
            # Never claimed (the bot stops while the store is away): its cursor stays held,
            # so the cursors saved at the stop leave it to be read again.
            self.metrics.in_flight.dec()
            raise
        except BaseException:
            self.cursors.release(post.channel_id, post.id)
            self.metrics.in_flight.dec()
            raise
        self.cursors.release(post.channel_id, post.id)
        self.metrics.in_flight.dec()
        if not claimed:
            self.metrics.duplicates.inc()
            return
        if lazy and msg.attempt == 1:
            with requests_wait_for(self.store.barrier()):
                await self._run(msg, match, received)
        else:
            await self._run(msg, match, received)

    #: Seconds between tries of a claim while the store is out of reach.
    CLAIM_RETRY = 5.0

    async def _claim(self, post: Post, *, durable: bool) -> bool:
        """Claim the post, waiting for a store out of reach (a database down longer than its
        own patience) as long as the bot runs: the post's cursor stays held meanwhile, so a
        stop or a crash reads it again."""
        while True:
            try:
                return await self.store.claims.claim(post.id, post.channel_id, durable=durable)
            except StoreError as exc:
                if self.runtime.stopping:
                    raise
                log.warning("cannot claim post %s yet (%s); trying again in %.0f s", post.id,
                            exc, self.CLAIM_RETRY)
                await self.runtime.sleep(self.CLAIM_RETRY)

    async def _run(self, msg: Message, match: Match, received: float) -> None:
        post = msg.post
        ctx = Context(self.runtime, key=post.id, user_id=post.user_id,
                      channel_id=post.channel_id, root_id=post.thread_id, post_id=post.id,
                      attempt=msg.attempt, message=msg,
                      answer=self.hook_answers.get(post.id) if msg.source == "webhook" else None)
        late = match.route.options.get("late") if msg.late else None
        name = (late or match.route.handler).__name__
        try:
            await self.locales.speak_to(post.user_id)
            if late is not None:
                await late(ctx, msg, match.captured)
            else:
                await match.route.call(arguments.for_message(ctx, msg, match.captured))
            self._handled.inc()
        except Exception:
            self._failed.inc()
            log.exception("handler %s failed on post %s", name, post.id)
            try:
                await ctx.reply(self.runtime.apology())
            except Exception as exc:
                log.error("could not send the apology for post %s: %s", post.id, exc)
        finally:
            self._latency.observe(time.monotonic() - received)
        await self.store.claims.complete(post.id)

    # --- posts read over REST -------------------------------------------------------------------
    async def rest_message(self, post: Post, channel: dict[str, Any], source: str,
                           attempt: int = 1) -> Message:
        """A Message for a post read over REST, with what the stream's event would carry."""
        sender = ""
        if post.user_id != self.api.bot_id:
            with contextlib.suppress(MattermostError):
                sender = "@" + str((await self.api.user(post.user_id)).get("username"))
        ctype = channel.get("type", "")
        return Message(post=post, channel_type=ctype if ctype in ("O", "P", "D", "G") else "",
                       channel_name=str(channel.get("name", "")), sender_name=sender,
                       team_id=str(channel.get("team_id", "")), source=source, attempt=attempt)

    async def recover(self) -> None:
        """Re-run handlers that a run now gone (a previous run, a replica that died) claimed
        but never finished. The leader's round, at each beat: what cannot be read from
        Mattermost now is tried again at the next."""
        for claim in await self.store.claims.pending():
            try:
                raw = await self.api.get_post(claim.post_id)
                post = Post.from_dict(raw)
                channel = await self.api.channel(post.channel_id)
            except MattermostError as exc:
                if exc.retryable:  # Mattermost down or busy: the next round tries again
                    log.warning("cannot read post %s to recover it yet: %s", claim.post_id, exc)
                    return
                log.warning("cannot recover post %s (%s); dropping it", claim.post_id, exc)
                await self.store.claims.complete(claim.post_id)
                continue
            except BadPayload as exc:
                log.warning("cannot recover post %s (%s); dropping it", claim.post_id, exc)
                await self.store.claims.complete(claim.post_id)
                continue
            late = post.create_at < self._oldest_ms()
            if post.create_at < (self._offer_floor_ms() if late else self._oldest_ms()):
                await self.store.claims.complete(claim.post_id)
                continue
            attempt = await self.store.claims.reclaim(claim.post_id)
            if not attempt:
                continue
            msg = await self.rest_message(post, channel, "recovery", attempt)
            msg = dataclasses.replace(msg, late=late)
            match = self.routes.match_message(msg, self.mention)
            if match is None or (late and match.route.options.get("late") is None):
                await self.store.claims.complete(claim.post_id)
                continue
            log.info("resuming the handler for post %s (attempt %d)", post.id, attempt)
            self.metrics.in_flight.inc()
            self._resume(msg, match)

    def _resume(self, msg: Message, match: Match) -> None:
        self.dispatcher.submit(msg.post.thread_id,
                               lambda: self.handle(msg, match, time.monotonic()))
