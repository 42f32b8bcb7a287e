"""`switchboard doctor`: check everything the bot needs and say what is wrong, in words an
operator can act on.

Each check prints one line, `[  ok]`, `[warn]` or `[FAIL] ... — fix: ...`, and a verdict line
ends the report; the exit status is 1 when any check failed. The checks, one module each:

1. the configuration can run (here);
2.-4. Mattermost answers and takes the token, the bot account and its teams and channels, the
   websocket event stream (`mattermost.py`);
5. the listener's public URL leads to the listener, and Mattermost may call it; when the bot is
   running, the requests at once it settled on for each tracker and source (`listener.py`);
6.-7. each tracker and monitoring source, with its credentials (`systems.py`);
8. the state store, file or database, and the replicas running on a database (`state.py`).

A check that needs Mattermost is skipped, and says so, when Mattermost cannot be signed in to;
the others run regardless. An error no check expected ends only its group (Mattermost, the
listener, one tracker, one source) with a FAIL line. No line ever carries a secret.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..config import DEFAULT_CONFIG, Config
from ..mattermost import MattermostAPI
from ..review import review
from .listener import check_listener
from .mattermost import check_bot, check_server, check_websocket
from .report import Report, SettingNames, guarded, secret_values
from .state import check_replicas, check_store
from .systems import check_sources, check_trackers

__all__ = ["Report", "doctor", "secret_values"]


def check_configuration(report: Report, config: Config, names: SettingNames) -> None:
    """What `switchboard check` finds: a FAIL line for each problem that stops the bot, a WARN
    line for each part of it that works only partly, each with its fix."""
    found = review(config)
    for finding in found:
        fix = finding.fix_with(names)
        if finding.error:
            report.fail(f"{finding.key}: {finding.problem}", fix or f"correct {names(finding.key)}")
        else:
            report.warn(f"{finding.key}: {finding.problem}", fix)
    if not any(finding.error for finding in found):
        report.ok("the configuration is complete enough to run")


async def doctor(config: Config, out: Callable[[str], None] = print, *,
                 config_path: str | None = None) -> int:
    """Run every check, print the report through `out`; the exit status (0 or 1)."""
    s = config.settings
    report = Report(out, secret_values(config))
    names = SettingNames.from_file(
        config_path or os.environ.get("SWITCHBOARD_CONFIG", DEFAULT_CONFIG))
    # Each group of checks is guarded: an error no check expected is one FAIL line, and the
    # groups after it still run, so the operator always gets a whole report and a verdict.
    with guarded(report, "the configuration"):
        check_configuration(report, config, names)
    if s.sandbox:
        report.warn(f"{names('settings.mattermost.url')} is empty: `switchboard run` starts "
                    "the built-in sandbox, and there is no Mattermost to check")
    else:
        api: MattermostAPI | None = None
        me: dict[str, Any] | None = None
        try:
            with guarded(report, "Mattermost", [(names("settings.mattermost.ca_bundle"),
                                                 s.mattermost.ca_bundle)]):
                api = MattermostAPI(s.mattermost.url, s.mattermost.token.get_secret_value(),
                                    timeout=s.mattermost.request_timeout, retries=1,
                                    connections=2,
                                    verify=s.mattermost.ca_bundle or s.mattermost.verify_tls)
                me = await check_server(report, api, s, names)
                if me is not None:
                    await check_bot(report, api, s, names, me)
                    await check_websocket(report, api, s)
                else:
                    report.warn("the bot account, its channels, the event stream and the "
                                "server's settings are not checked: Mattermost must take the "
                                "token first")
            with guarded(report, "the listener"):
                await check_listener(report, s, names, api if me is not None else None,
                                     f"@{me.get('username')}" if me is not None else "the bot")
        finally:
            if api is not None:
                api.close()
    await check_trackers(report, s, names)
    await check_sources(report, s, names)
    with guarded(report, "the state store"):
        await check_store(report, s, names)
        await check_replicas(report, s, names)
    return report.verdict()
