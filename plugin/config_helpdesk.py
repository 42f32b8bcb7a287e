"""The helpdesk's settings: the trackers tickets go to, the triggers that open them, and how the
helpdesk follows them (re-exported by `plugin.config`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from .config_base import Model as _Model
from .config_base import StaffSettings, TLSSettings


class _TrackerBase(_Model):
    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        # `${VAR:-}` gives "" for an unset optional number: treat it as not given.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v == "" and k.endswith("_id"))}
        return data

    timeout: float = Field(15.0, gt=0, le=300,
                           description="Seconds to wait for one call to the tracker.")
    max_in_flight: int = Field(32, ge=1, le=256,
                               description="The most requests to the tracker on the wire at "
                                           "once. Below it the bot finds how many the tracker "
                                           "serves without making them wait: it starts at 4, "
                                           "adds one while the latency stays flat, and backs "
                                           "off when the latency rises or the tracker answers "
                                           "429 or 503. 1: strictly one at a time.")
    tls: TLSSettings = Field(default_factory=lambda: TLSSettings(),
                             description="Certificate checks for the tracker.")
    web_url: str = Field("", description="Base of links to tickets in the tracker's web UI "
                                         "(default: derived from `url`).")


class GLPISettings(_TrackerBase):
    """A GLPI (9.5, 10) reached through its legacy REST API."""

    kind: Literal["glpi"] = Field(description="The tracker's type.")
    url: str = Field("", description="The legacy API's base, e.g. "
                                     "`https://glpi.example.org/apirest.php`.")
    user_token: SecretStr = Field(SecretStr(""), description="API token of the GLPI user that "
                                                             "files the tickets.")
    app_token: SecretStr = Field(SecretStr(""), description="App-Token of the GLPI API client, "
                                                            "when it has one.")
    ticket_type: Literal[1, 2] = Field(1, description="1 incident, 2 request.")
    requesttypes_id: int | None = Field(None, description="Request source of new tickets.")
    itilcategories_id: int | None = Field(None, description="Category of new tickets.")
    entities_id: int | None = Field(None, description="Entity of new tickets (default: the "
                                                      "user's).")

    @property
    def configured(self) -> bool:
        return bool(self.url and self.user_token.get_secret_value())


class RedmineSettings(_TrackerBase):
    """A Redmine reached through its REST API."""

    kind: Literal["redmine"] = Field(description="The tracker's type.")
    url: str = Field("", description="Redmine's base URL, e.g. `https://redmine.example.org`.")
    api_key: SecretStr = Field(SecretStr(""), description="API key of the Redmine user that "
                                                          "files the tickets.")
    project: str = Field("", description="Identifier (or id) of the project that receives "
                                         "the tickets.")
    tracker_id: int | None = Field(None, description="Redmine tracker of new issues (default: "
                                                     "the project's default).")
    priority_ids: dict[int, int] = Field(
        default_factory=dict,
        description="Urgency (1 very low .. 5 very high) → Redmine priority id (default: "
                    "Redmine's default priority).")
    switch_user: bool = Field(False, description="Author tickets and notes as the matching "
                                                 "Redmine user (needs an admin key).")

    @property
    def configured(self) -> bool:
        return bool(self.url and self.api_key.get_secret_value() and self.project)


TrackerSettings = Annotated[GLPISettings | RedmineSettings, Field(discriminator="kind")]


class Trigger(_Model):
    """A keyword at the start of a message that opens a ticket."""

    keyword: str = Field(min_length=1, pattern=r"^\S+$",
                         description="The word, e.g. `112`.")
    aliases: list[str] = Field(default_factory=list,
                               description="Other words that open a ticket the same way, e.g. "
                                           "in the users' languages (`заявка`).")
    urgent_keywords: list[str] = Field(default_factory=list,
                                       description="Words that open the ticket with high "
                                                   "urgency (e.g. `112!`).")
    tracker: str = Field(description="Name of the tracker (a key of `settings.trackers`).")
    urgency: int = Field(3, ge=1, le=5, description="Urgency of the tickets, 1 very low .. 5 "
                                                    "very high.")
    urgent_urgency: int = Field(5, ge=1, le=5, description="Urgency of the tickets opened with "
                                                           "an urgent keyword.")
    fields: dict[str, Any] = Field(default_factory=dict,
                                   description="Tracker-specific fields of the tickets "
                                               "(project, category, type...).")
    channels: list[str] = Field(default_factory=list,
                                description="Only in these channels (names or ids); empty: "
                                            "every channel the bot is in, and DMs.")


class TriageRoute(_Model):
    """New tickets of one kind to a triage channel of their own."""

    tracker: str = Field("", description="Only tickets of this tracker (empty: any).")
    field: str = Field(description="A field of the trigger that opened the ticket "
                                   "(`entities_id`, `itilcategories_id`, `project_id`, ...).")
    value: str | int = Field(description="The value that field must have.")
    channel: str = Field(description="The triage channel (`team/channel` or an id).")


class TriageSettings(_Model):
    """The support team's channel: every new ticket is posted there as a live post, with Take,
    Reply, Private note, Solve and Urgency for the staff."""

    channel: str = Field("", description="The triage channel of every tracker (`team/channel` "
                                         "or an id); empty: none unless `trackers` or `routes` "
                                         "name one.")
    trackers: dict[str, str] = Field(default_factory=dict,
                                     description="A triage channel per tracker (by name).")
    routes: list[TriageRoute] = Field(default_factory=list,
                                      description="Triage channels by the trigger's fields "
                                                  "(category, entity, project); the first "
                                                  "that matches wins.")


class HelpdeskSettings(_Model):
    """Tickets from chat."""

    triggers: list[Trigger] = Field(default_factory=list,
                                    description="Keywords that open tickets.")
    poll_interval: float = Field(60.0, gt=0,
                                 description="Seconds between looks at linked tickets for "
                                             "status changes and technicians' follow-ups.")
    watch_closed_days: float = Field(
        30.0, ge=0, description="Days a solved or closed ticket is still watched, so that a "
                                "reopening or a late follow-up reaches its thread.")
    closed_poll_interval: float = Field(
        300.0, gt=0, description="Seconds between looks at solved and closed tickets still "
                                 "watched (open ones: `poll_interval`).")
    poll_concurrency: int = Field(16, ge=1, le=1024,
                                  description="Linked tickets looked at once (each tracker "
                                              "also bounds its own requests in flight).")
    max_attachment_bytes: int = Field(20 * 1024 * 1024, ge=0,
                                      description="Largest file copied from a chat message to "
                                                  "a ticket.")
    staff: StaffSettings = Field(default_factory=lambda: StaffSettings(),
                                 description="Who may see every ticket with `status N` "
                                             "(others see only their own), and act on the "
                                             "triage channel's posts (none named: the triage "
                                             "channel's members).")
    triage: TriageSettings = Field(default_factory=lambda: TriageSettings(),
                                   description="Where new tickets are shown to the support "
                                               "team.")
    technicians: dict[str, str] = Field(
        default_factory=dict,
        description="Mattermost username → the tracker's login, for Take, where the email "
                    "address and the login do not already match.")
    default_tracker: str = Field("", description="The tracker `status N` and `my tickets` use "
                                                 "(default: the first trigger's).")
    number_retry_hours: float = Field(
        24.0, gt=0, description="How long a ticket's number refused by Mattermost (401/403) "
                                "is retried in its thread before it goes to the requester "
                                "in a direct message instead.")
    slash_command: str = Field("ticket", pattern=r"^[a-z0-9_-]{0,32}$",
                               description="The slash command (without `/`) that files "
                                           "tickets as the first trigger does; empty for none.")
    slash_response: Literal["ephemeral", "in_channel"] = Field(
        "ephemeral", description="How the slash command answers: `ephemeral` (only the person "
                                 "who ran it sees the answer) or `in_channel` (posted in the "
                                 "channel, as that person). Usage help is always ephemeral.")
    slash_teams: list[str] = Field(
        default_factory=list,
        description="Teams (names) in which `switchboard register-commands` creates the slash "
                    "command; empty: every team the bot belongs to. A comma-separated string "
                    "is accepted.")

    @field_validator("slash_teams", mode="before")
    @classmethod
    def _team_list(cls, v: Any) -> Any:
        # `${SLASH_TEAMS:-}` gives one string: "a, b" names two teams, "" none.
        if isinstance(v, str):
            return [t.strip() for t in v.split(",") if t.strip()]
        return v
