"""Catching up: what was posted while the stream was down (or the bot stopped) is read over REST
and handed to the pipeline, which handles each post once.

Runs after every (re)connect and at start. Each channel's cursor stays frozen until its gap has
been read (`CursorTracker`), so a live post arriving meanwhile never moves a cursor past posts not
yet read. A new installation answers nothing from before it started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .config import Settings
from .cursors import CursorTracker
from .events import BadPayload, Post
from .mattermost import MattermostAPI, MattermostError
from .metrics import Metrics
from .pipeline import Pipeline
from .runtime import Runtime
from .store import Store

log = logging.getLogger("switchboard")


class Backfill:
    def __init__(self, settings: Settings, *, api: MattermostAPI, store: Store,
                 cursors: CursorTracker, pipeline: Pipeline, metrics: Metrics,
                 runtime: Runtime) -> None:
        self.settings = settings
        self.api = api
        self.store = store
        self.cursors = cursors
        self.pipeline = pipeline
        self.metrics = metrics
        self.runtime = runtime
        #: Whether this state store has never run a backfill (a new installation).
        self.fresh = False
        self.started_ms = int(time.time() * 1000)
        #: When the listener began to accept calls (webhook-only mode reads up to then).
        self.listening_ms = self.started_ms
        #: A channel of the bot's, for the stream's liveness probe.
        self.probe_channel = ""

    async def after_connect(self, first: bool) -> None:
        """Backfill after a (re)connect; channels that fail are tried again until they succeed
        or the stream drops (the next connection starts over)."""
        delay = 1.0
        failed: set[str] | None = None
        while not self.runtime.stopping:
            try:
                failed = await self.run(failed)
            except MattermostError as exc:
                log.error("backfill failed (%s); trying again in %.0f s", exc, delay)
            except Exception:
                log.exception("backfill failed; trying again in %.0f s", delay)
            else:
                if not failed:
                    return
                log.warning("backfill of %d channels failed; trying again in %.0f s",
                            len(failed), delay)
            await self.runtime.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def run(self, only: set[str] | None = None) -> set[str]:
        """Handle what was posted while the stream was down (or the bot stopped).

        Returns the channels whose backfill failed (their cursors stay frozen)."""
        channels = await self.api.my_channels()
        webhook_only = not self.settings.stream.enabled
        if webhook_only:
            # Only what an outgoing webhook would have brought: posts in public channels.
            channels = [c for c in channels if c.get("type") == "O"]
        if only is not None:
            channels = [c for c in channels if c["id"] in only]
        else:
            self.cursors.gap({c["id"] for c in channels})
        if channels and not self.probe_channel:
            self.probe_channel = str(channels[0]["id"])
        cursors = await self.store.cursors.load()
        now_ms = int(time.time() * 1000)
        # Requests too old to answer are still read if they may be offered to their authors.
        floor = now_ms - int(max(self.settings.backfill.max_age,
                                 self.settings.backfill.offer_max_age) * 1000)
        overlap = self.settings.backfill.overlap_ms
        if self.fresh:
            # A new installation answers nothing from before it started.
            start = {c["id"]: self.started_ms for c in channels if c["id"] not in cursors}
            await self.store.cursors.save(start)
            cursors.update(start)
            await self.store.kv.put("initialized", str(now_ms))
            self.fresh = False
        last_seen_raw = await self.store.kv.get("last_seen")
        last_seen = int(last_seen_raw) if last_seen_raw else floor
        alive_raw = await self.store.kv.get("alive_at") if webhook_only else None
        if alive_raw:
            floor = max(floor, int(alive_raw) - overlap)
        limit = asyncio.Semaphore(self.settings.backfill.concurrency)
        found = 0

        async def one(channel: dict[str, Any]) -> None:
            nonlocal found
            cid = channel["id"]
            since = max(cursors.get(cid, last_seen) - overlap, floor)
            async with limit:
                posts = await self.api.posts_since(cid, since)
            for raw in posts:
                created = int(raw.get("create_at") or 0)
                if created <= since or raw.get("id") in self.pipeline.seen_live:
                    continue  # an old post that was edited, or one the stream delivered
                if webhook_only and created > self.listening_ms:
                    continue  # since the listener is up, webhooks bring what is for the bot
                try:
                    post = Post.from_dict(raw)
                except BadPayload:
                    continue
                found += 1
                self.pipeline.ingest(await self.pipeline.rest_message(post, channel, "backfill"),
                                     time.monotonic())
            self.cursors.filled(cid)

        results = await asyncio.gather(*(one(c) for c in channels), return_exceptions=True)
        failed = set()
        for c, r in zip(channels, results, strict=True):
            if isinstance(r, Exception):
                failed.add(c["id"])
                log.warning("backfill of channel %s failed: %s", c.get("id"), r)
        self.metrics.messages_backfilled.inc(found)
        log.info("backfill: %d channels, %d posts re-read", len(channels), found)
        return failed

    async def probe(self) -> None:
        """Provoke an event addressed to the bot alone (`channel_viewed`) to test the stream."""
        if not self.probe_channel:
            channels = await self.api.my_channels()
            if not channels:
                raise MattermostError(0, "", "the bot is in no channel to probe with", "probe")
            self.probe_channel = str(channels[0]["id"])
        await self.api.view_channel(self.probe_channel)
