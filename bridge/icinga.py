"""The Nagios family (Icinga 2, Naemon, Nagios, openITCOCKPIT): their notifications as `Alert`s,
and Icinga 2's REST API as the way a person's decision goes back.

`parse_nagios` reads the JSON that `contrib/nagios/switchboard-notify` POSTs to
`/alerts/nagios`:

    {"type": "Host" | "Service", "notification_type": "PROBLEM", "host": "web01",
     "service": "disk", "state": "CRITICAL", "state_id": 2, "output": "...",
     "long_output": "...", "ack_author": "", "ack_comment": "", "time": 1700000000,
     "problem_start": 1699999990, "problem_id": "4711"}

Only `host`, `notification_type` and `state` (or `state_id`) are required; `service` is required
for a Service notification. The incident's key is `host!service` (just `host` for a host) followed
by `!` and the problem's start, so that the PROBLEM, its ACKNOWLEDGEMENT and its RECOVERY share
one key while the next problem of the same object gets a new one:

* `problem_start` (epoch seconds, to the millisecond: `1700000000.25`) when the payload
  carries it. The Icinga 2 configuration in `contrib/icinga2/switchboard.conf` sends the
  object's `last_state_change` while it is in trouble and its `previous_state_change` on a
  recovery, which are the same moment for one incident (when the problem changed severity on
  the way, e.g. CRITICAL then WARNING, the recovery belongs to the last of those changes);
* otherwise `problem_id` (Nagios and Naemon: `$SERVICEPROBLEMID$`, or `$LASTSERVICEPROBLEMID$`
  on a recovery), written `#<id>`;
* otherwise nothing is added: every incident of the object then shares the key.

`time` (when the notification was sent) is never part of the key: it differs between the
problem and its recovery.

`IcingaClient` acknowledges with `POST /v1/actions/acknowledge-problem` (not sticky, and with
`notify: false` so the acknowledgement does not come back as a notification), silences with a
fixed downtime, and cannot resolve: a check result does that.
"""

from __future__ import annotations

import json
import math
import re
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from .alerts import (
    Alert,
    AlertKind,
    AlertParseError,
    AlertStatus,
    Severity,
    SourceError,
    SourceUnavailable,
)
from .limiter import Limiter

__all__ = [
    "SOURCE",
    "IcingaClient",
    "incident_key",
    "parse_nagios",
    "severity_of",
]

SOURCE = "nagios"
#: Longest text kept from a notification field (plugin output can be large).
MAX_TEXT = 8000
MAX_NAME = 1024

_SEVERITY: dict[str, Severity] = {
    "CRITICAL": Severity.CRITICAL, "DOWN": Severity.CRITICAL,
    "WARNING": Severity.WARNING,
    "UNKNOWN": Severity.UNKNOWN, "UNREACHABLE": Severity.UNKNOWN,
    "OK": Severity.INFO, "UP": Severity.INFO,
}
_SERVICE_STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
_HOST_STATES = ("UP", "DOWN", "UNREACHABLE")
_HEALTHY = frozenset({"OK", "UP"})

#: Notification types that are something happening to an incident rather than the incident:
#: type → words for the thread (the author and comment are added when there are some).
_UPDATES: dict[str, str] = {
    "ACKNOWLEDGEMENT": "acknowledged",
    "FLAPPINGSTART": "started flapping",
    "FLAPPINGSTOP": "stopped flapping",
    "FLAPPINGEND": "stopped flapping",
    "FLAPPINGDISABLED": "flap detection disabled",
    "DOWNTIMESTART": "downtime started",
    "DOWNTIMEEND": "downtime ended",
    "DOWNTIMECANCELLED": "downtime cancelled",
    "DOWNTIMEREMOVED": "downtime removed",
    "CUSTOM": "custom notification",
}


# --------------------------------------------------------------------------- parsing


