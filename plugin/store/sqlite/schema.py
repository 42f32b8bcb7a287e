"""The SQLite schema, as the list of migrations that builds it."""

from __future__ import annotations

#: Each entry upgrades the schema by one version; never edit a released entry, append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE cursors (
        channel_id TEXT PRIMARY KEY,
        last_create_at INTEGER NOT NULL
    );
    CREATE TABLE handled (
        post_id TEXT PRIMARY KEY,
        channel_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'done')),
        attempts INTEGER NOT NULL DEFAULT 1,
        claimed_at REAL NOT NULL,
        done_at REAL
    );
    CREATE INDEX handled_pending ON handled(state) WHERE state = 'pending';
    CREATE INDEX handled_claimed_at ON handled(claimed_at);
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # The outbox (requests to outside systems, durable until done), ticket ↔ thread links, the
    # tracker comments already shown in (or written from) chat, and leases for periodic work.
    """
    CREATE TABLE outbox (
        key TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'filed', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        lease_until REAL NOT NULL DEFAULT 0,
        notified INTEGER NOT NULL DEFAULT 0,
        result TEXT NOT NULL DEFAULT '{}',
        last_error TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL
    );
    CREATE INDEX outbox_due ON outbox(state, next_at);
    CREATE TABLE tickets (
        tracker TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        root_id TEXT NOT NULL,
        requester_id TEXT NOT NULL,
        requester TEXT NOT NULL,
        title TEXT NOT NULL,
        url TEXT NOT NULL,
        status TEXT NOT NULL,
        status_changes INTEGER NOT NULL DEFAULT 0,
        open INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL,
        PRIMARY KEY (tracker, ticket_id)
    );
    CREATE INDEX tickets_root ON tickets(root_id);
    CREATE INDEX tickets_requester ON tickets(requester_id);
    CREATE TABLE seen_comments (
        tracker TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        comment_id TEXT NOT NULL,
        PRIMARY KEY (tracker, ticket_id, comment_id)
    );
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until REAL NOT NULL
    );
    """,
    # Alerts: the current state of each incident and its post, and the notes for its thread.
    """
    CREATE TABLE alerts (
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        post_id TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        revision INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (source, key)
    );
    CREATE INDEX alerts_channel_created ON alerts(channel_id, created_at);
    CREATE TABLE alert_notes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        text TEXT NOT NULL,
        posted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX alert_notes_pending ON alert_notes(source, key, posted);
    """,
    # An incident found by what stays the same when it fires again (the alert's identity).
    """
    CREATE INDEX alerts_identity ON alerts(source, json_extract(state, '$.alert.identity'));
    """,
    # Tickets stay watched for a while once solved or closed (until `watch_until`; tickets
    # closed before this version are not); a ticket opened from an alert follows its post.
    """
    ALTER TABLE tickets ADD COLUMN watch_until REAL;
    UPDATE tickets SET watch_until = 0 WHERE open = 0;
    ALTER TABLE tickets ADD COLUMN origin TEXT NOT NULL DEFAULT 'chat';
    """,
    # A ticket's post in the support team's triage channel (channel, post, what was done).
    """
    ALTER TABLE tickets ADD COLUMN triage TEXT NOT NULL DEFAULT '{}';
    """,
    # Each claim names the run that made it: a run takes over only the claims of runs gone.
    """
    ALTER TABLE handled ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    """,
]
