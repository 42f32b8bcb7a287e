"""The REST client: the driver's endpoints on the event loop, with its timeouts, retries, errors,
TLS, proxies, caches and idempotent post creation, against the simulator and small local servers."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp import web

from bridge.headers import Headers
from plugin.doctor.report import REFUSED, TLS, reach_error
from plugin.mattermost import KEY_PROP, MattermostAPI, MattermostAuthError, MattermostError
from plugin.mm_http import retry_after_seconds
from plugin.sandbox.mattermost import MattermostSimulator
from tests.pki import make_pki

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def sim() -> AsyncIterator[MattermostSimulator]:
    server = MattermostSimulator(bot_token="rest-bot-token")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def api(sim: MattermostSimulator) -> AsyncIterator[MattermostAPI]:
    client = MattermostAPI(sim.url, "rest-bot-token", timeout=5, retries=3, max_retry_after=0.05)
    await client.login()
    yield client
    await client.aclose()


async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None
                ) -> tuple[web.AppRunner, int]:
    """A local HTTP server answering every request with `handler`; its runner and port."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    return runner, runner.addresses[0][1]


def requests_to(sim: MattermostSimulator, method: str, path: str) -> int:
    return sum(1 for r in sim.request_log if r.method == method and r.path == path)


# --- the driver's endpoints, on the loop ----------------------------------------------------------

async def test_calls_run_on_the_loop_and_the_driver_endpoints_answer(
        sim: MattermostSimulator, api: MattermostAPI) -> None:
    threads = threading.active_count()
    assert api.bot_id == sim.bot_id
    team = await api.call(lambda d: d.teams.get_team_by_name("sandbox"))
    channel = await api.call(lambda d: d.channels.get_channel_by_name(team["id"], "helpdesk"))
    assert channel["id"] == sim.channel_id("helpdesk")
    assert await api.call(lambda d: "not a coroutine") == "not a coroutine"
    chans = await api.my_channels()
    assert sim.channel_id("helpdesk") in {c["id"] for c in chans}
    assert threading.active_count() == threads  # no pool of threads behind the calls


async def test_users_channels_and_teams_are_cached_and_a_user_can_be_forgotten(
        sim: MattermostSimulator, api: MattermostAPI) -> None:
    alice = sim.user_id("alice")
    path = f"/api/v4/users/{alice}"
    assert (await api.user(alice))["username"] == "alice"
    assert (await api.user(alice))["username"] == "alice"
    assert requests_to(sim, "GET", path) == 1
    api.forget_user(alice)
    await api.user(alice)
    assert requests_to(sim, "GET", path) == 2
    helpdesk = sim.channel_id("helpdesk")
    await api.channel(helpdesk)
    await api.channel(helpdesk)
    assert requests_to(sim, "GET", f"/api/v4/channels/{helpdesk}") == 1
    teams = await api.teams()
    assert [t["name"] for t in teams] == ["sandbox"]
    await api.team(teams[0]["id"])
    assert requests_to(sim, "GET", f"/api/v4/teams/{teams[0]['id']}") == 0


async def test_membership_and_a_file_download(sim: MattermostSimulator,
                                              api: MattermostAPI) -> None:
    helpdesk = sim.channel_id("helpdesk")
    assert await api.is_member(helpdesk, sim.user_id("alice"))
    assert not await api.is_member(helpdesk, "x" * 26)
    data = bytes(range(256)) * 40
    file_id = await sim.upload_file("alice", "helpdesk", "dump.bin", data)
    await sim.post_as("alice", "helpdesk", "the dump", file_ids=[file_id])
    info, content = await api.file(file_id)
    assert info["name"] == "dump.bin" and content == data


# --- retries, rate limits and errors --------------------------------------------------------------

