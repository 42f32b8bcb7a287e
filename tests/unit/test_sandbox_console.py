"""The sandbox console: what a typed line means, how a post looks in a terminal, what a press says.

The console is driven here against a stand-in Mattermost (httpx's mock transport) that records
each request and answers as the simulated server does."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from plugin.sandbox.console import INTEGRATION_ERROR, Console, Typed, parse
from plugin.sandbox.terminal import EMOJI, render_markdown

ALICE, BOT = "alice-id", "bot-id"
HELPDESK, TOWN, DM = "helpdesk-id", "town-id", "dm-id"


# --- parsing -------------------------------------------------------------------------------------

def no_buttons(number: int) -> bool:
    return False


def buttons(*shown: int) -> Callable[[int], bool]:
    return lambda number: number in shown


@pytest.mark.parametrize(("line", "expected"), [
    ("/dm help", Typed("post", "help", to_dm=True)),
    ("/dm   status 1  ", Typed("post", "status 1", to_dm=True)),
    ("/dm\tmy tickets", Typed("post", "my tickets", to_dm=True)),
    ("/dm", Typed("switch_dm")),
    ("  /dm  ", Typed("switch_dm")),
    ("/r it is making noises too", Typed("reply", "it is making noises too")),
    ("/channel ~ops", Typed("channel", "ops")),
    ("/help", Typed("help")),
    ("/quit", Typed("quit")),
    ("/EXIT", Typed("quit")),
    ("//etc/hosts is empty", Typed("post", "/etc/hosts is empty")),
    ("/ticket printer broken", Typed("slash", "/ticket printer broken")),
    ("hello there", Typed("post", "hello there")),
    ("   ", Typed("nothing")),
])
def test_a_typed_line_means_what_it_says(line: str, expected: Typed) -> None:
    assert parse(line, no_buttons) == expected


def test_slash_r_and_channel_alone_explain_themselves_rather_than_post() -> None:
    for line in ("/r", "/r   ", "/channel"):
        typed = parse(line, no_buttons)
        assert typed.kind == "usage", line
        assert typed.text.startswith(line.split()[0] + " ")


def test_a_number_presses_a_button_only_when_that_button_is_shown() -> None:
    assert parse("2", buttons(1, 2)) == Typed("press", number=2)
    assert parse(" 1 ", buttons(1)) == Typed("press", number=1)
    assert parse("112", buttons(1, 2)) == Typed("post", "112")
    assert parse("3", buttons(1, 2)) == Typed("post", "3")
    assert parse("112 printer broken", buttons(112)) == Typed("post", "112 printer broken")
    assert parse("1", no_buttons) == Typed("post", "1")
    assert parse("١", buttons(1)) == Typed("post", "١")  # a digit, but not one the console numbers


# --- Markdown in a terminal ----------------------------------------------------------------------

def test_bold_is_an_ansi_style_on_a_terminal_and_bare_text_otherwise() -> None:
    text = ":ticket: Ticket **#1** opened in GLPI: printer broken"
    assert render_markdown(text, ansi=False) == "🎫 Ticket #1 opened in GLPI: printer broken"
    assert render_markdown(text, ansi=True) == \
        "🎫 Ticket \x1b[1m#1\x1b[22m opened in GLPI: printer broken"
    assert render_markdown("Status: __New__", ansi=False) == "Status: New"


def test_italics_headings_and_strikes() -> None:
    assert render_markdown("an *urgent* one, _really_", ansi=False) == "an urgent one, really"
    assert render_markdown("*urgent*", ansi=True) == "\x1b[3murgent\x1b[23m"
    assert render_markdown("### Open tickets\n- #1", ansi=False) == "Open tickets\n- #1"
    assert render_markdown("### Open tickets", ansi=True) == "\x1b[1mOpen tickets\x1b[22m"
    # Struck out means resolved: without styles the marks stay, or the meaning would be lost.
    assert render_markdown("~~disk full~~", ansi=False) == "~~disk full~~"
    assert render_markdown("~~disk full~~", ansi=True) == "\x1b[9mdisk full\x1b[29m"


def test_words_with_underscores_and_lone_stars_are_left_alone() -> None:
    for text in ("see my_ticket_file and snake_case", "2 * 3 * 4", "a ** b", "**"):
        assert render_markdown(text, ansi=True) == text


def test_a_link_shows_its_text_and_its_address() -> None:
    assert render_markdown("[#3](http://glpi/ticket.form.php?id=3)", ansi=False) == \
        "#3 (http://glpi/ticket.form.php?id=3)"
    assert render_markdown("[**#3**](http://g/3)", ansi=True) == \
        "\x1b[4m\x1b[1m#3\x1b[22m\x1b[24m (http://g/3)"
    assert render_markdown("[http://g/3](http://g/3) and <http://g/4>") == \
        "http://g/3 and http://g/4"
    # An address is shown as written: its `_`, `*` and `:x:` are not Markdown.
    url = "http://host:8080/a_b_c/:ticket:/*x*"
    assert render_markdown(f"see {url} now", ansi=True) == f"see {url} now"
    assert render_markdown(f"[the page]({url})") == f"the page ({url})"


def test_shortcodes_become_emoji_and_unknown_ones_stay() -> None:
    assert render_markdown(":white_check_mark: done :+1:") == "✅ done 👍"
    assert render_markdown(":no_such_emoji: at 16:04:05") == ":no_such_emoji: at 16:04:05"
    assert render_markdown(":ticket: x", emoji=False) == ":ticket: x"
    for name in ("ticket", "warning", "white_check_mark", "speech_balloon", "inbox_tray",
                 "hourglass", "arrows_counterclockwise", "rotating_light", "zzz", "memo",
                 "leftwards_arrow_with_hook", "eyes", "bell"):  # the ones the bot writes
        assert name in EMOJI, name


def test_code_is_shown_as_written() -> None:
    text = "send `status <number>` or `:ticket: **x**`\n```\n**raw** :zzz:\n```"
    assert render_markdown(text, ansi=True) == text


def test_a_message_cannot_drive_the_terminal() -> None:
    assert render_markdown("a\x1b[2Jb\x07c\x9bd\r\n**e**", ansi=True) == \
        "a[2Jbcd\n\x1b[1me\x1b[22m"


# --- the console against a stand-in Mattermost ---------------------------------------------------

class Server:
    """Answers the console's calls; `replies` maps (method, path) to a status and body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.replies: dict[tuple[str, str], tuple[int, Any]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v4")
        body: Any = json.loads(request.content) if request.content else None
        self.requests.append((request.method, path, body))
        if (request.method, path) in self.replies:
            status, reply = self.replies[(request.method, path)]
            return httpx.Response(status, json=reply)
        if request.method == "POST" and path == "/posts":
            return httpx.Response(201, json={**body, "id": f"p{len(self.requests)}",
                                             "user_id": ALICE})
        if request.method == "GET" and path == f"/users/{BOT}":
            return httpx.Response(200, json={"id": BOT, "username": "switchboard"})
        return httpx.Response(200, json={"status": "OK"})

    def posted(self) -> list[tuple[str, str, Any]]:
        return [r for r in self.requests if r[0] == "POST"]


