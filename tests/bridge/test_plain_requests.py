"""`send_plain` without httpx's models: the same bytes on the wire as `client.request`, the same
answer read, the same errors; and the paths that still go through httpx."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.glpi import GLPITracker
from bridge.responses import PlainResponse
from bridge.tickets import NewTicket, Person, TrackerRejected, TrackerUnavailable
from bridge.transport import _JSON, PooledTransport, _wire_headers, send_plain
from plugin.sandbox.glpi import GLPISimulator
from tests.e2e.harness import free_port

PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


def answer(status: str = "200 OK", body: bytes = b'{"ok":true}',
           headers: tuple[str, ...] = ("Content-Type: application/json",)) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return (f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
            + body)


@dataclass
class Recorder:
    """A keep-alive HTTP/1.1 server that keeps every request as the bytes it received (head
    and body) and answers each with the answer set for its path (a JSON `{"ok":true}` unless
    set; a path set to None gets no answer at all)."""

    port: int = 0
    raw: list[bytes] = field(default_factory=list)
    answers: dict[str, bytes | None] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                self.raw.append(head + body)
                target = head.split(b" ")[1].decode()
                if "://" in target:  # absolute form, as to a proxy
                    target = "/" + target.split("://", 1)[1].partition("/")[2]
                path = target.partition("?")[0]
                reply = self.answers.get(path, answer())
                if reply is None:
                    await asyncio.sleep(30)
                    return
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def take(self) -> list[bytes]:
        taken, self.raw = self.raw, []
        return taken


@pytest.fixture
async def recorder(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Recorder]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    rec = Recorder()
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    rec.port = server.sockets[0].getsockname()[1]
    yield rec
    server.close()
    await server.wait_closed()


def pooled_client(**options: Any) -> httpx.AsyncClient:
    options.setdefault("transport", PooledTransport())
    options.setdefault("timeout", 3)
    return httpx.AsyncClient(**options)


REQUESTS: list[tuple[str, str, httpx.QueryParams | None, dict[str, str], Any]] = [
    ("GET", "/search/User", httpx.QueryParams((("criteria[0][field]", "5"), ("x", "a b&c=d"),
                                               ("x", "é/ü?"), ("empty", ""))),
     {"Session-Token": "s1", "Content-Type": "application/json"}, None),
    ("POST", "/Ticket", None, {"Session-Token": "s1", "App-Token": "a1"},
     {"input": {"name": "Imprimante « HS » — 東京 😀", "content": "<p>a &amp; b</p>\u2028",
                "urgency": 3, "ratio": 0.1, "flags": [True, False, None],
                "nested": {"list": [{"k": "v"}, [], {}], "n": -12}}}),
    ("post", "/ITILFollowup", None, {"content-type": "application/json; charset=utf-8"},
     {"input": "x"}),
    ("PUT", "/Ticket/4", httpx.QueryParams({"a": "1"}), {}, {"input": {"status": 5}}),
    ("DELETE", "/Ticket/4", None, {"accept": "application/json", "user-agent": "glpi-bot"},
     None),
    ("POST", "/killSession", None, {}, None),
]


@pytest.mark.parametrize("defaults", [None, {"X-Client": "switchboard", "Accept": "text/*"}])
async def test_the_bytes_on_the_wire_are_those_of_client_request(
        recorder: Recorder, defaults: dict[str, str] | None) -> None:
    base = recorder.url + "/apirest.php"
    async with pooled_client(base_url=base + "/", headers=defaults) as client:
        for method, path, params, headers, body in REQUESTS:
            expected = await client.request(method, base + path, params=params,
                                            headers=headers, json=body)
            plain = await send_plain(client, method, base + path, params=params,
                                     headers=headers, json=body)
            assert isinstance(plain, PlainResponse)  # the path without httpx's models
            sent_by_httpx, sent_plain = recorder.take()
            assert sent_plain == sent_by_httpx
            assert plain.status_code == expected.status_code == 200
            assert plain.json() == expected.json() == {"ok": True}
            assert plain.request.method == expected.request.method == method.upper()
            assert str(plain.request.url) == str(expected.request.url)
    assert recorder.raw == []


async def test_the_headers_are_those_httpx_sends_on_its_own_transport(
        recorder: Recorder) -> None:
    """Against httpx's own transport (httpcore): the same request line, body and headers;
    only Content-Length's place among them differs (this client writes it last)."""
    base = recorder.url + "/apirest.php"
    for method, path, params, headers, body in REQUESTS:
        async with httpx.AsyncClient(trust_env=False, headers={"X-Client": "s"}) as stock:
            await stock.request(method, base + path, params=params, headers=headers, json=body)
        async with pooled_client(headers={"X-Client": "s"}) as client:
            await send_plain(client, method, base + path, params=params, headers=headers,
                             json=body)
        by_httpx, plain = (raw.split(b"\r\n\r\n", 1) for raw in recorder.take())
        assert plain[1] == by_httpx[1]
        httpx_lines, plain_lines = by_httpx[0].split(b"\r\n"), plain[0].split(b"\r\n")
        assert plain_lines[0] == httpx_lines[0]
        assert sorted(plain_lines[1:]) == sorted(httpx_lines[1:])
        assert ([line for line in plain_lines if not line.startswith(b"Content-Length")]
                == [line for line in httpx_lines if not line.startswith(b"Content-Length")])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(json_values.filter(lambda value: value is not None))  # json=None: no body
