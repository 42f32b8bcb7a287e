"""The aiohttp-backed httpx transport: what httpx users rely on still holds."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from bridge.glpi import GLPITracker
from bridge.tickets import NewTicket, Person, TrackerUnavailable
from bridge.transport import AiohttpTransport
from plugin.sandbox.glpi import GLPISimulator
from tests.e2e.harness import free_port


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"method": request.method, "body": body.decode(),
                                  "query": dict(request.query),
                                  "type": request.headers.get("Content-Type", ""),
                                  "x": request.headers.get("X-Test", "")})

    async def zipped(request: web.Request) -> web.Response:
        data = gzip.compress(json.dumps({"zipped": True}).encode())
        return web.Response(body=data, headers={"Content-Encoding": "gzip",
                                                "Content-Type": "application/json"})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/zipped", zipped)
    app.router.add_get("/slow", slow)
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/echo")

    app.router.add_get("/redirect", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_requests_bodies_headers_and_encodings(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, transport=AiohttpTransport()) as client:
        r = await client.post("/echo", params={"a": "1"}, json={"k": "é"},
                              headers={"X-Test": "yes"})
        assert r.status_code == 200
        assert r.json() == {"method": "POST", "body": '{"k":"é"}', "query": {"a": "1"},
                            "type": "application/json", "x": "yes"}
        files = await client.post("/echo", files={"f": ("a.txt", b"hello", "text/plain")})
        assert "hello" in files.json()["body"]
        assert files.json()["type"].startswith("multipart/form-data")
        assert (await client.get("/zipped")).json() == {"zipped": True}
        redirect = await client.get("/redirect")
        assert redirect.status_code == 302  # redirects are the caller's business


async def test_errors_become_httpx_errors(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, transport=AiohttpTransport(),
                                 timeout=0.3) as client:
        with pytest.raises(httpx.TimeoutException):
            await client.get("/slow")
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/")


async def test_a_tracker_on_the_transport() -> None:
    sim = GLPISimulator(user_token="tok")
    await sim.start()
    try:
        tracker = GLPITracker(url=sim.api_url, user_token="tok",
                              transport=AiohttpTransport(limit=4), max_in_flight=4)
        person = Person("alice", "alice@sandbox.local", "Alice")
        made = await asyncio.gather(*(tracker.create(NewTicket(
            f"t{i}", "x", person, f"ref-{i}")) for i in range(20)))
        assert len({t.id for t in made}) == 20
        await sim.set_down(True)
        with pytest.raises(TrackerUnavailable):
            await tracker.get(made[0].id)
        await tracker.aclose()
    finally:
        await sim.stop()
