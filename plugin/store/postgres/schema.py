"""The PostgreSQL schema, as the list of migrations that builds it (the SQLite schema's tables,
in PostgreSQL's types: times as seconds in double precision, JSON kept as text)."""

from __future__ import annotations

#: Each entry upgrades the schema by one version; never edit a released entry, append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE cursors (
        channel_id TEXT PRIMARY KEY,
        last_create_at BIGINT NOT NULL
    );
    CREATE TABLE handled (
        post_id TEXT PRIMARY KEY,
        channel_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'done')),
        attempts INTEGER NOT NULL DEFAULT 1,
        claimed_at DOUBLE PRECISION NOT NULL,
        done_at DOUBLE PRECISION
    );
    CREATE INDEX handled_pending ON handled(state) WHERE state = 'pending';
    CREATE INDEX handled_claimed_at ON handled(claimed_at);
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE outbox (
        key TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'filed', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at DOUBLE PRECISION NOT NULL,
        lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
        notified BOOLEAN NOT NULL DEFAULT FALSE,
        result TEXT NOT NULL DEFAULT '{}',
        last_error TEXT NOT NULL DEFAULT '',
        created_at DOUBLE PRECISION NOT NULL
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
        open BOOLEAN NOT NULL DEFAULT TRUE,
        created_at DOUBLE PRECISION NOT NULL,
        watch_until DOUBLE PRECISION,
        origin TEXT NOT NULL DEFAULT 'chat',
        triage TEXT NOT NULL DEFAULT '{}',
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
        until DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE alerts (
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        post_id TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        revision INTEGER NOT NULL DEFAULT 1,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (source, key)
    );
    CREATE INDEX alerts_channel_created ON alerts(channel_id, created_at);
    CREATE INDEX alerts_identity ON alerts(source, ((state::jsonb) #>> '{alert,identity}'));
    CREATE TABLE alert_notes (
        id BIGSERIAL PRIMARY KEY,
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        text TEXT NOT NULL,
        posted BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX alert_notes_pending ON alert_notes(source, key, posted);
    """,
    # Replicas: each says it runs every few seconds; the claims and outbox leases of one not
    # seen for a while are taken over. A claim's token tells a claim asked again (its answer
    # lost with a connection) from one made by another. Additive only, so the version before
    # runs on it too.
    """
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        version TEXT NOT NULL,
        listener TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        seen_at DOUBLE PRECISION NOT NULL
    );
    ALTER TABLE handled ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE handled ADD COLUMN token TEXT NOT NULL DEFAULT '';
    ALTER TABLE outbox ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    """,
]
