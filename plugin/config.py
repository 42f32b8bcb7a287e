"""plugin.yaml → typed, validated settings.

The file has two parts: `manifest` (what Mattermost and operators read about the plugin) and
`settings` (how this bot runs). `${VAR}` and `${VAR:-default}` are read from the environment
before validation. Every error names the key path (``settings.stream.ping_interval``) and what is
wrong, and never repeats a value: a value may be a secret. What `check`, `run` and `doctor`
say about settings that parsed is `review.py`'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .config_alerts import (
    AlertRoute,
    AlertSettings,
    AlertSourceSettings,
    EscalationStep,
    MailSettings,
    SeverityName,
    SnmpSettings,
    TrapPairSettings,
)
from .config_base import Model as _Model
from .config_base import StaffSettings, TLSSettings, http_url
from .config_helpdesk import (
    GLPISettings,
    HelpdeskSettings,
    RedmineSettings,
    TrackerSettings,
    Trigger,
)

DEFAULT_CONFIG = "plugin.yaml"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """plugin.yaml cannot be used; the message lists each problem with its key path."""

    def __init__(self, problems: list[str], source: str = DEFAULT_CONFIG,
                 unreadable: bool = False) -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"cannot read {source}:\n{lines}" if unreadable
                         else f"{source} is not valid:\n{lines}")


class SettingSchema(_Model):
    """One entry of the manifest's settings schema, as Mattermost's plugin manifests spell it."""

    key: str = Field(description="The setting's name: here, the environment variable it is "
                                 "read from.")
    display_name: str = Field(description="Label shown for the setting.")
    type: Literal["text", "bool", "number", "dropdown", "radio", "longtext", "generated"] = Field(
        description="How the setting is entered (Mattermost's setting types).")
    help_text: str = Field("", description="A sentence saying what the setting is for.")
    default: Any = Field(None, description="The value used when the variable is unset.")
    secret: bool = Field(False, description="The value is a secret: masked in logs and shown "
                                            "as such.")


class SettingsSchema(_Model):
    """The settings an operator provides, in the shape of Mattermost's plugin manifests."""

    header: str = Field("", description="Text shown above the settings.")
    footer: str = Field("", description="Text shown below the settings.")
    settings: list[SettingSchema] = Field(default_factory=list,
                                          description="One entry per environment variable.")


class Manifest(_Model):
    """What Mattermost and operators read about the bot."""

    id: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{2,189}$",
                    description="Unique identifier, reverse-DNS style.")
    name: str = Field(min_length=1, description="Name shown to people.")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$",
                         description="Version of this release (semantic versioning).")
    description: str = Field("", description="What the bot does, in a sentence or two.")
    min_server_version: str = Field(pattern=r"^\d+\.\d+\.\d+$",
                                    description="Oldest Mattermost server version supported.")
    settings_schema: SettingsSchema = Field(
        default_factory=SettingsSchema,
        description="The environment variables an operator sets, with their help texts.")


