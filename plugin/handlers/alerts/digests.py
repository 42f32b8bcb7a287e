"""Acting on a storm's digest: "Acknowledge all" acknowledges every firing member (each sent to
its monitoring system, as its own Acknowledge would be), and a menu of the members acknowledges
one. The digest then marks who acknowledged which."""

from __future__ import annotations

import dataclasses
from typing import Any

from bridge.alerts import AlertStatus

from ... import logs
from ...context import Context
from ...events import Click
from ...i18n import _, ngettext
from ...signing import Payload
from ...store import AlertRecord
from ...store.alert_state import DIGEST_SOURCE, DigestState
from .core import Refusal
from .decisions import Decisions

#: Members offered one by one in the digest's menu (Mattermost shows a long menu poorly).
MENU_MEMBERS = 25


class DigestDecisions(Decisions):
    """The digest's buttons and what they do."""

    def _digest_buttons(self, rec: AlertRecord) -> list[dict[str, Any]]:
        digest = rec.digest
        open_members = [m for m in digest.members
                        if m.status == AlertStatus.FIRING and not m.acked_by]
        if digest.count - digest.resolved <= 0 or not open_members:
            return []
        ctx = Context(self.rt, key="", user_id="", channel_id=rec.channel_id)
        subject = f"{DIGEST_SOURCE}|{rec.key}"
        buttons = [ctx.button(_("Acknowledge all"), "alertackall", subject, {},
                              style="primary")]
        menu = ctx.button(_("Acknowledge one…"), "alertackone", subject, {})
        menu["type"] = "select"
        menu["options"] = [{"text": (f"{m.title} ({m.host})" if m.host else m.title)[:70],
                            "value": m.key} for m in open_members[:MENU_MEMBERS]]
        buttons.append(menu)
        return buttons

    async def _digest_clicked(self, click: Click, payload: Payload) -> AlertRecord:
        source, _sep, key = payload.subject.partition("|")
        rec = await self.rt.store.alerts.get(source, key) if source == DIGEST_SOURCE else None
        if rec is None:
            raise Refusal(_("This storm is no longer kept."))
        await self._may_act(click)
        logs.set_subject(alert=f"{source}:{key}")
        return rec

    async def on_ack_all(self, click: Click, payload: Payload) -> dict[str, Any]:
        try:
            digest = await self._digest_clicked(click, payload)
        except Refusal as exc:
            return {"ephemeral_text": str(exc)}
        members = await self.rt.store.alerts.in_digest(digest.key)
        done = [m.key for m in members if await self._ack_member(m, click)]
        await self._mark_acked(digest.key, done, click.user_name or click.user_id)
        return {"ephemeral_text": ngettext("Acknowledged {count} alert.",
                                           "Acknowledged {count} alerts.",
                                           len(done)).format(count=len(done))}

    async def on_ack_one(self, click: Click, payload: Payload) -> dict[str, Any]:
        try:
            digest = await self._digest_clicked(click, payload)
        except Refusal as exc:
            return {"ephemeral_text": str(exc)}
        state = digest.digest
        member = await self.rt.store.alerts.get(state.source, click.selected_option)
        if member is None or member.incident.digest_key != digest.key:
            return {"ephemeral_text": _("Choose an alert of this storm.")}
        if not await self._ack_member(member, click):
            return {"ephemeral_text": _("That alert is resolved, acknowledged or being acted "
                                        "on already.")}
        await self._mark_acked(digest.key, [member.key], click.user_name or click.user_id)
        return {"ephemeral_text": _("Acknowledged.")}

    async def _ack_member(self, member: AlertRecord, click: Click) -> bool:
        """Acknowledge one member, as its own button would; False when there is nothing to do."""
        async with self._lock(member.source, member.key):
            rec = await self.rt.store.alerts.get(member.source, member.key)
            if rec is None:
                return False
            state = rec.incident
            if state.alert.status != AlertStatus.FIRING or state.ack or state.pending:
                return False
            await self._apply(rec, "ack", click.user_name or click.user_id, click.user_id,
                              None)
            return True

    async def _mark_acked(self, digest_key: str, keys: list[str], who: str) -> None:
        if not keys:
            return
        async with self._lock("digest", digest_key):
            rec = await self.rt.store.alerts.get(DIGEST_SOURCE, digest_key)
            if rec is None or not isinstance(rec.state, DigestState):
                return
            digest = rec.state
            members = tuple(dataclasses.replace(m, acked_by=who) if m.key in keys else m
                            for m in digest.members)
            saved = await self.rt.store.alerts.save(DIGEST_SOURCE, digest_key, rec.channel_id,
                                                    dataclasses.replace(digest, members=members))
            await self._queue_render(saved)
