"""The state store: it can be read (a database reached), its schema is one this version knows,
and how many running bots use it."""

from __future__ import annotations

import time

import httpx

from ..config import Settings
from ..store import ReplicaInfo, StoreError, is_database_url, shown
from ..store.location import probe, replicas
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
    if found.version == found.expected + 1 and is_database_url(path):
        report.warn(f"the {found.kind} {where} has schema version {found.version}, one newer "
                    f"than this Switchboard's ({found.expected}): a rolling upgrade is under "
                    "way, and this version runs on it until it is upgraded",
                    "upgrade this installation to the version the other replicas run")
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


async def check_replicas(report: Report, s: Settings, names: SettingNames) -> None:
    """The replicas on a shared database: one leads, each is seen in time and its listener
    answers /healthz; several versions at once are a rolling upgrade."""
    if not is_database_url(s.state.path):
        return
    gone_after = s.replicas.takeover_after
    try:
        found = await replicas(s.state.path, max(60.0, gone_after * 10))
    except StoreError as exc:
        report.fail(f"the replicas cannot be listed: {exc}",
                    "check the database as the line above says")
        return
    if not found:
        report.ok("no replica runs on the database now")
        return
    now = time.time()
    running = [r for r in found if now - r.seen_at < gone_after]
    for r in found:
        if r not in running:
            report.warn(f"replica {r.id} was last seen {now - r.seen_at:.0f} s ago: it is "
                        "gone, and its work is taken over by the others",
                        "nothing, if it was stopped; otherwise look at its host and log")
    leaders = [r for r in running if r.role == "leader"]
    async with httpx.AsyncClient(timeout=3, trust_env=False) as client:
        for r in running:
            await _check_one(report, client, r, now)
    if not leaders and running:
        report.fail("no running replica leads: nobody reads Mattermost's event stream",
                    f"wait {gone_after:.0f} s ({names('settings.replicas.takeover_after')}); "
                    "if it lasts, look at the replicas' logs")
    elif len(leaders) > 1:
        report.warn(f"{len(leaders)} replicas say they lead; the one that lost its lease "
                    "stands by at its next heartbeat", "run doctor again in a few seconds")
    versions = sorted({r.version for r in running})
    if len(versions) > 1:
        report.warn(f"the replicas run different versions ({', '.join(versions)}): a rolling "
                    "upgrade is under way", "finish it: replace the replicas of the older "
                    "version one at a time")
    if running:
        report.ok(f"{len(running)} replica(s) run on the database; "
                  f"{leaders[0].id if leaders else 'none'} leads")


async def _check_one(report: Report, client: httpx.AsyncClient, r: ReplicaInfo,
                     now: float) -> None:
    seen = f"{r.role}, version {r.version}, seen {now - r.seen_at:.1f} s ago"
    if not r.listener:
        report.ok(f"replica {r.id} ({seen})")
        return
    try:
        answer = await client.get(r.listener.rstrip("/") + "/healthz")
        body = answer.json()
        status, who = body.get("status", "?"), body.get("replica", "")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        report.warn(f"replica {r.id} ({seen}): its listener {r.listener} does not answer "
                    f"from here ({type(exc).__name__})",
                    "check that this host can reach it (Mattermost must)")
        return
    if who and who != r.id:
        report.warn(f"replica {r.id} ({seen}): {r.listener} is answered by replica {who}",
                    "each replica must be reached at an address of its own (SWITCHBOARD_LISTEN "
                    "on its host), not through the load balancer")
    elif answer.status_code == 200:
        report.ok(f"replica {r.id} ({seen}): /healthz {status}")
    else:
        report.warn(f"replica {r.id} ({seen}): /healthz says {status} ({answer.status_code})",
                    "look at the replica's log")