def test_json_bodies_are_encoded_as_httpx_encodes_them(value: Any) -> None:
    try:
        expected = httpx.Request("POST", "http://x/", json=value).content
    except UnicodeEncodeError:  # lone surrogates
        with pytest.raises(UnicodeEncodeError):
            _JSON(value).encode("utf-8")
        return
    assert _JSON(value).encode("utf-8") == expected


def test_json_bodies_httpx_refuses_are_refused() -> None:
    for value in (float("nan"), {"x": float("inf")}):
        with pytest.raises(ValueError):
            httpx.Request("POST", "http://x/", json=value)
        with pytest.raises(ValueError):
            _JSON(value)


header_names = st.sampled_from(["Accept", "accept", "ACCEPT-ENCODING", "User-Agent",
                                "Content-Type", "content-type", "Host", "Content-Length",
                                "Transfer-Encoding", "Session-Token", "App-Token", "X-A"])
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(header_names, header_values, max_size=4),
       st.dictionaries(header_names, header_values, max_size=6), st.booleans())
def test_headers_merge_as_httpx_merges_them(defaults: dict[str, str], headers: dict[str, str],
                                            with_json: bool) -> None:
    client = httpx.AsyncClient(headers=defaults)
    merged = client.headers.copy()
    merged.update(headers)
    request = httpx.Request("POST", "http://x/", headers=merged,
                            json={"a": 1} if with_json else None)
    expected = [(k, v) for k, v in request.headers.raw
                if k.lower() not in (b"host", b"content-length", b"transfer-encoding")]
    assert list(_wire_headers(client.headers.raw, headers, with_json)) == expected


def test_headers_httpx_cannot_encode_are_refused_alike() -> None:
    with pytest.raises(UnicodeEncodeError):
        httpx.Headers({"X-Name": "Zoë"})
    with pytest.raises(UnicodeEncodeError):
        _wire_headers([], {"X-Name": "Zoë"}, False)


# --- the answer --------------------------------------------------------------------------------

BODY = json.dumps({"name": "café", "list": [1, 2]}).encode()

def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


ANSWERS = {
    "/gzip": answer(body=gzip.compress(BODY), headers=("Content-Type: application/json",
                                                       "Content-Encoding: gzip")),
    "/deflate": answer(body=zlib.compress(BODY), headers=("Content-Encoding: Deflate ",)),
    "/raw-deflate": answer(body=_raw_deflate(BODY), headers=("Content-Encoding: deflate",)),
    "/identity": answer(body=BODY, headers=("Content-Encoding: identity",)),
    "/latin1": answer(body="café à la crème".encode("latin-1"),
                      headers=("Content-Type: text/plain; charset=ISO-8859-1",)),
    "/quoted": answer(body="žluť".encode("cp1250"),
                      headers=('Content-Type: text/plain; charset="windows-1250"',)),
    "/unknown-charset": answer(body="naïve".encode(),
                               headers=("Content-Type: text/plain; charset=klingon",)),
    "/no-type": answer(body=b"caf\xc3\xa9 \xff"),
    "/not-json": answer("500 Internal Server Error", b"<html>Fatal error</html>",
                        ("Content-Type: text/html",)),
    "/empty": answer("204 No Content", b"", ()),
    "/repeated": answer("201 Created", b"{}", ("X-Seen: a", "x-seen: b", "Link: <x>")),
    "/odd-reason": answer("404 Not Fönd", b"[]", ()),
    "/twice-encoded": answer(body=gzip.compress(zlib.compress(BODY)),
                             headers=("Content-Encoding: deflate", "Content-Encoding: gzip")),
    "/brotli": answer(body=b"\x0b\x02\x80{}\x03", headers=("Content-Encoding: br",)),
    "/bad-gzip": answer(body=b"not gzip at all", headers=("Content-Encoding: gzip",)),
}


