"""A lean asyncio HTTP/1.1 client: keep-alive pools, timeouts, TLS and proxies.

`HTTPClient.request(...)` sends one request and returns the whole `Answer`. Per origin (scheme,
host and port; the client's TLS settings and the proxy the environment names for that host are
fixed per client) there is one pool of at most `limit` connections: idle ones are reused most
recent first, those the server closed while idle are dropped, and callers beyond the limit wait
in turn (at most the pool timeout). A request is one write: request line, headers (`Host` and
`Content-Length` are computed here) and body.

Timeouts: connect (TCP, proxy tunnel and TLS handshake), read (silence while the answer is
awaited or read) and pool (waiting for a free connection), each its own exception. A kept-alive
connection found closed before any byte of the answer is replaced once by a new one for the
methods that may be sent twice (GET, HEAD, PUT, DELETE, OPTIONS); for the others it is
`SendFailed`: the request may or may not have reached the server.

TLS goes through an `ssl.SSLContext`; `server_name` is checked in the certificate and sent in
SNI in place of the URL's host. http:// requests through a proxy go in absolute form with the
proxy's `Proxy-Authorization`; https:// ones through a CONNECT tunnel (the proxy's headers on
the CONNECT only), TLS inside it.

`requests_wait_for(waiter)` holds back every request made in the current context (a task and the
tasks it starts) until `waiter()` returns: work whose record was written without waiting for the
disk sends nothing out before that record is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence

from .http1_wire import (
    MAX_BODY,
    Answer,
    ClosedBeforeAnswer,
    ConnectFailed,
    Connection,
    ConnectTimeout,
    HTTPError,
    HTTPTimeout,
    PoolTimeout,
    ProtocolError,
    ProxyFailed,
    ReadFailed,
    ReadTimeout,
    ResponseTooLarge,
    SendFailed,
)
from .proxies import EnvProxies, ProxyAddress

__all__ = ["Answer", "ConnectFailed", "ConnectTimeout", "HTTPClient", "HTTPError",
           "HTTPTimeout", "PoolTimeout", "ProtocolError", "ProxyFailed", "ReadFailed",
           "ReadTimeout", "ResponseTooLarge", "SendFailed", "requests_wait_for"]

#: Methods a request may be sent twice with.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_DEFAULT_PORT = {"http": 80, "https": 443}


_BEFORE_REQUEST: contextvars.ContextVar[Callable[[], Awaitable[None]] | None] = \
    contextvars.ContextVar("http1_before_request", default=None)


@contextlib.contextmanager
def requests_wait_for(waiter: Callable[[], Awaitable[None]]) -> Iterator[None]:
    """Within the block (and in tasks started from it), every request first awaits `waiter()`,
    which must be cheap once satisfied; an exception from it fails the request unsent."""
    token = _BEFORE_REQUEST.set(waiter)
    try:
        yield
    finally:
        _BEFORE_REQUEST.reset(token)


def default_tls(verify: bool | str | ssl.SSLContext = True) -> ssl.SSLContext:
    """The TLS context for `verify`: a context as given; True for the certifi bundle; a path
    for that CA bundle (read now: a missing file is an OSError naming it); False for none."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if verify is True:
        import certifi  # only when https is used

        return ssl.create_default_context(cafile=certifi.where())
    return ssl.create_default_context(cafile=verify)


