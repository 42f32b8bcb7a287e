"""The server: connections over asyncio streams, requests read by `parse`.

One request at a time per connection (pipelined requests wait their turn in the buffer), each
handled in a task of its own so that what a handler puts in its context never reaches the next
request. Keep-alive unless either side says `Connection: close`. Limits, each with a plain
answer: a head over `max_head` bytes is 431 and malformed requests are 400 (no handler sees
them); a body over `max_body` is 413, known from Content-Length before any of it is read; a head
or body sent too slowly closes the connection (a body with a 408 first); an idle keep-alive
connection is closed after `idle_timeout`. A small body the handler did not read is passed over
and the connection kept; a larger one is not read: the answer says `Connection: close`, and what
still comes of the body is discarded for a moment (so that the client, still sending, sees the
answer) before the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from bridge.headers import Headers

from .parse import BadRequest, Head, TooLarge, parse_head, read_chunked
from .request import HTTPError, Request, Response, error_response

log = logging.getLogger("switchboard.http")

App = Callable[[Request], Awaitable[Response]]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")
_date: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    """The Date header's value, made once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        t = time.gmtime(now)
        _date = (now, (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} {t.tm_year} "
                       f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT").encode())
    return _date[1]


@dataclass(frozen=True)
class Limits:
    """What a client may send, and how slowly (seconds)."""

    max_head: int = 16 * 1024  #: request line and headers
    max_body: int = 1 << 20
    head_timeout: float = 10.0  #: from a head's first byte to its end
    body_timeout: float = 30.0  #: from the end of the head to the end of the body
    idle_timeout: float = 75.0  #: between requests on a kept-alive connection
    write_timeout: float = 30.0  #: for the client to take an answer
    linger: float = 2.0  #: discarding an unread body before closing
    grace: float = 5.0  #: for requests in flight when the server stops


class HTTPServer:
    """Serves `app` on host:port (port 0: any free port) from `start()` until `stop()`."""

    def __init__(self, app: App, host: str, port: int, limits: Limits | None = None) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._watch: asyncio.Task[None] | None = None
        self.stopping = False

    async def start(self) -> int:
        """Listen; the bound port is returned (and kept in `port`). OSError when it cannot."""
        self.stopping = False
        self._server = await asyncio.start_server(
            self._accept, self.host or None, self.port, reuse_address=True,
            limit=self.limits.max_head)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._watch = asyncio.create_task(self._expire())
        return self.port

    async def _expire(self) -> None:
        """Fail the reads of connections past their deadline (idle, head or body), checking a
        few times per shortest timeout: cheaper than a timer per request."""
        limits = self.limits
        every = min(1.0, max(0.02, min(limits.idle_timeout, limits.head_timeout,
                                       limits.body_timeout) / 5))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            for connection in self._connections:
                if connection.deadline < now:
                    connection.deadline = _NEVER
                    connection.reader.set_exception(TimeoutError())

    async def stop(self) -> None:
        """Stop listening, close idle connections at once, give requests in flight `grace`
        seconds to be answered, then close whatever is left."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping = True
        server.close()
        if self._watch is not None:
            self._watch.cancel()
        for connection in list(self._connections):
            if connection.idle:
                connection.task.cancel()
        busy = [c.task for c in self._connections]
        if busy:
            _, late = await asyncio.wait(busy, timeout=self.limits.grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stopping:
            writer.transport.abort()
            return
        connection = _Connection(self, reader, writer)
        self._connections.add(connection)
        try:
            await connection.run()
        except asyncio.CancelledError:
            pass  # the server stopped
        except Exception:
            log.exception("HTTP connection failed")
        finally:
            self._connections.discard(connection)
            try:
                await connection.close()
            except asyncio.CancelledError:  # stopped while closing
                writer.transport.abort()


class _Connection:
    __slots__ = ("broken", "deadline", "head", "idle", "limits", "reader", "remote", "server",
                 "task", "unread", "writer")

    def __init__(self, server: HTTPServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.limits = server.limits
        self.reader = reader
        self.writer = writer
        self.idle = True
        #: When the read under way times out (loop time); the server's watch enforces it.
        self.deadline = _NEVER
        #: Whether the current request's body (or part of it) is still on the wire.
        self.unread = False
        #: Whether the body's framing is lost (malformed, too slow): close, discard nothing.
        self.broken = False
        self.head: Head | None = None
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        peer = writer.get_extra_info("peername")
        self.remote: str | None = str(peer[0]) if isinstance(peer, tuple) else None

    async def run(self) -> None:
        while True:
            try:
                head = await self._next_head()
            except BadRequest as exc:
                await self._answer_malformed(str(exc), exc.status)
                return
            if head is None:
                return
            request = self._request(head)
            if request is None:
                await self._answer_malformed("the request target is not a path")
                return
            response = await self._handle(request)
            keep = head.keep_alive and not self.server.stopping and not self.broken
            if keep and self.unread:
                keep = keep and await self._skip_body(head)
            if not await self._send(response, keep, head_only=head.method == "HEAD") \
                    or not keep:
                return

    # --- reading --------------------------------------------------------------------------------
    async def _next_head(self) -> Head | None:
        """The next request's head; None when the connection is to end (closed by the client,
        idle too long, a head too slow). BadRequest when it is malformed."""
        reader = self.reader
        while True:
            self.idle = True
            if self.server.stopping:
                return None
            loop = asyncio.get_running_loop()
            try:
                self.deadline = loop.time() + self.limits.idle_timeout
                first = await reader.read(1)
            except (TimeoutError, ConnectionError):
                return None
            self.idle = False
            if not first:
                return None
            try:
                self.deadline = loop.time() + self.limits.head_timeout
                raw = first + await reader.readuntil(b"\r\n\r\n")
                self.deadline = _NEVER
            except asyncio.LimitOverrunError:
                raise BadRequest("request line and headers too large", 431) from None
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                return None  # too slow, or gone: closed without an answer
            if len(raw) > self.limits.max_head:
                raise BadRequest("request line and headers too large", 431)
            raw = raw.lstrip(b"\r\n")  # blank lines before a request are allowed
            if raw:
                self.head = head = parse_head(raw)
                self.unread = head.chunked or bool(head.content_length)
                return head

    def _request(self, head: Head) -> Request | None:
        target = head.target
        if target.startswith("/"):
            raw_path, _, query = target.partition("?")
        elif target.startswith(("http://", "https://")):  # the absolute form, from proxies
            parts = urlsplit(target)
            raw_path, query = parts.path or "/", parts.query
        else:
            return None
        raw_path = raw_path.partition("#")[0]
        path = unquote(raw_path) if "%" in raw_path else raw_path
        return Request(head.method, target, path, query, Headers(head.headers), self.remote,
                       self._read_body)

    async def _read_body(self, request: Request) -> bytes:
        """The request's body, within the limits (see `Request.read`)."""
        head, limits = self.head, self.limits
        if head is None or not self.unread:
            return b""
        if head.content_length is not None and head.content_length > limits.max_body:
            raise HTTPError(413, f"request body larger than {limits.max_body} bytes")
        if head.expect_continue:
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            self.deadline = asyncio.get_running_loop().time() + limits.body_timeout
            if head.content_length is not None:
                body = await self.reader.readexactly(head.content_length)
            else:
                body = await read_chunked(self.reader, limits.max_body, limits.max_head)
        except TooLarge:
            raise HTTPError(413, f"request body larger than {limits.max_body} bytes") from None
        except BadRequest as exc:
            self.broken = True
            raise HTTPError(400, f"malformed request body: {exc}") from None
        except TimeoutError:
            self.broken = True
            raise HTTPError(408, "the request body came too slowly") from None
        except (asyncio.IncompleteReadError, ConnectionError):
            self.broken = True
            raise HTTPError(400, "the request body ended early") from None
        finally:
            self.deadline = _NEVER
        self.unread = False
        return body

    async def _skip_body(self, head: Head) -> bool:
        """Pass over a small body the handler did not read, when it is arriving anyway;
        False when the connection must close instead."""
        if head.expect_continue or head.content_length is None \
                or head.content_length > min(self.limits.max_body, 65536):
            return False
        try:
            async with asyncio.timeout(self.limits.linger):
                await self.reader.readexactly(head.content_length)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            return False
        self.unread = False
        return True

    # --- answering ------------------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        try:
            # A task of its own: the handler's context changes stay with this request.
            return await asyncio.ensure_future(self.server.app(request))
        except HTTPError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except Exception:
            log.exception("HTTP handler failed on %s %s", request.method, request.path)
            return error_response(500, "internal error; it has been logged")

    async def _send(self, response: Response, keep: bool, head_only: bool = False) -> bool:
        """Send a complete response; False when the client is gone or does not take it."""
        reason = _REASONS.get(response.status, b"")
        parts = [b"HTTP/1.1 %d %s\r\n" % (response.status, reason)]
        for name, value in response.headers:
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"a line break in the {name} header")
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        parts.append(b"Content-Length: %d\r\nDate: %s\r\n%s\r\n" % (
            len(response.body), _http_date(), b"" if keep else b"Connection: close\r\n"))
        if not head_only:
            parts.append(response.body)
        writer = self.writer
        writer.write(b"".join(parts))
        if writer.transport.get_write_buffer_size():  # not all taken at once
            try:
                async with asyncio.timeout(self.limits.write_timeout):
                    await writer.drain()
            except (TimeoutError, ConnectionError):
                return False
        return not writer.is_closing()

    async def _answer_malformed(self, message: str, status: int = 400) -> None:
        if status != 431:
            message = f"malformed request: {message}"
        await self._send(error_response(status, message), keep=False)

    async def close(self) -> None:
        """Close the connection; a body still arriving is discarded for `linger` seconds first,
        so that a client still sending it reads the answer instead of a reset."""
        writer = self.writer
        if self.unread and not self.broken and writer.can_write_eof() \
                and not writer.is_closing():
            with contextlib.suppress(OSError, TimeoutError):
                writer.write_eof()
                async with asyncio.timeout(self.limits.linger):
                    while await self.reader.read(65536):
                        pass
        writer.close()
        try:
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
        except (TimeoutError, OSError):
            writer.transport.abort()


_NEVER = float("inf")
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