def severity_of(state: str) -> Severity:
    """A Nagios/Icinga state name as a common `Severity` (unknown names: UNKNOWN)."""
    return _SEVERITY.get(state.strip().upper(), Severity.UNKNOWN)


def _text(body: Mapping[str, Any], key: str, limit: int = MAX_TEXT) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AlertParseError(f"{key} is not a string")
    return value if len(value) <= limit else value[:limit] + "…"


def _name(body: Mapping[str, Any], key: str) -> str:
    value = _text(body, key, limit=MAX_NAME + 1).strip()
    if len(value) > MAX_NAME:
        raise AlertParseError(f"{key} is too long")
    return value


def _number(body: Mapping[str, Any], key: str) -> float | None:
    """A number given as a JSON number or a numeric string; absent, null or "" → None."""
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise AlertParseError(f"{key} is not a number")
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise AlertParseError(f"{key} is not a number") from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise AlertParseError(f"{key} is not a number")
    if not math.isfinite(number):
        raise AlertParseError(f"{key} is not a finite number")
    return number


def _timestamp(body: Mapping[str, Any], key: str) -> float | None:
    """Epoch seconds rounded to the millisecond; absent or 0 → None."""
    number = _number(body, key)
    if number is None or number == 0:
        return None
    if number < 0 or number > 253402300799:  # after 9999-12-31: not a time
        raise AlertParseError(f"{key} is not a timestamp")
    return round(number, 3)


def _seconds_text(moment: float) -> str:
    """`1700000000` for a whole second, else `1700000000.25` (milliseconds at most)."""
    return f"{moment:.3f}".rstrip("0").rstrip(".")


def _state(body: Mapping[str, Any], is_service: bool) -> str:
    names = _SERVICE_STATES if is_service else _HOST_STATES
    state = _text(body, "state", limit=40).strip().upper()
    if state:
        if state not in _SEVERITY:
            raise AlertParseError(f"unknown state {state[:20]!r}")
        return state
    number = _number(body, "state_id")
    if number is None:
        raise AlertParseError("the notification has no state")
    if number != int(number) or not 0 <= number < len(names):
        raise AlertParseError("state_id is out of range")
    return names[int(number)]


def incident_key(host: str, service: str, problem_start: float | None = None,
                 problem_id: str = "") -> str:
    """`host!service` (or `host`), then `!<problem start>` or `!#<problem id>` when known."""
    base = f"{host}!{service}" if service else host
    if problem_start:
        return f"{base}!{_seconds_text(problem_start)}"
    if problem_id:
        return f"{base}!#{problem_id}"
    return base


def _uuids(body: Mapping[str, Any], is_service: bool) -> dict[str, str]:
    """`host_uuid` and (for a service) `service_uuid`, when the notification has them."""
    out = {}
    for key in ("host_uuid", "service_uuid") if is_service else ("host_uuid",):
        value = body.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not _UUID.match(value.strip()):
            raise AlertParseError(f"{key} is not an object id")
        out[key] = value.strip()
    return out


def _update_text(kind: str, author: str, comment: str) -> str:
    words = _UPDATES[kind]
    if author:
        words += f" by {author}"
    if comment:
        words += f": {comment}"
    return words


_UUID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")