class HTTPClient:
    """Pools of keep-alive connections, one per origin. Used on one event loop at a time."""

    def __init__(self, *, limit: int = 8, verify: bool | str | ssl.SSLContext = True,
                 server_name: str = "", proxies: EnvProxies | None = None,
                 max_body: int = MAX_BODY) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.server_name = server_name or None
        self.max_body = max_body
        self._verify = verify
        self._tls: ssl.SSLContext | None = None
        self._proxies = proxies if proxies is not None else EnvProxies({})
        self._pools: dict[tuple[str, str, int | None], _Pool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = default_tls(self._verify)
        return self._tls

    async def request(self, method: str, scheme: str, host: str, port: int | None,
                      target: bytes, headers: Sequence[tuple[bytes, bytes]] = (),
                      body: bytes = b"", *, connect: float | None = None,
                      read: float | None = None, pool: float | None = None) -> Answer:
        """Send `method target` (the path and query, as bytes) to `scheme://host:port` and read
        the whole answer. `headers` must not hold Host, Content-Length or Transfer-Encoding."""
        waiter = _BEFORE_REQUEST.get()
        if waiter is not None:
            await waiter()
        if asyncio.get_running_loop() is not self._loop:
            self._forget_pools()
            self._loop = asyncio.get_running_loop()
        found = self._pools.get((scheme, host, port))
        if found is None:
            found = self._pools[(scheme, host, port)] = _Pool(self, scheme, host, port)
        return await found.request(method, target, headers, body, connect, read, pool)

    async def aclose(self) -> None:
        """Close every connection (requests still waiting on them fail); the client may be
        used again afterwards, with new connections."""
        self._forget_pools()
        await asyncio.sleep(0)

    def _forget_pools(self) -> None:
        pools, self._pools = self._pools, {}
        loop_gone = self._loop is None or self._loop.is_closed()
        for found in pools.values():
            found.close(loop_gone)


class _Pool:
    """The connections to one origin."""

    def __init__(self, client: HTTPClient, scheme: str, host: str, port: int | None) -> None:
        if scheme not in _DEFAULT_PORT:
            raise ValueError(f"unsupported URL scheme {scheme!r}: http or https")
        if not host:
            raise ValueError("the URL has no host")
        self.client = client
        self.limit = client.limit
        self.https = scheme == "https"
        self.host = host.strip("[]")
        self.port = port or _DEFAULT_PORT[scheme]
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        if port and port != _DEFAULT_PORT[scheme]:
            netloc += f":{port}"
        self.where = f"{scheme}://{netloc}"
        netloc_b = netloc.encode("idna") if not netloc.isascii() else netloc.encode()
        self.fixed = b"Host: " + netloc_b + b"\r\n"
        self.prefix = b""
        self.proxy, proxy_headers = client._proxies.proxy_for(scheme, self.host)
        self.proxy_head = b""
        if proxy_headers:
            self.proxy_head = b"".join(f"{k}: {v}\r\n".encode("latin-1")
                                       for k, v in proxy_headers.items())
        if self.proxy is not None and not self.https:
            # Absolute form to the proxy, its credentials on every request.
            self.prefix = f"http://{netloc}".encode("idna")
            self.fixed += self.proxy_head
        self._idle: list[Connection] = []
        self._count = 0
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._open: set[Connection] = set()

    # --- one request --------------------------------------------------------------------------

    async def request(self, method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]],
                      body: bytes, connect: float | None, read: float | None,
                      pool: float | None) -> Answer:
        data = self._serialize(method, target, headers, body)
        conn = await self._acquire(connect, pool, fresh=False)
        try:
            return await self._exchange(conn, data, method, read)
        except ClosedBeforeAnswer as exc:
            if not conn.reused:
                raise ReadFailed(f"{self.where} closed the connection without answering") \
                    from exc
            if method not in IDEMPOTENT:
                raise SendFailed(f"could not send the request to {self.where}: the kept-alive "
                                 "connection was closed by the server") from exc
        # A stale kept-alive connection: once more, on a new one.
        conn = await self._acquire(connect, pool, fresh=True)
        try:
            return await self._exchange(conn, data, method, read)
        except ClosedBeforeAnswer as exc:
            raise ReadFailed(f"{self.where} closed the connection without answering") from exc

    def _serialize(self, method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]],
                   body: bytes) -> bytes:
        lines = [b"%s: %s\r\n" % pair for pair in headers]
        block = b"".join(lines)
        # No header may smuggle a line of its own.
        if (block.count(b"\n") != len(lines) or block.count(b"\r") != len(lines)
                or b"\0" in block):
            raise ValueError("a header name or value holds a line break or NUL")
        if not target.startswith(b"/") or b" " in target or b"\r" in target \
                or b"\n" in target:
            raise ValueError(f"not a request target: {target[:100]!r}")
        length = (b"Content-Length: %d\r\n" % len(body)
                  if body or method in _WITH_BODY else b"")
        return b"".join((method.encode("ascii"), b" ", self.prefix, target, b" HTTP/1.1\r\n",
                         self.fixed, block, length, b"\r\n", body))

    async def _exchange(self, conn: Connection, data: bytes, method: str,
                        read: float | None) -> Answer:
        waiter = conn.send(data, method, read)
        try:
            answer = await waiter
        except BaseException:
            self._discard(conn, graceful=False)
            raise
        if answer.keep_alive and not conn.closed:
            conn.reused = True
            self._release(conn)
        else:
            self._discard(conn, graceful=True)
        return answer

    # --- connections --------------------------------------------------------------------------

    async def _acquire(self, connect: float | None, pool: float | None,
                       fresh: bool) -> Connection:
        idle = self._idle
        if not fresh:
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    return conn
                self._discard(conn, graceful=False)
        if self._count < self.limit and not self._waiters:
            self._count += 1
            return await self._new(connect)
        if fresh and idle:
            # Make room: the oldest idle connection gives its place to a new one.
            oldest = idle.pop(0)
            self._open.discard(oldest)
            oldest.on_lost = None
            oldest.close()
            return await self._new(connect)
        handed = await self._wait(pool)
        if handed is None:
            return await self._new(connect)
        if not handed.closed:
            return handed
        # Closed by the server between its hand-over and now: nothing was sent on it.
        self._discard(handed, graceful=False)
        return await self._acquire(connect, pool, fresh)

    async def _wait(self, timeout: float | None) -> Connection | None:
        """A connection handed over by a request that ended, or None for a free place (the
        count already holds it)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Connection | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, _expire, waiter, PoolTimeout(
                f"timed out: no free connection to {self.where} within {timeout:g} s "
                f"(all {self.limit} busy)"))
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # handed over just as this request gave up
                if handed is None:
                    self._count -= 1
                    self._wake()
                else:
                    self._release(handed)
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def _new(self, timeout: float | None) -> Connection:
        """A new connection in a place already counted (given back if it cannot be made)."""
        try:
            conn = await self._connect(timeout)
        except BaseException:
            self._count -= 1
            self._wake()
            raise
        conn.on_lost = self._lost
        self._open.add(conn)
        return conn

    async def _connect(self, timeout: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        client = self.client
        factory = _factory(client.max_body)
        tls = client.tls_context() if self.https else None
        sni = (client.server_name or self.host) if self.https else None
        try:
            async with asyncio.timeout(timeout) as deadline:
                if self.proxy is None:
                    _, conn = await loop.create_connection(factory, self.host, self.port,
                                                           ssl=tls, server_hostname=sni)
                    return conn
                return await self._through_proxy(loop, factory, self.proxy, tls, sni)
        except TimeoutError as exc:
            if deadline.expired():
                raise ConnectTimeout(f"timed out: no connection to {self.where} within "
                                     f"{timeout:g} s") from None
            raise ConnectFailed(f"cannot connect to {self.where}: {exc}") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.where}: {exc}") from exc

    async def _through_proxy(self, loop: asyncio.AbstractEventLoop, factory: type[Connection],
                             proxy: ProxyAddress, tls: ssl.SSLContext | None,
                             sni: str | None) -> Connection:
        """A connection to the proxy; for https, tunnelled and with TLS inside the tunnel."""
        try:
            _, conn = await loop.create_connection(factory, proxy.host, proxy.port)
        except OSError as exc:
            raise ProxyFailed(f"cannot connect to the proxy {proxy}: {exc}") from exc
        if tls is None:
            return conn
        try:
            await self._tunnel(conn, proxy)
            assert conn.transport is not None
            inner = await loop.start_tls(conn.transport, conn, tls, server_hostname=sni)
            if inner is None:
                raise ConnectFailed(f"no TLS inside the tunnel to {self.where}")
            conn.transport = inner
        except BaseException:
            conn.abort()
            raise
        return conn

    async def _tunnel(self, conn: Connection, proxy: ProxyAddress) -> None:
        """CONNECT through the proxy to this origin."""
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        authority = f"{netloc}:{self.port}".encode("idna")
        data = (b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n"
                + self.proxy_head + b"\r\n")
        try:
            answer = await conn.send(data, "CONNECT", None)
        except HTTPError as exc:
            raise ProxyFailed(f"the proxy {proxy} did not open a tunnel: {exc}") from exc
        if not 200 <= answer.status < 300:
            raise ProxyFailed(f"the proxy {proxy} refused the connection: HTTP "
                              f"{answer.status} {answer.reason}")

    def _release(self, conn: Connection) -> None:
        """A connection free again: to the first one waiting, or idle."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _wake(self) -> None:
        """Places freed: to those waiting, each to open a connection."""
        waiters = self._waiters
        while waiters and self._count < self.limit:
            waiter = waiters.popleft()
            if not waiter.done():
                self._count += 1
                waiter.set_result(None)

    def _discard(self, conn: Connection, graceful: bool) -> None:
        if conn in self._open:
            self._open.discard(conn)
            self._count -= 1
            if conn in self._idle:
                self._idle.remove(conn)
            self._wake()
        conn.on_lost = None
        if graceful:
            conn.close()
        else:
            conn.abort()

    def _lost(self, conn: Connection) -> None:
        """The connection is gone (the server closed it, or it was closed here)."""
        if conn in self._idle:
            self._discard(conn, graceful=False)

    def close(self, loop_gone: bool) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(HTTPError("the HTTP client was closed"))
        self._waiters.clear()
        conns, self._open = self._open, set()
        self._idle = []
        self._count = 0
        if loop_gone:
            return
        for conn in conns:
            conn.on_lost = None
            conn.abort()


def _expire(waiter: asyncio.Future[Connection | None], error: PoolTimeout) -> None:
    if not waiter.done():
        waiter.set_exception(error)


def _factory(max_body: int) -> type[Connection]:
    if max_body == MAX_BODY:
        return Connection

    class Capped(Connection):
        def __init__(self) -> None:
            super().__init__(max_body)

    return Capped