def console(server: Server, *, ansi: bool = False) -> tuple[Console, list[str]]:
    lines: list[str] = []
    http = httpx.AsyncClient(transport=httpx.MockTransport(server),
                             base_url="http://mm.test/api/v4")
    c = Console("http://mm.test", "alice-token", out=lines.append, ansi=ansi, emoji=True,
                http=http)
    c.me = {"id": ALICE, "username": "alice"}
    c.bot_id = BOT
    c.users = {ALICE: "alice", BOT: "switchboard"}
    c.channels = {HELPDESK: {"id": HELPDESK, "name": "helpdesk", "type": "O"},
                  TOWN: {"id": TOWN, "name": "town-square", "type": "O"},
                  DM: {"id": DM, "name": f"{ALICE}__{BOT}", "type": "D"}}
    c.channel_id, c.dm_id = HELPDESK, DM
    return c, lines


def frame(event: str, post: dict[str, Any]) -> dict[str, Any]:
    return {"event": event, "data": {"post": json.dumps(post)}}


def with_buttons(post_id: str, channel: str, *names: str, message: str = "m") -> dict[str, Any]:
    return {"id": post_id, "channel_id": channel, "user_id": BOT, "message": message,
            "props": {"attachments": [{"text": "Choose", "actions": [
                {"id": name.lower().replace(" ", "-"), "name": name} for name in names]}]}}


async def test_dm_with_text_sends_the_text_to_the_bot_and_stays_in_the_channel() -> None:
    server = Server()
    c, lines = console(server)
    assert await c.handle("/dm help")
    assert server.posted() == [("POST", "/posts", {"channel_id": DM, "message": "help"})]
    assert c.channel_id == HELPDESK
    assert await c.handle("/dm")
    assert c.channel_id == DM
    assert lines == ["Now talking to @switchboard directly (/channel helpdesk to go back)."]
    assert await c.handle("hello")
    assert server.posted()[-1] == ("POST", "/posts", {"channel_id": DM, "message": "hello"})