async def test_5xx_is_retried_and_errors_carry_status_and_id(
        sim: MattermostSimulator, api: MattermostAPI) -> None:
    helpdesk = sim.channel_id("helpdesk")
    sim.fail_next("GET", f"/channels/{helpdesk}$", 503, count=2)
    assert (await api.channel(helpdesk))["id"] == helpdesk
    assert requests_to(sim, "GET", f"/api/v4/channels/{helpdesk}") == 3
    sim.fail_next("GET", "/posts/", 500, count=4, error_id="store.sql_post.get.app_error")
    with pytest.raises(MattermostError) as caught:
        await api.get_post("p" * 26)
    assert caught.value.status == 500 and caught.value.retryable
    assert caught.value.error_id == "store.sql_post.get.app_error"
    with pytest.raises(MattermostError) as missing:
        await api.get_post("p" * 26)
    assert missing.value.status == 404 and not missing.value.retryable
    assert requests_to(sim, "GET", f"/api/v4/posts/{'p' * 26}") == 5  # 4 failed, then the 404


async def test_429_waits_as_retry_after_says_up_to_max_retry_after(
        sim: MattermostSimulator) -> None:
    patient = MattermostAPI(sim.url, "rest-bot-token", retries=3, max_retry_after=0.3)
    try:
        sim.rate_limit(2, retry_after=1)
        started = time.monotonic()
        await patient.login()
        waited = time.monotonic() - started
        assert 0.55 <= waited < 1.5  # two waits of Retry-After: 1, each cut to 0.3 s
        assert patient.bot_id == sim.bot_id
        sim.rate_limit(5, retry_after=0)
        with pytest.raises(MattermostError) as caught:
            await patient.user(sim.user_id("bob"))
        assert caught.value.status == 429
    finally:
        await patient.aclose()


async def test_a_call_its_caller_gave_up_on_runs_to_its_end(sim: MattermostSimulator) -> None:
    api = MattermostAPI(sim.url, "rest-bot-token", retries=3, max_retry_after=0.2)
    try:
        await api.login()
        bob = sim.user_id("bob")
        sim.rate_limit(1, retry_after=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(api.user(bob), 0.1)
        await sim.wait_for(lambda: any(r.path == f"/api/v4/users/{bob}" and r.status == 200
                                       for r in sim.request_log), 2)
        sim.rate_limit(1, retry_after=1)
        waiting = asyncio.ensure_future(api.user(bob))
        await sim.wait_for(lambda: sum(r.status == 429 for r in sim.request_log) == 2, 2)
        await api.aclose()  # ends the retry still waiting
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0.3)
        assert sum(r.path == f"/api/v4/users/{bob}" for r in sim.request_log) == 3
    finally:
        await api.aclose()


async def test_a_bad_token_is_an_auth_error(sim: MattermostSimulator) -> None:
    wrong = MattermostAPI(sim.url, "not-the-token")
    try:
        with pytest.raises(MattermostAuthError) as caught:
            await wrong.login()
        assert caught.value.status == 401 and caught.value.path == "/users/me"
    finally:
        await wrong.aclose()


async def test_unreachable_is_status_0_with_the_cause_kept() -> None:
    api = MattermostAPI("http://127.0.0.1:9", "token", retries=1, max_retry_after=0.01)
    try:
        with pytest.raises(MattermostError) as caught:
            await api.login()
        assert caught.value.status == 0 and caught.value.retryable
        assert reach_error(caught.value) == REFUSED
    finally:
        api.close()


async def test_a_silent_server_times_out_after_each_try() -> None:
    tries = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal tries
        tries += 1
        await reader.read(1)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    api = MattermostAPI(f"http://127.0.0.1:{port}", "token", timeout=0.2, retries=1,
                        max_retry_after=0.01)
    try:
        started = time.monotonic()
        with pytest.raises(MattermostError) as caught:
            await api.user("u" * 26)
        assert caught.value.status == 0 and tries == 2
        assert time.monotonic() - started < 2
    finally:
        await api.aclose()
        server.close()