def _read(response: Any) -> dict[str, Any]:
    try:
        parsed = response.json()
    except ValueError as exc:
        parsed = type(exc).__name__
    return {"status": response.status_code, "reason": response.reason_phrase,
            "content": response.content, "text": response.text, "json": parsed,
            "headers": sorted(response.headers.multi_items()),
            "type": response.headers.get("CONTENT-TYPE"),
            "seen": response.headers.get("x-seen")}


async def test_the_answer_reads_as_httpx_reads_it(recorder: Recorder) -> None:
    recorder.answers.update(ANSWERS)
    async with pooled_client() as client:
        for path in ANSWERS:
            if path == "/bad-gzip":
                continue
            url = recorder.url + path
            expected = await client.get(url)
            plain = await send_plain(client, "GET", url, headers={})
            assert _read(plain) == _read(expected), path
            assert isinstance(plain, PlainResponse) == (
                path not in ("/twice-encoded", "/brotli")), path


async def test_what_the_answer_reads(recorder: Recorder) -> None:
    recorder.answers.update(ANSWERS)
    async with pooled_client() as client:
        async def get(path: str) -> Any:
            return await send_plain(client, "GET", recorder.url + path, headers={})

        for path in ("/gzip", "/deflate", "/raw-deflate", "/identity"):
            assert (await get(path)).json() == {"name": "café", "list": [1, 2]}, path
        assert (await get("/latin1")).text == "café à la crème"
        assert (await get("/quoted")).text == "žluť"
        assert (await get("/unknown-charset")).text == "naïve"  # utf-8 by default
        assert (await get("/no-type")).text == "café \ufffd"
        not_json = await get("/not-json")
        assert not_json.status_code == 500 and not_json.reason_phrase == "Internal Server Error"
        with pytest.raises(json.JSONDecodeError):
            not_json.json()
        empty = await get("/empty")
        assert (empty.status_code, empty.content, empty.text) == (204, b"", "")
        with pytest.raises(ValueError):
            empty.json()
        repeated = await get("/repeated")
        assert repeated.headers["X-SEEN"] == "a, b"
        assert repeated.headers.get_list("x-seen") == ["a", "b"]
        assert (await get("/odd-reason")).reason_phrase == "Not Fnd"
        assert (await get("/twice-encoded")).json()["name"] == "café"
        assert repr(await get("/gzip")) == "<Response [200 OK]>"


async def test_a_body_its_encoding_does_not_describe_is_a_decoding_error(
        recorder: Recorder) -> None:
    recorder.answers.update(ANSWERS)
    async with pooled_client() as client:
        with pytest.raises(httpx.DecodingError):
            await client.get(recorder.url + "/bad-gzip")
        with pytest.raises(httpx.DecodingError) as caught:
            await send_plain(client, "GET", recorder.url + "/bad-gzip", headers={})
    assert caught.value.request.url.path == "/bad-gzip"


# --- errors ------------------------------------------------------------------------------------

async def test_timeouts_and_refusals_are_httpx_errors(recorder: Recorder) -> None:
    recorder.answers["/silent"] = None
    async with pooled_client(timeout=0.3) as client:
        for send in ("plain", "httpx"):
            url = recorder.url + "/silent"
            with pytest.raises(httpx.ReadTimeout) as timed_out:
                if send == "plain":
                    await send_plain(client, "POST", url, headers={"Session-Token": "s"},
                                     json={"a": 1})
                else:
                    await client.post(url, headers={"Session-Token": "s"}, json={"a": 1})
            assert timed_out.value.request.method == "POST"
            assert timed_out.value.request.url.path == "/silent"
            assert timed_out.value.request.headers["session-token"] == "s"
            closed = f"http://127.0.0.1:{free_port()}/x"
            with pytest.raises(httpx.ConnectError) as refused:
                if send == "plain":
                    await send_plain(client, "GET", closed, headers={})
                else:
                    await client.get(closed)
            assert refused.value.request.url == httpx.URL(closed)
            with pytest.raises(httpx.LocalProtocolError):
                if send == "plain":
                    await send_plain(client, "GET", recorder.url, headers={"X": "a\r\nB: c"})
                else:
                    await client.get(recorder.url, headers={"X": "a\r\nB: c"})


async def test_a_tracker_maps_the_errors_of_the_plain_path(recorder: Recorder) -> None:
    recorder.answers["/api/initSession"] = None
    tracker = GLPITracker(url=recorder.url + "/api", user_token="u" * 40, timeout=0.3,
                          transport=PooledTransport())
    try:
        with pytest.raises(TrackerUnavailable, match=r"did not answer within 0\.3 s"):
            await tracker.get("1")
    finally:
        await tracker.aclose()
    tracker = GLPITracker(url=f"http://127.0.0.1:{free_port()}/api", user_token="u" * 40,
                          transport=PooledTransport())
    try:
        with pytest.raises(TrackerUnavailable, match=r"unreachable \(ConnectError\)"):
            await tracker.get("1")
    finally:
        await tracker.aclose()