async def test_a_number_with_no_such_button_is_posted_as_a_message() -> None:
    server = Server()
    c, _ = console(server)
    await c.handle("112")
    await c.handle("1")
    assert server.posted() == [("POST", "/posts", {"channel_id": HELPDESK, "message": "112"}),
                               ("POST", "/posts", {"channel_id": HELPDESK, "message": "1"})]


async def test_a_number_of_a_shown_button_presses_it() -> None:
    server = Server()
    c, lines = console(server)
    await c.on_frame(frame("posted", with_buttons("post1", DM, "Press me", "Later")))
    assert lines[-1] == "    [1] Press me   [2] Later"
    await c.handle("2")
    assert server.posted() == [("POST", "/posts/post1/actions/later", {})]


async def test_reply_goes_to_the_thread_and_channel_of_the_last_message_shown() -> None:
    server = Server()
    c, lines = console(server)
    await c.handle("/r too early")
    assert server.posted() == []
    assert lines == ["(nothing to reply to yet: /r answers the last message shown)"]
    await c.on_frame(frame("posted", {"id": "ticket", "root_id": "request", "channel_id": TOWN,
                                      "user_id": BOT, "message": "Ticket **#1** opened"}))
    await c.handle("/r it is making noises too")
    assert server.posted()[-1] == ("POST", "/posts", {
        "channel_id": TOWN, "root_id": "request", "message": "it is making noises too"})


async def test_a_post_is_shown_rendered() -> None:
    server = Server()
    c, lines = console(server, ansi=True)
    await c.on_frame(frame("posted", {
        "id": "p1", "channel_id": HELPDESK, "root_id": "r1", "user_id": BOT,
        "message": ":ticket: Ticket **#1** opened in GLPI: printer\nhttp://g/1",
        "props": {"attachments": [{"title": "Details", "title_link": "http://g/1",
                                   "fields": [{"title": "Ticket", "value": "[#1](http://g/1)"}]}]},
    }))
    assert lines == ["[~helpdesk (thread)] @switchboard: 🎫 Ticket \x1b[1m#1\x1b[22m opened in "
                     "GLPI: printer",
                     "    http://g/1",
                     "    | Details (http://g/1)",
                     "    | Ticket: \x1b[4m#1\x1b[24m (http://g/1)"]
    await c.on_frame({"event": "reaction_added", "data": {"reaction": json.dumps(
        {"user_id": BOT, "post_id": "p1", "emoji_name": "white_check_mark"})}})
    assert lines[-1] == "    (@switchboard reacted ✅)"


async def test_a_private_answer_is_the_bots_and_marked_for_you_only() -> None:
    server = Server()
    c, lines = console(server)
    # Mattermost files the ephemeral answer to a click under the person who clicked.
    await c.on_frame(frame("ephemeral_message", {
        "id": "e1", "channel_id": HELPDESK, "root_id": "p1", "user_id": ALICE,
        "message": "Clicks work."}))
    await c.on_frame(frame("posted", {"id": "d1", "channel_id": DM, "user_id": BOT,
                                      "message": "Your ticket **#1** is solved."}))
    assert lines == ["[~helpdesk (thread)] @switchboard (only you see this): Clicks work.",
                     "[DM @switchboard] @switchboard (only you see this): Your ticket #1 is "
                     "solved."]
    await c.handle("/dm")
    await c.on_frame(frame("posted", {"id": "d2", "channel_id": DM, "user_id": BOT,
                                      "message": "pong"}))
    assert lines[-1] == "[DM @switchboard] @switchboard: pong"


async def test_an_edit_keeps_the_numbers_of_the_buttons_that_stay() -> None:
    server = Server()
    c, lines = console(server)
    await c.on_frame(frame("posted", with_buttons("alert", HELPDESK, "Ack", "Silence")))
    await c.on_frame(frame("posted", with_buttons("other", HELPDESK, "Press me")))
    assert lines[-1] == "    [3] Press me"
    await c.on_frame(frame("post_edited", with_buttons("alert", HELPDESK, "Unack", "Silence")))
    # The new button does not take the number of the one it replaced.
    assert lines[-1] == "    [4] Unack   [2] Silence"
    assert sorted(c.buttons) == [2, 3, 4]
    await c.on_frame(frame("post_edited", {"id": "alert", "channel_id": HELPDESK,
                                           "user_id": BOT, "message": "Resolved"}))
    assert sorted(c.buttons) == [3]
    await c.on_frame(frame("posted", with_buttons("third", HELPDESK, "Open", "Close")))
    assert lines[-1] == "    [1] Open   [2] Close"
    await c.on_frame(frame("post_deleted", {"id": "other", "channel_id": HELPDESK}))
    assert lines[-1] == "    (a message was deleted; its buttons [3] are gone)"
    assert sorted(c.buttons) == [1, 2]


