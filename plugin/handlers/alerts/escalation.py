"""Escalation: what happens while nobody answers an alert.

A route's `escalation` steps are queued in the outbox when its incident starts firing (when it
opens, and when it fires again), each due `after_minutes` later: durable, so a restart does not
lose them, and keyed by the incident, the moment it began firing and the step, so a step is
queued once. When one comes due, it does nothing if the incident was acknowledged, silenced or
resolved since; otherwise it mentions someone in the alert's thread, posts the alert again in
another channel (linking to its post), or tells people in a direct message. Every post it makes
carries an idempotency key, looked for first when the step is run again after a crash: a step
speaks once.
"""

from __future__ import annotations

from bridge.alerts import AlertStatus

from ... import i18n, markdown
from ...config import AlertRoute
from ...i18n import _
from ...mattermost import MattermostError
from ...store import OutboxEntry
from ...store.alert_state import AlertState
from .core import AlertsCore, log
from .render import active_silence

KIND = "alert-escalate"


class Escalation(AlertsCore):
    """Queues a route's escalation steps, and the `alert-escalate` executor."""

    async def _schedule_escalation(self, source: str, key: str, route: AlertRoute | None,
                                   since: float) -> None:
        """Queue the steps of `route` for the incident that began firing at `since`."""
        if route is None:
            return
        for number, step in enumerate(route.escalation, 1):
            await self.rt.outbox.put(
                f"{KIND}:{source}:{key}:{since:.3f}:{number}", KIND,
                {"source": source, "key": key, "since": since, "step": number,
                 "minutes": step.after_minutes, "mention": step.mention,
                 "channel": step.channel, "dm": list(step.dm)},
                due_at=since + step.after_minutes * 60)

    @staticmethod
    def _answered(state: AlertState, since: float) -> bool:
        """Whether the incident was acknowledged, silenced or resolved since `since`."""
        return (state.alert.status == AlertStatus.RESOLVED
                or any(t > since for t in state.changes)
                or (state.ack is not None and state.ack.at >= since)
                or active_silence(state) is not None)

    async def _escalate(self, entry: OutboxEntry) -> None:
        p = entry.payload
        outbox, api = self.rt.store.outbox, self.rt.api
        rec = await self.rt.store.alerts.get(p["source"], p["key"])
        if rec is None or self._answered(rec.incident, float(p["since"])):
            await outbox.update(entry.key, state="done")
            return
        alert = rec.incident.alert
        resumed = self.rt.resumed(entry)
        minutes = float(p["minutes"])
        shown = f"{minutes:g}"
        title = markdown.without_bare_urls(alert.title)
        with i18n.use(None):  # the channel's language
            # TRANSLATORS: {minutes} may be a fraction; {title} is the alert's title.
            text = _(":alarm_clock: Not acknowledged after {minutes} min: **{title}**").format(
                minutes=shown, title=title)
        mention = str(p.get("mention") or "")
        if mention or not (p.get("channel") or p.get("dm")):
            await api.create_post(rec.channel_id, f"{mention} {text}".strip(),
                                  root_id=rec.post_id, key=f"{entry.key}:thread",
                                  check_first=resumed)
        if p.get("channel") or p.get("dm"):
            where = ""
            if rec.post_id:
                link = await self._link(rec.channel_id, rec.post_id)
                where = "\n" + markdown.link(_("the alert's post"), link)
            if p.get("channel"):
                channel_id = await self._channel(str(p["channel"]))
                await api.create_post(channel_id, text + where, key=f"{entry.key}:channel",
                                      check_first=resumed)
            for name in p.get("dm") or []:
                try:
                    user = await api.user_by_name(str(name))
                    channel_id = await api.direct_channel(str(user["id"]))
                except MattermostError as exc:
                    log.warning("cannot tell %s of the escalation: %s", name, exc)
                    continue
                await api.create_post(channel_id, text + where, key=f"{entry.key}:dm:{name}",
                                      check_first=resumed)
        log.info("escalated (step %s, %s min)", p["step"], shown)
        await outbox.update(entry.key, state="done")

    async def _link(self, channel_id: str, post_id: str) -> str:
        """The permalink of a post."""
        try:
            channel = await self.rt.api.channel(channel_id)
        except MattermostError as exc:
            log.warning("cannot read channel %s: %s", channel_id, exc)
            channel = None
        return await self.rt.api.permalink(post_id, channel)


__all__ = ["KIND", "Escalation"]
