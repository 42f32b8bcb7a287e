"""plugin.yaml → typed, validated settings.

The file has two parts: `manifest` (what Mattermost and operators read about the plugin) and
`settings` (how this bot runs). `${VAR}` and `${VAR:-default}` are read from the environment
before validation. Every error names the key path (``settings.stream.ping_interval``) and what is
wrong, and never repeats a value: a value may be a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONFIG = "plugin.yaml"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """plugin.yaml cannot be used; the message lists each problem with its key path."""

    def __init__(self, problems: list[str], source: str = DEFAULT_CONFIG) -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} is not valid:\n{lines}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SettingSchema(_Model):
    """One entry of the manifest's settings schema, as Mattermost's plugin manifests spell it."""

    key: str
    display_name: str
    type: Literal["text", "bool", "number", "dropdown", "radio", "longtext", "generated"]
    help_text: str = ""
    default: Any = None
    secret: bool = False


class SettingsSchema(_Model):
    header: str = ""
    footer: str = ""
    settings: list[SettingSchema] = Field(default_factory=list)


class Manifest(_Model):
    id: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]{2,189}$")
    name: str = Field(min_length=1)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
    description: str = ""
    min_server_version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    settings_schema: SettingsSchema = Field(default_factory=SettingsSchema)


class MattermostSettings(_Model):
    """How to reach Mattermost. An empty url selects the built-in sandbox."""

    url: str = ""
    token: SecretStr = SecretStr("")
    request_timeout: float = Field(10.0, gt=0, le=300)
    retries: int = Field(4, ge=0, le=20)
    max_retry_after: float = Field(30.0, gt=0)
    rest_threads: int = Field(8, ge=1, le=64)
    verify_tls: bool = True
    ca_bundle: str = ""
    #: Only system admins have create_post_ephemeral; without it the bot answers in a DM instead.
    ephemeral_permission: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v:
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL with a host")
        return v


class ListenerSettings(_Model):
    """The embedded HTTP listener where clicks, dialogs, slash commands and webhooks land."""

    listen: str = "127.0.0.1:8470"
    public_url: str = ""
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    #: Verification tokens of the slash commands pointed at /slash (Mattermost shows each
    #: command's token when it is created).
    slash_tokens: list[SecretStr] = Field(default_factory=list)
    #: Tokens of inbound webhooks, by name (/hooks/<name>): sent as `Authorization: Bearer` or,
    #: for Mattermost's outgoing webhooks, as the body's `token`.
    webhook_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    #: A click handler slower than this answers at once and finishes in the background
    #: (Mattermost gives up on an integration after 30 s).
    action_timeout: float = Field(20.0, gt=0, lt=30)

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
        v = v.strip().rstrip("/")
        if v:
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL with a host")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class SecuritySettings(_Model):
    #: Signs button payloads; required outside the sandbox.
    secret: SecretStr = SecretStr("")
    #: How long a button stays clickable.
    action_ttl: float = Field(7 * 24 * 3600, gt=0)


class StateSettings(_Model):
    path: str = "./state/switchboard.db"
    #: Handled-post records older than this are pruned.
    retention: float = Field(14 * 24 * 3600, gt=0)


class StreamSettings(_Model):
    """Websocket supervision. Seconds throughout."""

    ping_interval: float = Field(30.0, gt=0)
    pong_timeout: float = Field(20.0, gt=0)
    transport_ping_interval: float = Field(20.0, gt=0)
    hello_timeout: float = Field(8.0, gt=0)
    #: Silence on the stream for this long triggers a liveness probe...
    idle_probe_after: float = Field(90.0, gt=0)
    #: ...and the socket is replaced when the probe's echo does not arrive within this.
    probe_timeout: float = Field(10.0, gt=0)
    backoff_initial: float = Field(1.0, gt=0)
    backoff_factor: float = Field(1.6, ge=1)
    backoff_max: float = Field(60.0, gt=0)
    #: A connection that stayed up this long resets the backoff.
    stable_after: float = Field(30.0, gt=0)


class BackfillSettings(_Model):
    #: Messages older than this are never answered after an outage or restart.
    max_age: float = Field(3600.0, gt=0)
    #: Re-read this much before a channel's cursor; handled posts are de-duplicated by id.
    overlap_ms: int = Field(5000, ge=0)
    concurrency: int = Field(4, ge=1, le=32)


class DispatchSettings(_Model):
    concurrency: int = Field(16, ge=1, le=1024)
    ignore_bots: bool = True
    ignore_webhooks: bool = True
    #: Seconds to let running handlers finish at shutdown.
    shutdown_grace: float = Field(10.0, ge=0)
    apology: str = "Sorry, something went wrong while handling your message. It has been logged."


class TLSSettings(_Model):
    #: Verify the server's certificate (on by default).
    verify: bool = True
    #: A CA bundle file for servers signed by a private CA.
    ca_bundle: str = ""
    #: Accept any certificate, for self-signed servers. Say so explicitly; never the default.
    insecure: bool = False


class _TrackerBase(_Model):
    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        # `${VAR:-}` gives "" for an unset optional number: treat it as not given.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v == "" and k.endswith("_id"))}
        return data

    timeout: float = Field(15.0, gt=0, le=300)
    max_in_flight: int = Field(8, ge=1, le=256)
    tls: TLSSettings = Field(default_factory=lambda: TLSSettings())
    #: Base of links to tickets in the tracker's web UI (default: derived from url).
    web_url: str = ""


class GLPISettings(_TrackerBase):
    kind: Literal["glpi"]
    #: The legacy API's base, e.g. https://glpi.example.org/apirest.php
    url: str = ""
    user_token: SecretStr = SecretStr("")
    app_token: SecretStr = SecretStr("")
    ticket_type: Literal[1, 2] = 1
    requesttypes_id: int | None = None
    itilcategories_id: int | None = None
    entities_id: int | None = None

    @property
    def configured(self) -> bool:
        return bool(self.url and self.user_token.get_secret_value())


class RedmineSettings(_TrackerBase):
    kind: Literal["redmine"]
    url: str = ""
    api_key: SecretStr = SecretStr("")
    project: str = ""
    tracker_id: int | None = None
    #: Urgency (1 very low .. 5 very high) → Redmine priority id.
    priority_ids: dict[int, int] = Field(default_factory=dict)
    #: Author tickets and notes as the matching Redmine user (needs an admin key).
    switch_user: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.url and self.api_key.get_secret_value() and self.project)


TrackerSettings = Annotated[GLPISettings | RedmineSettings, Field(discriminator="kind")]


class Trigger(_Model):
    """A keyword at the start of a message that opens a ticket."""

    keyword: str = Field(min_length=1, pattern=r"^\S+$")
    #: Words that open the ticket with high urgency (e.g. `112!`).
    urgent_keywords: list[str] = Field(default_factory=list)
    tracker: str
    urgency: int = Field(3, ge=1, le=5)
    urgent_urgency: int = Field(5, ge=1, le=5)
    #: Tracker-specific fields for tickets from this trigger (project, category, type...).
    fields: dict[str, Any] = Field(default_factory=dict)
    #: Only in these channels (names or ids); empty: every channel the bot is in, and DMs.
    channels: list[str] = Field(default_factory=list)


class StaffSettings(_Model):
    """Who may see every ticket with `status N` (others see only their own)."""

    users: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)


class HelpdeskSettings(_Model):
    triggers: list[Trigger] = Field(default_factory=list)
    #: Seconds between looks at linked tickets for status changes and technicians' follow-ups.
    poll_interval: float = Field(60.0, gt=0)
    #: Retries of queued requests while a tracker is down: first delay and cap, in seconds.
    retry_initial: float = Field(5.0, gt=0)
    retry_max: float = Field(300.0, gt=0)
    #: Queued requests worked on at once. Each tracker bounds its own requests in flight
    #: (`max_in_flight`); this is larger so that posting replies never idles a tracker.
    concurrency: int = Field(64, ge=1, le=1024)
    #: Largest file copied from a chat message to a ticket.
    max_attachment_bytes: int = Field(20 * 1024 * 1024, ge=0)
    staff: StaffSettings = Field(default_factory=lambda: StaffSettings())
    #: The tracker `status N` and `my tickets` use (default: the first trigger's).
    default_tracker: str = ""
    #: The slash command (without /) that files tickets, as the first trigger does; "" for none.
    slash_command: str = Field("ticket", pattern=r"^[a-z0-9_-]{0,32}$")


class AlertSourceSettings(_Model):
    """A monitoring system: how senders authenticate, and how to act on its alerts."""

    #: Overrides alerts.token for this source's senders.
    token: SecretStr = SecretStr("")
    #: Basic credentials senders may present instead of the token.
    username: str = ""
    password: SecretStr = SecretStr("")
    #: The system's API, to acknowledge and silence (empty: buttons that need it are hidden).
    url: str = ""
    api_token: SecretStr = SecretStr("")
    api_username: str = ""
    api_password: SecretStr = SecretStr("")
    tls: TLSSettings = Field(default_factory=lambda: TLSSettings())
    timeout: float = Field(10.0, gt=0)


class AlertRoute(_Model):
    """Where alerts go: the first route whose conditions all hold wins."""

    sources: list[str] = Field(default_factory=list)
    min_severity: Literal["critical", "high", "warning", "info", "unknown"] = "unknown"
    labels: dict[str, str] = Field(default_factory=dict)
    #: A regular expression the host must match.
    host: str = ""
    #: `team/channel` names or channel ids.
    channels: list[str] = Field(min_length=1)
    #: Mentioned in the post (e.g. `@oncall`) when the severity is at least `mention_from`.
    mention: str = ""
    mention_from: Literal["critical", "high", "warning", "info", "unknown"] = "critical"


class AlertSettings(_Model):
    #: What senders present: `Authorization: Bearer <token>`.
    token: SecretStr = SecretStr("")
    #: `team/channel` for alerts no route takes.
    channel: str = ""
    routes: list[AlertRoute] = Field(default_factory=list)
    sources: dict[str, AlertSourceSettings] = Field(default_factory=dict)
    #: Who may press the buttons (empty everywhere: every member of the channel).
    responders: StaffSettings = Field(default_factory=lambda: StaffSettings())
    #: New alerts per minute from one source into one channel before they are grouped.
    storm_per_minute: int = Field(20, ge=1)
    #: How long an acknowledgement as a silence lasts (Alertmanager).
    ack_duration: float = Field(24 * 3600, gt=0)
    #: Silence durations offered in the menu, in hours.
    silence_hours: list[float] = Field(default_factory=lambda: [1.0, 4.0, 24.0])


class LoggingSettings(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(_Model):
    mattermost: MattermostSettings = Field(default_factory=lambda: MattermostSettings())
    listener: ListenerSettings = Field(default_factory=lambda: ListenerSettings())
    security: SecuritySettings = Field(default_factory=lambda: SecuritySettings())
    state: StateSettings = Field(default_factory=lambda: StateSettings())
    stream: StreamSettings = Field(default_factory=lambda: StreamSettings())
    backfill: BackfillSettings = Field(default_factory=lambda: BackfillSettings())
    dispatch: DispatchSettings = Field(default_factory=lambda: DispatchSettings())
    logging: LoggingSettings = Field(default_factory=lambda: LoggingSettings())
    trackers: dict[str, TrackerSettings] = Field(default_factory=dict)
    helpdesk: HelpdeskSettings = Field(default_factory=lambda: HelpdeskSettings())
    alerts: AlertSettings = Field(default_factory=lambda: AlertSettings())

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
    manifest: Manifest
    settings: Settings = Field(default_factory=Settings)


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
    return config


def load(path: str | os.PathLike[str] | None = None,
         env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a plugin.yaml file (default: ./plugin.yaml)."""
    p = Path(path or os.environ.get("SWITCHBOARD_CONFIG", DEFAULT_CONFIG))
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], str(p)) from None
    return parse(text, env, str(p))


