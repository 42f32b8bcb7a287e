"""An incident's post, drawn from its state: created once, then edited in place; its new notes go
into the post's thread. A storm's digest is one post listing the storm's alerts."""

from __future__ import annotations

import time
from typing import Any

from bridge.alerts import Alert, AlertStatus

from ... import i18n, markdown
from ...context import Context
from ...i18n import _, ngettext
from ...mattermost import MattermostError
from ...store import AlertRecord, OutboxEntry
from ...store.alert_state import DIGEST_SOURCE, AlertState, DigestState, Silence
from .core import PENDING, AlertsCore, hhmm, log, severity_name

COLORS = {"critical": "#b71c1c", "high": "#e53935", "warning": "#fb8c00", "info": "#1e88e5",
          "unknown": "#757575"}
RESOLVED_COLOR = "#2e7d32"
ACKED_COLOR = "#6d4c41"


def active_silence(state: AlertState) -> Silence | None:
    """The silence on an incident, unless it has run out."""
    if state.silence and state.silence.until > time.time():
        return state.silence
    return None


def digest_post(digest: DigestState) -> tuple[str, dict[str, Any]]:
    """A storm's post: what it counts, and the alerts it lists by name."""
    members, count = digest.members, digest.count
    firing = count - digest.resolved
    lines = []
    for m in members:
        name = _("{title} on {host}").format(title=m.title, host=m.host) if m.host else m.title
        if m.status == AlertStatus.RESOLVED:
            lines.append(f"~~{name}~~")
        elif m.acked_by:
            lines.append(_("{alert} (acknowledged by @{user})").format(alert=name,
                                                                      user=m.acked_by))
        else:
            lines.append(name)
    if count > len(members):
        rest = count - len(members)
        lines.append(ngettext("… and {count} more", "… and {count} more", rest).format(
            count=rest))
    text = "\n".join(f"- {line}" for line in lines)
    source = digest.source
    return "", {"attachments": [{
        "fallback": ngettext("{count} alert from {source}", "{count} alerts from {source}",
                             count).format(count=count, source=source),
        "color": COLORS["warning"] if firing else RESOLVED_COLOR,
        "title": ngettext("Alert storm: {count} more alert from {source} ({firing} firing)",
                          "Alert storm: {count} more alerts from {source} ({firing} firing)",
                          count).format(count=count, source=source, firing=firing),
        "text": text}]}


#: Labels the post shows in fields of their own (or that say nothing a reader needs).
_SHOWN_LABELS = frozenset({"alertname", "severity", "instance", "job", "host", "hostname",
                           "nodename", "service", "state", "status", "notification_type",
                           "trigger_id", "event_status", "event_recovery_id"})
#: At most this many labels, each value cut to this many characters: one or two lines on a phone.
LABELS_SHOWN, LABEL_WIDTH = 12, 60


def label_line(alert: Alert) -> str:
    """The alert's other labels, compact (`name=value · …`, sorted by name), as inline code so
    no value is read as markdown; "" when none is left. Values the post already shows (its
    host, service, name) are left out."""
    shown = {alert.host, alert.service, alert.name, alert.title}
    pairs = [(k, v) for k, v in sorted(alert.labels.items())
             if k not in _SHOWN_LABELS and v and v not in shown]
    items = [markdown.code(f"{k}={v if len(v) <= LABEL_WIDTH else v[:LABEL_WIDTH - 1] + '…'}")
             for k, v in pairs[:LABELS_SHOWN]]
    if len(pairs) > LABELS_SHOWN:
        items.append(ngettext("and {count} more", "and {count} more",
                              len(pairs) - LABELS_SHOWN).format(count=len(pairs) - LABELS_SHOWN))
    return " · ".join(items)