def parse_nagios(body: Any, source: str = SOURCE) -> list[Alert]:
    """The one `Alert` of a Nagios-family notification (see the module's documentation), as
    an alert of `source` (`openitcockpit` for openITCOCKPIT's, whose objects are named by
    UUID: `host_uuid` and `service_uuid` are kept for acting on them).

    Raises `AlertParseError` with a short reason when the body is not such a notification;
    keys it does not know are ignored."""
    if not isinstance(body, dict):
        raise AlertParseError("the notification is not a JSON object")
    host = _name(body, "host")
    if not host:
        raise AlertParseError("the notification has no host")
    service = _name(body, "service")
    object_type = _text(body, "type", limit=20).strip().lower()
    if object_type not in ("", "host", "service"):
        raise AlertParseError(f"unknown object type {object_type!r}")
    is_service = object_type == "service" or (not object_type and bool(service))
    if is_service and not service:
        raise AlertParseError("a Service notification has no service")
    if not is_service:
        service = ""
    kind = "".join(_text(body, "notification_type", limit=40).split()).upper()
    if not kind:
        raise AlertParseError("the notification has no notification_type")
    if kind not in ("PROBLEM", "RECOVERY") and kind not in _UPDATES:
        raise AlertParseError(f"unknown notification_type {kind[:20]!r}")
    state = _state(body, is_service)
    output = _text(body, "output").strip()
    long_output = _text(body, "long_output").strip()
    author = _name(body, "ack_author")
    comment = _text(body, "ack_comment").strip()
    sent = _timestamp(body, "time")
    problem_start = _timestamp(body, "problem_start")
    raw_id = body.get("problem_id")
    if raw_id is not None and (isinstance(raw_id, bool)
                               or not isinstance(raw_id, str | int)):
        raise AlertParseError("problem_id is not a string")
    problem_id = "" if raw_id is None else str(raw_id).strip()[:64]
    if problem_id == "0":
        problem_id = ""

    if kind == "RECOVERY":
        status = AlertStatus.RESOLVED
    elif kind == "PROBLEM":
        status = AlertStatus.FIRING
    else:
        status = AlertStatus.RESOLVED if state in _HEALTHY else AlertStatus.FIRING
    what = f"{service} on {host}" if is_service else host
    text = "\n".join(part for part in (output, long_output) if part)
    labels = {"host": host, "state": state, "notification_type": kind}
    if is_service:
        labels["service"] = service
    started = problem_start or (sent if kind == "PROBLEM" else None)
    return [Alert(
        source=source,
        key=incident_key(host, service, problem_start, problem_id),
        status=status,
        severity=severity_of(state),
        title=f"{what} is {state}",
        name=service,
        host=host,
        service=service,
        text=text,
        labels=labels,
        started_at=datetime.fromtimestamp(started, UTC) if started else None,
        kind=AlertKind.ALERT if kind in ("PROBLEM", "RECOVERY") else AlertKind.UPDATE,
        update=_update_text(kind, author, comment) if kind in _UPDATES else "",
        ref={"type": "Service" if is_service else "Host", "host": host, "service": service,
             **_uuids(body, is_service)},
        identity=incident_key(host, service),
    )]


# --------------------------------------------------------------------------- the client


def _short(text: Any, limit: int = 200) -> str:
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[:limit] + "…"


