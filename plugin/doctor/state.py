"""The state store: it can be read (a database reached), its schema is one this version knows,
and how many running bots use it."""

from __future__ import annotations

from ..config import Settings
from ..store import StoreError, is_database_url, shown
from ..store.location import probe
from .report import Report, SettingNames


async def check_store(report: Report, s: Settings, names: SettingNames) -> None:
    path = s.state.path
    where = shown(path)
    setting = names("settings.state.path")
    try:
        found = await probe(path)
    except StoreError as exc:
        fix = ("check the database's address, that it runs and takes this user, and the "
               f"password in {setting}") if is_database_url(path) else \
            f"restore the state file from a backup, or give {setting} a new file"
        report.fail(f"the state store {where} cannot be read: {exc}", fix)
        return
    if found.version > found.expected:
        report.fail(f"the {found.kind} {where} has schema version {found.version}, newer than "
                    f"this Switchboard understands ({found.expected})",
                    "upgrade Switchboard, or give it a store of its own")
        return
    if found.version == 0:
        report.ok(f"the state store is the {found.kind} {where}; it is made at first start")
        return
    state = "up to date" if found.version == found.expected else \
        f"migrated from version {found.version} at the next start"
    running = "" if not found.running else "; a running bot holds it" if found.running == 1 \
        else f"; {found.running} replicas run on it"
    report.ok(f"the state store is the {found.kind} {where} (schema {state}){running}")
