"""The store on PostgreSQL, for several replicas sharing one database: the engine (a pool of
connections, one transaction per request), the schema's migrations, and the repositories, each
the SQLite one's twin in PostgreSQL's SQL. Its answers are durable when given (PostgreSQL's
commit waits for its log), so the barrier waits for nothing."""

from __future__ import annotations

from .schema import MIGRATIONS
from .store import PostgresStore

__all__ = ["MIGRATIONS", "PostgresStore"]