async def test_headers_bodies_queries_and_bounded_concurrency() -> None:
    seen: list[tuple[str, str, str, dict[str, str], bytes]] = []
    in_flight = peak = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        body = await request.read()
        seen.append((request.method, request.path, request.query_string,
                     dict(request.headers), body))
        await asyncio.sleep(0.05)
        in_flight -= 1
        return web.json_response({"id": "x", "posts": {}, "order": []})

    runner, port = await serve(handler)
    api = MattermostAPI(f"http://127.0.0.1:{port}/mm", "tok-1", connections=2)
    try:
        await asyncio.gather(*(api.get_post(f"p{i}") for i in range(6)))
        assert peak == 2
        await api.posts_since("c1", 5)
        await api.custom_commands("t1")
        await api.view_channel("c1")
        method, path, query, headers, body = seen[0]
        assert query == ""
        assert (method, path, body) == ("GET", "/mm/api/v4/posts/p0", b"")
        assert headers["Authorization"] == "Bearer tok-1"
        assert headers["User-Agent"] == "Switchboard"
        assert headers["X-Requested-With"] == "XMLHttpRequest"
        assert seen[6][2] == "since=5"
        assert seen[7][2] == "team_id=t1&custom_only=true"
        assert seen[8][0] == "POST" and seen[8][3]["Content-Type"] == "application/json"
        assert seen[8][4] == b'{"channel_id": "c1"}'
    finally:
        await api.aclose()
        await runner.cleanup()


# --- idempotent post creation ---------------------------------------------------------------------

async def test_a_reply_stored_then_answered_500_is_posted_once(
        sim: MattermostSimulator, api: MattermostAPI) -> None:
    root = await sim.post_as("alice", "helpdesk", "112 printer")
    sim.fail_next("POST", "/posts$", 500, handled=True)
    reply = await api.create_post(root["channel_id"], "ticket 7", root_id=root["id"], key="k7")
    assert reply["props"][KEY_PROP] == "k7"
    mine = [p for p in sim.posts("helpdesk") if p["user_id"] == sim.bot_id]
    assert [p["message"] for p in mine] == ["ticket 7"]
    assert requests_to(sim, "POST", "/api/v4/posts") == 1
    again = await api.create_post(root["channel_id"], "ticket 7", root_id=root["id"], key="k7",
                                  check_first=True)
    assert again["id"] == reply["id"]
    assert requests_to(sim, "POST", "/api/v4/posts") == 1


async def test_a_post_refused_by_503_is_tried_again_after_a_look(
        sim: MattermostSimulator, api: MattermostAPI) -> None:
    helpdesk = sim.channel_id("helpdesk")
    sim.fail_next("POST", "/posts$", 503, count=2)
    post = await api.create_post(helpdesk, "hello", key="k-top")
    assert post["message"] == "hello"
    assert requests_to(sim, "POST", "/api/v4/posts") == 3
    assert requests_to(sim, "GET", f"/api/v4/channels/{helpdesk}/posts") == 2  # the looks
    sim.fail_next("POST", "/posts$", 403)
    with pytest.raises(MattermostError) as caught:
        await api.create_post(helpdesk, "refused", key="k-403")
    assert caught.value.status == 403
    assert requests_to(sim, "POST", "/api/v4/posts") == 4


async def test_an_unanswered_post_is_not_resent_blindly() -> None:
    posts = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal posts
        if request.method == "POST" and request.path == "/api/v4/posts":
            posts += 1
            raise ConnectionResetError("dropped")  # the connection closes with no answer
        return web.json_response({"order": [], "posts": {
            "p1": {"id": "p1", "create_at": 1, "props": {KEY_PROP: "k1"}}}})

    runner, port = await serve(handler)
    api = MattermostAPI(f"http://127.0.0.1:{port}", "tok", retries=3)
    try:
        found = await api.create_post("c1", "hi", root_id="r1", key="k1")
        assert found["id"] == "p1" and posts == 1
    finally:
        await api.aclose()
        await runner.cleanup()


# --- proxies and TLS ------------------------------------------------------------------------------

