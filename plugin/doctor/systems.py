"""The checks of the systems around Mattermost: each configured tracker and monitoring source,
reached with its own credentials through its bridge's `check()` probe."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from ..config import Settings
from ..monitoring import build_sources
from ..trackers import build_trackers
from .report import FIX, Report, SettingNames, guarded, reach_error, reach_fix


@runtime_checkable
class Probed(Protocol):
    """A bridge client with an operator's probe (see `bridge.glpi.GLPITracker.check`)."""

    async def check(self) -> list[tuple[str, str]]: ...


async def _probe(report: Report, names: SettingNames, label: str, base: str, url: str,
                 client: object, close: Callable[[], Awaitable[None]]) -> None:
    """Run one client's probe and report what it found, naming settings as the operator
    knows them (`base` is the client's key path, e.g. settings.trackers.glpi)."""
    try:
        if not isinstance(client, Probed):
            report.ok(f"{label}: nothing to reach")
            return
        found = await client.check()
    except Exception as exc:
        kind = reach_error(exc)
        if kind:
            report.fail(f"{label}: cannot reach {url} ({kind})",
                        reach_fix(kind, names(f"{base}.url"), f"{base}.tls.ca_bundle",
                                  f"{base}.tls.server_name"))
            return
        problem, sep, fix = names.explain(str(exc), base).partition(FIX)
        report.fail(f"{label}: {problem}",
                    fix if sep else f"the server says why; check the settings under {base}")
        return
    finally:
        await close()
    for level, text in found:
        text = names.explain(text, base)
        if level == "warn":
            problem, _, fix = text.partition(FIX)
            report.warn(f"{label}: {problem}", fix)
        else:
            report.ok(f"{label}: {text}")


async def check_trackers(report: Report, s: Settings, names: SettingNames) -> None:
    """Each tracker whose settings are complete; incomplete ones are named by the
    configuration's check (`review.py`)."""
    for name, settings in s.trackers.items():
        if not settings.configured:
            continue
        label = f"tracker {name}" + (f" ({settings.kind})" if settings.kind != name else "")
        base = f"settings.trackers.{name}"
        with guarded(report, label, [(names(f"{base}.tls.ca_bundle"), settings.tls.ca_bundle)]):
            # Built one at a time, so that one tracker's broken settings (a CA bundle that is
            # not there) are that tracker's FAIL line and the others are still checked.
            tracker = build_trackers(s.model_copy(update={"trackers": {name: settings}}))[name]
            await _probe(report, names, label, base, settings.url, tracker, tracker.aclose)


async def check_sources(report: Report, s: Settings, names: SettingNames) -> None:
    """Each configured monitoring source's API, with the credentials the buttons will use;
    a source given in part is named by the configuration's check (`review.py`)."""
    for name, source in s.alerts.sources.items():
        base = f"settings.alerts.sources.{name}"
        label = f"alert source {name}"
        with guarded(report, label, [(names(f"{base}.tls.ca_bundle"), source.tls.ca_bundle)]):
            if name == "generic":
                report.ok("alert source generic: nothing to reach (senders post to "
                          "/alerts/generic)")
                continue
            # One source at a time, as trackers are: a broken one fails alone.
            clients = build_sources(s.alerts.model_copy(update={"sources": {name: source}}))
            client = clients.pop(name, None)
            for other in clients.values():  # the generic callback, always built
                await other.aclose()
            if client is not None:
                await _probe(report, names, label, base, source.url, client, client.aclose)