def check_runnable(config: Config) -> list[str]:
    """Problems that only matter when actually running (not in the sandbox)."""
    s = config.settings
    problems = []
    if not s.sandbox:
        if not s.mattermost.token.get_secret_value():
            problems.append("settings.mattermost.token: is empty (set MM_BOT_TOKEN)")
        if not s.security.secret.get_secret_value():
            problems.append("settings.security.secret: is empty (set SWITCHBOARD_SECRET)")
        elif len(s.security.secret.get_secret_value()) < 16:
            problems.append("settings.security.secret: must be at least 16 characters")
        if not s.listener.public_url:
            problems.append("settings.listener.public_url: is empty (set SWITCHBOARD_PUBLIC_URL "
                            "to the URL Mattermost uses to reach the listener)")
    return problems


def warnings(config: Config) -> list[str]:
    """What works but is probably not meant: features left off for want of settings."""
    s = config.settings
    out = []
    for name, tracker in s.trackers.items():
        users = [t.keyword for t in s.helpdesk.triggers if t.tracker == name]
        if users and not tracker.configured and not s.sandbox:
            needs = "url and user_token" if tracker.kind == "glpi" else "url, api_key and project"
            out.append(f"settings.trackers.{name}: not configured ({needs} empty); "
                       f"the trigger(s) {', '.join(users)} are off")
        if tracker.tls.insecure:
            out.append(f"settings.trackers.{name}.tls.insecure: certificates are not checked")
    return out
