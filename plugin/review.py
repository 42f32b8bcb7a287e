"""What `switchboard check`, `run` and `doctor` say about the settings.

A configuration that parsed may still keep the bot from starting (no token outside the sandbox,
a CA bundle that is not there) or leave a part of it working only partly (a tracker or a
monitoring source given in part). `review` finds each such thing, with what to do about it;
`check_runnable` and `warnings` word them as `check` and `run` print them, each setting named
as the operator sets it. No finding ever holds a setting's value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, SecretStr

from .config import AlertRoute, AlertSourceSettings, Config, Settings, setting_name

_SETTING = re.compile(r"`(settings\.[^`]+)`")


@dataclass(frozen=True)
class Finding:
    """One thing the review of a configuration finds: what is wrong at `key`, and what to do.

    `fix` writes each setting as its key path in backquotes (`settings.alerts.token`), so that
    each reader names it as the operator sets it: `check` by its environment variable, `doctor`
    by the variable and the key path. No finding ever holds a setting's value."""

    key: str
    problem: str
    fix: str = ""
    #: True: the bot does not start with it (and `check` fails); False: it runs, partly.
    error: bool = True

    def fix_with(self, name: Callable[[str], str]) -> str:
        """The fix, each setting in it named by `name` (given the key path)."""
        return _SETTING.sub(lambda m: name(m.group(1)), self.fix)

    def text(self, name: Callable[[str], str]) -> str:
        """`key: problem (fix)`, as `check` prints it."""
        fix = self.fix_with(name)
        return f"{self.key}: {self.problem}" + (f" ({fix})" if fix else "")


def _given(model: BaseModel, field: str) -> bool:
    value = getattr(model, field, "")
    return bool(value.get_secret_value() if isinstance(value, SecretStr) else value)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _set_but_empty(given: list[str], missing: list[str]) -> str:
    """`url is set but user_token is empty`: the settings given, then those wanting."""
    return (f"{_and(given)} {'is' if len(given) == 1 else 'are'} set but "
            f"{_and(missing)} {'is' if len(missing) == 1 else 'are'} empty")


def _set(paths: list[str]) -> str:
    return "set " + _and([f"`{p}`" for p in paths])


#: What a tracker needs to file tickets, and what it may have besides, by kind.
_TRACKER_NEEDS = {"glpi": ("url", "user_token"), "redmine": ("url", "api_key", "project")}
_TRACKER_EXTRA = {"glpi": ("app_token",), "redmine": ()}


def _tracker_findings(s: Settings) -> list[Finding]:
    out = []
    for name, tracker in s.trackers.items():
        base = f"settings.trackers.{name}"
        needs = list(_TRACKER_NEEDS[tracker.kind])
        given = [f for f in needs + list(_TRACKER_EXTRA[tracker.kind]) if _given(tracker, f)]
        missing = [f for f in needs if not _given(tracker, f)]
        users = [t.keyword for t in s.helpdesk.triggers if t.tracker == name]
        if given and missing:
            out.append(Finding(base, _set_but_empty(given, missing),
                               _set([f"{base}.{f}" for f in missing])))
        elif missing and users and not s.sandbox:
            out.append(Finding(base, f"not configured ({_and(needs)} empty); the trigger(s) "
                                     f"{', '.join(users)} are off",
                               _set([f"{base}.{f}" for f in needs]), error=False))
        if tracker.tls.insecure:
            out.append(Finding(f"{base}.tls.insecure", "certificates are not checked",
                               error=False))
    return out


#: The monitoring systems the bot can act on: what their API client needs (without all of it
#: `monitoring.build_sources` builds none, and decisions stay in the chat), what it needs for
#: the API to accept it, and the name people know the system by.
_SOURCE_BUILT = {"alertmanager": ("url",), "zabbix": ("url", "api_token"),
                 "nagios": ("url", "api_username")}
_SOURCE_NEEDS = {"alertmanager": ("url",), "zabbix": ("url", "api_token"),
                 "nagios": ("url", "api_username", "api_password")}
_SOURCE_TITLES = {"alertmanager": "Alertmanager", "zabbix": "Zabbix", "nagios": "Icinga 2"}
_API_FIELDS = ("url", "api_token", "api_username", "api_password")
_SENDER_FIELDS = ("token", "username", "password")


def _catches_all(route: AlertRoute) -> bool:
    return (not route.sources and route.min_severity == "unknown" and not route.labels
            and not route.host)


def _source_api(name: str, src: AlertSourceSettings) -> list[Finding]:
    """A source's API settings given in part: the bot takes its alerts, but its decisions
    (acknowledge, silence, resolve) do not all reach the system."""
    if name not in _SOURCE_NEEDS:
        return []
    base = f"settings.alerts.sources.{name}"
    needs = list(_SOURCE_NEEDS[name])
    if name == "alertmanager" and (_given(src, "api_username") or _given(src, "api_password")):
        needs += ["api_username", "api_password"]  # basic credentials go in pairs
    given = [f for f in _API_FIELDS if _given(src, f)]
    missing = [f for f in needs if not _given(src, f)]
    if not given or not missing:
        return []
    problem = _set_but_empty(given, missing)
    if not all(_given(src, f) for f in _SOURCE_BUILT[name]):
        problem += (f", so acknowledgements and silences stay in the chat and never reach "
                    f"{_SOURCE_TITLES[name]}")
    return [Finding(base, problem, _set([f"{base}.{f}" for f in missing]), error=False)]


