"""Prometheus Alertmanager: its webhook notifications as `Alert`s, and silences as the way a
person's decision goes back.

`parse_alertmanager` reads the webhook payload (version "4"): one `Alert` per entry of `alerts`,
keyed by fingerprint and start time, so the repeats Alertmanager sends every `repeat_interval` and
the final "resolved" notification land on the same post.

`AlertmanagerClient` acknowledges by creating a silence whose matchers are exactly the alert's
labels (`POST /api/v2/silences`), and un-acknowledges by expiring it
(`DELETE /api/v2/silence/{id}`). Before creating one it looks for an active silence with the same
matchers that this bot made (its comment ends with `SILENCE_MARK`) and reuses it, so clicking
twice, or two people clicking at once, never leaves two silences. Alertmanager cannot resolve an
alert: that is up to whatever sends it.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from .alerts import Alert, AlertParseError, AlertStatus, Severity, SourceError, SourceUnavailable
from .limiter import Limiter
from .tickets import parse_time

__all__ = [
    "DEFAULT_ACK_SECONDS",
    "SILENCE_MARK",
    "SOURCE",
    "AlertmanagerClient",
    "fingerprint_of",
    "map_severity",
    "parse_alertmanager",
]

SOURCE = "alertmanager"
#: Ends the comment of every silence this module creates: how it recognises its own silences.
SILENCE_MARK = "[switchboard]"
#: Silences made by Silence (not Acknowledge) carry this instead: the two never share one.
MUTE_MARK = "[switchboard silence]"
DEFAULT_ACK_SECONDS = 24 * 3600.0

_SEVERITIES: dict[str, Severity] = {
    "critical": Severity.CRITICAL, "page": Severity.CRITICAL,
    "high": Severity.HIGH, "error": Severity.HIGH,
    "warning": Severity.WARNING, "warn": Severity.WARNING,
    "info": Severity.INFO, "none": Severity.INFO,
}
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Values that can be written inside a filter matcher without any doubt about escaping.
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+\- ]*$")
#: Go's zero time: Alertmanager's way of saying "not set".
_ZERO_TIME_PREFIX = "0001-01-01T"
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------- parsing


def map_severity(value: str) -> Severity:
    """The `severity` label as a common `Severity` (case and blanks ignored)."""
    return _SEVERITIES.get(value.strip().lower(), Severity.UNKNOWN)


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (FNV-1a 64 over the sorted names and values,
    each followed by the byte 0xff), as 16 hex digits."""
    value = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8") + b"\xff":
                value = ((value ^ byte) * _FNV_PRIME) & _MASK64
    return f"{value:016x}"


