"""HTTP/1.1 on one connection: a request written in one piece, its answer parsed as the bytes
arrive (`asyncio.Protocol`, no streams), and the errors a request can end with.

The answer's body is framed by Content-Length, by chunked transfer coding (trailers are read
and dropped) or by the end of the connection; HEAD, 1xx, 204 and 304 answers have none. A
malformed or oversized answer fails the request, and the connection is not used again.
Content codings (gzip...) are left to the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

#: The longest answer head (status line and headers) read.
MAX_HEAD = 64 * 1024
#: The body size refused by default.
MAX_BODY = 64 * 1024 * 1024

_IDLE, _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE = range(7)
_HEX = frozenset(b"0123456789abcdefABCDEF")


class HTTPError(Exception):
    """A request that got no usable answer."""


class ConnectFailed(HTTPError):
    """No connection could be made (the cause is chained: refused, DNS, TLS...)."""


class ProxyFailed(ConnectFailed):
    """The proxy could not be reached, or refused the tunnel."""


class SendFailed(HTTPError):
    """The request could not be sent: a kept-alive connection was found closed by the server
    before any byte of the answer, and the method is not one to send twice."""


class ReadFailed(HTTPError):
    """The connection broke while the answer was awaited or read."""


class ProtocolError(HTTPError):
    """The answer is not well-formed HTTP/1.1."""


class ResponseTooLarge(ProtocolError):
    """The answer is larger than the client accepts."""


class HTTPTimeout(HTTPError, TimeoutError):
    """A time limit ran out."""


class ConnectTimeout(HTTPTimeout):
    """No connection within the connect timeout."""


class ReadTimeout(HTTPTimeout):
    """The server stayed silent for the read timeout while the answer was awaited or read."""


class PoolTimeout(HTTPTimeout):
    """No connection of the pool became free within the pool timeout."""


class ClosedBeforeAnswer(ReadFailed):
    """The connection closed before any byte of the answer arrived."""


class Answer:
    """A whole answer: status, reason, headers as received (bytes, in order, repeats kept) and
    the body as it came on the wire."""

    __slots__ = ("body", "keep_alive", "raw_headers", "reason", "status", "version")

    def __init__(self, status: int, reason: str, version: str,
                 raw_headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.raw_headers = raw_headers
        self.body = body
        self.keep_alive = keep_alive

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The headers as text (latin-1), in the order received."""
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers]

    def header(self, name: str) -> str | None:
        """The first header named `name` (any case), or None."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.raw_headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection carrying one request at a time.

    `send` writes a request and returns the future of its answer. `on_lost` (set by the pool)
    is called once the connection is gone."""

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        #: Whether the connection carried an answer before the current request.
        self.reused = False
        self.on_lost: Callable[[Connection], None] | None = None
        self.max_body = max_body
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._state = _IDLE
        self._method = ""
        self._received = 0
        self._remaining = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._head: tuple[int, str, str, list[tuple[bytes, bytes]], bool] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timeout = 0.0
        self._last = 0.0

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes no request asked for: the connection's state is unknown.
            self.abort()
            return
        self._received += len(data)
        if self._timer is not None:
            self._last = self._loop.time()
        self._buf += data
        try:
            self._parse()
        except HTTPError as exc:
            self._fail(exc)
            self.abort()

    def eof_received(self) -> bool:
        if self._waiter is None:
            self.closed = True  # an idle connection the server closed: not to be reused
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end(exc)
        if self.on_lost is not None:
            self.on_lost(self)

    # --- requests -----------------------------------------------------------------------------

    def send(self, data: bytes, method: str, read_timeout: float | None) -> asyncio.Future[Answer]:
        """Write a whole request; the answer's future. A connection known to be closed fails it
        at once with ClosedBeforeAnswer (nothing was sent)."""
        waiter = self._waiter = self._loop.create_future()
        self._method = method
        self._received = 0
        self._state = _HEAD
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            self._fail(ClosedBeforeAnswer("the connection was closed"))
            return waiter
        transport.write(data)
        if read_timeout is not None:
            self._timeout = read_timeout
            self._last = self._loop.time()
            self._timer = self._loop.call_at(self._last + read_timeout, self._check_timeout)
        return waiter

    def close(self) -> None:
        """Close after what was written went out."""
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        """Close at once."""
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _check_timeout(self) -> None:
        self._timer = None
        if self._waiter is None:
            return
        due = self._last + self._timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check_timeout)
            return
        what = "more of the answer" if self._received else "an answer"
        self._fail(ReadTimeout(f"timed out: no {what} within {self._timeout:g} s"))
        self.abort()

    def _done(self) -> asyncio.Future[Answer] | None:
        waiter, self._waiter = self._waiter, None
        self._state = _IDLE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return waiter

    def _fail(self, exc: BaseException) -> None:
        waiter = self._done()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _end(self, exc: Exception | None = None) -> None:
        """The connection ended (EOF or lost) with a request perhaps still waiting."""
        if self._waiter is None:
            return
        if self._state == _UNTIL_CLOSE:
            self._complete(b"".join(self._parts), keep_alive=False)
        elif self._received == 0 and not self._buf:
            error: ReadFailed = ClosedBeforeAnswer(
                "the server closed the connection without answering")
            self._fail(error if exc is None else _caused(error, exc))
        else:
            error = ReadFailed("the connection closed in the middle of the answer")
            self._fail(error if exc is None else _caused(error, exc))

    # --- parsing ------------------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buf
        while self._waiter is not None:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0 or end > MAX_HEAD:
                    if len(buf) > MAX_HEAD:
                        raise ResponseTooLarge(
                            f"the answer's head is larger than {MAX_HEAD // 1024} KiB")
                    return
                head = bytes(buf[:end])
                del buf[:end + 4]
                self._start(head)
            elif state == _LENGTH:
                remaining = self._remaining
                if len(buf) < remaining:
                    return
                body = bytes(buf[:remaining])
                del buf[:remaining]
                self._complete(body)
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 4096:
                        raise ProtocolError("malformed chunk size line")
                    return
                size = bytes(buf[:end]).partition(b";")[0].strip()
                del buf[:end + 2]
                if not size or not _HEX.issuperset(size):
                    raise ProtocolError(f"malformed chunk size {size[:20]!r}")
                length = int(size, 16)
                if length == 0:
                    self._state = _TRAILERS
                else:
                    self._grow(length)
                    self._remaining = length
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                remaining = self._remaining
                if len(buf) < remaining + 2:
                    return
                if buf[remaining:remaining + 2] != b"\r\n":
                    raise ProtocolError("a chunk is not followed by CRLF")
                self._parts.append(bytes(buf[:remaining]))
                del buf[:remaining + 2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                if buf[:2] == b"\r\n":
                    del buf[:2]
                else:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buf) > MAX_HEAD:
                            raise ResponseTooLarge("the answer's trailers are too large")
                        return
                    del buf[:end + 4]  # trailers are not used
                self._complete(b"".join(self._parts))
            else:  # _UNTIL_CLOSE: everything up to the end of the connection
                if buf:
                    self._grow(len(buf))
                    self._parts.append(bytes(buf))
                    buf.clear()
                return

    def _grow(self, more: int) -> None:
        self._size += more
        if self._size > self.max_body:
            raise ResponseTooLarge(f"the answer's body is larger than {self.max_body} bytes")

    def _start(self, head: bytes) -> None:
        """The status line and headers: what follows them is decided here."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if (len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0")
                or len(parts[1]) != 3 or not parts[1].isdigit()):
            raise ProtocolError(f"malformed status line {lines[0][:100]!r}")
        status = int(parts[1])
        version = parts[0].decode()
        keep_alive = version == "HTTP/1.1"
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        coded = chunked = False
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t"):  # obsolete line folding: part of the value above
                if not headers:
                    raise ProtocolError("malformed header line")
                name, value = headers.pop()
                headers.append((name, value + b" " + line.strip(b" \t")))
                continue
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1:] in (b" ", b"\t"):
                raise ProtocolError(f"malformed header line {line[:100]!r}")
            value = value.strip(b" \t")
            headers.append((name, value))
            key = name.lower()
            if key == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise ProtocolError(f"malformed Content-Length {value[:40]!r}")
                length = int(value)
            elif key == b"transfer-encoding":
                coded = True
                chunked = value.rpartition(b",")[2].strip().lower() == b"chunked"
            elif key == b"connection" and b"close" in value.lower():
                keep_alive = False
        if 100 <= status < 200 and status != 101:
            return  # an interim answer: the final one follows
        self._parts = []
        self._size = 0
        self._head = (status, parts[2].decode("latin-1") if len(parts) > 2 else "", version,
                      headers, keep_alive)
        method = self._method
        if (method == "HEAD" or status in (101, 204, 304) or status < 200
                or (method == "CONNECT" and 200 <= status < 300)):
            self._complete(b"", keep_alive=keep_alive and status != 101)
        elif coded:
            if chunked:
                self._state = _CHUNK_SIZE
            else:
                self._state = _UNTIL_CLOSE
        elif length is not None:
            self._grow(length)
            if length == 0:
                self._complete(b"")
            else:
                self._remaining = length
                self._state = _LENGTH
        else:
            self._state = _UNTIL_CLOSE

    def _complete(self, body: bytes, keep_alive: bool | None = None) -> None:
        head = self._head
        assert head is not None
        status, reason, version, headers, alive = head
        if keep_alive is not None:
            alive = keep_alive
        # Bytes past the answer's end: the connection cannot be trusted with another request.
        alive = alive and not self._buf
        waiter = self._done()
        self._head = None
        self._parts = []
        if waiter is not None and not waiter.done():
            waiter.set_result(Answer(status, reason, version, headers, body, alive))


def _caused(error: HTTPError, cause: BaseException) -> HTTPError:
    error.__cause__ = cause
    return error