class MattermostSettings(_Model):
    """How to reach Mattermost. An empty url selects the built-in sandbox."""

    url: str = Field("", description="Base URL of the Mattermost server, e.g. "
                                     "`https://chat.example.org`. Empty: `switchboard run` "
                                     "starts the built-in sandbox.")
    token: SecretStr = Field(SecretStr(""),
                             description="Personal access token of the bot account.")
    request_timeout: float = Field(10.0, gt=0, le=300,
                                   description="Seconds to wait for one REST call.")
    retries: int = Field(4, ge=0, le=20, description="Retries of a REST call that failed to "
                                                     "connect or got 429 or 5xx.")
    max_retry_after: float = Field(30.0, gt=0, description="Longest wait between two tries, in "
                                                           "seconds, whatever `Retry-After` "
                                                           "asks for.")
    rest_threads: int = Field(8, ge=1, le=64, description="REST calls in flight at once (the "
                                                          "pooled connections; no threads "
                                                          "despite the name); more wait for "
                                                          "a free connection.")
    verify_tls: bool = Field(True, description="Verify Mattermost's certificate.")
    ca_bundle: str = Field("", description="CA bundle file for a Mattermost certificate signed "
                                           "by a private CA (used instead of `verify_tls`).")
    # Only system admins have create_post_ephemeral by default.
    ephemeral_permission: bool = Field(False, description="The bot account may post ephemeral "
                                       "messages (`create_post_ephemeral`); off: the bot "
                                       "answers in a DM instead.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v)


class ListenerSettings(_Model):
    """The embedded HTTP listener where clicks, dialogs, slash commands and webhooks land."""

    listen: str = Field("127.0.0.1:8470", description="`host:port` the listener binds "
                                                      "(`0.0.0.0:8470`: every interface).")
    public_url: str = Field("", description="URL Mattermost uses to reach the listener: "
                                            "buttons, dialogs and slash commands point there. "
                                            "Required outside the sandbox.")
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576,
                                description="Largest request body accepted (larger: 413).")
    slash_tokens: list[SecretStr] = Field(
        default_factory=list,
        description="Tokens of the slash commands pointed at `/slash` (Mattermost shows each "
                    "command's token when it is created); empty entries are ignored.")
    webhook_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Tokens of inbound webhooks, by name (`/hooks/<name>`): sent as "
                    "`Authorization: Bearer` or, by Mattermost's outgoing webhooks, as the "
                    "body's `token`.")
    outgoing_tokens: list[SecretStr] = Field(
        default_factory=list,
        description="Tokens of the Mattermost outgoing webhooks pointed at `/outgoing` "
                    "(Mattermost shows each hook's token when it is created); empty entries are "
                    "ignored.")
    # Mattermost gives up on an integration after 30 s.
    action_timeout: float = Field(20.0, gt=0, lt=30,
                                  description="Seconds after which a slow click, dialog or slash "
                                              "command is answered at once and finished in "
                                              "the background.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 127.0.0.1:8470")
        return v

    @field_validator("public_url")
    @classmethod
    def _public(cls, v: str) -> str:
        return http_url(v)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class SecuritySettings(_Model):
    """Signing of button payloads."""

    secret: SecretStr = Field(SecretStr(""),
                              description="Signs button payloads: 16 or more random "
                                          "characters, required outside the sandbox.")
    action_ttl: float = Field(7 * 24 * 3600, gt=0,
                              description="Seconds a button stays clickable.")


class StateSettings(_Model):
    """The state store: cursors, handled posts, the outbox, tickets' and alerts' posts."""

    path: str = Field("./state/switchboard.db",
                      description="The state store: an SQLite file (its folder is created), "
                                  "or a PostgreSQL database that replicas share "
                                  "(`postgresql://user:password@host:port/database`).")
    retention: float = Field(14 * 24 * 3600, gt=0,
                             description="Seconds after which finished work is forgotten: "
                                         "handled posts, finished outbox entries, resolved "
                                         "incidents and their notes, closed tickets' seen "
                                         "follow-ups.")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        scheme, sep, _ = v.partition("://")
        if sep and scheme and "/" not in scheme and scheme.lower() not in (
                "postgresql", "postgres"):
            # Any other URL is no file: it would be taken as a folder.
            raise ValueError(f"is a {scheme}:// URL; give an SQLite file path (e.g. "
                             "./state/switchboard.db) or a postgresql:// database URL")
        if not v.strip():
            raise ValueError("must name the SQLite file of the state store")
        return v


class StreamSettings(_Model):
    """Websocket supervision. Seconds throughout."""

    enabled: bool = Field(True, description="Listen on the bot account's websocket event "
                                            "stream. Off (webhook-only mode): only outgoing "
                                            "webhooks and slash commands reach the bot, so "
                                            "thread replies and direct messages do not; replies "
                                            "still go out over REST.")
    ping_interval: float = Field(30.0, gt=0, description="Between two application-level "
                                                         "pings.")
    pong_timeout: float = Field(20.0, gt=0, description="A ping unanswered this long ends the "
                                                        "connection.")
    transport_ping_interval: float = Field(20.0, gt=0, description="Between two websocket "
                                                                   "protocol pings.")
    hello_timeout: float = Field(8.0, gt=0, description="To connect and receive the server's "
                                                        "`hello`.")
    idle_probe_after: float = Field(90.0, gt=0, description="Silence on the stream for this "
                                                            "long triggers a liveness probe.")
    probe_timeout: float = Field(10.0, gt=0, description="The socket is replaced when the "
                                                         "probe's echo does not arrive within "
                                                         "this.")
    backoff_initial: float = Field(1.0, gt=0, description="First delay before reconnecting.")
    backoff_factor: float = Field(1.6, ge=1, description="Each further delay is this many times "
                                                         "longer (with random jitter).")
    backoff_max: float = Field(60.0, gt=0, description="Longest delay before reconnecting.")
    stable_after: float = Field(30.0, gt=0, description="A connection that stayed up this long "
                                                        "resets the backoff.")


