"""The embedded HTTP listener (aiohttp): where Mattermost's clicks, dialog submissions, slash
commands and outgoing webhooks land, and where outside systems post webhooks.

Every answer is JSON; every error is a JSON `{"error": "..."}` with a short reason, never a stack
trace; bodies are capped. Clicks are answered with a JSON object even when there is nothing to say
(`{}`): Mattermost fails a click answered with an empty body.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .events import BadPayload, Click, DialogSubmission, OutgoingWebhook, SlashCommand, Webhook
from .metrics import Metrics

log = logging.getLogger("switchboard.listener")


class HTTPError(Exception):
    """An error answered to the caller as JSON with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def token_matches(given: str, expected: Iterable[str]) -> bool:
    """Whether `given` equals one of the (non-empty) expected tokens, compared in constant time
    against every one of them, so the answer's timing tells nothing about which came close."""
    candidate = given.encode()
    matched = False
    for token in expected:
        if token:
            matched |= hmac.compare_digest(candidate, token.encode())
    return matched and bool(given)


class Handlers(Protocol):
    """What the bot offers the listener."""

    metrics: Metrics

    async def on_click(self, click: Click) -> dict[str, Any]: ...
    async def on_dialog(self, submission: DialogSubmission) -> dict[str, Any]: ...
    async def on_slash(self, command: SlashCommand, token: str) -> dict[str, Any]: ...
    async def on_outgoing(self, hook: OutgoingWebhook) -> dict[str, Any]: ...
    async def on_webhook(self, hook: Webhook) -> dict[str, Any]: ...
    async def on_intake(self, prefix: str, name: str, body: Any, headers: dict[str, str]
                        ) -> dict[str, Any]: ...
    def intake_prefixes(self) -> list[str]: ...
    def health(self) -> tuple[bool, dict[str, Any]]: ...


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def build(handlers: Handlers, max_body: int) -> web.Application:
    """The listener's application."""
    metrics = handlers.metrics

    @web.middleware
    async def errors(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource \
            else "unmatched"
        try:
            response = await handler(request)
        except HTTPError as exc:
            response = _json({"error": exc.message}, exc.status)
            if exc.status in (401, 403):
                # Refusals are worth an operator's eye (a wrong token, forged clicks); what was
                # presented is never logged.
                log.warning("refused %s %s from %s: %s", request.method, request.path,
                            request.remote or "?", exc.message)
        except BadPayload as exc:
            response = _json({"error": f"malformed request: {exc}"}, 400)
        except web.HTTPRequestEntityTooLarge:
            response = _json({"error": f"request body larger than {max_body} bytes"}, 413)
        except web.HTTPException as exc:
            response = _json({"error": exc.reason}, exc.status)
        except Exception:
            log.exception("listener error on %s %s", request.method, route)
            response = _json({"error": "internal error; it has been logged"}, 500)
        metrics.listener_requests.labels(route, str(response.status)).inc()
        return response

    async def read_json(request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > max_body:
            raise HTTPError(413, f"request body larger than {max_body} bytes")
        raw = await request.read()
        if not raw:
            raise HTTPError(400, "empty body; a JSON object was expected")
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            raise HTTPError(400, "body is not valid JSON") from None

    async def read_form(request: web.Request) -> Any:
        if request.content_length is not None and request.content_length > max_body:
            raise HTTPError(413, f"request body larger than {max_body} bytes")
        try:
            return await request.post()
        except ValueError:  # bad boundaries, bad encodings
            raise HTTPError(400, "the form body cannot be read") from None

    async def action(request: web.Request) -> web.StreamResponse:
        click = Click.from_body(await read_json(request))
        if click.context.get("action") != request.match_info["action"]:
            raise HTTPError(403, "the click does not match this action")
        return _json(await handlers.on_click(click))

    async def dialog(request: web.Request) -> web.StreamResponse:
        return _json(await handlers.on_dialog(DialogSubmission.from_body(
            await read_json(request))))

    async def slash(request: web.Request) -> web.StreamResponse:
        if request.content_type == "application/json":
            body = await read_json(request)
            if not isinstance(body, dict):
                raise BadPayload("the body must be an object")
            form = {k: str(v) for k, v in body.items()}
        else:
            form = {k: str(v) for k, v in (await read_form(request)).items()}
        auth = request.headers.get("Authorization", "")
        token = auth[6:].strip() if auth.startswith("Token ") else form.get("token", "")
        return _json(await handlers.on_slash(SlashCommand.from_form(form), token))

    async def outgoing(request: web.Request) -> web.StreamResponse:
        # Mattermost sends JSON (timestamp in ms) or a form (timestamp in s), as the hook says.
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = {k: str(v) for k, v in (await read_form(request)).items()}
            hook = OutgoingWebhook.from_body(form, form=True)
        else:
            hook = OutgoingWebhook.from_body(await read_json(request))
        return _json(await handlers.on_outgoing(hook))

    async def webhook(request: web.Request) -> web.StreamResponse:
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            body: Any = {k: str(v) for k, v in (await read_form(request)).items()}
        else:
            body = await read_json(request)
        hook = Webhook(request.match_info["name"], body, dict(request.headers))
        return _json(await handlers.on_webhook(hook))

    def intake(prefix: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def take(request: web.Request) -> web.StreamResponse:
            if request.content_type in ("application/x-www-form-urlencoded",
                                        "multipart/form-data"):
                body: Any = {k: str(v) for k, v in (await read_form(request)).items()}
            else:
                body = await read_json(request)
            return _json(await handlers.on_intake(prefix, request.match_info["name"], body,
                                                  dict(request.headers)))
        return take

    async def healthz(request: web.Request) -> web.StreamResponse:
        ok, detail = handlers.health()
        return _json(detail | {"status": "ok" if ok else "unhealthy"}, 200 if ok else 503)

    async def metrics_page(request: web.Request) -> web.StreamResponse:
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def not_found(request: web.Request) -> web.StreamResponse:
        raise HTTPError(404, f"no such endpoint: {request.method} {request.path}")

    app = web.Application(middlewares=[errors], client_max_size=max_body)
    app.router.add_post("/actions/{action}", action)
    app.router.add_post("/dialogs", dialog)
    app.router.add_post("/slash", slash)
    app.router.add_post("/outgoing", outgoing)
    app.router.add_post("/hooks/{name}", webhook)
    for prefix in handlers.intake_prefixes():  # features' intake routes (`/alerts/...`)
        app.router.add_post(f"/{prefix}/{{name}}", intake(prefix))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


class Listener:
    """Runs the application on host:port until stopped."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self.started_at = time.time()

    async def start(self) -> int:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server: Any = site._server  # the bound port, when 0 was asked for
        if server is not None and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
