"""Alerts coming in: the sender's credentials, parsing, and what each alert changes.

A new incident gets a state and a post in its route's channel (or a line in the channel's storm
digest, when alerts come faster than people can read them); a repeat changes the post only when
it says something new; an update from the monitoring system is a note in the incident's thread.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import re
import time
from typing import Any

from bridge.alerts import Alert, AlertKind, AlertParseError, AlertStatus, Severity

from ... import i18n, logs, markdown
from ...config import AlertRoute
from ...i18n import _
from ...listener import HTTPError
from ...store import AlertRecord
from ...store.alert_state import DIGEST_SOURCE, Ack, AlertState, DigestMember, DigestState
from .core import hhmm, log, severity_name
from .escalation import Escalation

#: Alerts listed by name in a storm's digest post; the others are counted.
DIGEST_SHOWN = 30


class Intake(Escalation):
    """`/alerts/<source>`: from a monitoring system's notification to saved states."""

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
                    self.rt.metrics.alerts_received.labels(alert.source,
                                                           alert.status.value).inc()
                    log.info("%s accepted (%s, %s): %s", alert.kind.value, alert.status.value,
                             alert.severity.value, alert.title)
                else:
                    dropped += 1
                    log.debug("%s ignored: nothing new", alert.kind.value)
        self.accepted += accepted
        self.dropped += dropped
        return {"accepted": accepted, "ignored": dropped}

    async def _take(self, alert: Alert) -> bool:
        """Save what the alert changes; False when it changes nothing."""
        if not alert.identity:
            async with self._lock(alert.source, alert.key):
                return await self._take_locked(alert)
        # What fires again comes with a new key: one identity at a time finds its incident.
        async with self._lock(f"identity:{alert.source}", alert.identity):
            rec = await self.rt.store.alerts.get(alert.source, alert.key)
            if rec is None:
                found = await self.rt.store.alerts.by_identity(alert.source, alert.identity)
                if found is not None and self._same_incident(found, time.time()):
                    # The event speaks for the incident it belongs to, under that one's key.
                    alert = dataclasses.replace(alert, key=found.key)
            async with self._lock(alert.source, alert.key):
                return await self._take_locked(alert)

    def _same_incident(self, rec: AlertRecord, now: float) -> bool:
        """Whether a new event of this incident's identity belongs to it: it is still open, or
        it was resolved within the re-fire window."""
        if rec.source == DIGEST_SOURCE:
            return False
        state = rec.incident
        if state.alert.status != AlertStatus.RESOLVED:
            return True
        return bool(state.resolved_at) and now - state.resolved_at <= self.settings.refire_window

    async def _take_locked(self, alert: Alert) -> bool:
        rec = await self.rt.store.alerts.get(alert.source, alert.key)
        now = time.time()
        if alert.kind == AlertKind.UPDATE:
            if rec is None:
                log.info("update for unknown %s alert %s dropped", alert.source, alert.key)
                return False
            await self._note_update(rec, alert, now)
            return True
        if rec is None:
            if alert.status == AlertStatus.RESOLVED:
                log.info("recovery for an unseen %s alert %s dropped", alert.source,
                         alert.key)
                return False
            await self._open(alert, now)
            return True
        if alert.status == AlertStatus.FIRING and not self._same_incident(rec, now):
            # Resolved longer ago than the re-fire window: a new incident, with a post of its
            # own (the old post stays as it was).
            await self.rt.store.alerts.set_post(rec.source, rec.key, "")
            await self._open(alert, now)
            return True
        return await self._change(rec, alert, now)

    async def _note_update(self, rec: AlertRecord, alert: Alert, now: float) -> None:
        """Something happened to a known incident: a note in its thread (an acknowledgement
        made in the monitoring system also shows on the post)."""
        state = rec.incident
        update = alert.update.lower()
        if "acknowledg" in update and not state.ack and "unacknowledg" not in update:
            state = dataclasses.replace(state, ack=Ack(by="", at=now, external=True))
        await self._save(rec.source, rec.key, rec.channel_id, state,
                         [":memo: " + markdown.without_bare_urls(alert.update or alert.title)])

    async def _change(self, rec: AlertRecord, alert: Alert, now: float) -> bool:
        """A known incident reported again: saved when it says something new."""
        state = rec.incident
        old = state.alert
        notes = []
        s = self.settings
        with i18n.use(None):  # the thread belongs to the channel: its language
            if alert.status != old.status:
                changes = (*(t for t in state.changes if now - t <= s.flap_window), now)
                flapping = len(changes) >= s.flap_changes
                if flapping and not state.flapping:
                    notes.append(":twisted_rightwards_arrows: " + _(
                        "Flapping: {count} changes in {minutes} min. Further changes show on "
                        "the post only.").format(count=len(changes),
                                                 minutes=round(s.flap_window / 60)))
                elif state.flapping and not flapping:
                    notes.append(_("No longer flapping."))
                if flapping:
                    pass  # the post shows it; the thread is spared a note per change
                elif alert.status == AlertStatus.RESOLVED:
                    notes.append(":white_check_mark: " + _("Resolved at {time}.").format(
                        time=hhmm(now)))
                else:
                    notes.append(":rotating_light: " + _("Firing again at {time}.").format(
                        time=hhmm(now)))
                state = dataclasses.replace(
                    state, changes=changes[-s.flap_changes:], flapping=flapping,
                    resolved_at=now if alert.status == AlertStatus.RESOLVED else 0.0)
                if alert.status == AlertStatus.FIRING:
                    # A new problem: the last one's acknowledgement was for that one, and the
                    # buttons drawn for it are out of date.
                    state = dataclasses.replace(state, ack=None, error="",
                                                epoch=state.epoch + 1)
            elif (alert.title, alert.severity, alert.text) == (old.title, old.severity,
                                                               old.text):
                return False  # a repeat of what the post already shows
            elif alert.severity != old.severity:
                notes.append(_("Severity is now {new} (was {old}).").format(
                    new=severity_name(alert.severity), old=severity_name(old.severity)))
        if not alert.text and old.text:
            # A recovery often says less than the problem did: keep what the post showed.
            alert = dataclasses.replace(alert, text=old.text)
        state = dataclasses.replace(state, alert=alert)
        if state.digest_key and alert.status != old.status:
            # The digest counts firing and resolved members: only a change of status moves it.
            await self._digest_member_changed(state.digest_key, alert)
        await self._save(rec.source, rec.key, rec.channel_id, state, notes)
        if alert.status == AlertStatus.FIRING and old.status == AlertStatus.RESOLVED:
            await self._schedule_escalation(rec.source, rec.key, self._route(alert), now)
        return True

    async def _open(self, alert: Alert, now: float) -> None:
        """A new incident: a post in its route's channel, or a line in a storm's digest."""
        route = self._route(alert)
        channel_id = await self._channel(route.channels[0] if route else self.settings.channel)
        mention = route.mention if route and Severity(alert.severity).rank >= Severity(
            route.mention_from).rank else ""
        state = AlertState(alert=alert, first_seen=now, mention=mention)
        async with self._lock("channel", channel_id):
            recent = await self.rt.store.alerts.created_since(channel_id, now - 60)
            if recent >= self.settings.storm_per_minute:
                state = dataclasses.replace(
                    state, digest_key=await self._digest(alert, channel_id, now))
            await self._save(alert.source, alert.key, channel_id, state, [])
        await self._schedule_escalation(alert.source, alert.key, route, now)

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

    # --- storms ---------------------------------------------------------------------------------
    async def _digest(self, alert: Alert, channel_id: str, now: float) -> str:
        """List the alert in its source's digest for this channel and minute; the digest's key."""
        key = f"{alert.source}:{channel_id}:{int(now // 60)}"
        async with self._lock("digest", key):
            rec = await self.rt.store.alerts.get(DIGEST_SOURCE, key)
            digest = rec.digest if rec else DigestState(source=alert.source)
            members = digest.members
            # The post lists the first few; the rest are counted (the state stays small).
            if len(members) < DIGEST_SHOWN:
                members = (*members, DigestMember(key=alert.key, title=alert.title,
                                                  host=alert.host, status=AlertStatus.FIRING))
            await self._save_digest(key, channel_id, dataclasses.replace(
                digest, count=digest.count + 1, members=members))
        return key

    async def _digest_member_changed(self, digest_key: str, alert: Alert) -> None:
        async with self._lock("digest", digest_key):
            rec = await self.rt.store.alerts.get(DIGEST_SOURCE, digest_key)
            if rec is None:
                return
            digest = rec.digest
            resolved = digest.resolved
            if alert.status == AlertStatus.RESOLVED:
                resolved += 1
            elif resolved:
                resolved -= 1
            members = tuple(dataclasses.replace(m, status=alert.status) if m.key == alert.key
                            else m for m in digest.members)
            await self._save_digest(digest_key, rec.channel_id, dataclasses.replace(
                digest, resolved=resolved, members=members))

    async def _save_digest(self, key: str, channel_id: str, digest: DigestState) -> None:
        rec = await self.rt.store.alerts.save(DIGEST_SOURCE, key, channel_id, digest, [])
        await self._queue_render(rec)
