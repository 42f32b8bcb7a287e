"""The HTTP server under the listener, over real loopback sockets: keep-alive and pipelining,
the limits and their answers, 100-continue, stopping, and the request's helpers."""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from plugin.httpserver import (
    Headers,
    HTTPError,
    HTTPServer,
    Limits,
    Request,
    Response,
    Router,
    json_response,
)
from plugin.httpserver.request import parse_multipart, parse_urlencoded

seen: list[tuple[str, str]] = []
subject: contextvars.ContextVar[str] = contextvars.ContextVar("subject", default="")


async def echo(request: Request) -> Response:
    seen.append((request.method, request.path))
    return Response(await request.read(), 200, "application/octet-stream")


async def info(request: Request) -> Response:
    seen.append((request.method, request.path))
    before = subject.get()
    subject.set(request.query.get("set", ""))
    return json_response({"before": before, "query": request.query, "params": request.params,
                          "route": request.route,
                          "agent": request.headers.get("user-agent"),
                          "remote": request.remote})


async def slow(request: Request) -> Response:
    await asyncio.sleep(0.3)
    return json_response({"slow": True})


async def form(request: Request) -> Response:
    return json_response(await request.form())


def router() -> Router:
    r = Router()
    r.post("/echo", echo)
    r.get("/info/{name}", info)
    r.get("/info", info)
    r.get("/slow", slow)
    r.post("/form", form)
    return r


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[HTTPServer]:
    seen.clear()
    limits = getattr(request, "param", None) or Limits(max_body=1000)
    s = HTTPServer(router(), "127.0.0.1", 0, limits)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def connect(server: HTTPServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response off the wire: status, headers (lower-case names), body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def closed(reader: asyncio.StreamReader, within: float = 5.0) -> bool:
    """Whether the server closes the connection (EOF, or a reset as the client wrote after the
    close) within `within` seconds."""
    try:
        await asyncio.wait_for(reader.read(), within)
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# --- keep-alive and sequencing ------------------------------------------------------------------
async def test_two_requests_on_one_connection_then_pipelined(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(post("/echo", b"one"))
    status, headers, body = await response(reader)
    assert (status, body) == (200, b"one") and "connection" not in headers
    assert headers["date"].endswith(" GMT")
    writer.write(post("/echo", b"two"))
    assert (await response(reader))[2] == b"two"
    # Pipelined: both in one write, answered in order.
    writer.write(post("/echo", b"three") + post("/echo", b"four"))
    assert (await response(reader))[2] == b"three"
    assert (await response(reader))[2] == b"four"
    assert seen == [("POST", "/echo")] * 4
    # Bodiless requests, and a small body no handler read, keep the connection too.
    for _ in range(2):
        writer.write(b"GET /info HTTP/1.1\r\nHost: t\r\n\r\n")
        status, headers, _ = await response(reader)
        assert status == 200 and "connection" not in headers
    writer.write(post("/nowhere", b"unread"))
    status, headers, _ = await response(reader)
    assert status == 404 and "connection" not in headers
    writer.write(post("/echo", b"still here"))
    assert (await response(reader))[2] == b"still here"
    writer.close()


async def test_http_1_0_closes_after_the_answer(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /info HTTP/1.0\r\n\r\n")
    status, headers, _ = await response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert await closed(reader)
    writer.close()


async def test_connection_close_is_honoured(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(post("/echo", b"bye", "Connection: close"))
    status, headers, body = await response(reader)
    assert (status, body, headers["connection"]) == (200, b"bye", "close")
    assert await closed(reader)
    writer.close()


async def test_context_set_by_a_request_does_not_reach_the_next(server: HTTPServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        first = (await client.get("/info", params={"set": "post-1"})).json()
        second = (await client.get("/info")).json()
    assert first["before"] == "" and second["before"] == ""


async def test_request_parts(server: HTTPServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        r = await client.get("/info/a%20b?x=1&x=2&empty=&y=%C3%A9",
                             headers={"User-Agent": "probe"})
    body = r.json()
    assert body["params"] == {"name": "a b"} and body["route"] == "/info/{name}"
    assert body["query"] == {"x": "1", "empty": "", "y": "é"}
    assert body["agent"] == "probe" and body["remote"] == "127.0.0.1"
    assert r.headers["content-type"] == "application/json"


# --- errors -------------------------------------------------------------------------------------
async def test_unknown_path_is_404_and_wrong_method_405_with_allow(server: HTTPServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        missing = await client.get("/nope")
        assert missing.status_code == 404
        assert missing.json() == {"error": "no such endpoint: GET /nope"}
        wrong = await client.delete("/info")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"
        assert "DELETE is not allowed" in wrong.json()["error"]
        assert (await client.get("/echo")).headers["allow"] == "POST"
        head = await client.head("/info")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) > 0
    assert seen == [("HEAD", "/info")]


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET /info HTTP/1.1\r\n\r\n",  # no Host
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    b"GET /info HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
    b"GET info HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /info HTTP/1.1\r\nHost: t\r\n Folded: x\r\n\r\n",
    b"GET /info HTTP/1.1\r\nHost : t\r\n\r\n",
    b"GET /info HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
    b"GET /info HTTP/1.1\r\nHost: t\rX: y\r\n\r\n",
    b"GET /info HTTP/2.0\r\nHost: t\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
])
async def test_malformed_requests_are_400_and_reach_no_handler(server: HTTPServer,
                                                               raw: bytes) -> None:
    reader, writer = await connect(server)
    writer.write(raw)
    status, _, body = await response(reader)
    assert status == 400 and json.loads(body)["error"].startswith("malformed request")
    assert await closed(reader)
    assert seen == []
    writer.close()


async def test_a_transfer_coding_other_than_chunked_is_501(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
    assert (await response(reader))[0] == 501
    assert seen == []
    writer.close()


async def test_an_oversized_head_is_431(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /info HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
    status, headers, body = await response(reader)
    assert status == 431 and "too large" in json.loads(body)["error"]
    assert headers["connection"] == "close" and await closed(reader)
    assert seen == []
    writer.close()


async def test_a_declared_oversize_body_is_413_before_it_is_sent(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
    status, headers, body = await response(reader)  # no body sent at all
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body) == {"error": "request body larger than 1000 bytes"}
    writer.close()


async def test_an_oversize_chunked_body_is_413(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        writer.write(b"200\r\n" + b"x" * 0x200 + b"\r\n")
    status, headers, _ = await response(reader)
    assert status == 413 and headers["connection"] == "close"
    writer.close()


async def test_a_chunked_body_within_the_limit_is_read(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n")
    assert (await response(reader))[:3:2] == (200, b"abcde")
    # A broken chunk: 400, and the connection closes.
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"zz\r\nabc\r\n0\r\n\r\n")
    status, headers, body = await response(reader)
    assert status == 400 and headers["connection"] == "close"
    assert "chunk" in json.loads(body)["error"]
    assert await closed(reader)
    writer.close()


async def test_a_client_still_sending_an_unread_body_gets_the_answer(
        server: HTTPServer) -> None:
    # The answer comes before the body is read; the client, still sending, must see it.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        big = await client.post("/echo", content=b"x" * 3_000_000)
        assert big.status_code == 413 and "larger than" in big.json()["error"]
        nowhere = await client.post("/nowhere", content=b"y" * 3_000_000)
        assert nowhere.status_code == 404
        assert (await client.post("/echo", content=b"fine")).content == b"fine"


async def test_expect_100_continue(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100 ")
    writer.write(b"hello")
    assert (await response(reader))[:3:2] == (200, b"hello")
    # Too large: refused without asking for the body.
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    assert (await response(reader))[0] == 413
    writer.close()


# --- timeouts and stopping ----------------------------------------------------------------------
FAST = Limits(max_body=1000, head_timeout=0.3, body_timeout=0.3, idle_timeout=0.5, grace=2.0)


@pytest.mark.parametrize("server", [FAST], indirect=True)
async def test_a_slow_head_closes_the_connection(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    started = time.monotonic()
    writer.write(b"GET /info HTTP/1.1\r\nHo")
    for _ in range(5):  # a byte now and then does not keep it open
        await asyncio.sleep(0.1)
        if writer.is_closing():
            break
        writer.write(b"s")
    assert await closed(reader, 3)
    assert time.monotonic() - started < 1.5
    assert seen == []
    writer.close()


@pytest.mark.parametrize("server", [FAST], indirect=True)
async def test_a_slow_body_is_408_then_closed(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
    status, headers, _ = await response(reader)
    assert status == 408 and headers["connection"] == "close"
    assert await closed(reader, 4)
    writer.close()


@pytest.mark.parametrize("server", [FAST], indirect=True)
async def test_an_idle_keep_alive_connection_is_closed(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(post("/echo", b"x"))
    await response(reader)
    started = time.monotonic()
    assert await closed(reader, 3)
    assert 0.4 < time.monotonic() - started < 2
    writer.close()


async def test_stop_with_an_idle_client_returns_promptly(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(post("/echo", b"x"))
    await response(reader)
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 0.5
    assert await closed(reader, 1)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()


async def test_stop_lets_a_request_in_flight_finish(server: HTTPServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    await asyncio.sleep(0.1)
    await server.stop()
    status, headers, body = await response(reader)
    assert (status, json.loads(body), headers["connection"]) == (200, {"slow": True}, "close")
    writer.close()


async def test_a_handler_failure_is_a_500_without_details() -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("secret detail")

    r = Router()
    r.get("/x", broken)
    s = HTTPServer(r, "127.0.0.1", 0)
    await s.start()
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{s.port}/x")
    finally:
        await s.stop()
    assert answer.status_code == 500 and "secret" not in answer.text


async def test_a_taken_port_is_an_os_error(server: HTTPServer) -> None:
    other = HTTPServer(router(), "127.0.0.1", server.port)
    with pytest.raises(OSError):
        await other.start()


# --- bodies -------------------------------------------------------------------------------------
def request_with(body: bytes, content_type: str | None) -> Request:
    async def read(_: Request) -> bytes:
        return body
    headers = Headers([("Content-Type", content_type)] if content_type else [])
    return Request("POST", "/", "/", "", headers, None, read)


async def test_forms_and_json() -> None:
    urlencoded = request_with(b"a=1&b=x+y&a=2&c=%C3%A9&e=", "application/x-www-form-urlencoded")
    assert await urlencoded.form() == {"a": "2", "b": "x y", "c": "é", "e": ""}
    latin = request_with(b"c=%E9", "application/x-www-form-urlencoded; charset=latin-1")
    assert await latin.form() == {"c": "é"}
    assert await request_with(b"a=1", "text/plain").form() == {}
    assert await request_with(b"a=1", None).form() == {}
    assert await request_with(b'{"a": [1]}', "application/json").json() == {"a": [1]}
    for raw, ctype in [(b"c=%E9", "application/x-www-form-urlencoded"),
                       (b"c=1", "application/x-www-form-urlencoded; charset=nosuch"),
                       (b"&" * 1000, "application/x-www-form-urlencoded"),
                       (b"garbage", "multipart/form-data; boundary=x"),
                       (b"garbage", "multipart/form-data")]:
        with pytest.raises(HTTPError) as refused:
            await request_with(raw, ctype).form()
        assert refused.value.status == 400
        assert refused.value.message == "the form body cannot be read"
    for raw, message in [(b"", "empty body"), (b"{no", "not valid JSON"),
                         (b"[" * 100_000, "not valid JSON"), (b"\xff\xfe\xfd", "not valid")]:
        with pytest.raises(HTTPError) as refused:
            await request_with(raw, "application/json").json()
        assert refused.value.status == 400 and message in refused.value.message


async def test_multipart_forms_as_clients_send_them() -> None:
    encoded = httpx.Request("POST", "http://t/", data={"text": "héllo", "token": "t0"},
                            files={"note": ("n.txt", b"file text", "text/plain")})
    body = encoded.read()
    req = request_with(body, encoded.headers["Content-Type"])
    assert await req.form() == {"text": "héllo", "token": "t0", "note": "file text"}
    with_preamble = (b"ignored\r\n--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1"
                     b"\r\n--B--\r\n")
    assert parse_multipart(with_preamble, "B") == {"a": "1"}
    for broken in [b"--B\r\nContent-Disposition: form-data\r\n\r\n1\r\n--B--",  # no name
                   b"--B\r\nContent-Disposition: form-data; name=a\r\n\r\n1",  # no end
                   b"--B\r\nContent-Disposition: form-data; name=a\r\n"
                   b"Content-Type: application/octet-stream\r\n\r\n\x00\r\n--B--"]:
        with pytest.raises(ValueError):
            parse_multipart(broken, "B")


def test_headers_are_case_insensitive_and_keep_the_clients_spelling() -> None:
    h = Headers([("Authorization", "Bearer a"), ("X-Thing", "1"), ("x-thing", "2")])
    assert h["authorization"] == "Bearer a" and h.get("AUTHORIZATION") == "Bearer a"
    assert "x-THING" in h and h.get("missing", "d") == "d"
    assert dict(h) == {"Authorization": "Bearer a", "X-Thing": "1"}
    assert h.get_all("X-Thing") == ["1", "2"]
    assert "Bearer" not in repr(h)
    assert parse_urlencoded(b"a=%20b\r\n") == {"a": " b"}


def test_routes_are_checked_when_added() -> None:
    r = Router()
    r.get("/a/{b}", info)
    with pytest.raises(ValueError):
        r.get("/a/{b}", info)
    with pytest.raises(ValueError):
        r.get("relative", info)