class BackfillSettings(_Model):
    """Reading, over REST, what was posted while the stream was down or the bot stopped."""

    max_age: float = Field(3600.0, gt=0, description="Seconds: older messages are never "
                                                     "answered after an outage or restart.")
    offer_max_age: float = Field(
        3 * 24 * 3600.0, ge=0,
        description="Seconds: a request older than `max_age` but not than this, found after an "
                    "outage or restart, is offered to its author in a direct message (\"file it "
                    "now?\") instead of being dropped; 0: never offered.")
    overlap_ms: int = Field(5000, ge=0, description="Milliseconds re-read before a channel's "
                                                    "cursor (handled posts are skipped by id).")
    concurrency: int = Field(4, ge=1, le=32, description="Channels read at once.")


class DispatchSettings(_Model):
    """How messages reach the handlers."""

    concurrency: int = Field(16, ge=1, le=1024, description="Handler runs at once.")
    ignore_bots: bool = Field(True, description="Ignore posts by bot accounts.")
    ignore_webhooks: bool = Field(True, description="Ignore posts made through incoming "
                                                    "webhooks.")
    shutdown_grace: float = Field(10.0, ge=0, description="Seconds to let running handlers "
                                                          "finish at shutdown.")
    apology: str = Field("", description="What a person is told when handling their message "
                                         "failed; empty: the built-in text, in their language.")


class OutboxSettings(_Model):
    """Requests to outside systems (trackers, monitoring, Mattermost edits), kept until done."""

    retry_initial: float = Field(5.0, gt=0, description="First delay, in seconds, before "
                                                        "retrying a request whose system is "
                                                        "down.")
    retry_max: float = Field(300.0, gt=0, description="Longest delay between such retries.")
    # Each tracker bounds its own requests in flight (`max_in_flight`); this is larger so
    # that posting replies never idles a tracker.
    concurrency: int = Field(64, ge=1, le=1024, description="Queued requests worked on at "
                                                            "once.")
    lease: float = Field(120.0, gt=0, description="Seconds a request being worked on is "
                                                  "kept from other workers; one left longer "
                                                  "(its worker died) is taken up again.")


class ReplicaSettings(_Model):
    """Several replicas on one PostgreSQL database: one of them, the leader, reads Mattermost's
    event stream; every one serves the listener and works the outbox. (An SQLite file serves
    one bot, always the leader.)"""

    heartbeat: float = Field(1.0, gt=0, le=60, description="Seconds between a replica's "
                                                           "signs of life in the store.")
    takeover_after: float = Field(6.0, gt=0, le=600,
                                  description="Seconds without a sign of life after which a "
                                              "replica counts as gone: another takes over "
                                              "its leadership, its claimed posts and its "
                                              "requests in flight.")

    @model_validator(mode="after")
    def _beats_in_time(self) -> ReplicaSettings:
        if self.heartbeat * 2 > self.takeover_after:
            raise ValueError("takeover_after must be at least twice heartbeat, or a replica "
                             "late by one beat would count as gone")
        return self


#: Outbox settings that earlier releases took under `helpdesk`.
OUTBOX_MOVED = ("retry_initial", "retry_max", "concurrency")


