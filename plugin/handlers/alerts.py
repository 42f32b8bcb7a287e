"""Alerts with buttons: one live post per incident, and decisions that go back to the source.

The path of an alert: a monitoring system POSTs to `/alerts/<source>` → the payload is parsed
into common alerts → each incident's state is saved (durably, before the sender gets its 2xx) and
a render of its post is queued in the outbox → the renderer makes the post match the state
(create or edit in place) and posts the new notes into the post's thread.

A click changes the state at once (the clicker sees "Acknowledging…" within milliseconds) and
queues the call back to the monitoring system; its outcome edits the post again. Buttons are
signed and carry the incident's decision epoch: a replayed or out-of-date click is refused.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hmac
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.alerts import (
    Alert,
    AlertKind,
    AlertParseError,
    AlertSource,
    AlertStatus,
    Severity,
    SourceError,
)
from bridge.tickets import NewTicket, Person, Tracker, TrackerError, TrackerUnavailable

from .. import i18n, logs
from ..access import Membership
from ..config import AlertRoute, AlertSettings
from ..context import Context
from ..events import Click
from ..i18n import N_, _, ngettext, pgettext
from ..listener import HTTPError
from ..mattermost import MattermostError
from ..outbox import Retry
from ..router import Router
from ..signing import Payload
from ..store import AlertRecord, OutboxEntry

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger("switchboard.alerts")

Parser = Callable[[Any], list[Alert]]

COLORS = {"critical": "#b71c1c", "high": "#e53935", "warning": "#fb8c00", "info": "#1e88e5",
          "unknown": "#757575"}
RESOLVED_COLOR = "#2e7d32"
#: Alerts listed by name in a storm's digest post; the others are counted.
DIGEST_SHOWN = 30
ACKED_COLOR = "#6d4c41"
PENDING = {"ack": N_("Acknowledging…"), "unack": N_("Removing the acknowledgement…"),
           "silence": N_("Silencing…"), "unsilence": N_("Ending the silence…"),
           "resolve": N_("Resolving…")}
# A failed decision is told three ways: on the post, in its thread, and to the clicker. Each is
# a whole sentence per decision, so that translators never have to fit a fragment into another.
FAILED = {"ack": N_("Acknowledging failed: {reason}"),
          "unack": N_("Removing the acknowledgement failed: {reason}"),
          "silence": N_("Silencing failed: {reason}"),
          "unsilence": N_("Ending the silence failed: {reason}"),
          "resolve": N_("Resolving failed: {reason}")}
FAILED_NOTE = {"ack": N_("Acknowledging (by @{user}) failed: {reason}"),
               "unack": N_("Removing the acknowledgement (by @{user}) failed: {reason}"),
               "silence": N_("Silencing (by @{user}) failed: {reason}"),
               "unsilence": N_("Ending the silence (by @{user}) failed: {reason}"),
               "resolve": N_("Resolving (by @{user}) failed: {reason}")}
FAILED_DIRECT = {"ack": N_("Acknowledging **{title}** failed: {reason}"),
                 "unack": N_("Removing the acknowledgement **{title}** failed: {reason}"),
                 "silence": N_("Silencing **{title}** failed: {reason}"),
                 "unsilence": N_("Ending the silence **{title}** failed: {reason}"),
                 "resolve": N_("Resolving **{title}** failed: {reason}")}


def alert_to_json(alert: Alert) -> dict[str, Any]:
    d = dataclasses.asdict(alert)
    d["started_at"] = alert.started_at.isoformat() if alert.started_at else None
    d["links"] = [list(x) for x in alert.links]
    return d


def alert_from_json(d: dict[str, Any]) -> Alert:
    started = d.get("started_at")
    return Alert(
        source=d["source"], key=d["key"], status=AlertStatus(d["status"]),
        severity=Severity(d["severity"]), title=d["title"], host=d.get("host", ""),
        service=d.get("service", ""), text=d.get("text", ""), labels=d.get("labels") or {},
        links=tuple((str(a), str(b)) for a, b in d.get("links") or []),
        started_at=datetime.fromisoformat(started) if started else None,
        kind=AlertKind(d.get("kind", "alert")), update=d.get("update", ""),
        ref=d.get("ref") or {})


def _active_silence(state: dict[str, Any]) -> dict[str, Any] | None:
    """The silence on an incident, unless it has run out."""
    silence = state.get("silence")
    if silence and float(silence.get("until", 0)) > time.time():
        return dict(silence)
    return None


def _hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


def _severity(severity: Severity) -> str:
    """A severity in the language in force (its value stays the word routes and filters use)."""
    names = {"critical": pgettext("severity", "critical"), "high": pgettext("severity", "high"),
             "warning": pgettext("severity", "warning"), "info": pgettext("severity", "info"),
             "unknown": pgettext("severity", "unknown")}
    return names.get(severity.value, severity.value)


def _reason(exc: BaseException) -> str:
    """Why a decision failed, in the language in force: the source's own words, or a hint."""
    if isinstance(exc, SourceError):
        return str(exc)
    return _("unexpected error ({kind})").format(kind=type(exc).__name__)


