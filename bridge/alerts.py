"""The common alert and the alert-source interface.

Each monitoring system is one module beside this one (`alertmanager.py`, `zabbix.py`, `icinga.py`,
`generic.py`): a pure parser from the system's notification payload to `Alert`s, and a client that
carries a person's decision back (acknowledge, unacknowledge, silence, resolve). Nothing here knows
Mattermost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Higher is worse: critical 4 … unknown 0."""
        return {"critical": 4, "high": 3, "warning": 2, "info": 1}.get(self.value, 0)


class AlertKind(StrEnum):
    #: A problem or its recovery: one post per incident, edited in place.
    ALERT = "alert"
    #: Something that happened to a known incident (an acknowledgement made in the monitoring
    #: system, a comment, flapping, a downtime): it belongs in the incident's thread.
    UPDATE = "update"


class AlertParseError(ValueError):
    """A notification that is not what the source sends; the message says what is wrong."""


class SourceError(Exception):
    """The monitoring system refused or failed an action. Short; never carries a credential."""

    retryable = False


class SourceUnavailable(SourceError):
    """The monitoring system could not be reached or answered with a server error."""

    retryable = True


@dataclass(frozen=True)
class Alert:
    """One incident as every source reports it."""

    source: str
    #: Stable identity of the incident within its source (fingerprint+startsAt, event id,
    #: host!service+problem start): repeats of the same key edit the same post.
    key: str
    status: AlertStatus
    severity: Severity
    title: str
    #: What fired: the rule, trigger or check (Alertmanager's `alertname`, a Zabbix trigger, a
    #: Nagios or Icinga service); "" when the title is all there is.
    name: str = ""
    host: str = ""
    service: str = ""
    text: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    #: (label, url) pairs shown on the post.
    links: tuple[tuple[str, str], ...] = ()
    started_at: datetime | None = None
    kind: AlertKind = AlertKind.ALERT
    #: For updates: what happened, in words ("acknowledged by Admin: on it").
    update: str = ""
    #: What the source's client needs to act on the incident (event id, matchers, object
    #: names). Kept server-side; never put in a post or a button.
    ref: dict[str, Any] = field(default_factory=dict)
    #: What stays the same when the same thing fires again with a new key (Alertmanager's
    #: fingerprint, the Zabbix trigger, the Nagios or Icinga check): a new event of an open or
    #: lately resolved incident goes to that incident's post. "" when the key says it all.
    identity: str = ""


class AlertSource(Protocol):
    """A monitoring system the bot can act on."""

    name: str
    can_acknowledge: bool
    can_silence: bool
    can_resolve: bool

    async def acknowledge(self, alert: Alert, who: str, comment: str) -> str:
        """Acknowledge; returns a handle needed to undo it (e.g. a silence id), or ""."""
        ...

    async def unacknowledge(self, alert: Alert, handle: str, who: str) -> None: ...

    async def silence(self, alert: Alert, seconds: float, who: str) -> str:
        """Silence for `seconds`; returns a handle needed to end it early."""
        ...

    async def unsilence(self, alert: Alert, handle: str, who: str) -> None: ...

    async def resolve(self, alert: Alert, who: str) -> None: ...

    async def aclose(self) -> None: ...
