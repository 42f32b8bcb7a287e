"""Router, filters and the generated help."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plugin import filters as F
from plugin.events import BadPayload, Message, Post
from plugin.router import Router, RouteTable


def msg(text: str, ctype: str = "O", user: str = "u1", sender: str = "@alice",
        channel: str = "c1", name: str = "helpdesk") -> Message:
    return Message(post=Post(id="p1", channel_id=channel, user_id=user, message=text,
                             create_at=1), channel_type=ctype,  # type: ignore[arg-type]
                   sender_name=sender, channel_name=name)


def build() -> RouteTable:
    r = Router("t")

    @r.command("status", args=r"#?(?P<number>\d+)", usage="status <number>",
               description="ticket status")
    async def status(number: str) -> None: ...

    @r.command("my tickets", description="your open tickets")
    async def mine() -> None: ...

    @r.command("ping", anywhere=True)
    async def ping() -> None: ...

    @r.message(F.Keyword("112", "112!"), usage="112 <problem>", description="open a ticket")
    async def helpdesk(text: str, keyword: str) -> None: ...

    @r.message(F.Regex(r"^deploy (?P<app>\w+) to (?P<env>\w+)$"), channels=["ops"])
    async def deploy(app: str, env: str) -> None: ...

    @r.action("ack")
    async def ack() -> None: ...

    @r.slash("ticket", description="open a ticket")
    async def slash() -> None: ...

    return RouteTable(r)


def test_keyword_captures_rest_and_prefers_longest() -> None:
    t = build()
    m = t.match_message(msg("112 printer broken"))
    assert m is not None and m.route.handler.__name__ == "helpdesk"
    assert m.captured == {"keyword": "112", "text": "printer broken"}
    m = t.match_message(msg("112! server room on fire"))
    assert m is not None and m.captured["keyword"] == "112!"
    assert t.match_message(msg("1123 not a trigger")) is None
    assert t.match_message(msg("call 112 now")) is None


def test_commands_only_in_dms_unless_anywhere() -> None:
    t = build()
    m = t.match_message(msg("status #123", ctype="D"))
    assert m is not None and m.captured["number"] == "123" and not m.captured["usage_error"]
    m = t.match_message(msg("Status abc", ctype="D"))
    assert m is not None and m.captured["usage_error"]
    assert t.match_message(msg("status 123", ctype="O")) is None
    m = t.match_message(msg("my   tickets", ctype="D"))
    assert m is not None and m.route.handler.__name__ == "mine"
    m = t.match_message(msg("@switchboard ping", ctype="O"), "@switchboard")
    assert m is not None and m.route.handler.__name__ == "ping"
    assert t.match_message(msg("ping", ctype="O"), "@switchboard") is None


def test_regex_groups_and_channel_filter() -> None:
    t = build()
    m = t.match_message(msg("deploy web to prod", name="ops"))
    assert m is not None and (m.captured["app"], m.captured["env"]) == ("web", "prod")
    assert t.match_message(msg("deploy web to prod", name="helpdesk")) is None


def test_handler_gets_only_named_arguments() -> None:
    t = build()
    route = t.get("action", "ack")
    assert route is not None and route.params == frozenset()
    seen: dict[str, Any] = {}
    r = Router()

    @r.message(F.Keyword("x"))
    async def h(text: str, **rest: Any) -> None:
        seen.update(rest, text=text)

    route2 = next(RouteTable(r).root.routes("message"))
    assert route2.params is None


def test_help_lists_declarations() -> None:
    text = build().help_text()
    assert "`status <number>` — ticket status" in text
    assert "`my tickets` — your open tickets" in text
    assert "`112 <problem>` — open a ticket" in text
    assert "`/ticket` — open a ticket" in text


def test_declaration_errors() -> None:
    r = Router()
    with pytest.raises(ValueError):
        r.action("bad_name")
    with pytest.raises(TypeError):
        r.command("x")(lambda: None)  # type: ignore[arg-type, return-value]
    r.action("dup")(_noop)
    r2 = Router()
    r2.action("dup")(_noop)
    with pytest.raises(ValueError, match="two handlers"):
        RouteTable(Router().include(r, r2))


async def _noop() -> None: ...


def test_posted_frame_decoding() -> None:
    post = {"id": "p", "channel_id": "c", "user_id": "u", "message": "hi", "create_at": 5,
            "root_id": "", "props": {"from_bot": "true"}}
    m = Message.from_frame({"post": json.dumps(post), "channel_type": "D",
                            "mentions": json.dumps(["b"]), "sender_name": "@alice"})
    assert m.post.from_bot and m.is_direct and m.mentions == ("b",)
    assert m.post.thread_id == "p"
    for bad in (None, {}, {"post": "{not json"}, {"post": json.dumps({"id": "p"})},
                {"post": json.dumps([1])}):
        with pytest.raises(BadPayload):
            Message.from_frame(bad)
