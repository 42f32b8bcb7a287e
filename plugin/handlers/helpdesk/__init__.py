"""Helpdesk from chat: `112 printer broken` opens a ticket, the thread follows the ticket, and a DM
answers `status 123` and `my tickets`.

Every request to a tracker goes through the outbox, so a message creates exactly one ticket whatever
happens (websocket drop, the bot killed and restarted, a tracker that times out after creating the
ticket, a tracker that is down for an hour): the request is durable before anything is answered,
an interrupted creation first looks for the ticket it may have made, and every post the bot makes
for it carries an idempotency key.

The parts: `opening` (the triggers, queueing a request, the `ticket` executor that files it and
posts its number), `slash` (the `/ticket` command), `followups` (thread replies added to the ticket
by the `comment` executor), `watch` (status changes and technicians' follow-ups brought back into
the thread, solved and closed tickets included for a while), `solutions` (how a ticket was solved,
to the thread and the requester, who may accept or refuse it where the tracker asks), `status`
(`status N`, `#N`, `my tickets`, and who may see which ticket), over `core` (what they share);
`feature` puts them together as `Helpdesk`.
"""

from __future__ import annotations

from .feature import Helpdesk

__all__ = ["Helpdesk"]
