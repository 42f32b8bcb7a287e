"""The Bot: wires the parts together and owns start and stop.

The parts, each in a module of its own: the event stream (`stream`), the message pipeline
(`pipeline`: ingest, claim, route, dispatch, recover), the catch-up after gaps (`backfill`), the
HTTP ways in (`ways_in`, `outgoing`, served by `listener`), the outbox (`outbox`), languages
(`locales`) and the store (`store`). Features plug in through their `Router`'s declarations and
reach the running bot only through the `Runtime` (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Iterable
from typing import Any, Protocol

from . import __version__, i18n
from .backfill import Backfill
from .config import Config
from .cursors import CursorTracker
from .dispatch import Dispatcher
from .listener import Listener, build
from .locales import Locales
from .mattermost import MattermostAPI, MattermostAuthError, MattermostError
from .metrics import Metrics
from .outbox import Outbox
from .outgoing import OutgoingWebhooks
from .pipeline import Pipeline
from .replicas import Replica
from .rest_watch import RestWatch
from .router import JobDecl, Router, RouteTable
from .runtime import Runtime
from .signing import Signer
from .store import Store, StoreError, StoreInUse, open_store
from .stream import EventStream, FatalStreamError
from .ways_in import WaysIn

log = logging.getLogger("switchboard")

#: Exit status when Mattermost refuses the bot's credentials.
EXIT_AUTH = 3
#: Exit status when the set-up stops the bot (restarting it will not help).
EXIT_CONFIG = 2
#: The state store could not be opened (a database out of reach, a file that is no database).
EXIT_STORE = 4


def own_address(host: str, port: int) -> str:
    """Where this process's listener is reached by the other replicas and `doctor` (the public
    URL may be a load balancer's): the address it listens on, or the host's name when it
    listens on every address."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class BotError(Exception):
    """The bot cannot start or go on; the message says what to do."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Feature(Protocol):
    """A feature with state: everything it plugs in is declared on its router."""

    router: Router


class Bot:
    def __init__(self, config: Config, features: Iterable[Router | Feature], *,
                 url: str | None = None, token: str | None = None, secret: str | None = None,
                 public_url: str | None = None, store: Store | None = None) -> None:
        s = config.settings
        self.config = config
        self.settings = s
        self.metrics = Metrics()
        root = Router("switchboard").include(
            *(f if isinstance(f, Router) else f.router for f in features))
        self.routes = RouteTable(root)
        mm_url = url if url is not None else s.mattermost.url
        mm_token = token if token is not None else s.mattermost.token.get_secret_value()
        verify: bool | str = s.mattermost.ca_bundle or s.mattermost.verify_tls
        self.api = MattermostAPI(mm_url, mm_token, timeout=s.mattermost.request_timeout,
                                 retries=s.mattermost.retries,
                                 max_retry_after=s.mattermost.max_retry_after,
                                 connections=s.mattermost.rest_threads, verify=verify)
        self.store: Store = store or open_store(s.state.path)
        self.store.liveness.dead_after = s.replicas.takeover_after
        self.dispatcher = Dispatcher(s.dispatch.concurrency)
        self.outbox = Outbox(self.store, concurrency=s.outbox.concurrency,
                             retry_initial=s.outbox.retry_initial,
                             retry_max=s.outbox.retry_max, lease=s.outbox.lease)
        for e in self.routes.declared.executors:
            self.outbox.register(e.kind, e.run, e.on_retry)
        self.cursors = CursorTracker()
        self.locales = Locales(self.api, s.language.locale_cache_seconds)
        self._stopping = asyncio.Event()
        self.runtime = Runtime(
            api=self.api, store=self.store, outbox=self.outbox,
            signer=Signer(secret or s.security.secret.get_secret_value(),
                          s.security.action_ttl),
            locales=self.locales, tasks=self.dispatcher, stopping=self._stopping,
            public_url=(public_url or s.listener.public_url).rstrip("/"),
            ephemeral_permission=s.mattermost.ephemeral_permission,
            stream_enabled=s.stream.enabled, help_text=self.routes.help_text,
            apology=s.dispatch.apology, metrics=self.metrics,
            leads=lambda: self.replica.role == "leader")
        self.pipeline = Pipeline(s, api=self.api, store=self.store, routes=self.routes,
                                 dispatcher=self.dispatcher, cursors=self.cursors,
                                 metrics=self.metrics, locales=self.locales,
                                 runtime=self.runtime)
        self.backfill = Backfill(s, api=self.api, store=self.store, cursors=self.cursors,
                                 pipeline=self.pipeline, metrics=self.metrics,
                                 runtime=self.runtime)
        self.rest_watch = RestWatch(self.api, self.runtime, interval=s.stream.idle_probe_after,
                                    catch_up=self.backfill.after_connect)
        self.ways_in = WaysIn(s, routes=self.routes, signer=self.runtime.signer,
                              store=self.store, locales=self.locales,
                              dispatcher=self.dispatcher, metrics=self.metrics,
                              runtime=self.runtime,
                              outgoing=OutgoingWebhooks(s, api=self.api, pipeline=self.pipeline),
                              health=self.health)
        self.listener = Listener(build(self.ways_in, s.listener.max_body_bytes),
                                 s.listener.host, s.listener.port)
        self._mm_token = mm_token
        self.stream = self._new_stream()
        #: Since when (monotonic) the leader has had no stream; None: it has one.
        self._stream_down_since: float | None = None
        self.replica = Replica(self.store, s.replicas, version=__version__, lead=self._lead,
                               stop_leading=self._stop_leading, rounds=self.pipeline.recover,
                               running=self.outbox.running, lease=self.outbox.lease,
                               stream_down=self._stream_down_for)
        self._outbox_counts: dict[str, int] = {}
        i18n.set_default(s.language.default_locale)

    def _new_stream(self) -> EventStream:
        return EventStream(
            self.api.ws_url, self._mm_token, self.settings.stream,
            on_event=self.pipeline.on_frame, on_connected=self.backfill.after_connect,
            check_token=self._token_valid, probe=self.backfill.probe,
            on_reconnect=lambda reason: self.metrics.reconnects.labels(reason).inc(),
            on_state=self._on_stream_state)

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

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
        beats: asyncio.Task[None] | None = None
        try:
            await self.start()
            # Beats until the bot's work is done, and reads the stream while this replica
            # leads and the bot is not stopping.
            beats = asyncio.create_task(self.replica.run(self._stopping), name="replica")
            ends = {asyncio.create_task(self._stopping.wait(), name="stop"),
                    asyncio.create_task(self.replica.failed.wait(), name="failed"), beats}
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            for task in ends - {beats}:
                task.cancel()
            exc = self.replica.failure or (beats.exception() if beats.done() else None)
            if isinstance(exc, FatalStreamError):
                raise BotError(str(exc), EXIT_AUTH)
            if exc is not None:
                raise exc
        finally:
            await self.shutdown(beats)

    async def _lead(self) -> None:
        """This replica's work as the leader: the stream (its rounds, `pipeline.recover`, come
        with each beat). Webhook-only mode: no websocket (so no probes), only a backfill of
        what was posted while no bot read it, and a periodic look at the token."""
        self._stream_down_since = time.monotonic()
        if self.settings.stream.enabled:
            # Made before anything is awaited: a step-down from here on stops this one.
            self.stream = stream = self._new_stream()
            self.backfill.fresh = await self.store.kv.get("initialized") is None
            await stream.run()
        else:
            self.backfill.fresh = await self.store.kv.get("initialized") is None
            await self.rest_watch.run()

    def _stop_leading(self) -> bool:
        """Tell the leading work to stop; False when it is to be cancelled instead (the REST
        watch of webhook-only mode, which holds nothing to close)."""
        if not self.settings.stream.enabled:
            return False
        self.stream.stop()
        return True

    def _stream_down_for(self) -> float:
        """Seconds the leader has had no stream (0: it has one, or it reads none)."""
        if not self.settings.stream.enabled or self._stream_down_since is None:
            return 0.0
        return time.monotonic() - self._stream_down_since

    async def start(self) -> None:
        try:
            await self.store.open()
        except StoreInUse as exc:
            raise BotError(f"cannot start: {exc}", EXIT_CONFIG) from None
        except StoreError as exc:  # a file that is no database, a database out of reach
            raise BotError(f"cannot start: {exc}", EXIT_STORE) from None
        # Seen before it claims anything: what it owns can be taken over should it die.
        await self.replica.announce()
        await self.ways_in.read_slash_tokens()
        try:
            me = await self.api.login()
        except MattermostAuthError:
            raise BotError("Mattermost rejected the bot's token (401); check MM_BOT_TOKEN",
                           EXIT_AUTH) from None
        except MattermostError as exc:
            raise BotError(f"cannot reach Mattermost at {self.api.base_url}: {exc}") from None
        self.pipeline.mention = "@" + str(me.get("username", ""))
        try:
            port = await self.listener.start()
            self.backfill.listening_ms = int(time.time() * 1000)
        except OSError as exc:
            raise BotError(f"cannot listen on {self.listener.host}:{self.listener.port} "
                           f"({exc.strerror or exc}); set SWITCHBOARD_LISTEN to a free "
                           "address") from None
        if not self.runtime.public_url:
            self.runtime.public_url = f"http://{self.listener.host}:{port}"
        self.replica.listener = own_address(self.listener.host, port)
        log.info("Switchboard %s started as %s; listener on %s:%d", __version__,
                 self.pipeline.mention, self.listener.host, port)
        for hook in self.routes.declared.starts:
            await hook(self.runtime)
        for job in self.routes.declared.jobs:
            self.dispatcher.spawn(self._every(job), job.name)
        # The first beat: this replica leads at once where nobody else does.
        await self.replica.beat()
        self.dispatcher.spawn(self._housekeeping(), "housekeeping")
        self.dispatcher.spawn(self.outbox.run(self._stopping), "outbox")

    async def shutdown(self, beats: asyncio.Task[None] | None = None) -> None:
        grace = self.settings.dispatch.shutdown_grace
        self._stopping.set()
        # No new clicks or webhooks while the rest winds down.
        await self.listener.stop()
        if not await self.dispatcher.join(grace):
            log.warning("handlers still running after %.0f s; they will resume after restart",
                        grace)
        await self.dispatcher.cancel()
        for hook in self.routes.declared.stops:
            try:
                await hook()
            except Exception:
                log.exception("stopping a feature failed")
        try:
            await self._flush_cursors()
        except Exception:
            log.exception("could not save cursors")
        if beats is not None:
            # Seen running until here: what it did not finish is taken over from now on.
            self.replica.finish()
            await asyncio.gather(beats, return_exceptions=True)
        await self.store.close()
        self.api.close()

    async def _every(self, job: JobDecl) -> None:
        while not self.stopping:
            try:
                await job.run()
            except Exception:
                log.exception("%s failed", job.name)
            await self.runtime.sleep(job.seconds)

    async def _housekeeping(self) -> None:
        last_prune = 0.0
        while not self.stopping:
            await self.runtime.sleep(1.0)
            try:
                await self._flush_cursors()
                leads = self.replica.role == "leader"
                if leads and not self.settings.stream.enabled:
                    # Without a stream, cursors move only with webhook posts: this marks how
                    # long the bot was up, so a restart reads only what came while it was down.
                    await self.store.kv.put("alive_at", str(int(time.time() * 1000)))
                self._outbox_counts = await self.store.outbox.counts()
                if leads and time.time() - last_prune > 3600:
                    last_prune = time.time()
                    await self.store.prune(time.time() - self.settings.state.retention)
            except Exception:
                log.exception("housekeeping failed")

    async def _flush_cursors(self) -> None:
        dirty = self.cursors.take_dirty()
        if dirty:
            await self.store.cursors.save(dirty)
            await self.store.kv.put("last_seen", str(self.cursors.newest))

    # --- the stream's supervision ---------------------------------------------------------------
    def _on_stream_state(self, up: bool) -> None:
        self.metrics.connected.set(1 if up else 0)
        self._stream_down_since = None if up else time.monotonic()
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

    def health(self) -> tuple[bool, dict[str, Any]]:
        outbox = {k: v for k, v in self._outbox_counts.items() if k in ("queued", "filed")}
        replica = self.replica
        common = {"handlers_queued": self.dispatcher.queued, "outbox": outbox,
                  "version": __version__, "role": replica.role, "replica": replica.id,
                  "leader": replica.leader, "store": "ok" if replica.alive else "unreachable"}
        if replica.role != "leader":
            # Standing by: it serves clicks and works the outbox while the store answers.
            return replica.alive, {"websocket": "standby"} | common
        common["leading_since"] = round(replica.leading_since, 3)
        s = self.settings.stream
        if not s.enabled:
            # Webhook-only mode: no stream to judge; the REST side must work for replies.
            ok = self.rest_watch.ok and replica.alive
            return ok, {"websocket": "disabled", "rest": "ok" if ok else "failing"} | common
        age = time.monotonic() - self.stream.last_event if self.stream.last_event else None
        deaf_after = s.idle_probe_after + s.probe_timeout + s.pong_timeout
        ok = self.stream.connected and age is not None and age < deaf_after and replica.alive
        return ok, {
            "websocket": "connected" if self.stream.connected else "disconnected",
            "last_event_age_seconds": None if age is None else round(age, 3),
            "connections": self.stream.connections,
        } | common
