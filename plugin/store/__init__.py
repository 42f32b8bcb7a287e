"""The state store: what must survive a restart.

`Store` (in `protocols`) is what the runtime sees: one repository per concern — claims, channel
cursors, settings, leases, the outbox, ticket links, alerts — and the store-wide open, close and
prune. `sqlite` implements it on an embedded file, `postgres` on a database replicas share
(`location` picks one from `settings.state.path`); no SQL lives outside this package.
"""

from __future__ import annotations

from .location import (
    change_setting,
    is_database_url,
    open_store,
    read_setting,
    shown,
)
from .protocols import (
    AlertRepository,
    ClaimRepository,
    CursorRepository,
    KeyValue,
    LeaseRepository,
    OutboxRepository,
    ReplicaRepository,
    Store,
    TicketRepository,
)
from .records import (
    AlertRecord,
    Liveness,
    OutboxEntry,
    PendingClaim,
    ReplicaInfo,
    StoreError,
    StoreInUse,
    TicketLink,
)
from .sqlite import MIGRATIONS, SQLiteStore

__all__ = [
    "MIGRATIONS", "AlertRecord", "AlertRepository", "ClaimRepository", "CursorRepository",
    "KeyValue", "LeaseRepository", "Liveness", "OutboxEntry", "OutboxRepository",
    "PendingClaim", "ReplicaInfo", "ReplicaRepository", "SQLiteStore", "Store", "StoreError",
    "StoreInUse", "TicketLink",
    "TicketRepository",
    "change_setting", "is_database_url", "open_store", "read_setting", "shown",
]
