"""The Mattermost checks: the server answers and takes the token, the bot account and where it
is a member, and the websocket event stream."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

from websockets.asyncio.client import connect

from ..config import Settings
from ..mattermost import MattermostAPI, MattermostAuthError, MattermostError
from .report import Report, SettingNames, reach_error, reach_fix

#: Where people add a bot to a channel, in the words of Mattermost's interface.
_INVITE = "type /invite @{bot} in that channel, or use its menu > Add Members"


async def get_json(api: MattermostAPI, path: str) -> Any:
    """`GET /api/v4<path>` as JSON (None when the answer is not JSON)."""
    response = await api.call(lambda d: d.client.make_request("get", path))
    try:
        return response.json()
    except ValueError:
        return None


async def check_server(report: Report, api: MattermostAPI, s: Settings,
                       names: SettingNames) -> dict[str, Any] | None:
    """The server answers `/system/ping` and accepts the bot's token; returns the bot's user
    (None when the checks that need Mattermost cannot go on)."""
    url, url_name = s.mattermost.url, names("settings.mattermost.url")
    try:
        ping = await get_json(api, "/system/ping")
    except MattermostError as exc:
        if exc.status:
            report.fail(f"{url} does not answer like Mattermost (HTTP {exc.status} on "
                        "/api/v4/system/ping)",
                        f"set {url_name} to the server's base URL, the address people open "
                        "in a browser (without /api/v4)")
        else:
            kind = reach_error(exc) or "no answer"
            report.fail(f"Mattermost is not reachable at {url} ({kind})",
                        reach_fix(kind, url_name, "settings.mattermost.ca_bundle (or "
                                  "settings.mattermost.verify_tls: false)"))
        return None
    if not isinstance(ping, dict) or str(ping.get("status", "")).upper() != "OK":
        report.fail(f"{url} answers /api/v4/system/ping, but not like Mattermost",
                    f"set {url_name} to the server's base URL (without /api/v4)")
        return None
    report.ok(f"Mattermost answers at {url}")
    token_name = names("settings.mattermost.token")
    if not s.mattermost.token.get_secret_value():
        return None  # the configuration's check said so already
    try:
        me = await api.login()
    except MattermostAuthError:
        report.fail("Mattermost rejects the bot's token (401 on /api/v4/users/me)",
                    "create a personal access token for the bot account (System Console > "
                    "Integrations > Bot Accounts > Create New Token; EnableUserAccessTokens "
                    f"must be on) and set {token_name} to it")
        return None
    except MattermostError as exc:
        report.fail(f"Mattermost did not say who the bot is ({exc})",
                    f"check {token_name} and the server's log")
        return None
    report.ok(f"the token is accepted: signed in as @{me.get('username')}")
    return me


async def check_bot(report: Report, api: MattermostAPI, s: Settings, names: SettingNames,
                    me: dict[str, Any]) -> None:
    """The account is a bot; its teams; the alert and helpdesk channels it must be in."""
    bot = str(me.get("username", ""))
    if me.get("is_bot"):
        report.ok(f"@{bot} is a bot account")
    else:
        report.warn(f"@{bot} is a person's account, not a bot account: its posts look like "
                    "that person's",
                    "create a bot account (System Console > Integrations > Bot Accounts; "
                    "EnableBotAccountCreation must be on) and use its token")
    try:
        teams = await api.teams()
        channels = await api.my_channels()
    except MattermostError as exc:
        report.fail(f"the bot's teams and channels cannot be listed ({exc})",
                    "check the bot account's roles and the server's log")
        return
    if teams:
        report.ok(f"@{bot} is in team(s) {', '.join(str(t.get('name')) for t in teams)}")
    else:
        report.fail(f"@{bot} is in no team",
                    f"add @{bot} to each team it serves (team menu > Add Members to Team)")
    named = sorted(str(c.get("name")) for c in channels if c.get("type") in ("O", "P"))
    if named:
        shown = ", ".join(f"~{n}" for n in named[:10]) + (" …" if len(named) > 10 else "")
        report.ok(f"@{bot} is in {len(named)} channel(s): {shown}")
    else:
        report.warn(f"@{bot} is in no channel: it hears only direct messages",
                    f"add it to the channels it serves ({_INVITE.format(bot=bot)})")
    mine = {str(c.get("id")) for c in channels}
    refs: list[tuple[str, str]] = []
    if s.alerts.channel:
        refs.append((s.alerts.channel, f"set by {names('settings.alerts.channel')}"))
    for i, route in enumerate(s.alerts.routes):
        refs += [(ref, f"set by settings.alerts.routes[{i}].channels")
                 for ref in route.channels]
    for ref, where in dict.fromkeys(refs):
        await _named_channel(report, api, bot, mine, ref, where, "alerts")
    triage = s.helpdesk.triage
    refs = [(triage.channel, f"set by {names('settings.helpdesk.triage.channel')}")] \
        if triage.channel else []
    refs += [(ref, f"set by settings.helpdesk.triage.trackers.{name}")
             for name, ref in triage.trackers.items()]
    refs += [(route.channel, f"set by settings.helpdesk.triage.routes[{i}].channel")
             for i, route in enumerate(triage.routes)]
    for ref, where in dict.fromkeys(refs):
        await _named_channel(report, api, bot, mine, ref, where, "new tickets")
    for i, trigger in enumerate(s.helpdesk.triggers):
        for ref in trigger.channels:
            if any(ref in (c.get("id"), c.get("name")) for c in channels):
                report.ok(f"the trigger {trigger.keyword!r} listens in ~{ref}, and @{bot} is "
                          "a member")
            else:
                report.fail(f"the trigger {trigger.keyword!r} listens in {ref!r} "
                            f"(settings.helpdesk.triggers[{i}].channels), but @{bot} is in no "
                            "channel of that name or id",
                            f"add @{bot} to ~{ref} ({_INVITE.format(bot=bot)}), or correct "
                            "the name (the one in the channel's address)")


async def _named_channel(report: Report, api: MattermostAPI, bot: str, mine: set[str],
                         ref: str, where: str, what: str) -> None:
    """A channel the bot posts in unasked (`team/channel` or an id: where alerts go, where new
    tickets go) exists and the bot is a member."""
    team_name, _, channel_name = ref.rpartition("/")
    try:
        if team_name:
            team = await get_json(api, f"/teams/name/{team_name}")
            channel = await get_json(api, f"/teams/{(team or {}).get('id')}/channels/name/"
                                          f"{channel_name}")
        else:
            channel = await api.channel(ref)
        if not isinstance(channel, dict):
            raise MattermostError(404, "", "not a channel", ref)
    except MattermostError as exc:
        if exc.status == 403:
            report.fail(f"{what} go to {ref!r} ({where}), a private channel or team @{bot} "
                        "is not in",
                        f"add @{bot} to its team and to the channel ({_INVITE.format(bot=bot)})")
        elif exc.status == 404:
            report.fail(f"{what} go to {ref!r} ({where}), but there is no such "
                        + ("team or channel" if team_name else "channel id"),
                        "write `team/channel` with the names in the channel's address "
                        "(https://<server>/<team>/channels/<channel>), or a channel id")
        else:
            report.fail(f"{what} go to {ref!r}, which cannot be looked up ({exc})",
                        "check the server's log")
        return
    name = str(channel.get("name") or ref)
    if str(channel.get("id")) in mine:
        report.ok(f"{what} go to ~{name} ({ref}), and @{bot} is a member")
    else:
        report.fail(f"@{bot} is not a member of ~{name}, where {what} go ({where})",
                    f"add @{bot} to ~{name} ({_INVITE.format(bot=bot)})")


def _ws_ssl(s: Settings, url: str) -> ssl.SSLContext | None:
    if not url.startswith("wss:"):
        return None
    if s.mattermost.ca_bundle:
        return ssl.create_default_context(cafile=s.mattermost.ca_bundle)
    context = ssl.create_default_context()
    if not s.mattermost.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def check_websocket(report: Report, api: MattermostAPI, s: Settings) -> None:
    """The event stream upgrades and says hello, as the bot's own connection would."""
    if not s.stream.enabled:
        report.ok("the websocket event stream is not used (settings.stream.enabled: false)")
        return
    token = s.mattermost.token.get_secret_value()
    try:
        async with connect(api.ws_url, additional_headers={"Authorization": f"Bearer {token}"},
                           user_agent_header="Switchboard", open_timeout=s.stream.hello_timeout,
                           ssl=_ws_ssl(s, api.ws_url)) as ws:
            raw = await asyncio.wait_for(ws.recv(), s.stream.hello_timeout)
        frame = json.loads(raw)
        if not isinstance(frame, dict) or frame.get("event") != "hello":
            raise ValueError("the first frame is not hello")
    except Exception as exc:
        kind = reach_error(exc) or type(exc).__name__
        report.fail(f"the websocket event stream ({api.ws_url}) does not say hello ({kind})",
                    "a proxy in front of Mattermost must pass websocket upgrades on "
                    "/api/v4/websocket (nginx: proxy_http_version 1.1; proxy_set_header "
                    "Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\")")
        return
    version = str((frame.get("data") or {}).get("server_version", "")).split(".")[:3]
    report.ok("the websocket event stream says hello"
              + (f" (server {'.'.join(version)})" if version != [""] else ""))
