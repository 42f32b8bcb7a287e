"""The embedded HTTP listener: where Mattermost's clicks, dialog submissions, slash commands
and outgoing webhooks land, and where outside systems post webhooks.

Every answer is JSON; every error is a JSON `{"error": "..."}` with a short reason, never a stack
trace; bodies are capped. Clicks are answered with a JSON object even when there is nothing to say
(`{}`): Mattermost fails a click answered with an empty body.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .events import BadPayload, Click, DialogSubmission, OutgoingWebhook, SlashCommand, Webhook
from .httpserver import (
    Handler,
    HTTPError,
    HTTPServer,
    Limits,
    Request,
    Response,
    Router,
    error_response,
    json_response,
)
from .metrics import Metrics

log = logging.getLogger("switchboard.listener")

__all__ = ["App", "HTTPError", "Handlers", "Listener", "build", "token_matches"]

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


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
    async def refresh_metrics(self) -> None:
        """Bring the metrics read from durable state up to date (for /metrics)."""
        ...


class App:
    """The listener's routes, behind its error handling and request counting."""

    def __init__(self, router: Router, metrics: Metrics, max_body: int) -> None:
        self.router = router
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, request: Request) -> Response:
        try:
            response = await self.router.resolve(request)(request)
        except HTTPError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
            if exc.status in (401, 403):
                # Refusals are worth an operator's eye (a wrong token, forged clicks); what was
                # presented is never logged.
                log.warning("refused %s %s from %s: %s", request.method, request.path,
                            request.remote or "?", exc.message)
        except BadPayload as exc:
            response = error_response(400, f"malformed request: {exc}")
        except Exception:
            log.exception("listener error on %s %s", request.method, request.route or "?")
            response = error_response(500, "internal error; it has been logged")
        self.metrics.listener_requests.labels(request.route or "unmatched",
                                              str(response.status)).inc()
        return response


async def _form_or_json(request: Request) -> Any:
    """A form's fields as text, or else the JSON body."""
    if request.content_type in _FORMS:
        return await request.form()
    return await request.json()


def build(handlers: Handlers, max_body: int) -> App:
    """The listener's application."""

    async def action(request: Request) -> Response:
        click = Click.from_body(await request.json())
        if click.context.get("action") != request.params["action"]:
            raise HTTPError(403, "the click does not match this action")
        return json_response(await handlers.on_click(click))

    async def dialog(request: Request) -> Response:
        return json_response(await handlers.on_dialog(DialogSubmission.from_body(
            await request.json())))

    async def slash(request: Request) -> Response:
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise BadPayload("the body must be an object")
            form = {k: str(v) for k, v in body.items()}
        else:
            form = await request.form()
        auth = request.headers.get("Authorization", "")
        token = auth[6:].strip() if auth.startswith("Token ") else form.get("token", "")
        return json_response(await handlers.on_slash(SlashCommand.from_form(form), token))

    async def outgoing(request: Request) -> Response:
        # Mattermost sends JSON (timestamp in ms) or a form (timestamp in s), as the hook says.
        if request.content_type in _FORMS:
            hook = OutgoingWebhook.from_body(await request.form(), form=True)
        else:
            hook = OutgoingWebhook.from_body(await request.json())
        return json_response(await handlers.on_outgoing(hook))

    async def webhook(request: Request) -> Response:
        hook = Webhook(request.params["name"], await _form_or_json(request),
                       dict(request.headers))
        return json_response(await handlers.on_webhook(hook))

    def intake(prefix: str) -> Handler:
        async def take(request: Request) -> Response:
            body = await _form_or_json(request)
            return json_response(await handlers.on_intake(prefix, request.params["name"], body,
                                                          dict(request.headers)))
        return take

    async def healthz(request: Request) -> Response:
        ok, detail = handlers.health()
        return json_response(detail | {"status": "ok" if ok else "unhealthy"}, 200 if ok else 503)

    async def metrics_page(request: Request) -> Response:
        await handlers.refresh_metrics()
        return Response(generate_latest(handlers.metrics.registry), 200, CONTENT_TYPE_LATEST)

    router = Router()
    router.post("/actions/{action}", action)
    router.post("/dialogs", dialog)
    router.post("/slash", slash)
    router.post("/outgoing", outgoing)
    router.post("/hooks/{name}", webhook)
    for prefix in handlers.intake_prefixes():  # features' intake routes (`/alerts/...`)
        router.post(f"/{prefix}/{{name}}", intake(prefix))
    router.get("/healthz", healthz)
    router.get("/metrics", metrics_page)
    return App(router, handlers.metrics, max_body)


class Listener:
    """Runs the application on host:port until stopped."""

    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: HTTPServer | None = None
        self.started_at = time.time()

    async def start(self) -> int:
        """Listen; the bound port (the one given, or the one found for 0). OSError when the
        address cannot be listened on."""
        server = HTTPServer(self.app, self.host, self.port, Limits(max_body=self.app.max_body))
        self.port = await server.start()
        self._server = server
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None
