"""Webhook-only mode's stand-in for the stream: with no websocket, the bot reads what was posted
while it was down (outgoing webhooks are not sent again), then looks at its token now and then,
so that /healthz tells when replies cannot be posted."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .mattermost import MattermostAPI, MattermostAuthError, MattermostError
from .runtime import Runtime

log = logging.getLogger("switchboard")


class RestWatch:
    #: Failed looks at Mattermost in a row before /healthz says unhealthy, and seconds between
    #: looks while they fail.
    UNREACHABLE_AFTER = 3
    RECHECK_FAILING = 10.0

    def __init__(self, api: MattermostAPI, runtime: Runtime, *, interval: float,
                 catch_up: Callable[[bool], Awaitable[None]]) -> None:
        self.api = api
        self.runtime = runtime
        self.interval = interval
        self.catch_up = catch_up
        #: Whether the last look at the token succeeded.
        self.ok = True

    async def run(self) -> None:
        catch_up = self.runtime.spawn(self.catch_up(True), "webhook-only-backfill")
        failures = 0
        try:
            while not self.runtime.stopping:
                try:
                    await self.api.login()
                    if not self.ok:
                        log.info("Mattermost answers the bot's token again")
                    failures, self.ok = 0, True
                except MattermostAuthError:
                    if self.ok:
                        log.error("Mattermost refuses the bot's token: replies cannot be posted")
                    self.ok = False
                except MattermostError as exc:
                    # A blip is not an outage: unhealthy after a few failed looks in a row.
                    failures += 1
                    if failures == self.UNREACHABLE_AFTER:
                        log.warning("Mattermost is not reachable: %s", exc)
                        self.ok = False
                await self.runtime.sleep(self.interval if self.ok and not failures
                                         else self.RECHECK_FAILING)
        finally:
            catch_up.cancel()
