"""The HTTP/1.1 client (bridge.http1) against real local servers: keep-alive pools and their
limit, framing of answers, stale connections, timeouts, malformed and oversized answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from bridge.http1 import (
    ConnectTimeout,
    HTTPClient,
    PoolTimeout,
    ProtocolError,
    ReadFailed,
    ReadTimeout,
    ResponseTooLarge,
    SendFailed,
    requests_wait_for,
)


@dataclass
class Request:
    """One request a server read: its request line, headers (lower-case names) and body, and
    which request it was on its connection (1 for the first)."""

    line: str
    headers: dict[str, str]
    body: bytes
    nth: int


#: What a server writes for a request; None to close the connection without answering.
Answerer = Callable[[Request], Awaitable[bytes | None]]


def ok(body: bytes = b"hello", extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


@dataclass
class RawServer:
    """A plain asyncio HTTP server answering each request with `answer` (raw bytes)."""

    answer: Answerer
    port: int = 0
    connections: int = 0
    open_now: int = 0
    peak: int = 0
    seen: list[Request] = field(default_factory=list)
    #: Close each connection after its first answer (else only after a `Connection: close`).
    close_after: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.peak = max(self.peak, self.open_now)
        nth = 0
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip()
                           for k, _, v in (h.partition(":") for h in head[1:] if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                nth += 1
                request = Request(head[0], headers, body, nth)
                self.seen.append(request)
                data = await self.answer(request)
                if data is None:
                    break
                writer.write(data)
                await writer.drain()
                if self.close_after or b"Connection: close" in data.partition(b"\r\n\r\n")[0]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Answerer], Awaitable[RawServer]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answerer) -> RawServer:
        raw = RawServer(answer)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        servers.append(server)
        raw.port = server.sockets[0].getsockname()[1]
        return raw

    yield start
    for server in servers:
        server.close()


async def get(client: HTTPClient, server: RawServer, path: str = "/", method: str = "GET",
              body: bytes = b"", **timeouts: float) -> tuple[int, bytes]:
    answer = await client.request(method, "http", "127.0.0.1", server.port, path.encode(),
                                  [(b"X-Test", b"1")], body, **timeouts)
    return answer.status, answer.body


async def test_one_connection_carries_sequential_requests(serve) -> None:
    async def answer(request: Request) -> bytes:
        return ok(f"{request.line} #{request.nth}".encode())

    server = await serve(answer)
    client = HTTPClient(limit=4)
    try:
        for i in range(1, 6):
            assert await get(client, server, f"/n/{i}") == (200, f"GET /n/{i} HTTP/1.1 #{i}"
                                                            .encode())
        await get(client, server, "/post", "POST", b'{"a": 1}')
    finally:
        await client.aclose()
    assert server.connections == 1
    post = server.seen[-1]
    assert post.headers["host"] == f"127.0.0.1:{server.port}"
    assert post.headers["content-length"] == "8" and post.body == b'{"a": 1}'
    assert post.headers["x-test"] == "1"
    assert "content-length" not in server.seen[0].headers  # a GET without a body


async def test_requests_wait_for_the_waiter_of_their_context(serve) -> None:
    """Within `requests_wait_for`, a request (also one made by a task started there) is sent
    only once the waiter returns; a failing waiter fails it unsent; outside, nothing waits."""
    server = await serve(lambda request: _now(ok()))
    client = HTTPClient(limit=4)
    release = asyncio.Event()
    waited = 0

    async def waiter() -> None:
        nonlocal waited
        waited += 1
        await release.wait()

    async def broken() -> None:
        raise OSError(5, "cannot flush")

    try:
        with requests_wait_for(waiter):
            held = asyncio.ensure_future(get(client, server))
            child = asyncio.create_task(get(client, server, "/child"))
        assert await get(client, server, "/free") == (200, b"hello")  # outside the block
        await asyncio.sleep(0.05)
        assert [r.line for r in server.seen] == ["GET /free HTTP/1.1"]
        assert waited == 2 and not held.done() and not child.done()
        release.set()
        assert await held == (200, b"hello") and await child == (200, b"hello")
        with requests_wait_for(broken), pytest.raises(OSError, match="cannot flush"):
            await get(client, server, "/never")
    finally:
        await client.aclose()
    assert "GET /never HTTP/1.1" not in [r.line for r in server.seen]


async def test_the_limit_holds_under_concurrency_and_waiters_are_served(serve) -> None:
    async def answer(request: Request) -> bytes:
        await asyncio.sleep(0.02)
        return ok(request.line.encode())

    server = await serve(answer)
    client = HTTPClient(limit=3)
    try:
        results = await asyncio.gather(*(get(client, server, f"/{i}") for i in range(20)))
    finally:
        await client.aclose()
    assert [body for _, body in results] == [f"GET /{i} HTTP/1.1".encode() for i in range(20)]
    assert server.peak == 3 and server.connections == 3
    # Beyond the limit, requests are sent in the order they came.
    server.seen.clear()
    one = HTTPClient(limit=1)
    try:
        await asyncio.gather(*(get(one, server, f"/{i}") for i in range(8)))
    finally:
        await one.aclose()
    assert [r.line for r in server.seen] == [f"GET /{i} HTTP/1.1" for i in range(8)]


async def test_chunked_close_delimited_head_and_204_bodies(serve) -> None:
    async def answer(request: Request) -> bytes | None:
        path = request.line.split()[1]
        if path == "/chunked":
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\n"
                    b"Set-Cookie: b=2\r\nX-Name: caf\xe9\r\n\r\n"
                    b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
        if path == "/head":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        if path == "/empty":
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        if path == "/interim":
            return b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after 100")
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"

    server = await serve(answer)
    client = HTTPClient()
    try:
        chunked = await client.request("GET", "http", "127.0.0.1", server.port, b"/chunked")
        assert chunked.body == b"hello world" and chunked.keep_alive
        assert [v for k, v in chunked.headers if k == "Set-Cookie"] == ["a=1", "b=2"]
        assert chunked.header("x-name") == "café"  # latin-1
        head = await client.request("HEAD", "http", "127.0.0.1", server.port, b"/head")
        assert head.status == 200 and head.body == b""
        empty = await client.request("GET", "http", "127.0.0.1", server.port, b"/empty")
        assert empty.status == 204 and empty.body == b""
        interim = await client.request("GET", "http", "127.0.0.1", server.port, b"/interim")
        assert (interim.status, interim.body) == (200, b"after 100")
        assert server.connections == 1  # every answer above was framed right
        closed = await client.request("GET", "http", "127.0.0.1", server.port, b"/rest")
        assert closed.body == b"until the end" and not closed.keep_alive
        assert await get(client, server, "/empty") == (204, b"")
        assert server.connections == 2  # the close-delimited answer ended its connection
    finally:
        await client.aclose()


async def test_a_stale_connection_is_retried_for_get_and_an_error_for_post(serve) -> None:
    async def answer(request: Request) -> bytes | None:
        # As a server whose keep-alive timeout ends just as the next request comes; /drop
        # gets no answer at all.
        return ok() if request.nth == 1 and request.line.split()[1] != "/drop" else None

    server = await serve(answer)
    client = HTTPClient()
    try:
        await get(client, server)
        assert await get(client, server) == (200, b"hello")  # sent again, on a new connection
        assert server.connections == 2 and len(server.seen) == 3
        with pytest.raises(SendFailed, match="could not send"):
            await get(client, server, "/t", "POST", b"{}")
        assert len(server.seen) == 4  # sent once, not twice
        # A new connection that closes without an answer is not a stale one: no retry.
        with pytest.raises(ReadFailed, match="without answering") as caught:
            await get(client, server, "/drop", "POST", b"{}")
        assert not isinstance(caught.value, SendFailed)
    finally:
        await client.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_reused(serve) -> None:
    async def answer(request: Request) -> bytes:
        return ok(request.line.encode())

    server = await serve(answer)
    server.close_after = True  # each answer, though kept alive, is the connection's last
    client = HTTPClient()
    try:
        await get(client, server)
        await asyncio.sleep(0.1)
        # Not a stale connection found on sending: one known closed, so even a POST is sent.
        assert await get(client, server, "/p", "POST", b"{}") == (200, b"POST /p HTTP/1.1")
        assert server.connections == 2 and len(server.seen) == 2
    finally:
        await client.aclose()


async def test_read_and_pool_timeouts(serve) -> None:
    async def silent(request: Request) -> bytes | None:
        await asyncio.sleep(5)
        return None

    server = await serve(silent)
    client = HTTPClient(limit=1)
    try:
        started = time.monotonic()
        with pytest.raises(ReadTimeout, match="timed out"):
            await get(client, server, read=0.2)
        assert 0.15 < time.monotonic() - started < 2
        hanging = asyncio.ensure_future(get(client, server, read=3))
        await asyncio.sleep(0.05)
        with pytest.raises(PoolTimeout, match="no free connection"):
            await get(client, server, pool=0.1)
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        # The cancelled request gave its place back.
        server.answer = lambda request: _now(ok())
        assert await get(client, server, pool=1) == (200, b"hello")
    finally:
        await client.aclose()


async def _now(data: bytes) -> bytes:
    return data


async def test_a_tls_handshake_that_never_ends_is_a_connect_timeout(serve) -> None:
    async def silent(request: Request) -> bytes | None:
        return None

    server = await serve(silent)  # speaks no TLS: the handshake waits for ever
    client = HTTPClient()
    try:
        with pytest.raises(ConnectTimeout, match="no connection"):
            await client.request("GET", "https", "127.0.0.1", server.port, b"/", connect=0.2)
    finally:
        await client.aclose()


async def test_malformed_and_oversized_answers_are_errors_and_end_the_connection(
        serve) -> None:
    async def answer(request: Request) -> bytes:
        path = request.line.split()[1]
        if path == "/garbage":
            return b"HTTP/1.1 2OO OK\r\n\r\n"
        if path == "/big":
            return ok(b"x" * 2000)
        if path == "/bigchunks":
            chunk = b"400\r\n" + b"y" * 1024 + b"\r\n"
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3
                    + b"0\r\n\r\n")
        if path == "/badchunk":
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        return ok()

    server = await serve(answer)
    client = HTTPClient(max_body=1500)
    try:
        with pytest.raises(ProtocolError, match="malformed status line"):
            await get(client, server, "/garbage")
        with pytest.raises(ResponseTooLarge, match="1500"):
            await get(client, server, "/big")
        with pytest.raises(ResponseTooLarge):
            await get(client, server, "/bigchunks")
        with pytest.raises(ProtocolError, match="chunk size"):
            await get(client, server, "/badchunk")
        assert await get(client, server) == (200, b"hello")
        assert server.connections == 5  # none of the failed ones was used again
    finally:
        await client.aclose()


async def test_bad_requests_are_refused_before_sending(serve) -> None:
    server = await serve(lambda request: _now(ok()))
    client = HTTPClient()
    try:
        with pytest.raises(ValueError, match="line break"):
            await client.request("GET", "http", "127.0.0.1", server.port, b"/",
                                 [(b"X-Evil", b"a\r\nX-Injected: 1")])
        with pytest.raises(ValueError, match="request target"):
            await client.request("GET", "http", "127.0.0.1", server.port, b"/a b")
        with pytest.raises(ValueError, match="scheme"):
            await client.request("GET", "ftp", "127.0.0.1", server.port, b"/")
    finally:
        await client.aclose()
    assert server.seen == []
