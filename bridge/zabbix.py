"""Zabbix (6.0 through 7.x) as an alert source.

Notifications come from the webhook media type in `contrib/zabbix/switchboard_mediatype.yaml`: one
flat JSON object per problem, update or recovery, every value a string (a Zabbix macro expanded,
or left as literal `{MACRO}` text when it does not apply to the message, which counts as absent).
The fields read here:

    event_id             {EVENT.ID}: the problem's event id, also in recovery and update messages
    event_value          {EVENT.VALUE}: "1" problem, "0" resolved
    event_recovery_id    {EVENT.RECOVERY.ID}
    event_update_status  {EVENT.UPDATE.STATUS}: "1" in an update message
    event_update_action  {EVENT.UPDATE.ACTION}, event_update_message, user_fullname
    status               {TRIGGER.STATUS}: PROBLEM or OK (used when event_value is absent)
    severity             {TRIGGER.NSEVERITY} 0-5 (event_nseverity, the event's, wins if given)
    hostname, host       {HOST.NAME}, {HOST.HOST}
    trigger_name         {TRIGGER.NAME} (event_name as a fallback)
    trigger_key          the item key; trigger_expression, trigger_id
    detail               "key: last value"
    event_timestamp      seconds since the epoch (the media type computes it), or event_date
                         (YYYY.MM.DD) and event_time (HH:MM:SS), read as UTC
    event_url            a link to the event in the frontend

The incident's key is the problem's event id, so the problem, its updates and its recovery all
land on the same post.

Actions go back through the JSON-RPC API (`event.acknowledge`) with an API token. Where the
token goes depends on the server: 6.0 and 6.2 read it only from the body field `auth`; 6.4 added
the `Authorization: Bearer` header and deprecated `auth`, which 7.2 removed (a body carrying it
is refused with `Invalid parameter "/": unexpected parameter "auth".`). The client asks the
version once (`apiinfo.version`, which takes no token) and picks. Between 6.4 and 7.0 the header
can be lost on the way: Apache hands it to PHP-FPM only with `CGIPassAuth On` (Zabbix's
ZBX-22952), and PHP then sees no token at all. A header call those releases answer "Not
authorized" is sent once more with the body field, and when that works the body is kept for the
client's life. Zabbix records the actions under the token's user, so the message names the chat
user.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx

from bridge.alerts import (
    Alert,
    AlertKind,
    AlertParseError,
    AlertStatus,
    Severity,
    SourceError,
    SourceUnavailable,
)
from bridge.limiter import Limiter

SOURCE = "zabbix"

#: `event.acknowledge` action bits.
ACTION_CLOSE = 1
ACTION_ACKNOWLEDGE = 2
ACTION_MESSAGE = 4
ACTION_SEVERITY = 8
ACTION_UNACKNOWLEDGE = 16

SEVERITIES: dict[int, Severity] = {
    5: Severity.CRITICAL,  # disaster
    4: Severity.HIGH,  # high
    3: Severity.WARNING,  # average
    2: Severity.WARNING,  # warning
    1: Severity.INFO,  # information
    0: Severity.UNKNOWN,  # not classified
}
_SEVERITY_NAMES: dict[str, int] = {
    "disaster": 5, "high": 4, "average": 3, "warning": 2, "information": 1, "info": 1,
    "not classified": 0,
}

#: An unexpanded macro: {EVENT.RECOVERY.ID}, {ITEM.KEY1}, {$USER.MACRO}, {$MACRO:"context"}.
_MACRO = re.compile(r"^\{[$#]?[A-Z][A-Z0-9_.]*(:[^{}]*)?\}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_EVENT_ID = re.compile(r"^[0-9]{1,20}$")
_DATE = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$")
_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})$")
_VERSION = re.compile(r"^\s*(\d{1,4})\.(\d{1,4})")

#: The first release that reads the API token from an `Authorization: Bearer` header.
HEADER_AUTH_SINCE = (6, 4)
#: The first release that refuses the body's `auth` field.
BODY_AUTH_UNTIL = (7, 2)
#: The `data` of an error -32602 "Invalid params." for a missing or unknown token (the
#: spelling changed over the releases; the last is the answer to an expired session).
_NOT_AUTHORIZED = frozenset({"Not authorized.", "Not authorised.",
                             "Session terminated, re-login, please."})
#: What a server without the body field (7.2+) answers a request that carries it.
_AUTH_FIELD_REFUSED = 'unexpected parameter "auth"'

#: Longest text kept from a notification field (Zabbix values can be long log lines).
MAX_FIELD = 4000
MAX_TITLE = 500
#: Fields copied into `labels` when present.
LABEL_FIELDS = ("host", "trigger_id", "trigger_key", "trigger_expression", "status",
                "event_status", "event_recovery_id", "event_opdata")


def _field(body: dict[str, Any], name: str, limit: int = MAX_FIELD) -> str:
    """The text of a field; "" when missing, empty or an unexpanded macro."""
    value = body.get(name)
    if value is None:
        return ""
    if isinstance(value, bool):
        raise AlertParseError(f"field {name!r} is a boolean, not text")
    if isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise AlertParseError(f"field {name!r} is a {type(value).__name__}, not text")
    text = _CONTROL.sub("", text).strip()
    if _MACRO.match(text):
        return ""
    return text[:limit]


def _severity(body: dict[str, Any]) -> Severity:
    for name in ("event_nseverity", "severity"):
        text = _field(body, name).lower()
        if not text:
            continue
        if text.isdigit() and text.isascii():
            number = int(text)
        elif text in _SEVERITY_NAMES:
            number = _SEVERITY_NAMES[text]
        else:
            raise AlertParseError(f"unknown severity in {name!r}: {text[:20]!r}")
        if number not in SEVERITIES:
            raise AlertParseError(f"severity {number} is not between 0 and 5")
        return SEVERITIES[number]
    return Severity.UNKNOWN


def _status(body: dict[str, Any]) -> AlertStatus:
    value = _field(body, "event_value")
    if value == "1":
        return AlertStatus.FIRING
    if value == "0":
        return AlertStatus.RESOLVED
    if value:
        raise AlertParseError(f"event_value must be 0 or 1, not {value[:20]!r}")
    trigger = _field(body, "status").upper()
    if trigger == "PROBLEM":
        return AlertStatus.FIRING
    if trigger in ("OK", "RESOLVED"):
        return AlertStatus.RESOLVED
    raise AlertParseError("neither event_value nor a trigger status PROBLEM/OK")


def _started_at(body: dict[str, Any]) -> datetime | None:
    stamp = _field(body, "event_timestamp")
    if stamp:
        try:
            seconds = int(stamp)
            return datetime.fromtimestamp(seconds, UTC)
        except (ValueError, OverflowError, OSError):
            pass
    date, time_ = _DATE.match(_field(body, "event_date")), _TIME.match(_field(body, "event_time"))
    if date and time_:
        try:
            y, mo, d = (int(g) for g in date.groups())
            h, mi, sec = (int(g) for g in time_.groups())
            return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)
        except ValueError:
            return None
    return None


def _update_text(body: dict[str, Any]) -> str:
    action = _field(body, "event_update_action", 200) or "updated"
    user = _field(body, "user_fullname", 200)
    message = _field(body, "event_update_message")
    text = f"{action} by {user}" if user else action
    return f"{text}: {message}" if message else text


def parse_zabbix(body: Any) -> list[Alert]:
    """The alert in one notification of the Switchboard webhook media type.

    `body` is the decoded JSON object (or its text/bytes). Raises `AlertParseError` with a
    short reason when it is not such a notification."""
    if isinstance(body, bytes | bytearray):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise AlertParseError("the body is not UTF-8") from None
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError):
            raise AlertParseError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise AlertParseError("the body is not a JSON object")

    event_id = _field(body, "event_id") or _field(body, "eventid")
    if not event_id:
        raise AlertParseError("no event_id")
    if not _EVENT_ID.match(event_id):
        raise AlertParseError(f"event_id is not a number: {event_id[:30]!r}")

    status = _status(body)
    severity = _severity(body)
    host = _field(body, "hostname", 255) or _field(body, "host", 255)
    title = (_field(body, "trigger_name", MAX_TITLE) or _field(body, "event_name", MAX_TITLE)
             or f"Zabbix event {event_id}")
    kind = AlertKind.UPDATE if _field(body, "event_update_status") == "1" else AlertKind.ALERT

    labels = {name: text for name in LABEL_FIELDS if (text := _field(body, name, 500))}
    links: tuple[tuple[str, str], ...] = ()
    url = _field(body, "event_url", 2000)
    if url.lower().startswith(("http://", "https://")) and not any(c.isspace() for c in url):
        links = (("Zabbix event", url),)

    # A new event of the same trigger is the same incident firing again.
    trigger = _field(body, "trigger_id", 40)
    ref: dict[str, Any] = {"eventid": event_id}
    recovery = _field(body, "event_recovery_id")
    if _EVENT_ID.match(recovery):
        ref["recovery_eventid"] = recovery

    return [Alert(
        source=SOURCE, key=event_id, status=status, severity=severity, title=title,
        name=_field(body, "trigger_name", MAX_TITLE),
        host=host, service=_field(body, "trigger_key", 255), text=_field(body, "detail"),
        labels=labels, links=links, started_at=_started_at(body), kind=kind,
        update=_update_text(body) if kind is AlertKind.UPDATE else "", ref=ref,
        identity=f"trigger:{trigger}" if trigger.isdigit() else "")]


# --------------------------------------------------------------------------- the client


def version_tuple(version: str) -> tuple[int, int] | None:
    """(major, minor) of a Zabbix version such as "6.0.14" or "7.2.0rc1"; None if unreadable."""
    match = _VERSION.match(version)
    return (int(match[1]), int(match[2])) if match else None


class _AuthFieldRefused(SourceError):
    """The server rejected the request's `auth` field: it only takes the header."""


