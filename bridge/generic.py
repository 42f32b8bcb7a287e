"""Generic JSON alerts (and `switchboard sendevt`), with an optional callback for decisions.

A generic alert is a JSON object: `key` (identity of the incident; default: host/service/title),
`status` (firing|problem|resolved|ok|recovery), `severity`, `title` (or `summary`/`message`),
`host`, `service`, `text`, `labels` (object), `links` (list of {label?, url}), `callback_url`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import httpx

from .alerts import Alert, AlertParseError, AlertStatus, Severity, SourceError, SourceUnavailable
from .limiter import Limiter

_FIRING = {"firing", "problem", "alert", "critical", "down", "1", "true"}
_RESOLVED = {"resolved", "ok", "recovery", "up", "0", "false", "cleared"}
_SEVERITY = {"critical": Severity.CRITICAL, "disaster": Severity.CRITICAL, "fatal":
             Severity.CRITICAL, "high": Severity.HIGH, "error": Severity.HIGH, "major":
             Severity.HIGH, "warning": Severity.WARNING, "warn": Severity.WARNING, "average":
             Severity.WARNING, "minor": Severity.WARNING, "info": Severity.INFO, "information":
             Severity.INFO, "low": Severity.INFO, "notice": Severity.INFO}
_LIMIT = 4000


def _text(body: dict[str, Any], *names: str, limit: int = _LIMIT) -> str:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            raise AlertParseError(f"{name} must be text")
        text = str(value).strip()
        if text:
            return text[:limit]
    return ""


def parse_generic(body: Any) -> list[Alert]:
    """One alert per object (a list of objects is several alerts)."""
    if isinstance(body, list):
        if len(body) > 1000:
            raise AlertParseError("at most 1000 alerts per request")
        if not all(isinstance(item, dict) for item in body):
            raise AlertParseError("a list must hold alert objects")
        return [alert for item in body for alert in parse_generic(item)]
    if not isinstance(body, dict):
        raise AlertParseError("an alert must be a JSON object")
    title = _text(body, "title", "summary", "message", "trigger_name", limit=500)
    if not title:
        raise AlertParseError("title is missing")
    status_text = _text(body, "status", "state", limit=40).lower() or "firing"
    if status_text in _FIRING:
        status = AlertStatus.FIRING
    elif status_text in _RESOLVED:
        status = AlertStatus.RESOLVED
    else:
        raise AlertParseError(f"status must be firing or resolved, not {status_text[:20]!r}")
    severity = _SEVERITY.get(_text(body, "severity", "priority", limit=40).lower(),
                             Severity.UNKNOWN)
    host, service = _text(body, "host", "hostname", limit=255), _text(body, "service", limit=255)
    labels_raw = body.get("labels") or {}
    if not isinstance(labels_raw, dict):
        raise AlertParseError("labels must be an object")
    labels = {str(k)[:100]: str(v)[:500] for k, v in list(labels_raw.items())[:50]}
    links: list[tuple[str, str]] = []
    for link in body.get("links") or []:
        url = link.get("url") if isinstance(link, dict) else link
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            label = link.get("label", "Link") if isinstance(link, dict) else "Link"
            links.append((str(label)[:50], url[:1000]))
    key = _text(body, "key", "id", "event_id", limit=200)
    if not key:
        digest = hashlib.sha256(f"{host}\x00{service}\x00{title}".encode()).hexdigest()
        key = digest[:24]
    ref: dict[str, Any] = {}
    callback = body.get("callback_url")
    if isinstance(callback, str) and callback.startswith(("http://", "https://")):
        ref["callback_url"] = callback[:1000]
    return [Alert(source="generic", key=key, status=status, severity=severity, title=title,
                  name=_text(body, "name", "alertname", "check", "rule", limit=200),
                  host=host, service=service, text=_text(body, "text", "detail", "output"),
                  labels=labels, links=tuple(links[:10]), started_at=datetime.now(UTC),
                  ref=ref)]


class GenericCallback:
    """Decisions on generic alerts go to the alert's `callback_url`, when it has one."""

    name = "generic"
    can_acknowledge = True
    can_silence = False
    can_resolve = True

    def __init__(self, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None,
                 max_in_flight: int = 32) -> None:
        #: Bounds the callbacks on the wire at once, whatever their hosts, never more than
        #: `max_in_flight` (`bridge.limiter`).
        self.limiter = Limiter(max_in_flight)
        self._client = httpx.AsyncClient(
            timeout=timeout, transport=transport,
            limits=self.limiter.pool_limits())

    async def _send(self, alert: Alert, action: str, who: str, comment: str = "") -> None:
        url = alert.ref.get("callback_url")
        if not url:
            return  # nothing to tell: the decision lives in chat only
        try:
            r = await self.limiter.call(self._client.post, url, json={
                "action": action, "key": alert.key, "by": who, "comment": comment})
        except httpx.InvalidURL:
            raise SourceError("the alert's callback URL is not valid") from None
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"callback unreachable ({type(exc).__name__})") from None
        if r.status_code >= 500:
            raise SourceUnavailable(f"callback answered {r.status_code}")
        if r.status_code >= 400:
            raise SourceError(f"callback refused: HTTP {r.status_code}")

    async def acknowledge(self, alert: Alert, who: str, comment: str) -> str:
        await self._send(alert, "acknowledge", who, comment)
        return ""

    async def unacknowledge(self, alert: Alert, handle: str, who: str) -> None:
        await self._send(alert, "unacknowledge", who)

    async def silence(self, alert: Alert, seconds: float, who: str) -> str:
        raise SourceError("generic alerts cannot be silenced")

    async def unsilence(self, alert: Alert, handle: str, who: str) -> None:
        raise SourceError("generic alerts cannot be silenced")

    async def resolve(self, alert: Alert, who: str) -> None:
        await self._send(alert, "resolve", who)

    async def aclose(self) -> None:
        await self._client.aclose()