def _alert_findings(s: Settings) -> list[Finding]:
    """Monitoring sources given in part. An alert needs a way in (a token, or a source's
    basic credentials) and a way out (the alert channel, or a route that takes it)."""
    a = s.alerts
    out: list[Finding] = []
    reported: set[str] = set()  # the settings a source's finding already asks for
    for name, src in a.sources.items():
        base = f"settings.alerts.sources.{name}"
        given = [f for f in (*_API_FIELDS, *_SENDER_FIELDS) if _given(src, f)]
        if not given:
            continue
        missing = []
        if not (_given(a, "token") or _given(src, "token") or src.username):
            missing.append("alerts.token")
        if not a.channel and not any(not r.sources or name in r.sources for r in a.routes):
            missing.append("alerts.channel")
        if missing:
            problem = _set_but_empty(given, missing)
            if "alerts.channel" in missing and a.routes:
                problem += " and no route takes its alerts"
            out.append(Finding(base, f"{problem}, so alerts sent to /alerts/{name} are "
                                     "refused", _set([f"settings.{m}" for m in missing])))
            reported.update(missing)
        if src.username and not _given(src, "password"):
            out.append(Finding(base, "username is set but password is empty, so senders get "
                                     "in with the user name alone",
                               _set([f"{base}.password"])))
        elif _given(src, "password") and not src.username:
            out.append(Finding(base, "password is set but username is empty, so senders "
                                     "cannot sign in with it",
                               _set([f"{base}.username"]), error=False))
        out += _source_api(name, src)
    ways_out = [f for f in ("channel", "routes") if _given(a, f)]
    if ways_out and not _given(a, "token") and "alerts.token" not in reported and not any(
            _given(src, "token") or src.username for src in a.sources.values()):
        out.append(Finding("settings.alerts", f"{_set_but_empty(ways_out, ['token'])}, so "
                                              "every alert is refused",
                           _set(["settings.alerts.token"])))
    if _given(a, "token") and not ways_out and "alerts.channel" not in reported:
        out.append(Finding("settings.alerts", "token is set but channel is empty and no route "
                                              "is set, so every alert is refused",
                           _set(["settings.alerts.channel"])))
    if a.routes and not a.channel and not any(_catches_all(r) for r in a.routes):
        out.append(Finding("settings.alerts.channel", "is empty and not every alert matches a "
                                                      "route, so the others are refused",
                           _set(["settings.alerts.channel"]), error=False))
    return out


def review(config: Config) -> list[Finding]:
    """Everything `check` and `doctor` say about a configuration that parsed: the errors (the
    bot does not start with any), then the warnings (it runs, but a part of it does not)."""
    s = config.settings
    found: list[Finding] = []
    if not s.sandbox:
        if not _given(s.mattermost, "token"):
            found.append(Finding("settings.mattermost.token", "is empty",
                                 _set(["settings.mattermost.token"])))
        if not _given(s.security, "secret"):
            found.append(Finding("settings.security.secret", "is empty",
                                 _set(["settings.security.secret"])))
        elif len(s.security.secret.get_secret_value()) < 16:
            found.append(Finding("settings.security.secret", "must be at least 16 characters"))
        if not s.listener.public_url:
            found.append(Finding("settings.listener.public_url", "is empty",
                                 "set `settings.listener.public_url` to the URL Mattermost "
                                 "uses to reach the listener"))
    found += _tracker_findings(s)
    found += _alert_findings(s)
    bundles = [("settings.mattermost.ca_bundle", s.mattermost.ca_bundle)]
    bundles += [(f"settings.trackers.{n}.tls.ca_bundle", t.tls.ca_bundle)
                for n, t in s.trackers.items()]
    bundles += [(f"settings.alerts.sources.{n}.tls.ca_bundle", src.tls.ca_bundle)
                for n, src in s.alerts.sources.items()]
    for key, path in bundles:
        if path and not Path(path).is_file():
            found.append(Finding(key, f"no such file: {path}"))
    if not s.stream.enabled:
        found.append(Finding(
            "settings.stream.enabled", "false (webhook-only mode): only outgoing webhooks "
            "(/outgoing) and slash commands (/slash) reach the bot; thread replies (ticket "
            "follow-ups) and direct messages do not", error=False))
        if not any(t.get_secret_value() for t in s.listener.outgoing_tokens):
            found.append(Finding(
                "settings.listener.outgoing_tokens", "empty, so every outgoing webhook is "
                "refused", "set `settings.listener.outgoing_tokens` to the token Mattermost "
                "shows for the hook", error=False))
    return sorted(found, key=lambda f: not f.error)


def check_runnable(config: Config) -> list[str]:
    """What keeps the bot from running, or a part of it that is set up from working: each
    `key: what is wrong (what to do)`, settings named by their environment variables."""
    return [f.text(lambda path: setting_name(config, path))
            for f in review(config) if f.error]


def warnings(config: Config) -> list[str]:
    """What works but is probably not meant: features left off, or working only in part, for
    want of settings."""
    return [f.text(lambda path: setting_name(config, path))
            for f in review(config) if not f.error]
