"""Alerts with buttons: one live post per incident, and decisions that go back to the source.

The path of an alert: a monitoring system POSTs to `/alerts/<source>` → the payload is parsed
into common alerts → each incident's state is saved (durably, before the sender gets its 2xx) and
a render of its post is queued in the outbox → the renderer makes the post match the state
(create or edit in place) and posts the new notes into the post's thread.

A click changes the state at once (the clicker sees "Acknowledging…" within milliseconds) and
queues the call back to the monitoring system; its outcome edits the post again. Buttons are
signed and carry the incident's decision epoch: a replayed or out-of-date click is refused.

The parts: `intake` (credentials, parsing, what an alert changes, storms), `render` (the post
from the state), `decisions` (the buttons' decisions and their calls to the monitoring system),
`tickets` (tickets from alerts), over `core` (what they share); `feature` puts them together
as `Alerts`. The state itself is `plugin.store.alert_state`'s.
"""

from __future__ import annotations

from .feature import Alerts

__all__ = ["Alerts"]