class IcingaClient:
    """Acts on Icinga 2 objects through its REST API (`https://host:5665`, basic auth).

    Every action names the object with a filter (`host.name == h && service.name == s`, the
    names passed as `filter_vars`, never spliced into the filter's text)."""

    can_acknowledge = True
    can_silence = True
    can_resolve = False

    def __init__(self, *, url: str, username: str, password: str, timeout: float = 10.0,
                 verify: bool | ssl.SSLContext = True,
                 transport: httpx.AsyncBaseTransport | None = None,
                 name: str = "icinga", max_in_flight: int = 32) -> None:
        self.name = name
        self.url = url.rstrip("/")
        #: Bounds the requests on the wire at once, never more than `max_in_flight`
        #: (`bridge.limiter`).
        self.limiter = Limiter(max_in_flight)
        self._client = httpx.AsyncClient(
            base_url=self.url, auth=httpx.BasicAuth(username, password),
            headers={"Accept": "application/json", "User-Agent": "switchboard"},
            timeout=httpx.Timeout(timeout), verify=verify, transport=transport,
            follow_redirects=False,
            limits=self.limiter.pool_limits())

    async def __aenter__(self) -> IcingaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ the operator's probe

    async def check(self) -> list[tuple[str, str]]:
        """For `switchboard doctor`: `GET /v1/status/IcingaApplication` as the API user.

        Returns `(level, text)` pairs, level "ok" or "warn". Raises `SourceError` when the API
        cannot be used; its message says what is wrong and, after " — fix: ", what to do, naming
        settings in backquotes (`url`, `api_username`, `api_password`). Connection failures are
        raised as they are."""
        path = "/v1/status/IcingaApplication"
        try:
            response = await self.limiter.call(self._client.get, path)
        except httpx.TimeoutException as exc:
            raise SourceUnavailable("Icinga timed out on GET /v1/status") from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable(
                f"Icinga unreachable on GET /v1/status: {type(exc).__name__}") from exc
        code = response.status_code
        if code == 401:
            raise SourceError(
                "Icinga rejected the API user's credentials (HTTP 401) — fix: set "
                "`api_username` and `api_password` to an ApiUser object's name and password "
                "(e.g. in /etc/icinga2/conf.d/api-users.conf)")
        access = ("it needs the permissions actions/acknowledge-problem, "
                  "actions/remove-acknowledgement, actions/schedule-downtime and "
                  "actions/remove-downtime")
        if code == 403:
            return [("ok", "Icinga accepted the API user's credentials"),
                    ("warn", f"the API user may not read /v1/status, so its permissions "
                             f"cannot be checked from here: {access}")]
        try:
            answer = response.json() if code == 200 else None
        except ValueError:
            answer = None
        results = answer.get("results") if isinstance(answer, dict) else None
        if code >= 500:
            raise SourceUnavailable(f"Icinga failed GET /v1/status (HTTP {code}) — fix: "
                                    "Icinga's log (/var/log/icinga2/icinga2.log) says why")
        if not isinstance(results, list):
            raise SourceError(f"no Icinga 2 API answers at `url` (HTTP {code} on GET "
                              "/v1/status) — fix: `url` is the API's address, "
                              "e.g. https://icinga.example.org:5665")
        app: Any = next((r for r in results if isinstance(r, dict)), {})
        version = (((app.get("status") or {}).get("icingaapplication") or {})
                   .get("app") or {}).get("version") or "?"
        return [("ok", f"Icinga {version} answers; the API user's credentials are accepted")]

    # ------------------------------------------------------------------ HTTP

    @staticmethod
    def _target(alert: Alert) -> dict[str, Any]:
        ref = alert.ref
        kind, host, service = ref.get("type"), ref.get("host"), ref.get("service")
        if kind not in ("Host", "Service") or not isinstance(host, str) or not host:
            raise SourceError("this alert does not name an Icinga object")
        if kind == "Host":
            return {"type": "Host", "filter": "host.name == sb_host",
                    "filter_vars": {"sb_host": host}}
        if not isinstance(service, str) or not service:
            raise SourceError("this alert does not name an Icinga service")
        return {"type": "Service", "filter": "host.name == sb_host && service.name == sb_service",
                "filter_vars": {"sb_host": host, "sb_service": service}}

    @staticmethod
    def _object_name(alert: Alert) -> str:
        host, service = alert.ref.get("host", ""), alert.ref.get("service", "")
        return f"{host}!{service}" if alert.ref.get("type") == "Service" else str(host)

    async def _post(self, action: str, body: dict[str, Any]) -> httpx.Response:
        path = f"/v1/actions/{action}"
        try:
            return await self.limiter.call(self._client.post, path,
                                           content=json.dumps(body).encode(),
                                           headers={"Content-Type": "application/json"})
        except httpx.TimeoutException as exc:
            raise SourceUnavailable(f"Icinga timed out on {action}") from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable(
                f"Icinga unreachable on {action}: {type(exc).__name__}") from exc

    async def _action(self, action: str, body: dict[str, Any], *, what: str,
                      tolerate: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """POSTs one action; returns its per-object results. A result whose status contains
        one of `tolerate` counts as success."""
        response = await self._post(action, body)
        code = response.status_code
        if code == 401:
            raise SourceError("Icinga rejected the API user's credentials")
        if code == 403:
            raise SourceError(f"the Icinga API user may not {action}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        results = answer.get("results") if isinstance(answer, dict) else None
        if isinstance(results, list) and not results and code in (404, 500):
            # Icinga 2.13 answers a filter that matches nothing with 500 and no results.
            raise SourceError(f"Icinga has no object {what}")
        if not isinstance(results, list):
            status = answer.get("status") if isinstance(answer, dict) else ""
            detail = _short(status) if status else f"HTTP {code}"
            if code >= 500 or code in (408, 429):
                raise SourceUnavailable(f"Icinga failed {action} ({code}): {detail}")
            if code == 404:
                raise SourceError(f"Icinga has no object {what}: {detail}")
            if code >= 300:
                raise SourceError(f"Icinga refused {action} ({code}): {detail}")
            raise SourceUnavailable(f"Icinga answered {action} without results")
        out: list[dict[str, Any]] = []
        for item in results:
            if not isinstance(item, dict):
                continue
            item_code = item.get("code", code)
            status = _short(item.get("status", ""))
            done = isinstance(item_code, int | float) and 200 <= item_code < 300
            if done or any(word in status.lower() for word in tolerate):
                out.append(item)
            elif isinstance(item_code, int | float) and item_code >= 500:
                raise SourceUnavailable(f"Icinga failed {action} on {what}: {status}")
            else:
                raise SourceError(f"Icinga refused {action} on {what}: {status}")
        if not out and code >= 300:
            raise SourceError(f"Icinga refused {action} on {what} (HTTP {code})")
        return out

    # ------------------------------------------------------------------ AlertSource

    async def acknowledge(self, alert: Alert, who: str, comment: str) -> str:
        """Acknowledges the problem as `who` (not sticky, no notification). Acknowledging an
        acknowledged problem is not an error. Returns ""."""
        body = self._target(alert) | {
            "author": who or "switchboard",
            "comment": comment or f"Acknowledged by {who}",
            "notify": False, "sticky": False}
        await self._action("acknowledge-problem", body, what=self._object_name(alert),
                           tolerate=("already acknowledged",))
        return ""

    async def unacknowledge(self, alert: Alert, handle: str, who: str) -> None:
        """Removes the acknowledgement; a `handle` returned by `silence` (a downtime's name)
        removes that downtime too."""
        what = self._object_name(alert)
        if handle:
            await self._action("remove-downtime", {"type": "Downtime", "downtime": handle},
                               what=handle, tolerate=("no objects found",))
        await self._action("remove-acknowledgement", self._target(alert), what=what)

    async def silence(self, alert: Alert, seconds: float, who: str) -> str:
        """Schedules a fixed downtime from now for `seconds`; returns the downtime's name."""
        if not math.isfinite(seconds) or seconds <= 0:
            raise SourceError("a silence must last a positive number of seconds")
        start = time.time()
        body = self._target(alert) | {
            "author": who or "switchboard",
            "comment": f"Silenced by {who} for {_duration(seconds)}",
            "start_time": int(start), "end_time": math.ceil(start + seconds),
            "fixed": True, "duration": math.ceil(seconds)}
        results = await self._action("schedule-downtime", body, what=self._object_name(alert))
        for item in results:
            name = item.get("name")
            if isinstance(name, str) and name:
                return name
        raise SourceUnavailable("Icinga scheduled the downtime without naming it")

    async def unsilence(self, alert: Alert, handle: str, who: str) -> None:
        """Ends the downtime `handle` early (one already gone is fine)."""
        if handle:
            await self._action("remove-downtime", {"type": "Downtime", "downtime": handle},
                               what=handle, tolerate=("no objects found",))

    async def resolve(self, alert: Alert, who: str) -> None:
        raise SourceError("an Icinga problem is resolved by its check, not from the chat")


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{max(minutes, 1)} min"
    hours = seconds / 3600
    return f"{hours:g} h" if hours < 48 else f"{hours / 24:g} d"