async def test_the_environments_proxy_is_used_with_its_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, str]] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append((request.headers["Host"], request.path,
                     request.headers.get("Proxy-Authorization", "")))
        return web.json_response({"id": "me", "username": "switchboard"})

    runner, port = await serve(proxy)
    monkeypatch.setenv("HTTP_PROXY", f"http://user:pw@127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    api = MattermostAPI("http://chat.example:8065", "tok")
    try:
        assert (await api.login())["username"] == "switchboard"
        assert seen == [("chat.example:8065", "/api/v4/users/me", "Basic dXNlcjpwdw==")]
    finally:
        await api.aclose()
        await runner.cleanup()
    direct = MattermostAPI("http://direct.example:9", "tok", retries=0)
    assert direct.driver.client._proxy is None
    direct.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1: (CA file, certificate, key)."""
    made = make_pki(tmp_path_factory.mktemp("mm-pki"), "127.0.0.1", "IP:127.0.0.1")
    return made.ca_file, made.cert_file, made.key_file


async def test_tls_is_verified_against_the_ca_bundle(pki: tuple[Path, Path, Path],
                                                     tmp_path: Path) -> None:
    ca_file, cert_file, key_file = pki
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)

    async def me(request: web.Request) -> web.Response:
        return web.json_response({"id": "me"})

    runner, port = await serve(me, context)
    url = f"https://127.0.0.1:{port}"
    made: list[MattermostAPI] = []

    def client(verify: bool | str) -> MattermostAPI:
        made.append(MattermostAPI(url, "tok", retries=0, verify=verify))
        return made[-1]

    try:
        assert (await client(str(ca_file)).login())["id"] == "me"
        assert (await client(False).login())["id"] == "me"
        with pytest.raises(MattermostError) as caught:
            await client(True).login()  # the public CAs do not know this one
        assert caught.value.status == 0 and reach_error(caught.value) == TLS
        with pytest.raises(OSError):
            await client(str(tmp_path / "missing.pem")).login()
    finally:
        for api in made:
            await api.aclose()
        await runner.cleanup()


# --- closing ----------------------------------------------------------------------------------

async def test_close_without_waiting_and_use_after_close(sim: MattermostSimulator) -> None:
    api = MattermostAPI(sim.url, "rest-bot-token")
    await api.login()
    api.close()
    await asyncio.sleep(0)
    await api.login()  # a new pool
    await api.aclose()
    await api.aclose()


def test_close_when_no_loop_runs() -> None:
    api = MattermostAPI("http://127.0.0.1:9", "token", retries=0)

    async def fail() -> None:
        with pytest.raises(MattermostError):
            await api.login()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(fail())
        api.close()  # the loop is idle: closed on it, at once
    finally:
        loop.close()


# --- bodies, encodings and headers ----------------------------------------------------------------

async def test_a_file_upload_is_multipart_and_comes_back_whole(
        sim: MattermostSimulator, api: MattermostAPI) -> None:
    helpdesk = sim.channel_id("helpdesk")
    data = bytes(range(256)) * 9
    uploaded = await api.call(lambda d: d.files.upload_file(
        helpdesk, files={"files": ('rapport "été".xdump', data, "application/x-dump")}))
    info = uploaded["file_infos"][0]
    assert info["name"] == "rapport %22été%22.xdump" and info["size"] == len(data)
    got_info, content = await api.file(info["id"])
    assert content == data and got_info["mime_type"] == "application/x-dump"


async def test_a_gzip_answer_is_decoded_though_not_asked_for() -> None:
    asked: list[str | None] = []

    async def zipped(request: web.Request) -> web.Response:
        asked.append(request.headers.get("Accept-Encoding"))
        return web.Response(body=gzip.compress(b'{"id": "me", "username": "z"}'),
                            headers={"Content-Encoding": "gzip",
                                     "Content-Type": "application/json"})

    runner, port = await serve(zipped)
    api = MattermostAPI(f"http://127.0.0.1:{port}", "tok")
    try:
        assert (await api.login())["username"] == "z"
        assert asked == [None]
    finally:
        await api.aclose()
        await runner.cleanup()


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("3") == 3.0
    soon = datetime.now(UTC) + timedelta(seconds=30)
    waited = retry_after_seconds(format_datetime(soon, usegmt=True))
    assert waited is not None and 25 < waited <= 30
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # past: no wait
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("") is None and retry_after_seconds(None) is None


def test_answer_headers_are_read_in_any_case() -> None:
    headers = Headers([("Content-Type", "application/json"), ("Set-Cookie", "a=1"),
                       ("set-cookie", "b=2")])
    assert headers["content-type"] == headers.get("CONTENT-TYPE") == "application/json"
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert "set-COOKIE" in headers and "Retry-After" not in headers
    assert headers.get("Retry-After") is None and len(headers) == 2
