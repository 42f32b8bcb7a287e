"""The websocket supervisor: Mattermost's event stream, kept alive.

- Bearer auth on the upgrade; the first frame must be `hello`. A real server upgrades even a bad
  token and then drops the socket without a word, so "no hello" is answered by checking the token
  over REST: a 401 there is fatal (`FatalStreamError`), not a reason to retry forever.
- App-level pings every `ping_interval` plus transport pings: a half-open connection is noticed
  within `ping_interval + pong_timeout`.
- Liveness by events, not only pings: after `idle_probe_after` of silence the bot provokes an event
  addressed to itself (`probe`); when even that does not arrive the socket is deaf and is replaced.
- Reconnects back off exponentially with jitter up to a cap; the backoff resets only after a
  connection stayed up `stable_after`. Each new connection calls `on_connected`, which backfills.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .config import StreamSettings
from .mattermost import retry_after_seconds

log = logging.getLogger("switchboard.stream")


class FatalStreamError(Exception):
    """The stream cannot work (bad token); retrying will not help."""


class _Reconnect(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def backoff(initial: float, factor: float, cap: float) -> Iterator[float]:
    """Delays: a random first one, then ×factor with jitter, up to the cap."""
    delay = initial * random.random() + 0.05
    while True:
        yield min(delay, cap)
        delay = min(delay * factor, cap) * (0.8 + 0.4 * random.random())


class EventStream:
    def __init__(
        self,
        url: str,
        token: str,
        settings: StreamSettings,
        *,
        on_event: Callable[[dict[str, Any]], None],
        on_connected: Callable[[bool], Coroutine[Any, Any, None]],
        check_token: Callable[[], Awaitable[bool]],
        probe: Callable[[], Awaitable[None]],
        on_reconnect: Callable[[str], None] = lambda reason: None,
        on_state: Callable[[bool], None] = lambda up: None,
    ) -> None:
        self.url = url
        self._token = token
        self.s = settings
        self._on_event = on_event
        self._on_connected = on_connected
        self._check_token = check_token
        self._probe = probe
        self._on_reconnect = on_reconnect
        self._on_state = on_state
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._closing: asyncio.Future[None] | None = None
        self.connected = False
        self.connections = 0
        self.last_event = 0.0          # monotonic time of the last event frame
        self.last_event_wall = 0.0
        self._last_reply = 0.0
        self._ping_seq = 0
        self._pings: dict[int, float] = {}

    def stop(self) -> None:
        self._stop.set()
        if self._ws is not None:
            self._closing = asyncio.ensure_future(self._ws.close())

    async def run(self) -> None:
        """Keep the stream up until `stop()`; raises FatalStreamError on a rejected token."""
        delays = backoff(self.s.backoff_initial, self.s.backoff_factor, self.s.backoff_max)
        while not self._stop.is_set():
            started = time.monotonic()
            reason = "closed"
            try:
                await self._session()
            except FatalStreamError:
                raise
            except _Reconnect as exc:
                reason = exc.reason
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    raise FatalStreamError(
                        f"Mattermost refused the bot's token on the websocket ({status}); "
                        "check MM_BOT_TOKEN") from None
                reason = f"upgrade answered {status}"
                if status == 429:
                    wait = retry_after_seconds(exc.response.headers.get("Retry-After"))
                    await self._sleep(1.0 if wait is None else wait)
            except ConnectionClosed as exc:
                reason = f"connection closed ({exc.rcvd.code if exc.rcvd else 1006})"
            except (OSError, TimeoutError, websockets.InvalidHandshake,
                    websockets.InvalidURI) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                if self.connected:
                    self.connected = False
                    self._on_state(False)
                self._ws = None
            if self._stop.is_set():
                break
            if time.monotonic() - started >= self.s.stable_after:
                delays = backoff(self.s.backoff_initial, self.s.backoff_factor,
                                 self.s.backoff_max)
            delay = next(delays)
            log.warning("event stream down (%s); reconnecting in %.1f s", reason, delay)
            self._on_reconnect(reason.split(" ")[0].split(":")[0])
            await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _session(self) -> None:
        async with connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self._token}"},
            user_agent_header="Switchboard",
            open_timeout=self.s.hello_timeout,
            ping_interval=self.s.transport_ping_interval,
            ping_timeout=self.s.pong_timeout,
            close_timeout=2,
            max_size=16 * 1024 * 1024,
            max_queue=4096,
        ) as ws:
            self._ws = ws
            if self._stop.is_set():
                return  # stopped while connecting
            await self._await_hello(ws)
            self.connections += 1
            self.connected = True
            self._on_state(True)
            now = time.monotonic()
            self.last_event = self._last_reply = now
            self._pings.clear()
            log.info("event stream connected")
            first = self.connections == 1
            # Backfill runs beside the receive loop: the socket must keep being read.
            catch_up: asyncio.Task[None] = asyncio.create_task(self._on_connected(first),
                                                               name="backfill")
            watchdog = asyncio.create_task(self._watch(ws), name="stream-watchdog")
            try:
                await self._receive(ws)
            finally:
                watchdog.cancel()
                if not catch_up.done():
                    catch_up.cancel()
                await asyncio.gather(watchdog, catch_up, return_exceptions=True)
                if watchdog.done() and not watchdog.cancelled():
                    exc = watchdog.exception()
                    if isinstance(exc, _Reconnect):
                        raise exc

    async def _await_hello(self, ws: ClientConnection) -> None:
        try:
            raw = await asyncio.wait_for(ws.recv(), self.s.hello_timeout)
        except (TimeoutError, ConnectionClosed):
            if not await self._check_token():
                raise FatalStreamError(
                    "Mattermost rejected the bot's token (401 on /users/me); check MM_BOT_TOKEN"
                ) from None
            raise _Reconnect("no hello") from None
        try:
            frame = json.loads(raw)
        except (TypeError, ValueError):
            raise _Reconnect("first frame is not JSON") from None
        if not isinstance(frame, dict) or frame.get("event") != "hello":
            raise _Reconnect("first frame is not hello")
        self._on_event(frame)

    async def _receive(self, ws: ClientConnection) -> None:
        on_event = self._on_event
        loads = json.loads
        async for raw in ws:
            try:
                frame = loads(raw)
            except ValueError:
                log.warning("ignored a frame that is not JSON")
                continue
            if not isinstance(frame, dict):
                continue
            if "event" in frame:
                self.last_event = time.monotonic()
                try:
                    on_event(frame)
                except Exception:
                    log.exception("an event could not be processed; skipped")
            elif "seq_reply" in frame:
                # A reply to one of our actions, never an event.
                self._last_reply = time.monotonic()
                self._pings.pop(frame.get("seq_reply", -1), None)
        if self._stop.is_set():
            return
        raise _Reconnect("server closed the stream")

    async def _watch(self, ws: ClientConnection) -> None:
        s = self.s
        tick = max(0.05, min(s.ping_interval, s.probe_timeout, s.pong_timeout) / 4)
        next_ping = time.monotonic() + s.ping_interval
        probe_sent = 0.0
        probe: asyncio.Task[None] | None = None
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now >= next_ping:
                self._ping_seq += 1
                self._pings[self._ping_seq] = now
                await ws.send(json.dumps({"action": "ping", "seq": self._ping_seq}))
                next_ping = now + s.ping_interval
            oldest = min(self._pings.values(), default=now)
            if now - oldest > s.pong_timeout:
                await self._abort(ws)
                raise _Reconnect("ping unanswered")
            silent = now - self.last_event
            if probe_sent and self.last_event > probe_sent:
                probe_sent = 0.0
            if not probe_sent and silent >= s.idle_probe_after:
                probe_sent = now
                # The probe is a REST call that may retry for a while: the timers go on.
                if probe is None or probe.done():
                    probe = asyncio.create_task(self._run_probe(), name="liveness-probe")
            elif probe_sent and now - probe_sent > s.probe_timeout:
                log.warning("event stream is deaf: no event for %.0f s, probe unanswered", silent)
                await self._abort(ws)
                raise _Reconnect("deaf")

    async def _run_probe(self) -> None:
        try:
            await self._probe()
        except Exception as exc:  # a failed probe is itself a finding; the timer decides
            log.warning("liveness probe failed: %s", exc)

    @staticmethod
    async def _abort(ws: ClientConnection) -> None:
        transport = ws.transport
        if transport is not None:
            transport.abort()
