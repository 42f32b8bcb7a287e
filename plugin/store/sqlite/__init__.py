"""The store on an embedded SQLite file: the engine (one connection, one writer thread, batched
commits), the schema's migrations, one module per repository, and `SQLiteStore` composing them.
"""

from __future__ import annotations

from .engine import SQLiteEngine
from .schema import MIGRATIONS
from .statefile import change_setting, probe, read_setting
from .store import SQLiteStore

__all__ = ["MIGRATIONS", "SQLiteEngine", "SQLiteStore", "change_setting", "probe",
           "read_setting"]
