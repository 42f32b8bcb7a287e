"""What a feature declares on its router: handler arguments checked at registration, and the
executors, intake routes, periodic jobs and start/stop hooks the bot picks up."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from plugin import arguments
from plugin import filters as F
from plugin.arguments import ARGUMENTS, UnknownArgument
from plugin.context import Context
from plugin.events import Click, DialogSubmission, Message, Post, SlashCommand, Webhook
from plugin.router import Router, RouteTable
from plugin.signing import Payload


def test_a_misspelt_argument_is_refused_with_its_name_and_the_known_names() -> None:
    r = Router("t")
    with pytest.raises(UnknownArgument) as caught:
        @r.command("status", args=r"#?(?P<number>\d+)")
        async def status(ctx: Context, numbr: str) -> None: ...
    text = str(caught.value)
    assert "'status'" in text and "'numbr'" in text
    # The known names include the table's and what the route's filters capture.
    for name in ("ctx", "event", "post", "text", "user_id", "channel_id", "number",
                 "usage_error"):
        assert name in text
    assert list(r.routes()) == []


@pytest.mark.parametrize("register", [
    lambda r: r.action("ack"), lambda r: r.dialog("d"), lambda r: r.slash("ticket"),
    lambda r: r.webhook("ci"), lambda r: r.message(F.Keyword("112")),
])
def test_every_kind_checks_its_handlers(register: Any) -> None:
    async def handler(ctx: Context, posst: Any) -> None: ...
    with pytest.raises(UnknownArgument, match="'posst'"):
        register(Router("t"))(handler)


def test_known_names_captures_and_kwargs_are_accepted() -> None:
    r = Router("t")

    @r.message(F.Keyword("112"), F.Regex(r"(?P<floor>\d+)"))
    async def opener(ctx: Context, text: str, keyword: str, floor: str, match: Any) -> None: ...

    @r.action("ack")
    async def ack(click: Click, payload: Payload, subject: str, data: dict[str, Any],
                  post_id: str) -> None: ...

    @r.webhook("anything")
    async def anything(**kwargs: Any) -> None: ...

    assert len(list(r.routes())) == 3


def test_a_filter_without_declared_captures_provides_no_names() -> None:
    def mood(msg: Message) -> F.FilterResult:
        return {"mood": "good"}

    with pytest.raises(UnknownArgument, match="'mood'"):
        @Router("t").message(mood)
        async def h(mood: str) -> None: ...


def _ctx() -> Context:
    services = SimpleNamespace(api=None)
    return Context(services, key="k", user_id="u", channel_id="c")


def test_each_builder_gives_exactly_its_row_of_the_table() -> None:
    post = Post(id="p", channel_id="c", user_id="u", message="hi", create_at=1)
    msg = Message(post=post, channel_type="O")
    payload = Payload("ack", "s", {}, 0)
    click = Click.from_body({"user_id": "u", "channel_id": "c", "post_id": "p",
                             "context": {"action": "ack"}})
    submission = DialogSubmission.from_body({"user_id": "u", "channel_id": "c",
                                             "callback_id": "d", "state": "",
                                             "submission": {}})
    command = SlashCommand.from_form({"command": "/ticket", "text": "x", "user_id": "u",
                                      "channel_id": "c", "team_id": "t", "trigger_id": "x"})
    hook = Webhook("ci", {}, {})
    built = {
        "message": arguments.for_message(_ctx(), msg, {}),
        "command": arguments.for_message(_ctx(), msg, {}),
        "action": arguments.for_click(_ctx(), click, payload),
        "dialog": arguments.for_dialog(_ctx(), submission, payload),
        "slash": arguments.for_slash(_ctx(), command),
        "webhook": arguments.for_webhook(_ctx(), hook),
    }
    assert set(built) == set(ARGUMENTS)
    for kind, given in built.items():
        assert set(given) == ARGUMENTS[kind], kind  # type: ignore[index]


def test_lifecycle_declarations_are_collected_across_included_routers() -> None:
    feature, other = Router("feature"), Router("other")

    async def run(entry: Any) -> None: ...
    async def intake(name: str, body: Any, headers: dict[str, str]) -> dict[str, Any]:
        return {}
    async def tick() -> None: ...
    async def start(rt: Any) -> None: ...
    async def stop() -> None: ...

    feature.executor("ticket")(run)
    feature.intake("alerts")(intake)
    feature.every(5, name="watch")(tick)
    feature.on_start(start)
    other.on_stop(stop)
    table = RouteTable(Router("root").include(feature, other))
    d = table.declared
    assert [e.kind for e in d.executors] == ["ticket"]
    assert [i.prefix for i in d.intakes] == ["alerts"]
    assert [(j.name, j.seconds) for j in d.jobs] == [("watch", 5)]
    assert d.starts == [start] and d.stops == [stop]


def test_two_executors_for_one_kind_are_refused() -> None:
    a, b = Router("a"), Router("b")

    async def run(entry: Any) -> None: ...
    a.executor("ticket")(run)
    b.executor("ticket")(run)
    with pytest.raises(ValueError, match="two outbox executors declared for 'ticket'"):
        RouteTable(Router("root").include(a, b))


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(ValueError, match="intake prefix"):
        Router("t").intake("/alerts")
    with pytest.raises(ValueError, match="positive interval"):
        Router("t").every(0)


def test_run_refuses_a_misspelt_handler_argument_at_start(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A feature whose handler asks for a name it would never get stops `switchboard run`
    before anything connects, naming the handler, the name and the known names."""
    from pathlib import Path

    from plugin import cli, logs

    def features(config: Any, trackers: Any) -> list[Router]:
        r = Router("feature")

        @r.command("status", args=r"#?(?P<number>\d+)")
        async def status(ctx: Context, user: str, number: str) -> None: ...
        return [r]

    env = {"MM_URL": "http://127.0.0.1:9", "MM_BOT_TOKEN": "tok-123456",
           "SWITCHBOARD_SECRET": "s" * 32, "SWITCHBOARD_LISTEN": "127.0.0.1:0",
           "SWITCHBOARD_PUBLIC_URL": "http://127.0.0.1:1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli, "default_features", features)
    monkeypatch.setattr(logs, "setup", lambda *args, **kwargs: None)  # leave logging be
    shipped = Path(__file__).resolve().parents[2] / "plugin.yaml"
    assert cli.main(["run", "-c", str(shipped)]) == 2
    err = capsys.readouterr().err
    assert "switchboard: cannot start: command handler 'status' asks for 'user'" in err
    assert "known names: channel_id, ctx, event, number, post, text, usage_error, user_id" in err
