"""The Bot: builds the clients, the route table, the stream and the listener; owns start and stop.

The path of a message: the stream hands a frame to `on_frame` → `ingest` decides (cheaply, on the
loop) whether any handler wants it → the dispatcher runs the handler in its conversation's order →
the handler's run is claimed in the store first (so it happens once, whichever way the message
arrived: live, by backfill after a gap, through an outgoing webhook's call to `on_outgoing`, or
twice) and marked done after.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from . import __version__, i18n, logs
from .commands import stored_tokens
from .config import Config
from .context import Context, ThreadAnswer
from .cursors import CursorTracker
from .dispatch import Dispatcher
from .events import (
    BadPayload,
    Click,
    DialogSubmission,
    Message,
    OutgoingWebhook,
    Post,
    SlashCommand,
    Webhook,
)
from .listener import HTTPError, Listener, build, token_matches
from .mattermost import MattermostAPI, MattermostAuthError, MattermostError
from .metrics import Metrics
from .outbox import Outbox
from .router import Match, Router, RouteTable
from .signing import BadSignature, Signer
from .store import SQLiteStore, Store
from .stream import EventStream, FatalStreamError

log = logging.getLogger("switchboard")

#: Exit status when Mattermost refuses the bot's credentials.
EXIT_AUTH = 3


class BotError(Exception):
    """The bot cannot start or go on; the message says what to do."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Feature(Protocol):
    """A feature with state: its router, and start/stop hooks around the bot's run."""

    router: Router

    async def start(self, bot: Bot) -> None: ...
    async def stop(self) -> None: ...


