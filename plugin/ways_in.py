"""The HTTP ways in that answer at once: button clicks, dialog submissions, slash commands,
inbound webhooks and features' intake routes (alerts).

Each checks what proves the caller (a signature, a token), finds the declared handler, runs it in
the caller's language and answers within Mattermost's deadline: a handler still running then
finishes in the background and the caller is told it is still being worked on.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import arguments, i18n, logs
from .commands import stored_tokens
from .config import Settings
from .context import Context
from .dispatch import Dispatcher
from .events import BadPayload, Click, DialogSubmission, OutgoingWebhook, SlashCommand, Webhook
from .listener import HTTPError, token_matches
from .locales import Locales
from .metrics import Metrics
from .outgoing import OutgoingWebhooks
from .router import RouteTable
from .runtime import Runtime
from .signing import BadSignature, Signer
from .store import Store

log = logging.getLogger("switchboard")


class WaysIn:
    """What the listener serves (see `plugin.listener.Handlers`)."""

    #: Tokens of commands made by `register-commands` are read again (when a slash command's
    #: token matches none known) at most this often, in seconds.
    slash_token_reread = 60.0

    def __init__(self, settings: Settings, *, routes: RouteTable, signer: Signer,
                 store: Store, locales: Locales, dispatcher: Dispatcher, metrics: Metrics,
                 runtime: Runtime, outgoing: OutgoingWebhooks,
                 health: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.settings = settings
        self.routes = routes
        self.signer = signer
        self.store = store
        self.locales = locales
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.runtime = runtime
        self.outgoing = outgoing
        self._health = health
        self._intakes = {d.prefix: d.handle for d in routes.declared.intakes}
        self._stored_slash: list[tuple[str, str]] = []
        self._slash_read_at = float("-inf")

    # --- clicks and dialogs ---------------------------------------------------------------------
    async def on_click(self, click: Click) -> dict[str, Any]:
        try:
            payload = self.signer.unpack(click.context)
        except BadSignature as exc:
            if str(exc) == "expired":
                raise HTTPError(403, "this button has expired") from None
            log.warning("refused a click with a bad signature from %s", click.user_id)
            raise HTTPError(403, "the click's signature is not valid") from None
        # Only a signed click names its post in the log. The listener runs each request in a
        # task of its own; the handler's task inherits this.
        logs.set_subject(post=click.post_id)
        route = self.routes.get("action", payload.action)
        if route is None:
            raise HTTPError(404, f"no handler for action {payload.action!r}")
        await self.locales.speak_to(click.user_id)
        ctx = Context(self.runtime, key=f"click:{click.post_id}:{click.trigger_id[-24:]}",
                      user_id=click.user_id, channel_id=click.channel_id, root_id=None,
                      post_id=click.post_id)
        result = await self.run(route.call(arguments.for_click(ctx, click, payload)), "action",
                                route.handler.__name__)
        return _answer(result, "ephemeral_text")

    async def on_dialog(self, submission: DialogSubmission) -> dict[str, Any]:
        try:
            payload = self.signer.unpack(json.loads(submission.state or "null"))
        except (BadSignature, ValueError):
            log.warning("refused a dialog submission with a bad state from %s",
                        submission.user_id)
            raise HTTPError(403, "the dialog's state is not valid") from None
        if payload.action != submission.callback_id:
            raise HTTPError(403, "the dialog's state does not match its callback")
        route = self.routes.get("dialog", submission.callback_id)
        if route is None:
            raise HTTPError(404, f"no handler for dialog {submission.callback_id!r}")
        await self.locales.speak_to(submission.user_id)
        ctx = Context(self.runtime, key=f"dialog:{submission.callback_id}:{time.time_ns()}",
                      user_id=submission.user_id, channel_id=submission.channel_id)
        result = await self.run(route.call(arguments.for_dialog(ctx, submission, payload)),
                                "dialog", route.handler.__name__)
        return result if isinstance(result, dict) else {}

    # --- slash commands -------------------------------------------------------------------------
    async def on_slash(self, command: SlashCommand, token: str) -> dict[str, Any]:
        if not await self._slash_token_valid(token, command.team_id):
            raise HTTPError(401, "missing or wrong slash command token")
        route = self.routes.get("slash", command.command.lower())
        await self.locales.speak_to(command.user_id)
        if route is None:
            return {"response_type": "ephemeral",
                    "text": i18n._("{command} is not a command I know.").format(
                        command=command.command)}
        ctx = Context(self.runtime, key=f"slash:{command.trigger_id[-24:]}",
                      user_id=command.user_id, channel_id=command.channel_id)
        answer = _answer(await self.run(route.call(arguments.for_slash(ctx, command)), "slash",
                                        route.handler.__name__), "text")
        answer.setdefault("response_type", "ephemeral")
        return answer

    async def _slash_token_valid(self, token: str, team_id: str = "") -> bool:
        """The configured tokens (from any team), and those `register-commands` stored, each
        only from its command's team. The stored ones are read again when a request comes
        `slash_token_reread` or more after the last reading: a new token is accepted, and one
        that `register-commands` dropped (its command deleted or its token regenerated)
        refused, within that time, reading the store at most once per interval."""
        if token and time.monotonic() - self._slash_read_at >= self.slash_token_reread:
            await self.read_slash_tokens()
        configured = [t.get_secret_value() for t in self.settings.listener.slash_tokens]
        # A command's token says nothing about another team's requests.
        stored = [t for team, t in self._stored_slash if team_id and team == team_id]
        return token_matches(token, configured + stored)

    async def read_slash_tokens(self) -> None:
        self._slash_read_at = time.monotonic()
        self._stored_slash = await stored_tokens(self.store)

    def health(self) -> tuple[bool, dict[str, Any]]:
        return self._health()

    async def refresh_metrics(self) -> None:
        try:
            await self.metrics.refresh(self.store)
        except Exception as exc:  # the page still shows what the process counts itself
            log.warning("cannot read the store for /metrics: %s", exc)

    async def on_outgoing(self, hook: OutgoingWebhook) -> dict[str, Any]:
        return await self.outgoing.on_outgoing(hook)

    # --- webhooks and intake --------------------------------------------------------------------
    async def on_webhook(self, hook: Webhook) -> dict[str, Any]:
        route = self.routes.get("webhook", hook.name)
        expected = self.settings.listener.webhook_tokens.get(hook.name)
        if route is None:
            raise HTTPError(404, f"no webhook named {hook.name!r}")
        auth = hook.headers.get("Authorization", "")
        given = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if not given and isinstance(hook.body, dict) and isinstance(hook.body.get("token"), str):
            given = hook.body["token"]
        if expected is None or not given or not hmac.compare_digest(
                given.encode(), expected.get_secret_value().encode()):
            raise HTTPError(401, "missing or wrong webhook token")
        ctx = Context(self.runtime, key=f"hook:{hook.name}:{time.time_ns()}", user_id="",
                      channel_id="")
        result = await self.run(route.call(arguments.for_webhook(ctx, hook)), "webhook",
                                route.handler.__name__)
        return result if isinstance(result, dict) else {}

    def intake_prefixes(self) -> list[str]:
        return list(self._intakes)

    async def on_intake(self, prefix: str, name: str, body: Any, headers: dict[str, str]
                        ) -> dict[str, Any]:
        handle = self._intakes.get(prefix)
        if handle is None:
            raise HTTPError(404, f"nothing is served at /{prefix}/")
        return await handle(name, body, headers)

    # --- running a handler against a deadline ---------------------------------------------------
    async def run(self, call: Awaitable[Any], kind: str, name: str) -> Any:
        """Run a listener handler; past the deadline it finishes in the background."""
        started = time.monotonic()
        task: asyncio.Task[Any] = asyncio.ensure_future(call)
        try:
            result = await asyncio.wait_for(asyncio.shield(task),
                                            self.settings.listener.action_timeout)
            self.metrics.handled.labels(kind).inc()
            return result
        except TimeoutError:
            self.dispatcher.spawn(self._finish_late(task, kind, name), f"late-{kind}")
            return i18n._("Still working on it…")
        except (HTTPError, BadPayload):
            raise
        except Exception:
            self.metrics.handler_errors.labels(kind).inc()
            log.exception("%s handler %s failed", kind, name)
            return self.runtime.apology()
        finally:
            self.metrics.latency.labels(kind).observe(time.monotonic() - started)

    async def _finish_late(self, task: asyncio.Task[Any], kind: str, name: str) -> None:
        try:
            await task
            self.metrics.handled.labels(kind).inc()
        except Exception:
            self.metrics.handler_errors.labels(kind).inc()
            log.exception("%s handler %s failed", kind, name)


def _answer(result: Any, text_key: str) -> dict[str, Any]:
    if result is None:
        return {}
    if isinstance(result, str):
        return {text_key: result}
    if isinstance(result, dict):
        return result
    return json.loads(json.dumps(result, default=str)) if result else {}
