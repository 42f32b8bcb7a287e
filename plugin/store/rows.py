"""Rows as records, the same for every implementation of the store: an outbox entry, an
incident, a ticket link, read in their tables' column order (JSON kept as text)."""

from __future__ import annotations

import json
from typing import Any

from .alert_state import state_from_json
from .records import AlertRecord, OutboxEntry, TicketLink

OUTBOX_COLUMNS = "key, kind, payload, state, attempts, notified, result, created_at"
ALERT_COLUMNS = "source, key, channel_id, post_id, state, revision, created_at"
TICKET_COLUMNS = ("tracker, ticket_id, channel_id, root_id, requester_id, requester, title, "
                  "url, status, status_changes, open, origin")


def outbox_entry(row: Any) -> OutboxEntry:
    key, kind, payload, state, attempts, notified, result, created_at = row
    return OutboxEntry(key, kind, json.loads(payload), state, int(attempts), bool(notified),
                       json.loads(result), float(created_at))


def alert_record(row: Any) -> AlertRecord:
    source, key, channel_id, post_id, state, revision, created_at = row
    return AlertRecord(source, key, channel_id, post_id,
                       state_from_json(source, json.loads(state)), int(revision),
                       float(created_at))


def ticket_link(row: Any) -> TicketLink:
    values = list(row)
    values[9], values[10] = int(values[9]), bool(values[10])
    return TicketLink(*values)