async def test_buttons_of_a_private_answer_are_shown_but_not_numbered() -> None:
    server = Server()
    c, lines = console(server)
    eph = with_buttons("e1", HELPDESK, "Yes") | {"user_id": ALICE}
    await c.on_frame(frame("ephemeral_message", eph))
    assert lines[-1] == "    [Yes]"
    assert c.buttons == {}


async def test_a_button_the_bot_turns_down_is_out_of_date_in_words() -> None:
    server = Server()
    c, lines = console(server)
    await c.on_frame(frame("posted", with_buttons("p1", DM, "Press me")))
    # Whatever the bot answered (403 expired, 404 decided), Mattermost tells the client this.
    server.replies[("POST", "/posts/p1/actions/press-me")] = (400, {
        "id": INTEGRATION_ERROR, "message": "Action integration error.", "status_code": 400})
    await c.handle("1")
    assert lines[-1].startswith("(This button is out of date: the bot turned down [1] Press me")
    assert "400" not in lines[-1]


async def test_a_button_whose_message_changed_is_out_of_date_and_the_message_is_shown_again(
        ) -> None:
    server = Server()
    c, lines = console(server)
    await c.on_frame(frame("posted", with_buttons("p1", DM, "Ack", "Silence")))
    server.replies[("POST", "/posts/p1/actions/ack")] = (404, {
        "id": "api.post.do_action.action_id.app_error", "message": "Invalid action id.",
        "status_code": 404})
    server.replies[("GET", "/posts/p1")] = (200, with_buttons("p1", DM, "Unack", "Silence",
                                                              message="Acknowledged"))
    await c.handle("1")
    assert lines[-4:] == [
        "(This button is out of date: the message of [1] Ack has changed. Nothing was done; "
        "here it is now:)",
        "[DM @switchboard] @switchboard (only you see this): Acknowledged",
        "    | Choose",
        "    [3] Unack   [2] Silence"]
    await c.handle("1")  # no longer a button
    assert server.posted()[-1] == ("POST", "/posts", {"channel_id": HELPDESK, "message": "1"})


async def test_a_button_whose_message_is_gone_is_out_of_date() -> None:
    server = Server()
    c, lines = console(server)
    await c.on_frame(frame("posted", with_buttons("p1", DM, "Ack", "Silence")))
    server.replies[("POST", "/posts/p1/actions/silence")] = (403, {
        "id": "api.context.permissions.app_error", "status_code": 403,
        "message": "You do not have the appropriate permissions."})
    await c.handle("2")
    assert lines[-1] == ("(This button is out of date: the message of [2] Silence is gone. "
                         "Nothing was done.)")
    assert c.buttons == {}


async def test_other_failures_say_what_mattermost_said() -> None:
    server = Server()
    c, lines = console(server)
    await c.on_frame(frame("posted", with_buttons("p1", DM, "Ack")))
    server.replies[("POST", "/posts/p1/actions/ack")] = (500, {
        "id": "x", "message": "Something went wrong.", "status_code": 500})
    await c.handle("1")
    assert lines[-1] == "(pressing [1] Ack failed: 500: Something went wrong.)"
    server.replies[("POST", "/posts")] = (403, {"id": "y", "status_code": 403,
                                                "message": "No permission."})
    await c.handle("hello")
    assert lines[-1] == "(could not post: 403: No permission.)"


async def test_an_unknown_slash_command_is_not_posted() -> None:
    server = Server()
    c, lines = console(server)
    server.replies[("POST", "/commands/execute")] = (404, {
        "id": "api.command.execute_command.not_found.app_error", "status_code": 404,
        "message": "Command with a trigger of 'ticket' not found."})
    await c.handle("/ticket printer broken")
    assert server.posted() == [("POST", "/commands/execute", {
        "channel_id": HELPDESK, "command": "/ticket printer broken"})]
    assert lines == ["(no command /ticket here: /help lists the console's commands; to post a "
                     "message that starts with /, type //ticket printer broken)"]
