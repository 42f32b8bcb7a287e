"""People's decisions on an incident: acknowledge, unacknowledge, silence, unsilence, resolve.

A click changes the state at once (the clicker sees "Acknowledging…" within milliseconds) and
queues the call to the monitoring system (`alert-action`); its outcome edits the post again, and a
failure undoes what the click showed and says why.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from bridge.alerts import SourceError

from ... import i18n, logs, markdown
from ...events import Click
from ...i18n import N_, _
from ...listener import HTTPError
from ...mattermost import MattermostError
from ...outbox import Retry
from ...signing import Payload
from ...store import AlertRecord, OutboxEntry
from ...store.alert_state import Ack, Silence
from .core import PENDING, AlertsCore, Refusal, log

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


def _reason(exc: BaseException) -> str:
    """Why a decision failed, in the language in force: the source's own words, or a hint."""
    if isinstance(exc, SourceError):
        return markdown.without_bare_urls(str(exc))
    return _("unexpected error ({kind})").format(kind=type(exc).__name__)


class Decisions(AlertsCore):
    """The decision buttons, and the `alert-action` executor that carries them out."""

    #: Tries of a decision while the monitoring system is unreachable (backoff: ~5 minutes
    #: in all) before it is reported as failed.
    ACTION_ATTEMPTS = 6

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
        except Refusal as exc:
            return {"ephemeral_text": str(exc)}
        before = rec.incident
        who = click.user_name or click.user_id
        if before.pending:
            return {"ephemeral_text": _("{pending} Please wait.").format(
                pending=_(PENDING[before.pending]))}
        if op == "unack" and not before.ack:
            return {"ephemeral_text": _("This alert is not acknowledged.")}
        return await self._apply(rec, op, who, click.user_id, extra)

    async def _apply(self, rec: AlertRecord, op: str, who: str, user_id: str,
                     extra: dict[str, Any] | None) -> dict[str, Any]:
        """Make a decision on an incident (checked already, its lock held): its new state and
        thread note now, the call to its monitoring system queued."""
        before = rec.incident
        ack = before.ack
        now = time.time()
        state = dataclasses.replace(before, epoch=before.epoch + 1, error="",
                                    pending=op if rec.source in self.sources else None)
        notes = []
        # The clicker's language is in force; the note goes to the channel's thread: its language.
        with i18n.use(None):
            if op == "ack":
                state = dataclasses.replace(state, ack=Ack(by=who, at=now))
                notes.append(":eyes: " + _("Acknowledged by @{user}.").format(user=who))
            elif op == "unack":
                state = dataclasses.replace(state, ack=None)
                notes.append(":leftwards_arrow_with_hook: " + _(
                    "Acknowledgement removed by @{user}.").format(user=who))
            elif op == "silence":
                hours = (extra or {})["hours"]
                state = dataclasses.replace(state, silence=Silence(by=who,
                                                                   until=now + hours * 3600))
                notes.append(":zzz: " + _("Silenced for {hours} h by @{user}.").format(
                    hours=f"{hours:g}", user=who))
            elif op == "unsilence":
                notes.append(":bell: " + _("Silence ended by @{user}.").format(user=who))
            elif op == "resolve":
                notes.append(_("Resolve requested by @{user}.").format(user=who))
        await self._save(rec.source, rec.key, rec.channel_id, state, notes)
        if rec.source in self.sources:
            await self.rt.outbox.put(
                f"alert-action:{rec.source}:{rec.key}:{state.epoch}", "alert-action",
                {"source": rec.source, "key": rec.key, "op": op, "who": who,
                 "user_id": user_id, "handle": ack.handle if ack else "",
                 "previous_ack": ack.to_json() if ack else None,
                 "silence_handle": before.silence.handle if before.silence else "",
                 **(extra or {})})
            return {"ephemeral_text": _(PENDING[op])}
        return {"ephemeral_text": _("Done.")}

    async def _act(self, entry: OutboxEntry) -> None:
        """Carry a decision to the monitoring system; its outcome edits the post."""
        p = entry.payload
        alerts, outbox = self.rt.store.alerts, self.rt.store.outbox
        rec = await alerts.get(p["source"], p["key"])
        source = self.sources.get(p["source"])
        if rec is None or source is None:
            await outbox.update(entry.key, state="done")
            return
        alert = rec.incident.alert
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
            counted = self.rt.metrics.alert_actions
            if retryable and entry.attempts < self.ACTION_ATTEMPTS:
                counted.labels(rec.source, op, "retried").inc()
                raise Retry(str(exc)) from None
            counted.labels(rec.source, op, "failed").inc()
            # The operator's record; people are told in their language by `_failed`.
            reason = str(exc) if isinstance(exc, SourceError) else \
                f"unexpected error ({type(exc).__name__})"
            if not isinstance(exc, SourceError):
                log.exception("%s on %s %s failed", op, rec.source, rec.key)
            previous = p.get("previous_ack")
            async with self._lock(rec.source, rec.key):
                await self._failed(rec, op, who, p["user_id"], exc,
                                   Ack.from_json(previous) if previous else None)
            await outbox.update(entry.key, state="failed", error=reason)
            return
        async with self._lock(rec.source, rec.key):
            state = dataclasses.replace(
                (await alerts.get(rec.source, rec.key) or rec).incident, pending=None)
            if op == "ack" and state.ack:
                state = dataclasses.replace(state, ack=dataclasses.replace(state.ack,
                                                                           handle=handle))
            if op == "silence" and state.silence:
                state = dataclasses.replace(state, silence=dataclasses.replace(
                    state.silence, handle=handle))
            if op == "unsilence":
                state = dataclasses.replace(state, silence=None)
            await self._save(rec.source, rec.key, rec.channel_id, state, [])
        self.rt.metrics.alert_actions.labels(rec.source, op, "done").inc()
        await outbox.update(entry.key, state="done")

    async def _failed(self, rec: AlertRecord, op: str, who: str, user_id: str,
                      error: BaseException, previous_ack: Ack | None = None) -> None:
        """Undo what the click showed, say why on the post and tell the clicker."""
        state = (await self.rt.store.alerts.get(rec.source, rec.key) or rec).incident
        state = dataclasses.replace(state, pending=None, epoch=state.epoch + 1)
        if op == "ack":
            state = dataclasses.replace(state, ack=None)
        elif op == "unack":
            state = dataclasses.replace(state, ack=previous_ack)
        elif op == "silence":
            state = dataclasses.replace(state, silence=None)
        with i18n.use(None):  # the post and its thread: the channel's language
            state = dataclasses.replace(
                state, error=_(FAILED[op]).format(reason=_reason(error)))
            note = ":warning: " + _(FAILED_NOTE[op]).format(user=who, reason=_reason(error))
        await self._save(rec.source, rec.key, rec.channel_id, state, [note])
        try:
            channel = await self.rt.api.direct_channel(user_id)
            with i18n.use(await self.rt.locale_of(user_id)):  # a direct message: theirs
                text = ":warning: " + _(FAILED_DIRECT[op]).format(
                    title=markdown.without_bare_urls(state.alert.title), reason=_reason(error))
            await self.rt.api.create_post(
                channel, text,
                key=f"alertfail:{rec.source}:{rec.key}:{state.epoch}", check_first=True)
        except MattermostError as exc:
            log.warning("could not tell %s of a failed %s: %s", who, op, exc)
