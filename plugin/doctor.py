"""`switchboard doctor`: connect to Mattermost and say what is wrong, in words an operator can act
on. Each check prints one line: ok, warn or FAIL; the exit status is 1 when any check failed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.asyncio.client import connect

from .config import Config, check_runnable
from .mattermost import MattermostAPI, MattermostAuthError, MattermostError


async def doctor(config: Config, out: Callable[[str], None] = print) -> int:
    s = config.settings
    failed = False

    def report(level: str, text: str) -> None:
        nonlocal failed
        failed = failed or level == "FAIL"
        out(f"[{level:>4}] {text}")

    for problem in check_runnable(config):
        report("FAIL", problem)
    if s.sandbox:
        report("warn", "MM_URL is not set: `switchboard run` starts the built-in sandbox")
        return 1 if failed else 0
    api = MattermostAPI(s.mattermost.url, s.mattermost.token.get_secret_value(),
                        timeout=s.mattermost.request_timeout, retries=1, threads=2,
                        verify=s.mattermost.ca_bundle or s.mattermost.verify_tls)
    try:
        try:
            me = await api.login()
        except MattermostAuthError:
            report("FAIL", "the bot token is rejected (401): create a personal access token for "
                           "the bot (EnableUserAccessTokens must be on) and set MM_BOT_TOKEN")
            return 1
        except MattermostError as exc:
            report("FAIL", f"Mattermost is not reachable: {exc}")
            return 1
        report("ok", f"signed in as @{me.get('username')}")
        if not me.get("is_bot"):
            report("warn", "the account is not a bot account (EnableBotAccountCreation lets "
                           "you create one); replies will look like a person's")
        channels = await api.my_channels()
        if channels:
            report("ok", f"member of {len(channels)} channels (DMs included)")
        else:
            report("warn", "the bot is in no channel: add it to the channels it should serve")
        try:
            async with connect(api.ws_url, additional_headers={
                    "Authorization": f"Bearer {s.mattermost.token.get_secret_value()}"},
                    open_timeout=s.stream.hello_timeout) as ws:
                await asyncio.wait_for(ws.recv(), s.stream.hello_timeout)
            report("ok", "websocket event stream answers")
        except Exception as exc:
            report("FAIL", f"websocket event stream does not answer ({type(exc).__name__}); "
                           "check a proxy in front of Mattermost passes websocket upgrades")
        if s.listener.public_url:
            report("ok", f"buttons will call {s.listener.public_url}; if it is a private "
                         "address, list its host in ServiceSettings."
                         "AllowedUntrustedInternalConnections")
    finally:
        api.close()
    return 1 if failed else 0
