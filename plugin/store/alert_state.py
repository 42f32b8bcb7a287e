"""What the store keeps of an incident, and of a storm's digest: typed values and their JSON form.

The JSON form is the one stored in the `alerts` table (and read by its pruning: `$.pending`,
`$.alert.status`, `$.count`, `$.resolved`); `from_json` reads every row written so far, and
`to_json` writes the same shape back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.alerts import Alert, AlertKind, AlertStatus, Severity

#: The source under which storm digests are kept, beside the incidents of every real source.
DIGEST_SOURCE = "digest"


def alert_to_json(alert: Alert) -> dict[str, Any]:
    d = dataclasses.asdict(alert)
    for optional in ("name", "identity"):  # as stored before they existed, when empty
        if not d[optional]:
            del d[optional]
    d["started_at"] = alert.started_at.isoformat() if alert.started_at else None
    d["links"] = [list(x) for x in alert.links]
    return d


def alert_from_json(d: dict[str, Any]) -> Alert:
    started = d.get("started_at")
    return Alert(
        source=d["source"], key=d["key"], status=AlertStatus(d["status"]),
        severity=Severity(d["severity"]), title=d["title"], name=d.get("name", ""),
        host=d.get("host", ""),
        service=d.get("service", ""), text=d.get("text", ""), labels=d.get("labels") or {},
        links=tuple((str(a), str(b)) for a, b in d.get("links") or []),
        started_at=datetime.fromisoformat(started) if started else None,
        kind=AlertKind(d.get("kind", "alert")), update=d.get("update", ""),
        ref=d.get("ref") or {}, identity=str(d.get("identity") or ""))


@dataclass(frozen=True)
class Ack:
    """An acknowledgement: by a person in chat, or (`external`) in the monitoring system."""

    #: Who acknowledged in chat; empty when the monitoring system told us.
    by: str
    at: float
    #: What the monitoring system needs to undo it (e.g. a silence id), once it has answered.
    handle: str = ""
    external: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "at": self.at, "handle": self.handle, "external": self.external}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Ack:
        return cls(by=str(d.get("by") or ""), at=float(d.get("at") or 0),
                   handle=str(d.get("handle") or ""), external=bool(d.get("external")))


@dataclass(frozen=True)
class Silence:
    """Notifications held back until a point in time."""

    by: str
    until: float
    #: What the monitoring system needs to end the silence early, once it has answered.
    handle: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "until": self.until, "handle": self.handle}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Silence:
        return cls(by=str(d.get("by") or ""), until=float(d.get("until") or 0),
                   handle=str(d.get("handle") or ""))


@dataclass(frozen=True)
class TicketRef:
    """The ticket opened from an incident."""

    tracker: str
    id: str
    url: str

    def to_json(self) -> dict[str, Any]:
        return {"tracker": self.tracker, "id": self.id, "url": self.url}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TicketRef:
        return cls(tracker=str(d.get("tracker") or ""), id=str(d["id"]), url=str(d["url"]))


@dataclass(frozen=True)
class AlertState:
    """An incident: the alert as last reported, and what people decided about it."""

    alert: Alert
    first_seen: float
    ack: Ack | None = None
    #: The decision on its way to the monitoring system ("ack", "silence", …), if any.
    pending: str | None = None
    #: Counts decisions: a button carries the epoch it was drawn in, and an older one is refused.
    epoch: int = 0
    silence: Silence | None = None
    ticket: TicketRef | None = None
    #: Why the last decision failed, shown on the post until the next one.
    error: str = ""
    #: Who the post mentions (the alert's route decides), or "".
    mention: str = ""
    #: The key of the storm digest that lists the incident instead of a post of its own, or "".
    digest_key: str = ""
    #: When it was last resolved (0: firing, or resolved before this was kept).
    resolved_at: float = 0.0
    #: When its status changed lately (within the flapping window), oldest first.
    changes: tuple[float, ...] = ()
    #: Changing status too often: shown as flapping, its thread spared a note per change.
    flapping: bool = False

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "alert": alert_to_json(self.alert),
            "ack": self.ack.to_json() if self.ack else None,
            "pending": self.pending, "epoch": self.epoch,
            "silence": self.silence.to_json() if self.silence else None,
            "ticket": self.ticket.to_json() if self.ticket else None,
            "error": self.error, "first_seen": self.first_seen, "mention": self.mention}
        if self.digest_key:
            d["digest"] = self.digest_key
        # Kept only when set: a record without them reads back unchanged.
        if self.resolved_at:
            d["resolved_at"] = self.resolved_at
        if self.changes:
            d["changes"] = list(self.changes)
        if self.flapping:
            d["flapping"] = True
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AlertState:
        ack, silence, ticket = d.get("ack"), d.get("silence"), d.get("ticket")
        return cls(
            alert=alert_from_json(d["alert"]), first_seen=float(d.get("first_seen") or 0),
            ack=Ack.from_json(ack) if ack else None, pending=d.get("pending") or None,
            epoch=int(d.get("epoch") or 0),
            silence=Silence.from_json(silence) if silence else None,
            ticket=TicketRef.from_json(ticket) if ticket else None,
            error=str(d.get("error") or ""), mention=str(d.get("mention") or ""),
            digest_key=str(d.get("digest") or ""),
            resolved_at=float(d.get("resolved_at") or 0),
            changes=tuple(float(t) for t in d.get("changes") or ()),
            flapping=bool(d.get("flapping")))


@dataclass(frozen=True)
class DigestMember:
    """An alert listed by name in a storm's digest."""

    key: str
    title: str
    host: str
    status: AlertStatus
    #: Who acknowledged it from the digest, or "".
    acked_by: str = ""

    def to_json(self) -> dict[str, Any]:
        d = {"key": self.key, "title": self.title, "host": self.host,
             "status": self.status.value}
        if self.acked_by:
            d["acked_by"] = self.acked_by
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DigestMember:
        return cls(key=str(d["key"]), title=str(d.get("title") or ""),
                   host=str(d.get("host") or ""), status=AlertStatus(d.get("status", "firing")),
                   acked_by=str(d.get("acked_by") or ""))


@dataclass(frozen=True)
class DigestState:
    """A storm: the alerts of one source and channel that came too fast for a post each."""

    source: str
    #: The first few alerts, by name; the others are only counted.
    members: tuple[DigestMember, ...] = ()
    count: int = 0
    resolved: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "members": [m.to_json() for m in self.members],
                "count": self.count, "resolved": self.resolved}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DigestState:
        return cls(source=str(d.get("source") or ""),
                   members=tuple(DigestMember.from_json(m) for m in d.get("members") or []),
                   count=int(d.get("count") or 0), resolved=int(d.get("resolved") or 0))


def state_from_json(source: str, d: dict[str, Any]) -> AlertState | DigestState:
    """A stored state, read as what its source keeps: a digest's, or an incident's."""
    return DigestState.from_json(d) if source == DIGEST_SOURCE else AlertState.from_json(d)
