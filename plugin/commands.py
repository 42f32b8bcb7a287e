"""`switchboard register-commands`: create or update the bot's slash commands in Mattermost.

For each team (`helpdesk.slash_teams`, or every team the bot belongs to) the declared commands
are made to point at `<listener.public_url>/slash`, with autocomplete: a missing command is
created, one that differs (a new public URL, new hints) is updated in place (Mattermost keeps its
id and verification token), one that matches is left alone. Running it twice changes nothing.

Each command's verification token is a secret: it is never printed, only kept in the state store
(`kv`, key `slash_commands`), where the running bot reads it at start and, when a slash request
carries a token it does not know, again (at most once a minute), so no `SLASH_TOKEN` is needed.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import i18n
from .config import Config
from .mattermost import MattermostAPI, MattermostAuthError, MattermostError
from .store import SQLiteStore, Store

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


async def stored_tokens(store: Store) -> list[str]:
    """The verification tokens of the commands `register-commands` made or adopted."""
    return [e["token"] for e in _parse(await store.get(TOKENS_KEY)).values() if e["token"]]


def _read_stored(path: str) -> dict[str, dict[str, str]]:
    if path == ":memory:" or not Path(path).exists():
        return {}
    db = sqlite3.connect(path, timeout=10)
    try:
        row = db.execute("SELECT value FROM kv WHERE key = ?", (TOKENS_KEY,)).fetchone()
    except sqlite3.Error:  # a state file from before the kv table: nothing stored
        return {}
    finally:
        db.close()
    return _parse(row[0] if row else None)


async def _save_stored(path: str, update: Callable[[dict[str, dict[str, str]]],
                                                  dict[str, dict[str, str]]]) -> None:
    """Change the stored tokens in the state file, which a running bot may hold open.

    `SQLiteStore.open` assumes it is the file's only user (it voids the leases of unfinished
    work), so it is used only to create a state file that does not exist yet; otherwise one
    short transaction on the kv table, which SQLite serialises with the bot's writes."""
    if path == ":memory:":
        raise CommandsError("settings.state.path is `:memory:`: the tokens cannot be kept; set "
                            "SWITCHBOARD_DB to the bot's state file")
    fresh = not Path(path).exists()
    if not fresh:
        probe = sqlite3.connect(path, timeout=10)
        try:
            fresh = probe.execute("PRAGMA user_version").fetchone()[0] == 0
        finally:
            probe.close()
    if fresh:
        store = SQLiteStore(path)
        await store.open()
        await store.close()
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT value FROM kv WHERE key = ?", (TOKENS_KEY,)).fetchone()
            value = json.dumps(update(_parse(row[0] if row else None)), sort_keys=True)
            db.execute("INSERT INTO kv(key, value) VALUES (?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                       (TOKENS_KEY, value))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.close()


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


def _ours(command: dict[str, Any], known: dict[str, dict[str, str]]) -> bool:
    """A command this bot made, or one an operator pointed at the bot's /slash by hand."""
    path = urlsplit(str(command.get("url") or "")).path.rstrip("/")
    return str(command.get("id")) in known or path.endswith("/slash")


async def register(api: MattermostAPI, teams: list[dict[str, Any]], specs: list[CommandSpec],
                   url: str, known: dict[str, dict[str, str]], token_env: str | None = None,
                   ) -> tuple[list[TeamResult], dict[str, dict[str, str]]]:
    """Create or update `specs` in each team; the results, and the commands' tokens by id."""
    results: list[TeamResult] = []
    tokens: dict[str, dict[str, str]] = {}
    for team in teams:
        team_id, name = str(team["id"]), str(team.get("name") or team["id"])
        result = TeamResult(name)
        results.append(result)
        try:
            existing = await api.custom_commands(team_id)
        except MattermostError as exc:
            if exc.status == 403:
                result.problems.append(_permission_hint(token_env, "manage_slash_commands"))
                continue
            raise
        for spec in specs:
            wanted = spec.fields(url)
            same = [c for c in existing if str(c.get("trigger", "")).lower() == spec.trigger]
            try:
                if not same:
                    command = await api.create_command(wanted | {"team_id": team_id})
                    result.created += 1
                elif not _ours(same[0], known):
                    result.problems.append(
                        f"/{spec.trigger} already exists there and calls "
                        f"{same[0].get('url')!r}, not this bot: delete it, or choose another "
                        "word with settings.helpdesk.slash_command")
                    continue
                elif all(same[0].get(k) == v for k, v in wanted.items()):
                    command = same[0]
                    result.unchanged += 1
                else:
                    command = await api.update_command(same[0] | wanted)
                    result.updated += 1
            except MattermostError as exc:
                if exc.status == 403:
                    permission = ("manage_others_slash_commands" if same
                                  else "manage_slash_commands")
                    result.problems.append(_permission_hint(token_env, permission))
                    continue
                raise
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
                               "threads": 2, "verify": verify}
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
        known = _read_stored(s.state.path)
        results, tokens = await register(acting, teams, specs, url, known, token_env)
    except MattermostError as exc:
        err(f"cannot register the commands: {exc}")
        return 1
    finally:
        bot.close()
        if acting is not bot:
            acting.close()
    done = {(e["team_id"], e["trigger"]) for e in tokens.values()}

    def merge(current: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        # A team's command replaced by another (deleted and made again) leaves no stale token.
        kept = {k: v for k, v in current.items() if (v["team_id"], v["trigger"]) not in done}
        return kept | tokens

    try:
        if tokens:
            await _save_stored(s.state.path, merge)
    except (CommandsError, sqlite3.Error, OSError) as exc:
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
        out(f"commands call {url}; their tokens are stored in {s.state.path} (a running bot "
            "accepts them within a minute)")
    return 1 if failed else 0