class Alerts:
    """The alerts feature: ingestion, rendering, clicks, tickets from alerts."""

    def __init__(self, settings: AlertSettings, parsers: dict[str, Parser],
                 sources: dict[str, AlertSource], trackers: dict[str, Tracker]) -> None:
        self.settings = settings
        self.parsers = parsers
        self.sources = sources
        self.trackers = trackers
        self.router = Router("alerts")
        self._rt: Runtime | None = None
        self._channels: dict[str, str] = {}
        self._responders: Membership | None = None
        self.accepted = 0
        self.dropped = 0
        # Every read-change-save of an incident's state holds its lock (the store serves one
        # process); new alerts also hold their channel's, so storm counting is exact.
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        r = self.router
        r.on_start(self.start)
        r.on_stop(self.stop)
        r.intake("alerts")(self.ingest)
        r.executor("alert-render")(self._render)
        r.executor("alert-action")(self._act)
        r.executor("alert-ticket")(self._file_ticket)
        r.action("alertack")(self.on_ack)
        r.action("alertunack")(self.on_unack)
        r.action("alertsilence")(self.on_silence)
        r.action("alertunsilence")(self.on_unsilence)
        r.action("alertresolve")(self.on_resolve)
        r.action("alertticket")(self.on_ticket)
        r.dialog("alertticket")(self.on_ticket_dialog)

    @property
    def rt(self) -> Runtime:
        if self._rt is None:
            raise RuntimeError("the alerts feature has not been started")
        return self._rt

    async def start(self, rt: Runtime) -> None:
        self._rt = rt
        self._responders = Membership(rt.api, self.settings.responders)

    async def stop(self) -> None:
        for source in self.sources.values():
            try:
                await source.aclose()
            except Exception as exc:
                log.warning("closing %s: %s", source.name, exc)

    # --- ingestion ------------------------------------------------------------------------------
    def authorize(self, source: str, headers: dict[str, str]) -> None:
        """Constant-time check of the sender's bearer token or basic credentials."""
        conf = self.settings.sources.get(source)
        token = (conf.token.get_secret_value() if conf else "") or \
            self.settings.token.get_secret_value()
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer ") and token and hmac.compare_digest(
                auth[7:].strip().encode(), token.encode()):
            return
        if auth.startswith("Basic ") and conf is not None and conf.username:
            try:
                user, _sep, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise HTTPError(401, "malformed basic credentials") from None
            ok_user = hmac.compare_digest(user.encode(), conf.username.encode())
            ok_pass = hmac.compare_digest(password.encode(),
                                          conf.password.get_secret_value().encode())
            if ok_user and ok_pass:
                return
        raise HTTPError(401, "missing or wrong credentials")

    async def ingest(self, source: str, body: Any, headers: dict[str, str]) -> dict[str, Any]:
        parser = self.parsers.get(source)
        if parser is None:
            raise HTTPError(404, f"no alert source named {source!r}")
        self.authorize(source, headers)
        try:
            alerts = parser(body)
        except AlertParseError as exc:
            raise HTTPError(400, f"malformed {source} alert: {exc}") from None
        except RecursionError:
            raise HTTPError(400, f"malformed {source} alert: nested too deeply") from None
        accepted = dropped = 0
        for alert in alerts:
            with logs.about(alert=f"{alert.source}:{alert.key}"):
                if await self._take(alert):
                    accepted += 1
                    log.info("%s accepted (%s, %s): %s", alert.kind.value, alert.status.value,
                             alert.severity.value, alert.title)
                else:
                    dropped += 1
                    log.debug("%s ignored: nothing new", alert.kind.value)
        self.accepted += accepted
        self.dropped += dropped
        return {"accepted": accepted, "ignored": dropped}

    def _lock(self, scope: str, key: str) -> asyncio.Lock:
        lock = self._locks.get((scope, key))
        if lock is None:
            if len(self._locks) > 10_000:  # forget idle locks now and then
                for k in [k for k, v in self._locks.items() if not v.locked()]:
                    del self._locks[k]
            lock = self._locks[(scope, key)] = asyncio.Lock()
        return lock

    async def _take(self, alert: Alert) -> bool:
        async with self._lock(alert.source, alert.key):
            return await self._take_locked(alert)

    async def _take_locked(self, alert: Alert) -> bool:
        store = self.rt.store
        rec = await store.alert(alert.source, alert.key)
        now = time.time()
        if alert.kind == AlertKind.UPDATE:
            if rec is None:
                log.info("update for unknown %s alert %s dropped", alert.source, alert.key)
                return False
            upd = dict(rec.state)
            if "acknowledg" in alert.update.lower() and not upd.get("ack") \
                    and "unacknowledg" not in alert.update.lower():
                upd["ack"] = {"by": "", "at": now, "handle": "", "external": True}
            await self._save(rec.source, rec.key, rec.channel_id, upd,
                             [f":memo: {alert.update or alert.title}"])
            return True
        if rec is None:
            if alert.status == AlertStatus.RESOLVED:
                log.info("recovery for an unseen %s alert %s dropped", alert.source, alert.key)
                return False
            route = self._route(alert)
            channel_id = await self._channel(route.channels[0] if route else
                                             self.settings.channel)
            state: dict[str, Any] = {"alert": alert_to_json(alert), "ack": None,
                                     "pending": None, "epoch": 0, "silence": None,
                                     "ticket": None, "error": "", "first_seen": now,
                                     "mention": route.mention if route and Severity(
                                         alert.severity).rank >= Severity(
                                         route.mention_from).rank else ""}
            async with self._lock("channel", channel_id):
                recent = await store.alerts_created_since(channel_id, now - 60)
                if recent >= self.settings.storm_per_minute:
                    state["digest"] = await self._digest(alert, channel_id, now)
                await self._save(alert.source, alert.key, channel_id, state, [])
            return True
        state = dict(rec.state)
        old = alert_from_json(state["alert"])
        notes = []
        with i18n.use(None):  # the thread belongs to the channel: its language
            if alert.status != old.status:
                if alert.status == AlertStatus.RESOLVED:
                    notes.append(":white_check_mark: " + _("Resolved at {time}.").format(
                        time=_hhmm(now)))
                else:
                    notes.append(":rotating_light: " + _("Firing again at {time}.").format(
                        time=_hhmm(now)))
            elif (alert.title, alert.severity, alert.text) == (old.title, old.severity,
                                                               old.text):
                return False  # a repeat of what the post already shows
            elif alert.severity != old.severity:
                notes.append(_("Severity is now {new} (was {old}).").format(
                    new=_severity(alert.severity), old=_severity(old.severity)))
        if not alert.text and old.text:
            # A recovery often says less than the problem did: keep what the post showed.
            alert = dataclasses.replace(alert, text=old.text)
        state["alert"] = alert_to_json(alert)
        if state.get("digest") and alert.status != old.status:
            # The digest counts firing and resolved members: only a change of status moves it.
            await self._digest_member_changed(state["digest"], alert)
        await self._save(rec.source, rec.key, rec.channel_id, state, notes)
        return True

    async def _save(self, source: str, key: str, channel_id: str, state: dict[str, Any],
                    notes: list[str]) -> AlertRecord:
        rec = await self.rt.store.save_alert(source, key, channel_id, state, notes)
        if not state.get("digest"):
            await self._queue_render(rec)
        elif notes:
            await self.rt.store.mark_notes_posted(source, key)
        return rec

    async def _queue_render(self, rec: AlertRecord) -> None:
        await self.rt.store.outbox_requeue(
            f"alert-render:{rec.source}:{rec.key}", "alert-render",
            {"source": rec.source, "key": rec.key, "revision": rec.revision})
        self.rt.outbox.kick()

    def _route(self, alert: Alert) -> AlertRoute | None:
        for route in self.settings.routes:
            if route.sources and alert.source not in route.sources:
                continue
            if Severity(alert.severity).rank < Severity(route.min_severity).rank:
                continue
            if any(alert.labels.get(k) != v for k, v in route.labels.items()):
                continue
            if route.host and not re.search(route.host, alert.host):
                continue
            return route
        return None

    async def _channel(self, ref: str) -> str:
        if not ref:
            raise HTTPError(503, "no channel for this alert: set ALERTS_CHANNEL or a route")
        cached = self._channels.get(ref)
        if cached:
            return cached
        api = self.rt.api
        try:
            if "/" in ref:
                team_name, _sep, channel_name = ref.partition("/")
                team = await api.call(lambda d: d.teams.get_team_by_name(team_name))
                channel = await api.call(lambda d: d.channels.get_channel_by_name(
                    team["id"], channel_name))
                cid = str(channel["id"])
            else:
                cid = str((await api.channel(ref))["id"])
        except MattermostError as exc:
            log.error("alert channel %s cannot be found: %s", ref, exc)
            raise HTTPError(503, f"the alert channel {ref!r} cannot be found") from None
        self._channels[ref] = cid
        return cid

    # --- storms ---------------------------------------------------------------------------------
    async def _digest(self, alert: Alert, channel_id: str, now: float) -> str:
        minute = int(now // 60)
        key = f"{alert.source}:{channel_id}:{minute}"
        async with self._lock("digest", key):
            await self._digest_add(alert, channel_id, key)
        return key

    async def _digest_add(self, alert: Alert, channel_id: str, key: str) -> None:
        rec = await self.rt.store.alert("digest", key)
        state: dict[str, Any] = dict(rec.state) if rec else {
            "source": alert.source, "members": [], "count": 0, "resolved": 0}
        state["count"] += 1
        # The post lists the first few; the rest are counted (the state stays small).
        if len(state["members"]) < DIGEST_SHOWN:
            state["members"] = [*state["members"], {"key": alert.key, "title": alert.title,
                                                    "host": alert.host, "status": "firing"}]
        await self._save_digest(key, channel_id, state)

    async def _digest_member_changed(self, digest_key: str, alert: Alert) -> None:
        async with self._lock("digest", digest_key):
            await self._digest_member_changed_locked(digest_key, alert)

    async def _digest_member_changed_locked(self, digest_key: str, alert: Alert) -> None:
        rec = await self.rt.store.alert("digest", digest_key)
        if rec is None:
            return
        state = dict(rec.state)
        if alert.status == AlertStatus.RESOLVED:
            state["resolved"] += 1
        elif state["resolved"]:
            state["resolved"] -= 1
        for m in state["members"]:
            if m["key"] == alert.key:
                m["status"] = alert.status.value
        await self._save_digest(digest_key, rec.channel_id, state)

    async def _save_digest(self, key: str, channel_id: str, state: dict[str, Any]) -> None:
        rec = await self.rt.store.save_alert("digest", key, channel_id, state, [])
        await self._queue_render(rec)

    # --- rendering ------------------------------------------------------------------------------
    async def _render(self, entry: OutboxEntry) -> None:
        p = entry.payload
        store, api = self.rt.store, self.rt.api
        rec = await store.alert(p["source"], p["key"])
        if rec is None:
            await store.outbox_finish(entry.key, 1 << 62)
            return
        resumed = entry.attempts > 0 or entry.created_at < self.rt.started_at
        with i18n.use(None):  # the post belongs to the channel: its language
            message, props = (self._digest_post(rec) if rec.source == "digest"
                              else self._post(rec))
        if not rec.post_id:
            post = await api.create_post(rec.channel_id, message, props=props,
                                         key=f"alert:{rec.source}:{rec.key}",
                                         check_first=resumed)
            post_id = str(post["id"])
            await store.set_alert_post(rec.source, rec.key, post_id)
            log.info("posted as %s", post_id)
        else:
            post_id = rec.post_id
            try:
                await api.update_post(post_id, message, props)
            except MattermostError as exc:
                if exc.status != 404:
                    raise
                # Someone deleted the post: the incident gets a new one.
                post = await api.create_post(rec.channel_id, message, props=props,
                                             key=f"alert:{rec.source}:{rec.key}:{rec.revision}")
                post_id = str(post["id"])
                await store.set_alert_post(rec.source, rec.key, post_id)
        for note_id, text in await store.alert_notes(rec.source, rec.key):
            await api.create_post(rec.channel_id, text, root_id=post_id,
                                  key=f"alertnote:{note_id}", check_first=resumed)
            await store.note_posted(note_id)
        await store.outbox_finish(entry.key, rec.revision)

    def _digest_post(self, rec: AlertRecord) -> tuple[str, dict[str, Any]]:
        state = rec.state
        members, count = state["members"], state["count"]
        firing = count - state["resolved"]
        lines = []
        for m in members:
            name = _("{title} on {host}").format(title=m["title"], host=m["host"]) \
                if m["host"] else m["title"]
            lines.append(f"~~{name}~~" if m["status"] == "resolved" else name)
        if count > len(members):
            rest = count - len(members)
            lines.append(ngettext("… and {count} more", "… and {count} more", rest).format(
                count=rest))
        text = "\n".join(f"- {line}" for line in lines)
        source = state["source"]
        return "", {"attachments": [{
            "fallback": ngettext("{count} alert from {source}", "{count} alerts from {source}",
                                 count).format(count=count, source=source),
            "color": COLORS["warning"] if firing else RESOLVED_COLOR,
            "title": ngettext("Alert storm: {count} more alert from {source} ({firing} firing)",
                              "Alert storm: {count} more alerts from {source} ({firing} firing)",
                              count).format(count=count, source=source, firing=firing),
            "text": text}]}

    def _post(self, rec: AlertRecord) -> tuple[str, dict[str, Any]]:
        state = rec.state
        alert = alert_from_json(state["alert"])
        resolved = alert.status == AlertStatus.RESOLVED
        ack = state.get("ack")
        pending = state.get("pending")
        if resolved:
            color, status = RESOLVED_COLOR, _("Resolved")
        elif ack:
            color = ACKED_COLOR
            status = (_("Acknowledged by @{user} at {time}").format(
                          user=ack["by"], time=_hhmm(ack["at"])) if ack.get("by") else
                      _("Acknowledged by the monitoring system at {time}").format(
                          time=_hhmm(ack["at"])))
        else:
            color, status = COLORS.get(alert.severity.value, COLORS["unknown"]), _("Firing")
        if pending:
            status += " · " + (_(PENDING[pending]) if pending in PENDING else _("Working…"))
        fields = [{"short": True, "title": _("Status"), "value": status},
                  {"short": True, "title": _("Severity"), "value": _severity(alert.severity)}]
        if alert.host:
            fields.append({"short": True, "title": _("Host"), "value": alert.host})
        if alert.service:
            fields.append({"short": True, "title": _("Service"), "value": alert.service})
        silence = _active_silence(state)
        if silence and not resolved:
            fields.append({"short": True, "title": _("Silenced until"),
                           "value": _("{time} by @{user}").format(
                               time=_hhmm(silence["until"]), user=silence["by"])})
        ticket = state.get("ticket")
        if ticket:
            fields.append({"short": True, "title": _("Ticket"),
                           "value": f"[#{ticket['id']}]({ticket['url']})"})
        if alert.links:
            fields.append({"short": False, "title": _("Links"), "value": " · ".join(
                f"[{label}]({url})" for label, url in alert.links)})
        if state.get("error"):
            fields.append({"short": False, "title": _("Last action"), "value": state["error"]})
        icon = ":white_check_mark:" if resolved else ":rotating_light:"
        attachment: dict[str, Any] = {
            "fallback": f"[{status}] {alert.title}", "color": color,
            "title": f"{icon} {alert.title}", "text": alert.text[:3000], "fields": fields,
            "footer": _("{source} alert").format(source=alert.source)}
        if not resolved:
            attachment["actions"] = self._buttons(rec, alert)
        message = state.get("mention", "") if not resolved else ""
        return message, {"attachments": [attachment]}

    def _buttons(self, rec: AlertRecord, alert: Alert) -> list[dict[str, Any]]:
        state = rec.state
        ctx = Context(self.rt, key="", user_id="", channel_id=rec.channel_id)
        subject = f"{rec.source}|{rec.key}"
        data = {"epoch": str(state.get("epoch", 0))}
        source = self.sources.get(rec.source)
        buttons = []
        if not state.get("pending"):
            if state.get("ack"):
                if source is None or source.can_acknowledge:
                    buttons.append(ctx.button(_("Unacknowledge"), "alertunack", subject, data))
            else:
                buttons.append(ctx.button(_("Acknowledge"), "alertack", subject, data,
                                          style="primary"))
        if self.trackers and not state.get("ticket"):
            buttons.append(ctx.button(_("Open ticket"), "alertticket", subject, data))
        if source is not None and source.can_silence and _active_silence(state) \
                and not state.get("pending"):
            buttons.append(ctx.button(_("Unsilence"), "alertunsilence", subject, data))
        elif source is not None and source.can_silence:
            menu = ctx.button(_("Silence"), "alertsilence", subject, data)
            menu["type"] = "select"
            menu["options"] = [{"text": _("{hours} h").format(hours=f"{h:g}"), "value": f"{h:g}"}
                               for h in self.settings.silence_hours]
            buttons.append(menu)
        # A generic alert can be resolved only through the callback it came with.
        if source is not None and source.can_resolve and (
                rec.source != "generic" or alert.ref.get("callback_url")):
            buttons.append(ctx.button(_("Resolve"), "alertresolve", subject, data,
                                      style="danger"))
        return buttons

    # --- clicks ---------------------------------------------------------------------------------
    async def _clicked(self, click: Click, payload: Payload, op: str = "") -> AlertRecord:
        source, _sep, key = payload.subject.partition("|")
        rec = await self.rt.store.alert(source, key)
        if rec is None:
            raise HTTPError(404, "no such alert")
        ack = rec.state.get("ack")
        if op == "ack" and ack:
            # Two people pressed at once: the second learns who was first.
            raise _Refusal(_("Already acknowledged by @{user}.").format(user=ack["by"])
                           if ack.get("by") else
                           _("Already acknowledged by the monitoring system."))
        if payload.data.get("epoch") != str(rec.state.get("epoch", 0)):
            log.warning("refused an out-of-date click on %s %s from %s", source, key,
                        click.user_id)
            raise HTTPError(403, "this button is out of date")
        assert self._responders is not None
        if not self._responders.anyone and not await self._responders.includes(click.user_id):
            raise _Refusal(_("You are not among the people who may act on alerts."))
        return rec

    async def _decide(self, click: Click, payload: Payload, op: str,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
        source, _sep, key = payload.subject.partition("|")
        # A click runs in a task of its own; its post is named already, this adds the alert.
        logs.set_subject(alert=f"{source}:{key}")
        async with self._lock(source, key):
            return await self._decide_locked(click, payload, op, extra)

    async def _decide_locked(self, click: Click, payload: Payload, op: str,
                             extra: dict[str, Any] | None) -> dict[str, Any]:
        try:
            rec = await self._clicked(click, payload, op)
        except _Refusal as exc:
            return {"ephemeral_text": str(exc)}
        state = dict(rec.state)
        who = click.user_name or click.user_id
        if state.get("pending"):
            return {"ephemeral_text": _("{pending} Please wait.").format(
                pending=_(PENDING[state["pending"]]))}
        ack = state.get("ack")
        if op == "unack" and not ack:
            return {"ephemeral_text": _("This alert is not acknowledged.")}
        now = time.time()
        state["epoch"] = int(state.get("epoch", 0)) + 1
        state["pending"] = op if rec.source in self.sources else None
        state["error"] = ""
        notes = []
        # The clicker's language is in force; the note goes to the channel's thread: its language.
        with i18n.use(None):
            if op == "ack":
                state["ack"] = {"by": who, "at": now, "handle": "", "external": False}
                notes.append(":eyes: " + _("Acknowledged by @{user}.").format(user=who))
            elif op == "unack":
                state["ack"] = None
                notes.append(":leftwards_arrow_with_hook: " + _(
                    "Acknowledgement removed by @{user}.").format(user=who))
            elif op == "silence":
                hours = (extra or {})["hours"]
                state["silence"] = {"by": who, "until": now + hours * 3600, "handle": ""}
                notes.append(":zzz: " + _("Silenced for {hours} h by @{user}.").format(
                    hours=f"{hours:g}", user=who))
            elif op == "unsilence":
                notes.append(":bell: " + _("Silence ended by @{user}.").format(user=who))
            elif op == "resolve":
                notes.append(_("Resolve requested by @{user}.").format(user=who))
        await self._save(rec.source, rec.key, rec.channel_id, state, notes)
        if rec.source in self.sources:
            await self.rt.outbox.put(
                f"alert-action:{rec.source}:{rec.key}:{state['epoch']}", "alert-action",
                {"source": rec.source, "key": rec.key, "op": op, "who": who,
                 "user_id": click.user_id, "handle": (ack or {}).get("handle", ""),
                 "previous_ack": ack,
                 "silence_handle": (rec.state.get("silence") or {}).get("handle", ""),
                 **(extra or {})})
            return {"ephemeral_text": _(PENDING[op])}
        return {"ephemeral_text": _("Done.")}

    async def on_ack(self, click: Click, payload: Payload) -> dict[str, Any]:
        return await self._decide(click, payload, "ack")

    async def on_unack(self, click: Click, payload: Payload) -> dict[str, Any]:
        return await self._decide(click, payload, "unack")

    async def on_unsilence(self, click: Click, payload: Payload) -> dict[str, Any]:
        return await self._decide(click, payload, "unsilence")

    async def on_resolve(self, click: Click, payload: Payload) -> dict[str, Any]:
        return await self._decide(click, payload, "resolve")

    async def on_silence(self, click: Click, payload: Payload) -> dict[str, Any]:
        try:
            hours = float(click.selected_option)
        except ValueError:
            return {"ephemeral_text": _("Choose how long to silence the alert.")}
        if hours not in self.settings.silence_hours:
            raise HTTPError(400, "not one of the offered durations")
        return await self._decide(click, payload, "silence", {"hours": hours})

    async def _act(self, entry: OutboxEntry) -> None:
        """Carry a decision to the monitoring system; its outcome edits the post."""
        p = entry.payload
        store = self.rt.store
        rec = await store.alert(p["source"], p["key"])
        source = self.sources.get(p["source"])
        if rec is None or source is None:
            await store.outbox_update(entry.key, state="done")
            return
        alert = alert_from_json(rec.state["alert"])
        op, who = p["op"], p["who"]
        try:
            handle = ""
            if op == "ack":
                handle = await source.acknowledge(alert, who, "Acknowledged in Mattermost")
            elif op == "unack":
                await source.unacknowledge(alert, p.get("handle", ""), who)
            elif op == "silence":
                handle = await source.silence(alert, float(p["hours"]) * 3600, who)
            elif op == "unsilence":
                await source.unsilence(alert, p.get("silence_handle", ""), who)
            elif op == "resolve":
                await source.resolve(alert, who)
        except Exception as exc:
            retryable = bool(getattr(exc, "retryable", False))
            if retryable and entry.attempts < self.ACTION_ATTEMPTS:
                raise Retry(str(exc)) from None
            # The operator's record; people are told in their language by `_failed`.
            reason = str(exc) if isinstance(exc, SourceError) else \
                f"unexpected error ({type(exc).__name__})"
            if not isinstance(exc, SourceError):
                log.exception("%s on %s %s failed", op, rec.source, rec.key)
            async with self._lock(rec.source, rec.key):
                await self._failed(rec, op, who, p["user_id"], exc, p.get("previous_ack"))
            await store.outbox_update(entry.key, state="failed", error=reason)
            return
        async with self._lock(rec.source, rec.key):
            state = dict((await store.alert(rec.source, rec.key) or rec).state)
            state["pending"] = None
            if op == "ack" and state.get("ack"):
                state["ack"] = dict(state["ack"], handle=handle)
            if op == "silence" and state.get("silence"):
                state["silence"] = dict(state["silence"], handle=handle)
            if op == "unsilence":
                state["silence"] = None
            await self._save(rec.source, rec.key, rec.channel_id, state, [])
        await store.outbox_update(entry.key, state="done")

    #: Tries of a decision while the monitoring system is unreachable (backoff: ~5 minutes
    #: in all) before it is reported as failed.
    ACTION_ATTEMPTS = 6

    async def _failed(self, rec: AlertRecord, op: str, who: str, user_id: str,
                      error: BaseException, previous_ack: dict[str, Any] | None = None) -> None:
        """Undo what the click showed, say why on the post and tell the clicker."""
        state = dict((await self.rt.store.alert(rec.source, rec.key) or rec).state)
        state["pending"] = None
        state["epoch"] = int(state.get("epoch", 0)) + 1
        if op == "ack":
            state["ack"] = None
        elif op == "unack":
            state["ack"] = previous_ack
        elif op == "silence":
            state["silence"] = None
        with i18n.use(None):  # the post and its thread: the channel's language
            state["error"] = _(FAILED[op]).format(reason=_reason(error))
            note = ":warning: " + _(FAILED_NOTE[op]).format(user=who, reason=_reason(error))
        await self._save(rec.source, rec.key, rec.channel_id, state, [note])
        try:
            channel = await self.rt.api.direct_channel(user_id)
            title = alert_from_json(state["alert"]).title
            with i18n.use(await self.rt.locale_of(user_id)):  # a direct message: theirs
                text = ":warning: " + _(FAILED_DIRECT[op]).format(title=title,
                                                                  reason=_reason(error))
            await self.rt.api.create_post(
                channel, text,
                key=f"alertfail:{rec.source}:{rec.key}:{state['epoch']}", check_first=True)
        except MattermostError as exc:
            log.warning("could not tell %s of a failed %s: %s", who, op, exc)

    # --- tickets from alerts --------------------------------------------------------------------
    async def on_ticket(self, ctx: Context, click: Click, payload: Payload) -> dict[str, Any]:
        try:
            rec = await self._clicked(click, payload)
        except _Refusal as exc:
            return {"ephemeral_text": str(exc)}
        if rec.state.get("ticket"):
            t = rec.state["ticket"]
            return {"ephemeral_text": _("Ticket #{id} is already open: {url}").format(
                id=t["id"], url=t["url"])}
        alert = alert_from_json(rec.state["alert"])
        elements: list[dict[str, Any]] = []
        if len(self.trackers) > 1:
            elements.append({"display_name": _("Tracker"), "name": "tracker", "type": "select",
                             "options": [{"text": n, "value": n} for n in self.trackers],
                             "default": next(iter(self.trackers))})
        # The details become the ticket's text, read by the support team: the default language.
        with i18n.use(None):
            details = "\n".join(x for x in (
                alert.text,
                _("Host: {host}").format(host=alert.host) if alert.host else "",
                _("Service: {service}").format(service=alert.service) if alert.service else "",
            ) if x)
        elements += [
            {"display_name": _("Title"), "name": "title", "type": "text",
             "default": alert.title[:150], "max_length": 150},
            {"display_name": _("Details"), "name": "details", "type": "textarea",
             "default": details[:3000], "optional": True, "max_length": 3000}]
        dialog = {"title": _("Open a ticket"), "submit_label": _("Open"), "elements": elements}
        try:
            await ctx.open_dialog(click.trigger_id, "alertticket", dialog,
                                  subject=payload.subject,
                                  data={"epoch": payload.data.get("epoch", "")})
        except MattermostError as exc:
            log.warning("could not open the ticket dialog: %s", exc)
            return {"ephemeral_text": _("The ticket form could not be opened; try again.")}
        return {}

    async def on_ticket_dialog(self, submission: dict[str, Any], payload: Payload,
                               user_id: str, cancelled: bool) -> dict[str, Any]:
        if cancelled:
            return {}
        source, _sep, key = payload.subject.partition("|")
        rec = await self.rt.store.alert(source, key)
        if rec is None:
            return {"errors": {"title": _("This alert no longer exists.")}}
        tracker = str(submission.get("tracker") or next(iter(self.trackers), ""))
        if tracker not in self.trackers:
            return {"errors": {"tracker": _("Choose a tracker.")}}
        title = str(submission.get("title") or "").strip()
        if not title:
            return {"errors": {"title": _("A title is needed.")}}
        entry_key = f"alert-ticket:{source}:{key}"
        body = {"source": source, "key": key, "tracker": tracker, "title": title,
                "details": str(submission.get("details") or ""), "user_id": user_id}
        existing = await self.rt.store.outbox_get(entry_key)
        if existing is None or existing.state == "failed":
            # A ticket that could not be opened before may be tried again.
            await self.rt.store.outbox_requeue(entry_key, "alert-ticket", body)
            self.rt.outbox.kick()
        elif existing.state != "done":
            return {"errors": {"title": _("A ticket for this alert is being opened.")}}
        return {}

    async def _file_ticket(self, entry: OutboxEntry) -> None:
        p = entry.payload
        store = self.rt.store
        tracker = self.trackers[p["tracker"]]
        ref = f"alert:{p['source']}:{p['key']}"
        try:
            found = None
            if entry.attempts > 0 or entry.created_at < self.rt.started_at:
                found = await tracker.find_by_ref(
                    ref, datetime.fromtimestamp(entry.created_at - 600, UTC))
            if found is None:
                user = await self.rt.api.user(p["user_id"])
                person = Person(str(user.get("username", "")), str(user.get("email") or ""),
                                " ".join(x for x in (user.get("first_name"),
                                                     user.get("last_name")) if x))
                found = await tracker.create(NewTicket(
                    title=p["title"][:tracker.title_limit], content=p["details"] or p["title"],
                    requester=person, ref=ref))
        except TrackerUnavailable as exc:
            raise Retry(str(exc)) from None
        except TrackerError as exc:
            rec = await store.alert(p["source"], p["key"])
            if rec is not None:
                with i18n.use(None):  # a note in the thread: the channel's language
                    note = ":warning: " + _("The ticket could not be opened: {error}").format(
                        error=exc)
                await self._save(rec.source, rec.key, rec.channel_id, dict(rec.state), [note])
            await store.outbox_update(entry.key, state="failed", error=str(exc))
            return
        who = (await self.rt.api.user(p["user_id"])).get("username", "")
        async with self._lock(p["source"], p["key"]):
            rec = await store.alert(p["source"], p["key"])
            if rec is not None:
                state = dict(rec.state)
                state["ticket"] = {"tracker": p["tracker"], "id": found.id, "url": found.url}
                with i18n.use(None):  # a note in the thread: the channel's language
                    note = ":ticket: " + _("Ticket **#{id}** opened by @{user}: {url}").format(
                        id=found.id, user=who, url=found.url)
                await self._save(rec.source, rec.key, rec.channel_id, state, [note])
        await store.outbox_update(entry.key, state="done")


class _Refusal(Exception):
    """A click from someone who may not act: told to them, nothing changes."""
