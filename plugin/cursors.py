"""Backfill cursors: per channel, how far the bot has read.

A channel's cursor is the create_at of the newest post seen there, held back to just before the
oldest post that matched a handler but is not yet claimed in the store: a crash can then never move
the cursor past a message that still needs handling. Cursors are saved in batches (they are a lower
bound; the store's claims de-duplicate what is read twice).

While the stream is down, and until a channel's backfill has succeeded, its cursor is frozen: live
posts arriving after a reconnect must not move it past the gap that backfill has yet to read.
"""

from __future__ import annotations


class CursorTracker:
    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._held: dict[str, dict[str, int]] = {}
        self._dirty: set[str] = set()
        self._frozen_all = True
        self._frozen: set[str] = set()

    def freeze_all(self) -> None:
        """The stream is down: no cursor may advance until backfill has read the gap."""
        self._frozen_all = True

    def gap(self, channel_ids: set[str]) -> None:
        """Backfill is about to read these channels; the others may advance again."""
        self._frozen_all = False
        self._frozen = set(channel_ids)

    def filled(self, channel_id: str) -> None:
        """A channel's gap has been read: its cursor may advance."""
        self._frozen.discard(channel_id)
        self._dirty.add(channel_id)

    def observe(self, channel_id: str, create_at: int) -> None:
        if create_at > self._seen.get(channel_id, 0):
            self._seen[channel_id] = create_at
            self._dirty.add(channel_id)

    def hold(self, channel_id: str, post_id: str, create_at: int) -> None:
        self._held.setdefault(channel_id, {})[post_id] = create_at

    def release(self, channel_id: str, post_id: str) -> None:
        held = self._held.get(channel_id)
        if held is not None and held.pop(post_id, None) is not None:
            if not held:
                del self._held[channel_id]
            self._dirty.add(channel_id)

    def take_dirty(self) -> dict[str, int]:
        """Cursors that changed since the last call, safe to persist."""
        out: dict[str, int] = {}
        if self._frozen_all:
            return out
        for channel_id in self._dirty - self._frozen:
            value = self._seen.get(channel_id, 0)
            held = self._held.get(channel_id)
            if held:
                value = min(value, min(held.values()) - 1)
                # Stays dirty until the hold is released.
            if value > 0:
                out[channel_id] = value
        self._dirty = {c for c in self._dirty if c in self._held or c in self._frozen}
        return out

    @property
    def newest(self) -> int:
        return max(self._seen.values(), default=0)