class LoggingSettings(_Model):
    """The log on standard error."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="The least level written.")
    format: Literal["text", "json"] = Field("text", description="Plain text lines, or one JSON "
                                                                "object per line.")


class LanguageSettings(_Model):
    """The language the bot speaks to people whose Mattermost locale it does not speak, and to
    channels (alert posts). Each person is answered in their own locale when it is one of
    en, ru, fr, de, ja."""

    default_locale: str = Field("en", description="One of `en`, `ru`, `fr`, `de`, `ja`.")
    locale_cache_seconds: float = Field(600.0, ge=0,
                                        description="Seconds a user's locale is remembered "
                                                    "before it is looked up again.")

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, v: str) -> str:
        from .i18n import LANGUAGES, normalize
        found = normalize(v)
        if not found:
            raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
        return found


class Settings(_Model):
    """How the bot runs."""

    mattermost: MattermostSettings = Field(default_factory=lambda: MattermostSettings(),
                                           description="How to reach Mattermost.")
    listener: ListenerSettings = Field(default_factory=lambda: ListenerSettings(),
                                       description="The embedded HTTP listener.")
    security: SecuritySettings = Field(default_factory=lambda: SecuritySettings(),
                                       description="Signing of button payloads.")
    state: StateSettings = Field(default_factory=lambda: StateSettings(),
                                 description="The state store.")
    stream: StreamSettings = Field(default_factory=lambda: StreamSettings(),
                                   description="Websocket supervision.")
    backfill: BackfillSettings = Field(default_factory=lambda: BackfillSettings(),
                                       description="Catching up after an outage or restart.")
    dispatch: DispatchSettings = Field(default_factory=lambda: DispatchSettings(),
                                       description="How messages reach the handlers.")
    logging: LoggingSettings = Field(default_factory=lambda: LoggingSettings(),
                                     description="The log.")
    language: LanguageSettings = Field(default_factory=lambda: LanguageSettings(),
                                       description="The language the bot speaks.")
    trackers: dict[str, TrackerSettings] = Field(default_factory=dict,
                                                 description="Ticket trackers, by name.")
    outbox: OutboxSettings = Field(default_factory=lambda: OutboxSettings(),
                                   description="Requests to outside systems.")
    replicas: ReplicaSettings = Field(default_factory=lambda: ReplicaSettings(),
                                      description="Replicas sharing a PostgreSQL database.")
    helpdesk: HelpdeskSettings = Field(default_factory=lambda: HelpdeskSettings(),
                                       description="Tickets from chat.")
    alerts: AlertSettings = Field(default_factory=lambda: AlertSettings(),
                                  description="Monitoring alerts.")

    @model_validator(mode="before")
    @classmethod
    def _outbox_from_helpdesk(cls, data: Any) -> Any:
        """Earlier releases set the outbox's retries and size under `helpdesk`: such a setting
        still applies, to the outbox, unless `outbox` sets it too."""
        if not isinstance(data, dict) or not isinstance(data.get("helpdesk"), dict):
            return data
        helpdesk = dict(data["helpdesk"])
        moved = {k: helpdesk.pop(k) for k in OUTBOX_MOVED if k in helpdesk}
        if not moved:
            return data
        outbox = data.get("outbox")
        outbox = dict(outbox) if isinstance(outbox, dict) else {}
        return data | {"helpdesk": helpdesk, "outbox": moved | outbox}

    @model_validator(mode="after")
    def _triggers_name_trackers(self) -> Settings:
        for i, trigger in enumerate(self.helpdesk.triggers):
            if trigger.tracker not in self.trackers:
                known = ", ".join(sorted(self.trackers)) or "none"
                raise ValueError(f"helpdesk.triggers[{i}].tracker: no tracker named "
                                 f"{trigger.tracker!r} (known: {known})")
        if self.helpdesk.default_tracker and self.helpdesk.default_tracker not in self.trackers:
            raise ValueError(f"helpdesk.default_tracker: no tracker named "
                             f"{self.helpdesk.default_tracker!r}")
        return self

    @property
    def sandbox(self) -> bool:
        """True when no Mattermost is configured: `run` starts the built-in simulator."""
        return not self.mattermost.url


class Config(_Model):
    """The whole of plugin.yaml."""

    manifest: Manifest = Field(description="What Mattermost and operators read about the bot.")
    settings: Settings = Field(default_factory=Settings, description="How the bot runs.")
    # Key path → the environment variable the file reads it from (`${VAR}`), when it reads one.
    _env_names: dict[str, str] = PrivateAttr(default_factory=dict)


def interpolate(
    node: Any, env: Mapping[str, str], path: str = "", problems: list[str] | None = None
) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a YAML tree."""
    problems = problems if problems is not None else []
    if isinstance(node, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k), problems)
                for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                problems.append(f"{path}: environment variable {name} is not set")
                return ""
            return default
        return value

    whole = _VAR.fullmatch(node)
    result = _VAR.sub(sub, node)
    # A lone `${VAR}` may stand for a number or a boolean: let YAML type it.
    if whole and result and not result.startswith(("{", "[")):
        try:
            typed = yaml.safe_load(result)
        except yaml.YAMLError:
            return result
        if isinstance(typed, (bool, int, float)):
            return typed
    return result