class Rendering(AlertsCore):
    """The `alert-render` executor: makes an incident's post match its state."""

    async def _render(self, entry: OutboxEntry) -> None:
        p = entry.payload
        alerts, outbox, api = self.rt.store.alerts, self.rt.store.outbox, self.rt.api
        rec = await alerts.get(p["source"], p["key"])
        if rec is None:
            await outbox.finish(entry.key, 1 << 62)
            return
        resumed = self.rt.resumed(entry)
        with i18n.use(None):  # the post belongs to the channel: its language
            if rec.source == DIGEST_SOURCE:
                message, props = digest_post(rec.digest)
                buttons = self._digest_buttons(rec)
                if buttons:
                    props["attachments"][0]["actions"] = buttons
            else:
                message, props = self._post(rec)
        if not rec.post_id:
            # An incident that fired again after its window gets a post of its own: its first
            # sight tells the two apart.
            key = f"alert:{rec.source}:{rec.key}"
            if rec.source != DIGEST_SOURCE and rec.incident.first_seen - rec.created_at > 1:
                key += f":{rec.incident.first_seen:.3f}"
            post = await api.create_post(rec.channel_id, message, props=props, key=key,
                                         check_first=resumed)
            post_id = str(post["id"])
            await alerts.set_post(rec.source, rec.key, post_id)
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
                await alerts.set_post(rec.source, rec.key, post_id)
        for note_id, text in await alerts.notes(rec.source, rec.key):
            await api.create_post(rec.channel_id, text, root_id=post_id,
                                  key=f"alertnote:{note_id}", check_first=resumed)
            await alerts.note_posted(note_id)
        await outbox.finish(entry.key, rec.revision)

    def _post(self, rec: AlertRecord) -> tuple[str, dict[str, Any]]:
        state = rec.incident
        alert = state.alert
        resolved = alert.status == AlertStatus.RESOLVED
        ack, pending = state.ack, state.pending
        if resolved:
            color, status = RESOLVED_COLOR, _("Resolved")
        elif ack:
            color = ACKED_COLOR
            status = (_("Acknowledged by @{user} at {time}").format(
                          user=ack.by, time=hhmm(ack.at)) if ack.by else
                      _("Acknowledged by the monitoring system at {time}").format(
                          time=hhmm(ack.at)))
        else:
            color, status = COLORS.get(alert.severity.value, COLORS["unknown"]), _("Firing")
        if state.flapping and not resolved:
            status += " · " + _("flapping")
        if pending:
            status += " · " + (_(PENDING[pending]) if pending in PENDING else _("Working…"))
        fields = [{"short": True, "title": _("Status"), "value": status},
                  {"short": True, "title": _("Severity"), "value": severity_name(alert.severity)}]
        if alert.name and alert.name != alert.title and alert.name != alert.service:
            # TRANSLATORS: the field naming what fired (a rule, a trigger, a check).
            fields.append({"short": True, "title": _("Alert"),
                           "value": markdown.without_bare_urls(alert.name)})
        if alert.host:
            fields.append({"short": True, "title": _("Host"), "value": alert.host})
        if alert.service:
            fields.append({"short": True, "title": _("Service"), "value": alert.service})
        labels = label_line(alert)
        if labels:
            fields.append({"short": False, "title": _("Labels"), "value": labels})
        silence = active_silence(state)
        if silence and not resolved:
            fields.append({"short": True, "title": _("Silenced until"),
                           "value": _("{time} by @{user}").format(
                               time=hhmm(silence.until), user=silence.by)})
        if state.ticket:
            fields.append({"short": True, "title": _("Ticket"),
                           "value": markdown.link(f"#{state.ticket.id}", state.ticket.url)})
        if alert.links:
            fields.append({"short": False, "title": _("Links"), "value": " · ".join(
                markdown.link(label, url) for label, url in alert.links)})
        if state.error:
            fields.append({"short": False, "title": _("Last action"), "value": state.error})
        icon = ":white_check_mark:" if resolved else ":rotating_light:"
        attachment: dict[str, Any] = {
            "fallback": f"[{status}] {alert.title}", "color": color,
            "title": f"{icon} {alert.title}", "text": alert.text[:3000], "fields": fields,
            "footer": _("{source} alert").format(source=alert.source)}
        if not resolved:
            attachment["actions"] = self._buttons(rec, state)
        message = state.mention if not resolved else ""
        return message, {"attachments": [attachment]}

    def _buttons(self, rec: AlertRecord, state: AlertState) -> list[dict[str, Any]]:
        """The decisions open to people now, each a button signed with the state's epoch."""
        ctx = Context(self.rt, key="", user_id="", channel_id=rec.channel_id)
        subject = f"{rec.source}|{rec.key}"
        data = {"epoch": str(state.epoch)}
        source = self.sources.get(rec.source)
        buttons = []
        if not state.pending:
            if state.ack:
                if source is None or source.can_acknowledge:
                    buttons.append(ctx.button(_("Unacknowledge"), "alertunack", subject, data))
            else:
                buttons.append(ctx.button(_("Acknowledge"), "alertack", subject, data,
                                          style="primary"))
        if self.trackers and not state.ticket:
            buttons.append(ctx.button(_("Open ticket"), "alertticket", subject, data))
        if source is not None and source.can_silence and active_silence(state) \
                and not state.pending:
            buttons.append(ctx.button(_("Unsilence"), "alertunsilence", subject, data))
        elif source is not None and source.can_silence:
            menu = ctx.button(_("Silence"), "alertsilence", subject, data)
            menu["type"] = "select"
            menu["options"] = [{"text": _("{hours} h").format(hours=f"{h:g}"), "value": f"{h:g}"}
                               for h in self.settings.silence_hours]
            buttons.append(menu)
        # A generic alert can be resolved only through the callback it came with.
        if source is not None and source.can_resolve and (
                rec.source != "generic" or state.alert.ref.get("callback_url")):
            buttons.append(ctx.button(_("Resolve"), "alertresolve", subject, data,
                                      style="danger"))
        return buttons
