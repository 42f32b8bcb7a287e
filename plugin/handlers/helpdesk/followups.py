"""The thread follows the ticket: a reply in a linked thread is queued as a `comment` and added to
the ticket (with its files) by the executor, once, even when an earlier try may have landed."""

from __future__ import annotations

from bridge.tickets import TrackerError, TrackerUnavailable, clean_text

from ... import i18n
from ...context import Context
from ...events import Post
from ...i18n import _
from ...mattermost import MattermostError
from ...outbox import Retry
from ...store import OutboxEntry
from .core import HelpdeskCore, log


class FollowUps(HelpdeskCore):
    """Replies in a linked thread, and the `comment` executor that adds them to the ticket."""

    async def thread_reply(self, ctx: Context, post: Post) -> None:
        await self.outbox.put(f"comment:{post.id}", "comment", {
            "root_id": post.root_id, "post_id": post.id, "user_id": post.user_id,
            "channel_id": post.channel_id, "text": post.message,
            "file_ids": list(post.file_ids)})

    async def _file_comment(self, entry: OutboxEntry) -> None:
        p = dict(entry.payload)
        link = await self.rt.store.tickets.by_root(p["root_id"])
        if link is None:
            if any(e.payload.get("root_id") == p["root_id"]
                   for e in await self.rt.store.outbox.open("ticket")):
                raise Retry("the thread's ticket is not filed yet")
            await self.rt.store.outbox.update(entry.key, state="failed",
                                               error="the thread has no ticket")
            return
        p["tracker"], p["ticket_id"] = link.tracker, link.ticket_id
        tracker = self.trackers.get(link.tracker)
        if tracker is None:
            await self.rt.store.outbox.update(entry.key, state="failed", error="no tracker")
            return
        person = await self._person(p["user_id"])
        # The link back to the chat message also marks the follow-up as this message's.
        permalink = (await self._permalink(p.get("channel_id", ""), p["post_id"]))[1]
        marker = f"/pl/{p['post_id']}"
        with i18n.use(None):
            text = _("{text}\n\n(from chat: {link})").format(text=clean_text(p["text"]),
                                                            link=permalink)
        try:
            async with self._lock(p["tracker"], p["ticket_id"]):
                comment_id = ""
                if self.rt.resumed(entry):
                    # An earlier try may have landed: look before writing it again.
                    for c in await tracker.comments(p["ticket_id"]):
                        if marker in c.text:
                            comment_id = c.id
                if not comment_id:
                    comment_id = await tracker.comment(p["ticket_id"], text, person)
                if comment_id:
                    await self.rt.store.tickets.mark_comments_seen(p["tracker"], p["ticket_id"],
                                                            [comment_id])
            await self._attach(tracker, p["ticket_id"], p.get("file_ids") or [])
        except TrackerUnavailable as exc:
            raise Retry(str(exc)) from None
        except TrackerError as exc:
            log.warning("%s refused a comment on #%s: %s", tracker.name, p["ticket_id"], exc)
            await self.rt.store.outbox.update(entry.key, state="failed", error=str(exc))
            return
        try:
            await self.rt.api.add_reaction(p["post_id"], "white_check_mark")
        except MattermostError as exc:
            log.warning("could not confirm comment %s: %s", p["post_id"], exc)
        await self.rt.store.outbox.update(entry.key, state="done")
        log.info("follow-up added to %s #%s", p["tracker"], p["ticket_id"])
