"""The simulator holds to what a post costs a real server: link previews and the CPU cost model.

A reply whose first link is a bare URL has that page fetched (really, over HTTP, as
`Mattermost-Bot/1.1`) before the create call is answered; a markdown link, a URL in code and an
attachment's link are not fetched. A ticket's link points at the GLPI simulator's ticket page,
which is served as its API is (the same latency, the same limit on requests at once), so a
preview of it costs what a real GLPI's page does. With the cost model on, every post is paid for
in the simulator's worker processes, in CPU time the kernel counts; nothing here times the wall
clock.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from plugin.sandbox.costs import Cost, CostModel
from plugin.sandbox.glpi import GLPISimulator
from plugin.sandbox.mattermost import MattermostSimulator
from plugin.sandbox.mm_previews import USER_AGENT, first_link

BOT_TOKEN = "test-costs-bot-token"


class Pages:
    """A tiny web site that remembers every request it got (path and User-Agent)."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def page(request: web.Request) -> web.Response:
            self.hits.append((request.path_qs, request.headers.get("User-Agent", "")))
            return web.Response(text="<html><head><meta property='og:title' content='T'>"
                                     "</head></html>", content_type="text/html")

        app = web.Application()
        app.router.add_get("/{tail:.*}", page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def pages() -> AsyncIterator[Pages]:
    site = Pages()
    await site.start()
    yield site
    await site.stop()


@pytest.fixture
async def sim() -> AsyncIterator[MattermostSimulator]:
    server = MattermostSimulator(bot_token=BOT_TOKEN)
    await server.start()
    yield server
    await server.stop()


async def create(sim: MattermostSimulator, body: dict[str, Any],
                 token: str = BOT_TOKEN) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.post(
            sim.url + "/api/v4/posts", json=body,
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 201, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


async def reply(sim: MattermostSimulator, message: str, **extra: Any) -> dict[str, Any]:
    root = await sim.post_as("alice", "helpdesk", "112 my printer is on fire")
    return await create(sim, {"channel_id": root["channel_id"], "root_id": root["id"],
                              "message": message, **extra})


async def test_a_reply_with_a_bare_url_fetches_it_once_before_it_is_answered(
        sim: MattermostSimulator, pages: Pages) -> None:
    url = pages.url + "/front/ticket.form.php?id=7"
    await reply(sim, f":ticket: Ticket **#7** opened in GLPI: printer\n{url}\nReplies here.")
    # Fetched before the create call was answered: nothing to wait for.
    assert pages.hits == [("/front/ticket.form.php?id=7", USER_AGENT)]
    assert [(f.url, f.status) for f in sim.preview_fetches] == [(url, 200)]


async def test_a_bare_ticket_link_fetches_the_trackers_ticket_page(
        sim: MattermostSimulator) -> None:
    glpi = GLPISimulator(user_token="page-token", latency_s=0.02, max_concurrency=2)
    await glpi.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(glpi.api_url + "/initSession",
                                headers={"Authorization": "user_token page-token"}) as resp:
                session = (await resp.json())["session_token"]
            async with http.post(glpi.api_url + "/Ticket", headers={"Session-Token": session},
                                 json={"input": {"name": "Printer <on> fire",
                                                 "content": "It burns"}}) as resp:
                number = (await resp.json())["id"]
            page = f"{glpi.url}/front/ticket.form.php?id={number}"
            async with http.get(page) as resp:
                assert resp.status == 200
                assert "Ticket - 1 - Printer &lt;on&gt; fire - GLPI" in await resp.text()
            async with http.get(f"{glpi.url}/front/ticket.form.php?id=99") as resp:
                assert resp.status == 404
            # Pages wait for the same slots as the API: never more than 2 at once.
            glpi.peak_in_flight = 0
            statuses = await asyncio.gather(*(http.get(page) for _ in range(6)))
            assert [r.status for r in statuses] == [200] * 6
            assert glpi.peak_in_flight == 2
        await reply(sim, f"Ticket #{number} opened in GLPI: {page}")
        assert [(f.url, f.status) for f in sim.preview_fetches] == [(page, 200)]
        assert [r.status for r in glpi.request_log
                if r.path == "/front/ticket.form.php"][-1:] == [200]
    finally:
        await glpi.stop()


async def test_a_markdown_link_is_not_fetched(sim: MattermostSimulator, pages: Pages) -> None:
    await reply(sim, f"Ticket [#8]({pages.url}/front/ticket.form.php?id=8) opened in GLPI")
    await asyncio.sleep(0.05)
    assert pages.hits == []
    assert sim.preview_fetches == []


async def test_an_attachments_link_is_not_fetched(sim: MattermostSimulator,
                                                  pages: Pages) -> None:
    link = pages.url + "/front/ticket.form.php?id=9"
    await reply(sim, "", props={"attachments": [{"text": f"Ticket #9: {link}",
                                                 "title_link": link}]})
    await asyncio.sleep(0.05)
    assert pages.hits == []
    assert sim.preview_fetches == []


async def test_a_url_in_code_is_not_fetched_and_an_edit_fetches_its_new_link(
        sim: MattermostSimulator, pages: Pages) -> None:
    post = await reply(sim, f"run `curl {pages.url}/code` and see")
    assert pages.hits == []
    async with aiohttp.ClientSession() as http, http.put(
            f"{sim.url}/api/v4/posts/{post['id']}/patch",
            json={"message": f"see {pages.url}/edited"},
            headers={"Authorization": f"Bearer {BOT_TOKEN}"}) as resp:
        assert resp.status == 200
    assert pages.hits == [("/edited", USER_AGENT)]


async def test_a_failing_fetch_is_ignored(sim: MattermostSimulator, pages: Pages) -> None:
    url = pages.url.rsplit(":", 1)[0] + ":1/nothing-listens-here"
    answer = await reply(sim, f"see {url}")
    assert answer["message"] == f"see {url}"
    assert [(f.url, f.status) for f in sim.preview_fetches] == [(url, None)]


async def test_previews_can_be_switched_off(pages: Pages) -> None:
    server = MattermostSimulator(bot_token=BOT_TOKEN, link_previews=False)
    await server.start()
    try:
        await reply(server, f"see {pages.url}/off")
    finally:
        await server.stop()
    assert pages.hits == []


@pytest.mark.parametrize(("message", "link"), [
    ("plain http://a.example/x?id=1. next", "http://a.example/x?id=1"),
    ("[first](http://a.example/md) then https://b.example/bare", "https://b.example/bare"),
    ("<https://a.example/angle> and more", "https://a.example/angle"),
    ("```\nhttp://a.example/fenced\n```\n", None),
    ("![image](http://a.example/i.png)", None),
    ("text:http://a.example/glued", None),
    ("(see https://a.example/paren)", "https://a.example/paren"),
])
def test_the_first_bare_link(message: str, link: str | None) -> None:
    assert first_link(message) == link


async def test_posts_cost_at_least_their_cpu_in_the_workers() -> None:
    """N posts created, by REST and by the Python API, cost the workers at least N × the CPU
    per post, as the kernel counts the workers' CPU time."""
    per_post = Cost(app_s=0.004, db_s=0.006)
    model = CostModel(costs={**CostModel().costs, "post_create": per_post}, workers=2)
    server = MattermostSimulator(bot_token=BOT_TOKEN, cost_model=model)
    await server.start()
    try:
        assert server.cpu is not None
        before = server.cpu.worker_cpu_seconds()
        channel = server.channel_id("helpdesk")
        count = 40
        await asyncio.gather(*(create(server, {"channel_id": channel, "message": f"post {i}"})
                               for i in range(count // 2)))
        await server.flood("helpdesk", "alice", [f"flood {i}" for i in range(count // 2)])
        spent = server.cpu.worker_cpu_seconds() - before
        assert len(server.posts("helpdesk")) == count
        assert server.cpu.counts["post_create"] == count
        assert server.cpu.charged["post_create"] >= count * per_post.total_s
        # The kernel reports whole clock ticks: each worker's figure may be short by one.
        tick = 1 / os.sysconf("SC_CLK_TCK")
        assert spent >= count * per_post.total_s - len(server.cpu.pids) * tick
        assert len(server.cpu.pids) == 2
    finally:
        await server.stop()


def test_requests_are_costed_by_kind() -> None:
    kind = CostModel.kind_of
    assert kind("POST", "/api/v4/posts") == "post_create"
    assert kind("PUT", "/api/v4/posts/abc/patch") == "post_edit"
    assert kind("DELETE", "/api/v4/posts/abc") == "post_delete"
    assert kind("GET", "/api/v4/users/me") == "read"
    assert kind("POST", "/api/v4/reactions") == "write"
    assert kind("GET", "/api/v4/websocket") is None
    assert CostModel().cost("post_create").total_s == pytest.approx(0.0055)