class Bot:
    #: Tokens of commands made by `register-commands` are read again (when a slash command's
    #: token matches none known) at most this often, in seconds.
    slash_token_reread = 60.0
    #: Seconds a reply waits for its reader's locale before speaking the default language.
    LOCALE_WAIT = 2.0
    #: Posts remembered as delivered by the stream (far more than a backfill overlap holds).
    SEEN_LIVE = 50_000
    #: Webhook-only mode: failed looks at Mattermost in a row before /healthz says unhealthy,
    #: and seconds between looks while they fail.
    UNREACHABLE_AFTER = 3
    RECHECK_FAILING = 10.0

    def __init__(self, config: Config, features: Iterable[Router | Feature], *,
                 url: str | None = None, token: str | None = None, secret: str | None = None,
                 public_url: str | None = None, store: Store | None = None) -> None:
        s = config.settings
        self.config = config
        self.settings = s
        self.metrics = Metrics()
        self.features = [f for f in features if not isinstance(f, Router)]
        root = Router("switchboard").include(
            *(f if isinstance(f, Router) else f.router for f in features))
        self.routes = RouteTable(root)
        mm_url = url if url is not None else s.mattermost.url
        mm_token = token if token is not None else s.mattermost.token.get_secret_value()
        verify: bool | str = s.mattermost.ca_bundle or s.mattermost.verify_tls
        self.api = MattermostAPI(mm_url, mm_token, timeout=s.mattermost.request_timeout,
                                 retries=s.mattermost.retries,
                                 max_retry_after=s.mattermost.max_retry_after,
                                 threads=s.mattermost.rest_threads, verify=verify)
        self.signer = Signer(secret or s.security.secret.get_secret_value(),
                             s.security.action_ttl)
        self.public_url = (public_url or s.listener.public_url).rstrip("/")
        self.ephemeral_permission = s.mattermost.ephemeral_permission
        self.store: Store = store or SQLiteStore(s.state.path)
        self.dispatcher = Dispatcher(s.dispatch.concurrency)
        self.outbox = Outbox(self.store, concurrency=s.helpdesk.concurrency,
                             retry_initial=s.helpdesk.retry_initial,
                             retry_max=s.helpdesk.retry_max)
        self.started_at = time.time()
        self.cursors = CursorTracker()
        self.listener = Listener(build(self, s.listener.max_body_bytes),
                                 s.listener.host, s.listener.port)
        self.stream = EventStream(
            self.api.ws_url, mm_token, s.stream,
            on_event=self.on_frame, on_connected=self._on_connected,
            check_token=self._token_valid, probe=self._probe,
            on_reconnect=lambda reason: self.metrics.reconnects.labels(reason).inc(),
            on_state=self._on_stream_state)
        self._stopping = asyncio.Event()
        self._fresh = False
        self._started_ms = int(time.time() * 1000)
        #: When the listener began to accept calls (webhook-only mode reads up to then).
        self._listening_ms = self._started_ms
        self._mention = ""
        self._probe_channel = ""
        self._outbox_counts: dict[str, int] = {}
        #: Outgoing webhook calls waiting for their post's handler, by post id.
        self._hook_answers: dict[str, ThreadAnswer] = {}
        self._stored_slash: list[tuple[str, str]] = []
        self._slash_read_at = float("-inf")
        self._seen_live: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: Webhook-only mode: whether the last look at the token succeeded.
        self._rest_ok = True
        #: user id → (language, when looked up); see `locale_of`.
        self._locales: dict[str, tuple[str, float]] = {}
        i18n.set_default(s.language.default_locale)
        #: Where /alerts/<source> requests go (set by the alerts feature).
        self.alert_sink: Callable[[str, Any, dict[str, str]],
                                  Awaitable[dict[str, Any]]] | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Begin a graceful shutdown (idempotent)."""
        if not self._stopping.is_set():
            log.info("stopping")
            self._stopping.set()
            self.stream.stop()

    async def run(self) -> None:
        """Run until stopped; raises BotError when the bot cannot work."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            await self.start()
            # Webhook-only mode: no websocket (so no probes), only the listener, a backfill of
            # what was posted while the bot was down, and a periodic look at the token.
            stream = asyncio.create_task(
                self.stream.run() if self.settings.stream.enabled else self._webhook_only(),
                name="stream")
            stopper = asyncio.create_task(self._stopping.wait(), name="stop")
            done, _ = await asyncio.wait({stream, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stream in done and stream.exception() is not None:
                exc = stream.exception()
                stopper.cancel()
                if isinstance(exc, FatalStreamError):
                    raise BotError(str(exc), EXIT_AUTH)
                raise exc  # type: ignore[misc]
            self.stream.stop()
            await asyncio.gather(stream, return_exceptions=True)
            stopper.cancel()
        finally:
            await self.shutdown()

    async def start(self) -> None:
        await self.store.open()
        self._fresh = await self.store.get("initialized") is None
        await self._read_slash_tokens()
        try:
            me = await self.api.login()
        except MattermostAuthError:
            raise BotError("Mattermost rejected the bot's token (401); check MM_BOT_TOKEN",
                           EXIT_AUTH) from None
        except MattermostError as exc:
            raise BotError(f"cannot reach Mattermost at {self.api.base_url}: {exc}") from None
        self._mention = "@" + str(me.get("username", ""))
        try:
            port = await self.listener.start()
            self._listening_ms = int(time.time() * 1000)
        except OSError as exc:
            raise BotError(f"cannot listen on {self.listener.host}:{self.listener.port} "
                           f"({exc.strerror or exc}); set SWITCHBOARD_LISTEN to a free "
                           "address") from None
        if not self.public_url:
            self.public_url = f"http://{self.listener.host}:{port}"
        log.info("Switchboard %s started as %s; listener on %s:%d", __version__, self._mention,
                 self.listener.host, port)
        for feature in self.features:
            await feature.start(self)
        await self.recover()
        self.dispatcher.spawn(self._housekeeping(), "housekeeping")
        self.dispatcher.spawn(self.outbox.run(self._stopping), "outbox")

    async def shutdown(self) -> None:
        grace = self.settings.dispatch.shutdown_grace
        self._stopping.set()
        # No new clicks or webhooks while the rest winds down.
        await self.listener.stop()
        if not await self.dispatcher.join(grace):
            log.warning("handlers still running after %.0f s; they will resume after restart",
                        grace)
        await self.dispatcher.cancel()
        for feature in self.features:
            try:
                await feature.stop()
            except Exception:
                log.exception("stopping a feature failed")
        try:
            await self._flush_cursors()
        except Exception:
            log.exception("could not save cursors")
        await self.store.close()
        self.api.close()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the bot stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _webhook_only(self) -> None:
        """The stream's stand-in when there is none: read what was posted while the bot was
        down (outgoing webhooks are not sent again), then check the token now and then, so
        that /healthz tells when replies cannot be posted."""
        catch_up = self.spawn(self._on_connected(True), "webhook-only-backfill")
        failures = 0
        try:
            while not self.stopping:
                try:
                    await self.api.login()
                    if not self._rest_ok:
                        log.info("Mattermost answers the bot's token again")
                    failures, self._rest_ok = 0, True
                except MattermostAuthError:
                    if self._rest_ok:
                        log.error("Mattermost refuses the bot's token: replies cannot be posted")
                    self._rest_ok = False
                except MattermostError as exc:
                    # A blip is not an outage: unhealthy after a few failed looks in a row.
                    failures += 1
                    if failures == self.UNREACHABLE_AFTER:
                        log.warning("Mattermost is not reachable: %s", exc)
                        self._rest_ok = False
                await self.sleep(self.settings.stream.idle_probe_after if self._rest_ok
                                 and not failures else self.RECHECK_FAILING)
        finally:
            catch_up.cancel()

    async def _housekeeping(self) -> None:
        last_prune = 0.0
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), 1.0)
            except TimeoutError:
                pass
            try:
                await self._flush_cursors()
                if not self.settings.stream.enabled:
                    # Without a stream, cursors move only with webhook posts: this marks how
                    # long the bot was up, so a restart reads only what came while it was down.
                    await self.store.put("alive_at", str(int(time.time() * 1000)))
                self._outbox_counts = await self.store.outbox_counts()
                if time.time() - last_prune > 3600:
                    last_prune = time.time()
                    await self.store.prune(time.time() - self.settings.state.retention)
            except Exception:
                log.exception("housekeeping failed")

    async def _flush_cursors(self) -> None:
        dirty = self.cursors.take_dirty()
        if dirty:
            await self.store.save_cursors(dirty)
            await self.store.put("last_seen", str(self.cursors.newest))

    # --- the stream -----------------------------------------------------------------------------
    def on_frame(self, frame: dict[str, Any]) -> None:
        """Every websocket event; runs on the receive loop, so it stays cheap."""
        event = frame.get("event")
        self.metrics.events_received.labels(event if isinstance(event, str) else "?").inc()
        self.metrics.last_event.set(time.time())
        if event != "posted":
            if event == "user_updated":
                self._user_changed(frame.get("data"))
            return
        try:
            msg = Message.from_frame(frame.get("data"))
        except BadPayload as exc:
            log.warning("ignored a malformed posted event: %s", exc)
            return
        self.ingest(msg, time.monotonic())

    def _user_changed(self, data: Any) -> None:
        user = data.get("user") if isinstance(data, dict) else None
        if isinstance(user, dict) and isinstance(user.get("id"), str):
            self._locales.pop(user["id"], None)
            self.api.forget_user(user["id"])

    def _fresh_locale(self, user_id: str) -> str | None:
        known = self._locales.get(user_id)
        if known is not None and (time.monotonic() - known[1]
                                  < self.settings.language.locale_cache_seconds):
            return known[0]
        return None

    async def locale_of(self, user_id: str) -> str:
        """The language to answer this user in: their Mattermost locale when we speak it,
        otherwise the configured default. Remembered for `language.locale_cache_seconds`."""
        if not user_id:
            return i18n.default()
        fresh = self._fresh_locale(user_id)
        if fresh is not None:
            return fresh
        now = time.monotonic()
        known = self._locales.get(user_id)
        if known is not None:
            self.api.forget_user(user_id)
        try:
            user = await self.api.user(user_id)
            lang = i18n.choose(str(user.get("locale") or ""))
        except MattermostError as exc:
            log.info("cannot read the locale of user %s: %s", user_id, exc)
            lang = known[0] if known is not None else i18n.default()
        self._locales[user_id] = (lang, now)
        return lang

    async def speak_to(self, user_id: str) -> None:
        """Answer in this user's language for the rest of the current task (the default
        language when their locale cannot be read quickly: answers have deadlines)."""
        fresh = self._fresh_locale(user_id)
        if fresh is not None:
            i18n.activate(fresh)  # the usual case: no task for a deadline
            return
        try:
            lang = await asyncio.wait_for(self.locale_of(user_id), self.LOCALE_WAIT)
        except TimeoutError:
            log.info("the locale of user %s took too long to read", user_id)
            lang = i18n.default()
        i18n.activate(lang)

    def ingest(self, msg: Message, received: float) -> bool:
        """Hand a message to its handler (once, whichever way it came); False when none
        wants it."""
        post = msg.post
        self.cursors.observe(post.channel_id, post.create_at)
        if msg.source == "stream":
            # Backfill reads posts as they are now: one seen live and edited since must not be
            # taken again for its new text (edits are not requests).
            self._seen_live[post.id] = None
            if len(self._seen_live) > self.SEEN_LIVE:
                self._seen_live.popitem(last=False)
        if post.user_id == self.api.bot_id or post.type or post.delete_at:
            return False
        d = self.settings.dispatch
        if (d.ignore_bots and post.from_bot) or (d.ignore_webhooks and post.from_webhook):
            return False
        if msg.source == "backfill":
            cutoff = time.time() * 1000 - self.settings.backfill.max_age * 1000
            if post.create_at < cutoff:
                return False
        match = self.routes.match_message(msg, self._mention)
        if match is None:
            if post.root_id and msg.source != "webhook" and self.dispatcher.busy(post.root_id):
                # The thread's first message is still being handled, and its handler may be
                # what makes replies matter (a request linking its thread to a ticket): look
                # again when this reply's turn comes in the thread's order.
                self._defer(msg, received)
            return False
        self.cursors.hold(post.channel_id, post.id, post.create_at)
        self.metrics.in_flight.inc()
        answer = self._hook_answers.get(post.id) if msg.source == "webhook" else None
        if answer is None:
            self.dispatcher.submit(post.thread_id,
                                   lambda: self._handle_message(msg, match, received))
        else:
            self.dispatcher.submit(post.thread_id, lambda: answer.track(
                self._handle_message(msg, match, received)))
        return True

    def _defer(self, msg: Message, received: float) -> None:
        post = msg.post
        self.cursors.hold(post.channel_id, post.id, post.create_at)
        self.metrics.in_flight.inc()

        async def again() -> None:
            match = self.routes.match_message(msg, self._mention)
            if match is not None:
                await self._handle_message(msg, match, received)
            else:
                self.cursors.release(post.channel_id, post.id)
                self.metrics.in_flight.dec()
        self.dispatcher.submit(post.thread_id, again)

    async def _handle_message(self, msg: Message, match: Match, received: float) -> None:
        post = msg.post
        # Jobs run one after another in their conversation's task: each names its own post,
        # and the tasks its handler spawns inherit it.
        logs.set_subject(post=post.id, alert="")
        try:
            claimed = True if msg.attempt > 1 else await self.store.claim(post.id,
                                                                          post.channel_id)
        finally:
            self.cursors.release(post.channel_id, post.id)
            self.metrics.in_flight.dec()
        if not claimed:
            self.metrics.duplicates.inc()
            return
        ctx = Context(self, key=post.id, user_id=post.user_id, channel_id=post.channel_id,
                      root_id=post.thread_id, post_id=post.id, attempt=msg.attempt, message=msg,
                      answer=self._hook_answers.get(post.id) if msg.source == "webhook" else None)
        available = {"ctx": ctx, "event": msg, "post": post, "text": post.message,
                     "user_id": post.user_id, "channel_id": post.channel_id} | match.captured
        name = match.route.handler.__name__
        try:
            await self.speak_to(post.user_id)
            await match.route.call(available)
            self.metrics.handled.labels("message").inc()
        except Exception:
            self.metrics.handler_errors.labels("message").inc()
            log.exception("handler %s failed on post %s", name, post.id)
            try:
                await ctx.reply(self.apology())
            except Exception as exc:
                log.error("could not send the apology for post %s: %s", post.id, exc)
        finally:
            self.metrics.latency.labels("message").observe(time.monotonic() - received)
        await self.store.complete(post.id)

    def _on_stream_state(self, up: bool) -> None:
        self.metrics.connected.set(1 if up else 0)
        if not up and not self.stopping:
            self.cursors.freeze_all()

    async def _token_valid(self) -> bool:
        try:
            await self.api.login()
        except MattermostAuthError:
            return False
        except MattermostError:
            pass
        return True

    async def _probe(self) -> None:
        """Provoke an event addressed to the bot alone (`channel_viewed`) to test the stream."""
        if not self._probe_channel:
            channels = await self.api.my_channels()
            if not channels:
                raise MattermostError(0, "", "the bot is in no channel to probe with", "probe")
            self._probe_channel = str(channels[0]["id"])
        await self.api.view_channel(self._probe_channel)

    async def _on_connected(self, first: bool) -> None:
        """Backfill after every (re)connect; channels that fail are tried again until they
        succeed or the stream drops (the next connection starts over)."""
        delay = 1.0
        failed: set[str] | None = None
        while not self.stopping:
            try:
                failed = await self.backfill(failed)
            except MattermostError as exc:
                log.error("backfill failed (%s); trying again in %.0f s", exc, delay)
            except Exception:
                log.exception("backfill failed; trying again in %.0f s", delay)
            else:
                if not failed:
                    return
                log.warning("backfill of %d channels failed; trying again in %.0f s",
                            len(failed), delay)
            await self.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def backfill(self, only: set[str] | None = None) -> set[str]:
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
        if channels and not self._probe_channel:
            self._probe_channel = str(channels[0]["id"])
        cursors = await self.store.cursors()
        now_ms = int(time.time() * 1000)
        floor = now_ms - int(self.settings.backfill.max_age * 1000)
        overlap = self.settings.backfill.overlap_ms
        if self._fresh:
            # A new installation answers nothing from before it started.
            start = {c["id"]: self._started_ms for c in channels if c["id"] not in cursors}
            await self.store.save_cursors(start)
            cursors.update(start)
            await self.store.put("initialized", str(now_ms))
            self._fresh = False
        last_seen_raw = await self.store.get("last_seen")
        last_seen = int(last_seen_raw) if last_seen_raw else floor
        alive_raw = await self.store.get("alive_at") if webhook_only else None
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
                if created <= since or raw.get("id") in self._seen_live:
                    continue  # an old post that was edited, or one the stream delivered
                if webhook_only and created > self._listening_ms:
                    continue  # since the listener is up, webhooks bring what is for the bot
                try:
                    post = Post.from_dict(raw)
                except BadPayload:
                    continue
                found += 1
                self.ingest(await self._rest_message(post, channel, "backfill"),
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

    async def _rest_message(self, post: Post, channel: dict[str, Any], source: str,
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
        """Re-run handlers that a previous run claimed but never finished."""
        for claim in await self.store.pending():
            try:
                raw = await self.api.get_post(claim.post_id)
                post = Post.from_dict(raw)
                channel = await self.api.channel(post.channel_id)
            except (MattermostError, BadPayload) as exc:
                log.warning("cannot recover post %s (%s); dropping it", claim.post_id, exc)
                await self.store.complete(claim.post_id)
                continue
            if post.create_at < time.time() * 1000 - self.settings.backfill.max_age * 1000:
                await self.store.complete(claim.post_id)
                continue
            attempt = await self.store.reclaim(claim.post_id)
            if not attempt:
                continue
            msg = await self._rest_message(post, channel, "recovery", attempt)
            match = self.routes.match_message(msg, self._mention)
            if match is None:
                await self.store.complete(claim.post_id)
                continue
            log.info("resuming the handler for post %s (attempt %d)", post.id, attempt)
            self.metrics.in_flight.inc()
            self._resume(msg, match)

    def _resume(self, msg: Message, match: Match) -> None:
        self.dispatcher.submit(msg.post.thread_id,
                               lambda: self._handle_message(msg, match, time.monotonic()))

    # --- services for handlers ----------------------------------------------------------------
    def spawn(self, coro: Awaitable[None], name: str = "background") -> Any:
        return self.dispatcher.spawn(coro, name)

    def help_text(self) -> str:
        return self.routes.help_text()

    def apology(self) -> str:
        """What a person is told when their request failed inside the bot."""
        return self.settings.dispatch.apology or i18n._(
            "Sorry, something went wrong while handling your message. It has been logged.")

    # --- the listener's side ------------------------------------------------------------------
    async def on_click(self, click: Click) -> dict[str, Any]:
        try:
            payload = self.signer.unpack(click.context)
        except BadSignature as exc:
            if str(exc) == "expired":
                raise HTTPError(403, "this button has expired") from None
            log.warning("refused a click with a bad signature from %s", click.user_id)
            raise HTTPError(403, "the click's signature is not valid") from None
        # Only a signed click names its post in the log. The listener runs each request in a
        # task of its own; the handler's task inherits this.
        logs.set_subject(post=click.post_id)
        route = self.routes.get("action", payload.action)
        if route is None:
            raise HTTPError(404, f"no handler for action {payload.action!r}")
        await self.speak_to(click.user_id)
        ctx = Context(self, key=f"click:{click.post_id}:{click.trigger_id[-24:]}",
                      user_id=click.user_id, channel_id=click.channel_id, root_id=None,
                      post_id=click.post_id)
        available = {"ctx": ctx, "event": click, "click": click, "payload": payload,
                     "subject": payload.subject, "data": payload.data,
                     "user_id": click.user_id, "channel_id": click.channel_id,
                     "post_id": click.post_id}
        return self._answer(await self._run_interactive(route.call(available), "action",
                                                        route.handler.__name__), "ephemeral_text")

    async def on_dialog(self, submission: DialogSubmission) -> dict[str, Any]:
        try:
            payload = self.signer.unpack(json.loads(submission.state or "null"))
        except (BadSignature, ValueError):
            log.warning("refused a dialog submission with a bad state from %s",
                        submission.user_id)
            raise HTTPError(403, "the dialog's state is not valid") from None
        if payload.action != submission.callback_id:
            raise HTTPError(403, "the dialog's state does not match its callback")
        route = self.routes.get("dialog", submission.callback_id)
        if route is None:
            raise HTTPError(404, f"no handler for dialog {submission.callback_id!r}")
        await self.speak_to(submission.user_id)
        ctx = Context(self, key=f"dialog:{submission.callback_id}:{time.time_ns()}",
                      user_id=submission.user_id, channel_id=submission.channel_id)
        available = {"ctx": ctx, "event": submission, "submission": submission.submission,
                     "payload": payload, "subject": payload.subject, "data": payload.data,
                     "cancelled": submission.cancelled,
                     "user_id": submission.user_id, "channel_id": submission.channel_id}
        result = await self._run_interactive(route.call(available), "dialog",
                                             route.handler.__name__)
        return result if isinstance(result, dict) else {}

    async def on_slash(self, command: SlashCommand, token: str) -> dict[str, Any]:
        if not await self._slash_token_valid(token, command.team_id):
            raise HTTPError(401, "missing or wrong slash command token")
        route = self.routes.get("slash", command.command.lower())
        await self.speak_to(command.user_id)
        if route is None:
            return {"response_type": "ephemeral",
                    "text": i18n._("{command} is not a command I know.").format(
                        command=command.command)}
        ctx = Context(self, key=f"slash:{command.trigger_id[-24:]}", user_id=command.user_id,
                      channel_id=command.channel_id)
        available = {"ctx": ctx, "event": command, "command": command, "text": command.text,
                     "user_id": command.user_id, "channel_id": command.channel_id}
        answer = self._answer(await self._run_interactive(
            route.call(available), "slash", route.handler.__name__), "text")
        answer.setdefault("response_type", "ephemeral")
        return answer

    async def _slash_token_valid(self, token: str, team_id: str = "") -> bool:
        """The configured tokens (from any team), and those `register-commands` stored, each
        only from its command's team. The stored ones are read again when a request comes
        `slash_token_reread` or more after the last reading: a new token is accepted, and one
        that `register-commands` dropped (its command deleted or its token regenerated)
        refused, within that time, reading the store at most once per interval."""
        if token and time.monotonic() - self._slash_read_at >= self.slash_token_reread:
            await self._read_slash_tokens()
        configured = [t.get_secret_value() for t in self.settings.listener.slash_tokens]
        # A command's token says nothing about another team's requests.
        stored = [t for team, t in self._stored_slash if team_id and team == team_id]
        return token_matches(token, configured + stored)

    async def _read_slash_tokens(self) -> None:
        self._slash_read_at = time.monotonic()
        self._stored_slash = await stored_tokens(self.store)

    async def on_outgoing(self, hook: OutgoingWebhook) -> dict[str, Any]:
        """An outgoing webhook's call: its post goes the way a streamed one goes (same routes,
        same once-only claim, so a post that also arrives on the stream is handled once). What
        the handler replies in the thread while the call is open is the answer, which
        Mattermost posts as a reply in the thread; later replies go over REST."""
        if not token_matches(hook.token, [t.get_secret_value()
                                          for t in self.settings.listener.outgoing_tokens]):
            raise HTTPError(401, "missing or wrong outgoing webhook token")
        logs.set_subject(post=hook.post_id)
        if hook.user_id == self.api.bot_id or hook.post_id in self._hook_answers:
            # The bot's own posts fire outgoing webhooks too: answering them would loop. A
            # second call for a post already being answered adds nothing.
            return {}
        received = time.monotonic()
        # Mattermost waits for the answer only so long: reading the post counts against it.
        deadline = received + self.settings.listener.action_timeout
        answer = self._hook_answers[hook.post_id] = ThreadAnswer()
        try:
            try:
                msg = await asyncio.wait_for(self._webhook_message(hook),
                                             self.settings.listener.action_timeout / 2)
            except TimeoutError:
                log.info("reading post %s took too long; using the call's fields", hook.post_id)
                msg = hook.message()
            if self.ingest(msg, received):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answer.finished.wait(),
                                           max(0.0, deadline - time.monotonic()))
        finally:
            del self._hook_answers[hook.post_id]
            text = answer.close()
        return {"text": text, "response_type": "comment"} if text else {}

    async def _webhook_message(self, hook: OutgoingWebhook) -> Message:
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
        return await self._rest_message(post, channel, "webhook")

    async def on_webhook(self, hook: Webhook) -> dict[str, Any]:
        route = self.routes.get("webhook", hook.name)
        expected = self.settings.listener.webhook_tokens.get(hook.name)
        if route is None:
            raise HTTPError(404, f"no webhook named {hook.name!r}")
        auth = hook.headers.get("Authorization", "")
        given = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if not given and isinstance(hook.body, dict) and isinstance(hook.body.get("token"), str):
            given = hook.body["token"]
        if expected is None or not given or not hmac.compare_digest(
                given.encode(), expected.get_secret_value().encode()):
            raise HTTPError(401, "missing or wrong webhook token")
        ctx = Context(self, key=f"hook:{hook.name}:{time.time_ns()}", user_id="", channel_id="")
        available = {"ctx": ctx, "event": hook, "hook": hook, "body": hook.body}
        result = await self._run_interactive(route.call(available), "webhook",
                                             route.handler.__name__)
        return result if isinstance(result, dict) else {}

    async def on_alert(self, source: str, body: Any, headers: dict[str, str]
                       ) -> dict[str, Any]:
        if self.alert_sink is None:
            raise HTTPError(404, "alerts are not enabled")
        return await self.alert_sink(source, body, headers)

    async def _run_interactive(self, call: Awaitable[Any], kind: str, name: str) -> Any:
        """Run a listener handler; past the deadline it finishes in the background."""
        started = time.monotonic()
        task: asyncio.Task[Any] = asyncio.ensure_future(call)
        try:
            result = await asyncio.wait_for(asyncio.shield(task),
                                            self.settings.listener.action_timeout)
            self.metrics.handled.labels(kind).inc()
            return result
        except TimeoutError:
            self.dispatcher.spawn(self._finish_late(task, kind, name), f"late-{kind}")
            return i18n._("Still working on it…")
        except (HTTPError, BadPayload):
            raise
        except Exception:
            self.metrics.handler_errors.labels(kind).inc()
            log.exception("%s handler %s failed", kind, name)
            return self.apology()
        finally:
            self.metrics.latency.labels(kind).observe(time.monotonic() - started)

    async def _finish_late(self, task: asyncio.Task[Any], kind: str, name: str) -> None:
        try:
            await task
            self.metrics.handled.labels(kind).inc()
        except Exception:
            self.metrics.handler_errors.labels(kind).inc()
            log.exception("%s handler %s failed", kind, name)

    @staticmethod
    def _answer(result: Any, text_key: str) -> dict[str, Any]:
        if result is None:
            return {}
        if isinstance(result, str):
            return {text_key: result}
        if isinstance(result, dict):
            return result
        return json.loads(json.dumps(result, default=str)) if result else {}

    def health(self) -> tuple[bool, dict[str, Any]]:
        s = self.settings.stream
        if not s.enabled:
            # Webhook-only mode: no stream to judge; the REST side must work for replies.
            return self._rest_ok, {"websocket": "disabled", "rest": "ok" if self._rest_ok
                                   else "failing", "handlers_queued": self.dispatcher.queued,
                          "outbox": {k: v for k, v in self._outbox_counts.items()
                                     if k in ("queued", "filed")},
                          "version": __version__}
        age = time.monotonic() - self.stream.last_event if self.stream.last_event else None
        deaf_after = s.idle_probe_after + s.probe_timeout + s.pong_timeout
        ok = self.stream.connected and age is not None and age < deaf_after
        return ok, {
            "websocket": "connected" if self.stream.connected else "disconnected",
            "last_event_age_seconds": None if age is None else round(age, 3),
            "connections": self.stream.connections,
            "handlers_queued": self.dispatcher.queued,
            "outbox": {k: v for k, v in self._outbox_counts.items() if k in ("queued", "filed")},
            "version": __version__,
        }