_TRACKER_KINDS = ("glpi", "redmine")


def _loc(loc: tuple[int | str, ...]) -> str:
    # A tagged union adds its tag (`trackers.x.glpi.url`); the path a person wrote has none.
    loc = tuple(p for i, p in enumerate(loc)
                if not (i >= 2 and loc[i - 2] == "trackers" and p in _TRACKER_KINDS))
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse(text: str, env: Mapping[str, str] | None = None, source: str = DEFAULT_CONFIG) -> Config:
    """Parse and validate plugin.yaml text; raises ConfigError naming each bad key path."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"],
                          source) from None
    if not isinstance(raw, dict):
        raise ConfigError(["the top level must be a mapping with `manifest` and `settings`"],
                          source)
    problems: list[str] = []
    data = interpolate(raw, os.environ if env is None else env, problems=problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_input=False, include_url=False):
            msg = err["msg"]
            loc = _loc(err["loc"])
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "is required"
            elif err["type"] == "value_error":
                msg = msg.removeprefix("Value error, ")
                # A model-level check names its own key path below `loc`.
                if re.match(r"^[\w\[\].]+: ", msg):
                    problems.append(f"{loc}.{msg}")
                    continue
            problems.append(f"{loc}: {msg}")
        raise ConfigError(problems, source) from None
    if problems:
        raise ConfigError(problems, source)
    config._env_names = env_names(raw)
    return config


def load(path: str | os.PathLike[str] | None = None,
         env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a plugin.yaml file (default: ./plugin.yaml)."""
    p = Path(path or os.environ.get("SWITCHBOARD_CONFIG", DEFAULT_CONFIG))
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{exc.strerror or exc}; give the file with -c/--config or "
                           "SWITCHBOARD_CONFIG"], str(p), unreadable=True) from None
    return parse(text, env, str(p))


def env_names(raw: Any, path: str = "") -> dict[str, str]:
    """Key path → the environment variable the setting is read from, for each string of the
    configuration file as written that reads exactly one (`${VAR}` or `${VAR:-default}`)."""
    out: dict[str, str] = {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            out |= env_names(value, f"{path}.{key}" if path else str(key))
    elif isinstance(raw, list):
        for i, value in enumerate(raw):
            out |= env_names(value, f"{path}[{i}]")
    elif isinstance(raw, str):
        found = {m.group(1) for m in _VAR.finditer(raw)}
        if len(found) == 1:
            out[path] = found.pop()
    return out


def setting_name(config: Config, path: str) -> str:
    """How an operator sets the setting at `path`: the environment variable the configuration
    file reads it from (a list read from one variable, such as a token list, is named by it),
    else the key path itself."""
    names = config._env_names
    if path in names:
        return names[path]
    item = re.compile(re.escape(path) + r"\[\d+\]")
    found = {var for key, var in names.items() if item.fullmatch(key)}
    return found.pop() if len(found) == 1 else path

#: The settings models of `config_alerts.py` and `config_base.py` are part of this module's
#: interface too (`plugin.config.AlertSettings`, ...).
__all__ = [
    "AlertRoute",
    "AlertSettings",
    "AlertSourceSettings",
    "Config",
    "ConfigError",
    "EscalationStep",
    "GLPISettings",
    "HelpdeskSettings",
    "MailSettings",
    "RedmineSettings",
    "Settings",
    "SeverityName",
    "SnmpSettings",
    "StaffSettings",
    "TLSSettings",
    "TrackerSettings",
    "TrapPairSettings",
    "Trigger",
    "http_url",
    "load",
    "parse",
]
