"""`switchboard register-commands`: create or update the bot's slash commands in Mattermost.

For each team (`helpdesk.slash_teams`, or every team the bot belongs to) the declared commands
are made to point at `<listener.public_url>/slash`, with autocomplete: a missing command is
created, one that differs (a new public URL, new hints) is updated in place (Mattermost keeps its
id and verification token), one that matches is left alone. Running it twice changes nothing.

A command is the bot's when its id is recorded in the state store (this command made or adopted
it before, whatever address it calls now), or when its URL has the scheme, host and port of
`listener.public_url` and a path ending in `/slash` (made by hand for this bot). Any other
command with the same trigger is someone else's: it is reported and left alone.

Each command's verification token is a secret: it is never printed, only kept in the state store
(`kv`, key `slash_commands`: `{command id: {team_id, trigger, token}}`), where the running bot
reads it at start and, when a slash request carries a token it does not know, again (at most
once a minute), so no `SLASH_TOKEN` is needed. A stored token is accepted only for requests from
its command's team. Each run replaces the entries of every team it could list with what
Mattermost lists now, so a deleted command's token, or the old token of a regenerated one, stops
being accepted; an entry without a team (which no run writes) is never accepted.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import i18n
from .config import Config
from .mattermost import MattermostAPI, MattermostAuthError, MattermostError
from .store import Store, StoreError, change_setting, read_setting, shown

log = logging.getLogger("switchboard.commands")

#: The state store's key holding `{command id: {team_id, trigger, token}}`.
TOKENS_KEY = "slash_commands"
#: What Mattermost's command editor limits these to.
_LIMITS = {"display_name": 64, "description": 128, "auto_complete_desc": 128,
           "auto_complete_hint": 1024}


# --- the tokens the bot accepts ---------------------------------------------------------------
def _parse(raw: str | None) -> dict[str, dict[str, str]]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        log.warning("the stored slash command tokens are not readable; ignoring them")
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): {f: str(v.get(f, "")) for f in ("team_id", "trigger", "token")}
            for k, v in data.items() if isinstance(v, dict)}


async def stored_tokens(store: Store) -> list[tuple[str, str]]:
    """(team id, verification token) of each command `register-commands` made or adopted.

    An entry without a team id is left out: accepting it from any team is what storing the
    team prevents, and the next `register-commands` run rewrites the team's entries anyway."""
    return [(e["team_id"], e["token"]) for e in _parse(await store.kv.get(TOKENS_KEY)).values()
            if e["token"] and e["team_id"]]


def replace_teams(current: dict[str, dict[str, str]], listed: set[str],
                  found: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The stored entries after a run: those of the teams it `listed` are replaced by what it
    `found` there (a command deleted since, or a token regenerated since, leaves nothing
    behind); other teams' entries stay; entries without a team are dropped."""
    kept = {k: v for k, v in current.items() if v["team_id"] and v["team_id"] not in listed}
    return kept | found


async def _read_stored(path: str) -> dict[str, dict[str, str]]:
    return _parse(await read_setting(path, TOKENS_KEY))


async def _save_stored(path: str, update: Callable[[dict[str, dict[str, str]]],
                                                  dict[str, dict[str, str]]]) -> None:
    """Change the stored tokens in the state file, which a running bot may hold open."""
    if path == ":memory:":
        raise CommandsError("settings.state.path is `:memory:`: the tokens cannot be kept; set "
                            "SWITCHBOARD_DB to the bot's state file")
    await change_setting(path, TOKENS_KEY,
                         lambda raw: json.dumps(update(_parse(raw)), sort_keys=True))


# --- what the bot declares ----------------------------------------------------------------------
@dataclass(frozen=True)
class CommandSpec:
    """A slash command as the bot wants it in every team."""

    trigger: str
    display_name: str
    description: str
    auto_complete_desc: str
    auto_complete_hint: str

    def fields(self, url: str) -> dict[str, Any]:
        """The command's fields that `register-commands` owns."""
        wanted = {"trigger": self.trigger, "url": url, "method": "P", "auto_complete": True,
                  "display_name": self.display_name, "description": self.description,
                  "auto_complete_desc": self.auto_complete_desc,
                  "auto_complete_hint": self.auto_complete_hint}
        for key, limit in _LIMITS.items():
            wanted[key] = str(wanted[key])[:limit]
        return wanted


def declared(config: Config) -> list[CommandSpec]:
    """The slash commands the bot answers (the helpdesk's, unless it is switched off).

    Their texts are shown to everyone in the team, so they are in the configured language."""
    s = config.settings
    trigger = s.helpdesk.slash_command
    if not trigger:
        return []
    _ = i18n._
    return [CommandSpec(
        trigger=trigger,
        display_name=_("Helpdesk ticket"),
        description=_("Open a helpdesk ticket, see a ticket's status, or list your tickets"),
        auto_complete_desc=_("Open a ticket, or: status <number>, mine"),
        auto_complete_hint=_("[problem] | status <number> | mine"))]


# --- registering ----------------------------------------------------------------------------------
class CommandsError(Exception):
    """Registration cannot go on; the message says what to do."""


@dataclass
class TeamResult:
    """What a run did in one team."""

    team: str
    team_id: str = ""
    #: Its commands could be listed: its stored entries are replaced by what was found.
    listed: bool = False
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"team {self.team}: {self.created} created, {self.updated} updated, "
                f"{self.unchanged} unchanged")