def _string_map(value: Any, what: str, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise AlertParseError(f"{where}: {what} is not an object")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise AlertParseError(f"{where}: {what} has a value that is not a string")
        out[key] = item
    return out


def _optional_string(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AlertParseError(f"{where}: {key} is not a string")
    return value


def _parse_time(text: str, key: str, where: str) -> datetime | None:
    if not text or text.startswith(_ZERO_TIME_PREFIX):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AlertParseError(f"{where}: {key} is not a timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _web_link(value: str) -> str:
    """`value` when it is an http(s) URL, else "" (nothing else is put on a post)."""
    text = value.strip()
    if text.lower().startswith(("http://", "https://")) and not any(
            c.isspace() or ord(c) < 32 for c in text):
        return text
    return ""


def _first(*values: str) -> str:
    return next((v.strip() for v in values if v and v.strip()), "")


def _alert(entry: Any, index: int, external_url: str) -> Alert:
    where = f"alerts[{index}]"
    if not isinstance(entry, dict):
        raise AlertParseError(f"{where} is not an object")
    if "labels" not in entry:
        raise AlertParseError(f"{where} has no labels")
    labels = _string_map(entry["labels"], "labels", where)
    annotations = (_string_map(entry["annotations"], "annotations", where)
                   if entry.get("annotations") is not None else {})
    raw_status = entry.get("status")
    if not isinstance(raw_status, str) or not raw_status:
        raise AlertParseError(f"{where} has no status")
    try:
        status = AlertStatus(raw_status.strip().lower())
    except ValueError:
        raise AlertParseError(f"{where}: unknown status {raw_status[:20]!r}") from None
    fingerprint = _optional_string(entry, "fingerprint", where).strip() or fingerprint_of(labels)
    starts_text = _optional_string(entry, "startsAt", where).strip()
    started_at = _parse_time(starts_text, "startsAt", where)
    _parse_time(_optional_string(entry, "endsAt", where).strip(), "endsAt", where)
    key = f"{fingerprint}:{starts_text}" if started_at is not None else fingerprint

    links: list[tuple[str, str]] = []
    source = _web_link(_optional_string(entry, "generatorURL", where))
    if source:
        links.append(("Source", source))
    if external_url:
        links.append(("Alertmanager", external_url.rstrip("/") + "/#/alerts"))
    runbook = _web_link(annotations.get("runbook_url", ""))
    if runbook:
        links.append(("Runbook", runbook))

    return Alert(
        source=SOURCE,
        key=key,
        status=status,
        severity=map_severity(labels.get("severity", "")),
        title=_first(annotations.get("summary", ""), annotations.get("title", ""),
                     labels.get("alertname", "")) or f"Alert {fingerprint}",
        name=labels.get("alertname", "")[:200],
        host=_first(labels.get("instance", ""), labels.get("host", ""),
                    labels.get("nodename", "")),
        service=_first(labels.get("job", ""), labels.get("service", "")),
        text=_first(annotations.get("description", ""), annotations.get("message", "")),
        labels=dict(labels),
        links=tuple(links),
        started_at=started_at,
        ref={"labels": dict(labels), "fingerprint": fingerprint},
        identity=fingerprint,
    )


def parse_alertmanager(body: Any) -> list[Alert]:
    """The alerts of one webhook notification (payload version "4"), in the payload's order.

    Raises `AlertParseError` with a short reason when the body is not such a notification;
    keys it does not know are ignored."""
    if not isinstance(body, dict):
        raise AlertParseError("the notification is not a JSON object")
    version = body.get("version")
    if version is not None and str(version) != "4":
        raise AlertParseError(f"unsupported webhook version {str(version)[:10]!r}")
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise AlertParseError("the notification has no alerts list")
    external = body.get("externalURL")
    if external is not None and not isinstance(external, str):
        raise AlertParseError("externalURL is not a string")
    external_url = _web_link(external or "")
    return [_alert(entry, i, external_url) for i, entry in enumerate(alerts)]


# --------------------------------------------------------------------------- the client


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _duration_words(seconds: float) -> str:
    whole = max(round(seconds), 1)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if whole >= size and whole % size == 0:
            return f"{whole // size} {unit}"
    return f"{whole} s"


def _matchers(alert: Alert) -> list[dict[str, Any]]:
    labels = alert.ref.get("labels")
    source = labels if isinstance(labels, dict) and labels else alert.labels
    matchers = [{"name": str(k), "value": str(v), "isRegex": False, "isEqual": True}
                for k, v in sorted(source.items()) if str(v) != ""]
    if not matchers:
        raise SourceError("the alert has no labels to silence")
    if any(not _LABEL_NAME.match(str(m["name"])) for m in matchers):
        raise SourceError("the alert has a label name Alertmanager cannot match")
    return matchers


def _matcher_set(matchers: Any) -> frozenset[tuple[str, str, bool, bool]] | None:
    if not isinstance(matchers, list):
        return None
    out = set()
    for m in matchers:
        if not isinstance(m, dict):
            return None
        out.add((str(m.get("name")), str(m.get("value")), bool(m.get("isRegex", False)),
                 bool(m.get("isEqual", True))))
    return frozenset(out)


def _filter_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class AlertmanagerClient:
    """The `AlertSource` protocol on Alertmanager's API v2."""

    can_acknowledge = True
    can_silence = True
    can_resolve = False

    def __init__(self, *, url: str, username: str = "", password: str = "", bearer: str = "",
                 timeout: float = 10.0, verify: bool | ssl.SSLContext = True,
                 transport: httpx.AsyncBaseTransport | None = None, name: str = SOURCE,
                 ack_duration: float = DEFAULT_ACK_SECONDS, max_in_flight: int = 32) -> None:
        if ack_duration <= 0:
            raise ValueError("ack_duration must be positive")
        self.name = name
        self.ack_duration = float(ack_duration)
        headers = {"Accept": "application/json", "User-Agent": "switchboard"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        auth = httpx.BasicAuth(username, password) if username and not bearer else None
        self._secrets = tuple(s for s in (password, bearer) if s)
        #: Bounds the requests on the wire at once, never more than `max_in_flight`
        #: (`bridge.limiter`).
        self.limiter = Limiter(max_in_flight)
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=headers, auth=auth,
            timeout=httpx.Timeout(timeout), verify=verify, transport=transport,
            follow_redirects=False,
            limits=self.limiter.pool_limits())
        self._locks: dict[tuple[frozenset[tuple[str, str, bool, bool]], str], asyncio.Lock] = {}

    async def __aenter__(self) -> AlertmanagerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ HTTP

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _message(self, response: httpx.Response) -> str:
        try:
            data = response.json()
        except ValueError:
            data = response.text
        if isinstance(data, dict):
            data = data.get("message") or data.get("error") or json.dumps(data)[:200]
        text = " ".join(str(data or "").split())[:200]
        return self._clean(text)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        where = f"{method} {path.split('?')[0]}"
        try:
            response = await self.limiter.call(self._client.request, method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise SourceUnavailable(f"Alertmanager timed out on {where}") from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable(
                f"Alertmanager unreachable on {where}: {type(exc).__name__}") from exc
        return response

    def _raise_for(self, response: httpx.Response, where: str) -> None:
        code = response.status_code
        if code < 300:
            return
        head = f"Alertmanager answered HTTP {code} on {where}"
        if code in (401, 403):
            raise SourceError(f"{head}: the credentials were refused")
        message = self._message(response)
        full = f"{head}: {message}" if message else head
        if code >= 500 or code in (408, 429):
            raise SourceUnavailable(full)
        raise SourceError(full)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        self._raise_for(response, f"{method} {path}")
        try:
            return response.json()
        except ValueError:
            raise SourceUnavailable(
                f"Alertmanager answered {method} {path} with something that is not JSON"
            ) from None

    # ------------------------------------------------------------------ the operator's probe

    async def check(self) -> list[tuple[str, str]]:
        """For `switchboard doctor`: `GET /api/v2/status` with the configured credentials.

        Returns `(level, text)` pairs, level "ok" or "warn". Raises `SourceError` when the API
        cannot be used; its message says what is wrong and, after " — fix: ", what to do, naming
        settings in backquotes (`url`, `api_token`, `api_username`, `api_password`).
        Connection failures are raised as they are."""
        response = await self._request("GET", "/api/v2/status")
        code = response.status_code
        where = f"HTTP {code} on GET /api/v2/status"
        if code in (401, 403):
            raise SourceError(
                f"Alertmanager refused the credentials ({where}) — fix: set `api_token` (a "
                "bearer token) or `api_username` and `api_password` to what the proxy in front "
                "of Alertmanager expects")
        if code >= 500:
            raise SourceUnavailable(f"Alertmanager failed ({where}: {self._message(response)})"
                                    " — fix: Alertmanager's log says why")
        try:
            status = response.json() if code == 200 else None
        except ValueError:
            status = None
        if not isinstance(status, dict) or "versionInfo" not in status:
            raise SourceError(
                f"no Alertmanager API v2 answers at `url` ({where}) — fix: `url` is "
                "Alertmanager's own address (e.g. http://alertmanager:9093, plus its "
                "--web.route-prefix when it has one)")
        version = (status.get("versionInfo") or {}).get("version") or "?"
        cluster = (status.get("cluster") or {}).get("status") or "?"
        found = [("ok", f"Alertmanager {version} answers (cluster: {cluster})")]
        if cluster not in ("ready", "disabled", "?"):
            found.append(("warn", f"Alertmanager's cluster is {cluster!r}, not ready: silences "
                                  "may not reach every peer yet"))
        return found

    # ------------------------------------------------------------------ silences

    async def _silences_like(self, matchers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Silences that may carry these matchers (Alertmanager filters when the values are
        plain enough to write in a filter; the caller checks exactly)."""
        filters = [f"{m['name']}={_filter_value(m['value'])}" for m in matchers
                   if _PLAIN_VALUE.match(m["value"])]
        data = await self._json("GET", "/api/v2/silences", params={"filter": filters})
        if not isinstance(data, list):
            raise SourceUnavailable("Alertmanager answered the silences with something else")
        return [s for s in data if isinstance(s, dict)]

    async def find_silence(self, alert: Alert, mark: str = SILENCE_MARK
                           ) -> dict[str, Any] | None:
        """The active (or pending) silence this bot made with exactly the alert's labels, for
        an acknowledgement (`SILENCE_MARK`) or a silence (`MUTE_MARK`)."""
        matchers = _matchers(alert)
        wanted = _matcher_set(matchers)
        found = []
        for silence in await self._silences_like(matchers):
            state = (silence.get("status") or {}).get("state")
            comment = silence.get("comment")
            if (state in ("active", "pending") and isinstance(silence.get("id"), str)
                    and isinstance(comment, str) and comment.rstrip().endswith(mark)
                    and _matcher_set(silence.get("matchers")) == wanted):
                found.append(silence)
        if not found:
            return None
        far = datetime.max.replace(tzinfo=UTC)
        return max(found, key=lambda s: parse_time(s.get("endsAt")) or far)

    async def _silence(self, alert: Alert, seconds: float, who: str, comment: str,
                       mark: str = SILENCE_MARK) -> str:
        if seconds <= 0:
            raise SourceError("a silence needs a positive duration")
        matchers = _matchers(alert)
        key = _matcher_set(matchers)
        assert key is not None
        lock = self._locks.setdefault((key, mark), asyncio.Lock())
        async with lock:
            now = datetime.now(UTC)
            ends = now + timedelta(seconds=seconds)
            existing = await self.find_silence(alert, mark)
            body: dict[str, Any] = {
                "matchers": matchers, "startsAt": _iso(now), "endsAt": _iso(ends),
                "createdBy": who or "switchboard",
                "comment": f"{' '.join(comment.split())} {mark}".strip(),
            }
            if existing is not None:
                current_end = parse_time(existing.get("endsAt"))
                if current_end is not None and current_end >= ends - timedelta(seconds=1):
                    return str(existing["id"])
                # Extend it in place: same id and start, later end.
                body["id"] = existing["id"]
                body["startsAt"] = existing.get("startsAt") or body["startsAt"]
                body["comment"] = existing.get("comment") or body["comment"]
                body["createdBy"] = existing.get("createdBy") or body["createdBy"]
            data = await self._json("POST", "/api/v2/silences", json=body)
            silence_id = data.get("silenceID") if isinstance(data, dict) else None
            if not isinstance(silence_id, str) or not silence_id:
                raise SourceUnavailable("Alertmanager answered the silence without its id")
            if len(self._locks) > 1000:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return silence_id

    # ------------------------------------------------------------------ the protocol

    async def acknowledge(self, alert: Alert, who: str, comment: str) -> str:
        """Silences the alert for `ack_duration`; returns the silence id."""
        words = " ".join(comment.split())
        text = f"Acknowledged by {who}" + (f": {words}" if words else "")
        return await self._silence(alert, self.ack_duration, who, text)

    async def unacknowledge(self, alert: Alert, handle: str, who: str) -> None:
        """Expires the silence `handle` (or, without one, this bot's acknowledgement silence of
        the alert). A silence already gone or already expired is fine."""
        await self._expire(alert, handle, SILENCE_MARK)

    async def _expire(self, alert: Alert, handle: str, mark: str) -> None:
        if not handle:
            existing = await self.find_silence(alert, mark)
            if existing is None:
                return
            handle = str(existing["id"])
        path = f"/api/v2/silence/{quote(handle, safe='')}"
        response = await self._request("DELETE", path)
        if response.status_code == 404:
            return
        if response.status_code == 500 and "already expired" in response.text:
            return
        self._raise_for(response, f"DELETE {path}")

    async def silence(self, alert: Alert, seconds: float, who: str) -> str:
        text = f"Silenced for {_duration_words(seconds)} by {who}"
        return await self._silence(alert, seconds, who, text, MUTE_MARK)

    async def unsilence(self, alert: Alert, handle: str, who: str) -> None:
        """Ends the Silence early (never the acknowledgement's silence)."""
        await self._expire(alert, handle, MUTE_MARK)

    async def resolve(self, alert: Alert, who: str) -> None:
        raise SourceError("Alertmanager cannot resolve an alert: it ends when its sender "
                          "stops sending it")