# --- the other paths ---------------------------------------------------------------------------

async def test_cookies_go_through_httpx_as_before(recorder: Recorder) -> None:
    recorder.answers["/login"] = answer(headers=("Set-Cookie: sid=abc; Path=/",
                                                 "Content-Type: application/json"))
    sequences = []
    for plain in (False, True):
        async with pooled_client() as client:
            for path in ("/before", "/login", "/after"):
                if plain:
                    response = await send_plain(client, "POST", recorder.url + path,
                                                headers={}, json={"p": path})
                else:
                    response = await client.post(recorder.url + path, json={"p": path})
                assert response.json() == {"ok": True}
                # The plain path while the client has no cookies and none are set.
                assert isinstance(response, PlainResponse) == (plain and path == "/before")
            assert client.cookies["sid"] == "abc"
        sequences.append(recorder.take())
    assert sequences[0] == sequences[1]
    assert b"\r\nCookie: sid=abc\r\n" in sequences[1][2]


async def test_a_proxy_from_the_environment(recorder: Recorder,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorder as the proxy: the plain path takes the transport's proxy (absolute form);
    a client whose own httpx proxy transport is mounted for the URL goes through httpx."""
    monkeypatch.setenv("HTTP_PROXY", recorder.url)
    url = "http://glpi.example.invalid:8080/apirest.php/Ticket"
    async with pooled_client() as client:
        expected = await client.post(url, json={"a": "é"}, headers={"Session-Token": "s"})
        plain = await send_plain(client, "POST", url, json={"a": "é"},
                                 headers={"Session-Token": "s"})
    assert isinstance(plain, PlainResponse) and plain.json() == expected.json()
    sent_by_httpx, sent_plain = recorder.take()
    assert sent_plain == sent_by_httpx
    assert sent_plain.startswith(b"POST http://glpi.example.invalid:8080/apirest.php/Ticket "
                                 b"HTTP/1.1\r\nHost: glpi.example.invalid:8080\r\n")
    # httpx mounts its own proxy transport from the environment when given no transport.
    async with httpx.AsyncClient(timeout=3) as stock:
        response = await send_plain(stock, "POST", url, json={"a": "é"}, headers={})
    assert isinstance(response, httpx.Response) and response.json() == {"ok": True}
    assert recorder.take()[0].startswith(b"POST http://glpi.example.invalid:8080/apirest.php/")


async def test_what_the_client_alone_handles_goes_through_it(recorder: Recorder) -> None:
    recorder.answers["/moved"] = answer("302 Found", b"", ("Location: /target",))
    async with pooled_client(follow_redirects=True) as client:
        response = await send_plain(client, "GET", recorder.url + "/moved", headers={})
        assert isinstance(response, httpx.Response) and response.status_code == 200
        assert str(response.url).endswith("/target")
    async with pooled_client(auth=("user", "pw")) as client:
        await send_plain(client, "GET", recorder.url + "/a", headers={})
    async with pooled_client(params={"always": "1"}) as client:
        await send_plain(client, "GET", recorder.url + "/b", headers={})
    async with pooled_client(base_url=recorder.url + "/api/") as client:
        await send_plain(client, "GET", "relative", headers={})
    seen = recorder.take()
    assert b"\r\nAuthorization: Basic dXNlcjpwdw==\r\n" in seen[2]
    assert seen[3].startswith(b"GET /b?always=1 ")
    assert seen[4].startswith(b"GET /api/relative ")
    client = pooled_client()
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await send_plain(client, "GET", recorder.url, headers={})


async def test_a_glpi_tracker_on_the_plain_path() -> None:
    sim = GLPISimulator(user_token="tok")
    await sim.start()
    tracker = GLPITracker(url=sim.api_url, user_token="tok", transport=PooledTransport())
    try:
        person = Person(username="alice", email="alice@sandbox.local")
        made = await tracker.create(NewTicket("Tóner", "vacío", person, "ref-1"))
        assert (await tracker.get(made.id)).title == "Tóner"
        response = await tracker._call("GET", f"/Ticket/{made.id}")
        assert isinstance(response, PlainResponse)
        with pytest.raises(TrackerRejected, match=r"HTTP 400 on POST /apirest\.php/Ticket"):
            await tracker.create(NewTicket("x", "y", person, "ref-2",
                                           fields={"entities_id": 42}))
        sim.expire_sessions()
        assert (await tracker.get(made.id)).id == made.id  # logged in again
    finally:
        await tracker.aclose()
        await sim.stop()