def _permission_hint(token_env: str | None, permission: str) -> str:
    if token_env:
        return (f"the account of {token_env} lacks {permission}: use a system admin's personal "
                "access token")
    return (f"the bot account lacks {permission} (bots often do): grant it (System Console > "
            "Permissions), or run again with --token-env NAME, NAME being an environment "
            "variable that holds a system admin's personal access token")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL, the port filled in from the scheme; None if it has none."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port out of range: no origin of ours
        return None
    if not parts.hostname or port is None:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port


def _ours(command: dict[str, Any], known: dict[str, dict[str, str]], url: str) -> bool:
    """A command this bot made or adopted before (its id is recorded, whatever it calls now), or
    one an operator pointed at this bot's listener by hand: same scheme, host and port as `url`
    (the bot's `<public_url>/slash`), path ending in /slash. A command of another service that
    happens to end in /slash is not the bot's."""
    if str(command.get("id")) in known:
        return True
    theirs = str(command.get("url") or "")
    return (_origin(theirs) is not None and _origin(theirs) == _origin(url)
            and urlsplit(theirs).path.rstrip("/").endswith("/slash"))


def _where(url: str) -> str:
    """A command's URL as a report shows it: scheme, host and port (its path or query might
    carry a secret of the other service)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else repr(url)


async def register(api: MattermostAPI, teams: list[dict[str, Any]], specs: list[CommandSpec],
                   url: str, known: dict[str, dict[str, str]], token_env: str | None = None,
                   ) -> tuple[list[TeamResult], dict[str, dict[str, str]]]:
    """Create or update `specs` in each team; the results, and the tokens of the bot's commands
    by id, as Mattermost lists them now, for each team whose result is `listed`."""
    results: list[TeamResult] = []
    tokens: dict[str, dict[str, str]] = {}
    for team in teams:
        team_id, name = str(team["id"]), str(team.get("name") or team["id"])
        result = TeamResult(name, team_id)
        results.append(result)
        try:
            existing = await api.custom_commands(team_id)
        except MattermostError as exc:
            if exc.status == 403:
                result.problems.append(_permission_hint(token_env, "manage_slash_commands"))
                continue
            raise
        result.listed = True
        for spec in specs:
            wanted = spec.fields(url)
            same = [c for c in existing if str(c.get("trigger", "")).lower() == spec.trigger]
            current = same[0] if same else None
            if current is not None and not _ours(current, known, url):
                result.problems.append(
                    f"/{spec.trigger} already exists in this team and calls "
                    f"{_where(str(current.get('url') or ''))}, not this bot's listener "
                    f"({_where(url)}); it was left alone: delete it, or choose another word "
                    "with settings.helpdesk.slash_command. If it is this bot's command "
                    f"(an old address), set its Request URL to {url} and run again")
                continue
            try:
                if current is None:
                    command = await api.create_command(wanted | {"team_id": team_id})
                    result.created += 1
                elif all(current.get(k) == v for k, v in wanted.items()):
                    command = current
                    result.unchanged += 1
                else:
                    command = await api.update_command(current | wanted)
                    result.updated += 1
            except MattermostError as exc:
                if exc.status != 403:
                    raise
                permission = ("manage_others_slash_commands" if current is not None
                              else "manage_slash_commands")
                result.problems.append(_permission_hint(token_env, permission))
                if current is None:
                    continue
                # Not updated, but still there, the bot's, with the token Mattermost listed.
                command = current
            if command.get("token"):
                tokens[str(command["id"])] = {"team_id": team_id, "trigger": spec.trigger,
                                              "token": str(command["token"])}
            else:
                result.problems.append(f"Mattermost did not show the token of /{spec.trigger}; "
                                       "set SLASH_TOKEN to it")
    return results, tokens


async def _teams(bot: MattermostAPI, acting: MattermostAPI, names: list[str]
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    if not names:
        return await bot.my_teams(), []
    found, missing = [], []
    for name in names:
        try:
            found.append(await acting.team_by_name(name))
        except MattermostError as exc:
            if exc.status not in (403, 404):
                raise
            missing.append(name)
    return found, missing


async def register_commands(config: Config, token_env: str | None = None,
                            out: Callable[[str], None] = print,
                            err: Callable[[str], None] = print) -> int:
    """The `register-commands` command; returns the exit status."""
    s = config.settings
    i18n.set_default(s.language.default_locale)
    if s.sandbox:
        err("register-commands needs a Mattermost: set MM_URL (the sandbox makes no commands)")
        return 1
    if not s.listener.public_url:
        err("settings.listener.public_url is empty: set SWITCHBOARD_PUBLIC_URL to the URL "
            "Mattermost uses to reach the listener")
        return 1
    bot_token = s.mattermost.token.get_secret_value()
    if not bot_token:
        err("settings.mattermost.token is empty: set MM_BOT_TOKEN")
        return 1
    acting_token = bot_token
    if token_env:
        acting_token = os.environ.get(token_env, "")
        if not acting_token:
            err(f"the environment variable {token_env} is not set or empty: put a personal "
                "access token in it")
            return 1
    specs = declared(config)
    if not specs:
        out("no slash command to register (settings.helpdesk.slash_command is empty)")
        return 0
    url = s.listener.public_url.rstrip("/") + "/slash"
    verify: bool | str = s.mattermost.ca_bundle or s.mattermost.verify_tls
    options: dict[str, Any] = {"timeout": s.mattermost.request_timeout, "retries": 2,
                               "connections": 2, "verify": verify}
    bot = MattermostAPI(s.mattermost.url, bot_token, **options)
    acting = MattermostAPI(s.mattermost.url, acting_token, **options) if token_env else bot
    try:
        logins = [(bot, "the bot's token (MM_BOT_TOKEN)")]
        if acting is not bot:
            logins.append((acting, f"the token in {token_env}"))
        for api, whose in logins:
            try:
                await api.login()
            except MattermostAuthError:
                err(f"Mattermost rejected {whose} (401): check it")
                return 1
        teams, missing = await _teams(bot, acting, s.helpdesk.slash_teams)
        known = await _read_stored(s.state.path)
        results, tokens = await register(acting, teams, specs, url, known, token_env)
    except MattermostError as exc:
        err(f"cannot register the commands: {exc}")
        return 1
    finally:
        bot.close()
        if acting is not bot:
            acting.close()
    listed = {r.team_id for r in results if r.listed}

    def merge(current: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return replace_teams(current, listed, tokens)

    try:
        # Also when nothing was found: a listed team's old entries must go.
        if tokens or any(v["team_id"] in listed or not v["team_id"] for v in known.values()):
            await _save_stored(s.state.path, merge)
    except (CommandsError, StoreError, OSError) as exc:
        err(f"the commands are registered, but their tokens could not be stored: {exc}")
        return 1
    failed = bool(missing)
    for name in missing:
        err(f"team {name}: not found (or the account is not in it); check "
            "settings.helpdesk.slash_teams")
    if not teams and not missing:
        err("the bot belongs to no team: add it to the teams that should have the command")
        failed = True
    for result in results:
        out(result.line())
        for problem in result.problems:
            err(f"team {result.team}: {problem}")
        failed = failed or bool(result.problems)
    if results and not any(r.created or r.updated for r in results):
        out("nothing changed: the commands were already up to date")
    elif results:
        out(f"commands call {url}; their tokens are stored in {shown(s.state.path)} (a running bot "
            "accepts them within a minute)")
    return 1 if failed else 0