class _NotAuthorized(SourceError):
    """The server saw no token it knows (wrong, disabled, or lost on the way)."""


def _who(who: str) -> str:
    name = " ".join(_CONTROL.sub("", who).split()).lstrip("@")
    return f"@{name}" if name else "someone"


def _message(verb: str, who: str, comment: str = "") -> str:
    text = f"{verb} in Mattermost by {_who(who)}"
    comment = " ".join(_CONTROL.sub("", comment).split())
    # Zabbix 6.0 keeps at most 2048 characters of a message.
    return (f"{text}: {comment}" if comment else text)[:2048]


class ZabbixClient:
    """The `AlertSource` protocol on Zabbix's JSON-RPC API.

    The API token goes in the `Authorization: Bearer` header on 6.4 and later, in the body's
    `auth` field before; the server's version is asked once and kept. When it cannot be
    learned, the body field is used (it works up to 7.0) and a server that refuses it gets
    the request again with the header, which is then kept. On 6.4 to 7.0, a header call
    answered "Not authorized" is sent again with the body field (a web server in front may
    drop the header), which is then kept; 7.2 and later never get the body field."""

    can_acknowledge = True
    can_silence = False
    can_resolve = True

    def __init__(self, *, url: str, api_token: str, timeout: float = 10.0,
                 verify: bool | str = True,
                 transport: httpx.AsyncBaseTransport | None = None,
                 name: str = "zabbix", max_in_flight: int = 32) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self._token = api_token
        self._next_id = 0
        #: The server's version once asked ("" when it could not be learned), and whether the
        #: token goes in the header (None until decided).
        self._version: str | None = None
        self._use_header: bool | None = None
        #: Set when the header was lost on the way and the body field is used instead.
        self.header_dropped = False
        self._decide_lock = asyncio.Lock()
        #: Bounds the requests on the wire at once, never more than `max_in_flight`
        #: (`bridge.limiter`).
        self.limiter = Limiter(max_in_flight)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), verify=verify, transport=transport,
            follow_redirects=False,
            headers={"Content-Type": "application/json-rpc", "Accept": "application/json",
                     "User-Agent": "switchboard"},
            limits=self.limiter.pool_limits())

    async def __aenter__(self) -> ZabbixClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _clean(self, text: str, limit: int = 300) -> str:
        text = " ".join(str(text).split())
        if self._token:
            text = text.replace(self._token, "***")
        return text[:limit]

    @property
    def server_version(self) -> str | None:
        """The version the server reported; "" when it could not be learned, None before."""
        return self._version

    async def _ask_version(self) -> str:
        """`apiinfo.version`, without any token (Zabbix refuses it with one), kept for the
        client's life. Raises as `call` does."""
        result = await self.call("apiinfo.version", [], auth=False)
        parsed = version_tuple(result) if isinstance(result, str) else None
        if parsed is None:
            raise SourceError("Zabbix answered apiinfo.version with no version number")
        self._version = str(result)
        self._use_header = parsed >= HEADER_AUTH_SINCE
        self.header_dropped = False
        return self._version

    def _body_auth_possible(self) -> bool:
        """Whether the server is known to be a release that still reads the body field."""
        parsed = version_tuple(self._version or "")
        return parsed is not None and parsed < BODY_AUTH_UNTIL

    async def _header_auth(self) -> bool:
        """Whether the token goes in the header; asks the server's version the first time."""
        if self._use_header is not None:
            return self._use_header
        async with self._decide_lock:  # concurrent first calls ask once
            if self._use_header is None:
                try:
                    await self._ask_version()
                except SourceUnavailable:
                    raise  # not reachable: the call itself would fail too; ask again later
                except SourceError:
                    # Answered, but not with a version: the body field works up to 7.0, and
                    # a refusal of it switches to the header (see `call`).
                    self._version = ""
                    self._use_header = False
        return bool(self._use_header)

    async def call(self, method: str, params: Any, *, auth: bool = True) -> Any:
        """One JSON-RPC call; returns its `result`. `auth=False` for the few methods Zabbix
        refuses with a token (`apiinfo.version`)."""
        if not auth:
            return await self._post(method, params, header=False, token=False)
        header = await self._header_auth()
        try:
            return await self._post(method, params, header=header, token=True)
        except _AuthFieldRefused:  # raised only for a body that carried the token
            # The server takes only the header (7.2+, or upgraded since the version was
            # asked). It validates the request before running the method, so nothing was
            # done and sending it again is safe.
            self._use_header = True
            return await self._post(method, params, header=True, token=True)
        except _NotAuthorized:
            if not header or not self._body_auth_possible():
                raise  # a wrong token, or a 7.2+ that must never get the body field
            # 6.4 to 7.0 also read the body field; a web server that drops the header
            # (Apache and PHP-FPM without CGIPassAuth) lets it through. Refused before the
            # method ran, so nothing was done and sending it again is safe.
            result = await self._post(method, params, header=False, token=True)
            self._use_header, self.header_dropped = False, True
            return result

    async def _post(self, method: str, params: Any, *, header: bool, token: bool) -> Any:
        self._next_id += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params,
                                "id": self._next_id}
        headers: dict[str, str] = {}
        if token and header:
            headers["Authorization"] = f"Bearer {self._token}"
        elif token:
            body["auth"] = self._token
        try:
            response = await self.limiter.call(self._client.post, self.url + "/api_jsonrpc.php",
                                               json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise SourceUnavailable(f"Zabbix timed out on {method}") from exc
        except httpx.HTTPError as exc:
            raise SourceUnavailable(
                f"Zabbix unreachable on {method}: {type(exc).__name__}") from exc
        code = response.status_code
        if code >= 500 or code in (408, 429):
            raise SourceUnavailable(f"Zabbix answered HTTP {code} on {method}")
        if code >= 300:
            raise SourceError(f"Zabbix answered HTTP {code} on {method}: check the URL")
        try:
            data = response.json()
        except ValueError:
            raise SourceError(f"Zabbix answered {method} with something other than JSON: "
                              "check the URL") from None
        if not isinstance(data, dict):
            raise SourceError(f"Zabbix answered {method} with an unexpected document")
        error = data.get("error")
        if error is not None:
            if isinstance(error, dict):
                detail = str(error.get("data") or error.get("message") or "unknown error")
            else:
                detail = str(error)
            if token and not header and _AUTH_FIELD_REFUSED in detail:
                raise _AuthFieldRefused(f"Zabbix refused {method}: it takes the API token "
                                        "only in the Authorization header")
            if (token and isinstance(error, dict) and error.get("code") == -32602
                    and str(error.get("data")).strip() in _NOT_AUTHORIZED):
                raise _NotAuthorized(f"Zabbix refused {method}: {self._clean(detail)}")
            raise SourceError(f"Zabbix refused {method}: {self._clean(detail)}")
        if "result" not in data:
            raise SourceError(f"Zabbix answered {method} without a result")
        return data["result"]

    async def check(self) -> list[tuple[str, str]]:
        """For `switchboard doctor`: `apiinfo.version` (no token), then one call with the API
        token (`problem.get`, counting what its user may see).

        Returns `(level, text)` pairs, level "ok" or "warn". Raises `SourceError` when the API
        cannot be used; its message says what is wrong and, after " — fix: ", what to do, naming
        settings in backquotes (`url`, `api_token`). Connection failures are raised as they
        are."""
        try:
            version = await self._ask_version()
        except SourceUnavailable as exc:
            if exc.__cause__ is not None:
                raise  # not reached at all: the caller says how
            raise SourceUnavailable(f"{exc} — fix: Zabbix's frontend log says why") from None
        except SourceError as exc:
            raise SourceError(f"no Zabbix API answers at `url` ({exc}) — fix: `url` is the "
                              "Zabbix frontend's address, where api_jsonrpc.php is (e.g. "
                              "https://zabbix.example.org or …/zabbix)") from None
        found = [("ok", f"Zabbix {version} answers")]
        if (version_tuple(version) or (0, 0)) < (6, 0):
            found.append(("warn", f"Zabbix {version} is older than 6.0, which Switchboard's "
                                  "acknowledgements and media type are made for"))
        try:
            count = await self.call("problem.get", {"countOutput": True})
        except SourceUnavailable:
            raise
        except _NotAuthorized:
            tried = ("in the Authorization header and in the request body"
                     if self._use_header and self._body_auth_possible() else
                     "in the Authorization header" if self._use_header else
                     "in the request body")
            fix = ("set `api_token` to a valid API token (User settings > API tokens; not "
                   "expired or disabled, its user enabled)")
            if self._use_header and not self._body_auth_possible():
                fix += (", and make sure the web server passes the Authorization header to "
                        "PHP (Apache with PHP-FPM: CGIPassAuth On)")
            raise SourceError(f"Zabbix does not accept the API token ({tried}: Not "
                              f"authorized) — fix: {fix}") from None
        except SourceError as exc:
            raise SourceError(f"{exc} — fix: set `api_token` to an API token (User "
                              "settings > API tokens) of a user whose role may acknowledge "
                              "and close problems") from None
        if self.header_dropped:
            found.append(("warn", "ok, but the web server drops the Authorization header "
                                  "(Apache: CGIPassAuth On): the API token was accepted in the "
                                  f"request body ({count} problems visible to its user), which "
                                  "Zabbix 7.2 no longer reads — fix: let the header through to "
                                  "PHP (Apache with PHP-FPM: CGIPassAuth On where the frontend "
                                  "is served) before upgrading to 7.2"))
        else:
            found.append(("ok", f"API token accepted ({count} problems visible to its user)"))
        return found

    @staticmethod
    def _eventid(alert: Alert) -> str:
        eventid = str(alert.ref.get("eventid") or alert.key)
        if not _EVENT_ID.match(eventid):
            raise SourceError(f"not a Zabbix event id: {eventid[:30]!r}")
        return eventid

    async def _acknowledge(self, alert: Alert, action: int, message: str) -> None:
        result = await self.call("event.acknowledge", {
            "eventids": self._eventid(alert), "action": action, "message": message})
        if not isinstance(result, dict) or not result.get("eventids"):
            raise SourceError("Zabbix did not confirm the change to the event")

    async def acknowledge(self, alert: Alert, who: str, comment: str) -> str:
        await self._acknowledge(alert, ACTION_ACKNOWLEDGE | ACTION_MESSAGE,
                                _message("Acknowledged", who, comment))
        return ""

    async def unacknowledge(self, alert: Alert, handle: str, who: str) -> None:
        await self._acknowledge(alert, ACTION_UNACKNOWLEDGE | ACTION_MESSAGE,
                                _message("Unacknowledged", who))

    async def silence(self, alert: Alert, seconds: float, who: str) -> str:
        raise SourceError("Zabbix 6.0 cannot silence a problem from the API")

    async def unsilence(self, alert: Alert, handle: str, who: str) -> None:
        raise SourceError("Zabbix 6.0 cannot silence a problem from the API")

    async def resolve(self, alert: Alert, who: str) -> None:
        """Closes the problem; Zabbix refuses (SourceError with its reason) when the trigger
        does not allow manual closing."""
        await self._acknowledge(alert, ACTION_CLOSE | ACTION_MESSAGE,
                                _message("Closed", who))


__all__ = ["BODY_AUTH_UNTIL", "HEADER_AUTH_SINCE", "SEVERITIES", "SOURCE", "ZabbixClient",
           "parse_zabbix", "version_tuple"]
