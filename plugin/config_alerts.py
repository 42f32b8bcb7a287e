"""The alerts feature's settings (`settings.alerts`): senders and sources, routes and their
escalation, and how SNMP traps and monitoring mail become alerts."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from bridge.alerts import Severity
from bridge.mail import MailRules
from bridge.snmptrap import SnmpRules, TrapPair

from .config_base import Model as _Model
from .config_base import StaffSettings, TLSSettings


class AlertSourceSettings(_Model):
    """A monitoring system: how senders authenticate, and how to act on its alerts."""

    token: SecretStr = Field(SecretStr(""), description="The bearer token this source's "
                                                        "senders present (default: "
                                                        "`alerts.token`).")
    username: str = Field("", description="Basic credentials senders may present instead of "
                                          "the token: the user name.")
    password: SecretStr = Field(SecretStr(""), description="The password of `username`.")
    url: str = Field("", description="The system's API, to act on its alerts (empty: decisions "
                                     "stay in the chat).")
    api_token: SecretStr = Field(SecretStr(""), description="API token for `url` (Zabbix; "
                                                            "Alertmanager: as a bearer token).")
    api_username: str = Field("", description="API user for `url` (Icinga 2; Alertmanager: "
                                              "basic credentials).")
    api_password: SecretStr = Field(SecretStr(""), description="The password of "
                                                               "`api_username`.")
    tls: TLSSettings = Field(default_factory=lambda: TLSSettings(),
                             description="Certificate checks for `url`.")
    timeout: float = Field(10.0, gt=0, description="Seconds to wait for one API call.")
    command_file: str = Field("", description="Nagios 4 and Naemon (`nagios`): the core's "
                                              "external command file, which decisions are "
                                              "written to (instead of Icinga 2's `url`).")
    ack_sticky: bool = Field(True, description="Nagios 4, Naemon, openITCOCKPIT: an "
                                               "acknowledgement lasts until the check is OK "
                                               "(not only until the state changes).")
    ack_notify: bool = Field(True, description="Nagios 4, Naemon, openITCOCKPIT: an "
                                               "acknowledgement notifies the contacts (and so "
                                               "comes back to the alert's thread).")


class EscalationStep(_Model):
    """What happens when an alert is still not acknowledged, silenced or resolved."""

    after_minutes: float = Field(gt=0, description="Minutes after the alert fired.")
    mention: str = Field("", description="Who is mentioned in the alert's thread (e.g. "
                                         "`@oncall`, `@here`).")
    channel: str = Field("", description="`team/channel` (or a channel id) where the alert "
                                         "is posted again, linking to its post.")
    dm: list[str] = Field(default_factory=list, description="User names told in a direct "
                                                             "message.")


class AlertRoute(_Model):
    """Where alerts go: the first route whose conditions all hold wins."""

    sources: list[str] = Field(default_factory=list,
                               description="Only alerts from these sources (empty: all).")
    min_severity: Literal["critical", "high", "warning", "info", "unknown"] = Field(
        "unknown", description="Only alerts at least this severe.")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="Only alerts with these label values.")
    host: str = Field("", description="A regular expression the host must match.")
    channels: list[str] = Field(min_length=1, description="Where the alerts go: `team/channel` "
                                                          "names or channel ids.")
    mention: str = Field("", description="Mentioned in the post (e.g. `@oncall`) when the "
                                         "severity is at least `mention_from`.")
    mention_from: Literal["critical", "high", "warning", "info", "unknown"] = Field(
        "critical", description="The least severity that gets the mention.")
    escalation: list[EscalationStep] = Field(
        default_factory=list, description="Steps taken while an alert is not acknowledged, "
                                          "silenced or resolved; each once.")


SeverityName = Literal["critical", "high", "warning", "info", "unknown"]


class TrapPairSettings(_Model):
    """A trap that resolves another's post."""

    problem: str = Field(description="The trap OID that opens the post (numeric).")
    clear: str = Field(description="The trap OID that resolves it.")
    match: list[str] = Field(default_factory=list,
                             description="Variable OIDs (prefixes) whose values both traps "
                                         "must share, e.g. `1.3.6.1.2.1.2.2.1.1` (ifIndex).")


class SnmpSettings(_Model):
    """How SNMP traps (`sendevt --format snmptrap`, route `/alerts/snmp`) become alerts."""

    severities: dict[str, SeverityName] = Field(
        default_factory=dict, description="Severity by trap OID (numeric), over the built-in "
                                          "ones (linkDown and authenticationFailure warning; "
                                          "coldStart, warmStart and linkUp info).")
    default_severity: SeverityName = Field("warning", description="Of traps not listed.")
    key_variables: dict[str, list[str]] = Field(
        default_factory=dict, description="By trap OID: the variable OIDs (prefixes) whose "
                                          "values tell one incident from another (default: "
                                          "the agent and the trap OID alone).")
    pairs: list[TrapPairSettings] = Field(
        default_factory=list, description="Traps that resolve another's post, beside the "
                                          "built-in linkUp for linkDown of the same ifIndex.")

    def rules(self) -> SnmpRules:
        base = SnmpRules()
        severities = {**base.severities, **{_oid(k): Severity(v)
                                            for k, v in self.severities.items()}}
        pairs = base.pairs + tuple(TrapPair(_oid(p.problem), _oid(p.clear),
                                            tuple(_oid(m) for m in p.match)) for p in self.pairs)
        return SnmpRules(severities=severities, default_severity=Severity(self.default_severity),
                         key_variables={_oid(k): tuple(_oid(v) for v in vs)
                                        for k, vs in self.key_variables.items()},
                         pairs=pairs)


def _oid(text: str) -> str:
    return text.strip().lstrip(".")


class MailSettings(_Model):
    """How monitoring mail (`sendevt --format mail`, route `/alerts/mail`) becomes alerts."""

    key: str = Field("subject", pattern=r"^(subject|thread|pattern|header:[!-9;-~]+)$",
                     description="What tells one incident from another: `subject` (without "
                                 "its status words and reply prefixes), `thread` (the mail it "
                                 "answers), `header:<name>`, or `pattern`.")
    key_pattern: str = Field("", description="With `key: pattern`: a regular expression; its "
                                             "first group in the subject is the key.")
    resolve_words: list[str] = Field(
        default_factory=lambda: list(MailRules().resolve_words),
        description="Words in the subject that make the mail a recovery.")
    severity_words: dict[str, SeverityName] = Field(
        default_factory=lambda: {w: s.value for w, s in MailRules().severity_words},
        description="Words in the subject and the severity they mean; the first listed "
                    "that appears wins.")
    default_severity: SeverityName = Field("warning", description="When no word says.")

    @field_validator("key_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    def rules(self) -> MailRules:
        return MailRules(key=self.key, key_pattern=self.key_pattern,
                         resolve_words=tuple(self.resolve_words),
                         severity_words=tuple((w, Severity(v))
                                              for w, v in self.severity_words.items()),
                         default_severity=Severity(self.default_severity))


class AlertSettings(_Model):
    """Monitoring alerts as live posts with buttons."""

    token: SecretStr = Field(SecretStr(""), description="What senders present: "
                                                        "`Authorization: Bearer <token>`.")
    channel: str = Field("", description="`team/channel` (or a channel id) for alerts no "
                                         "route takes.")
    routes: list[AlertRoute] = Field(default_factory=list,
                                     description="Where alerts go; the first route that "
                                                 "matches wins.")
    sources: dict[str, AlertSourceSettings] = Field(
        default_factory=dict,
        description="Per monitoring system (`alertmanager`, `zabbix`, `nagios`, `generic`): "
                    "sender credentials and the API that buttons act through.")
    responders: StaffSettings = Field(default_factory=lambda: StaffSettings(),
                                      description="Who may press the buttons (nobody named: "
                                                  "every member of the channel).")
    storm_per_minute: int = Field(20, ge=1, description="New alerts per minute from one source "
                                                        "into one channel before they are "
                                                        "grouped into one post.")
    ack_duration: float = Field(24 * 3600, gt=0, description="Seconds an acknowledgement lasts "
                                                             "as a silence (Alertmanager).")
    silence_hours: list[float] = Field(default_factory=lambda: [1.0, 4.0, 24.0],
                                       description="Silence durations offered in the menu, in "
                                                   "hours.")
    refire_window: float = Field(3600.0, ge=0, description="Seconds after its recovery during "
                                                         "which an alert that fires again goes "
                                                         "back to its post (after: a new "
                                                         "post).")
    flap_changes: int = Field(5, ge=2, description="Changes of status within `flap_window` "
                                                   "that make an incident flapping: shown on "
                                                   "its post, no note per change.")
    flap_window: float = Field(1800.0, gt=0, description="Seconds over which changes of status "
                                                         "are counted for flapping.")
    snmp: SnmpSettings = Field(default_factory=lambda: SnmpSettings(),
                               description="How SNMP traps become alerts.")
    mail: MailSettings = Field(default_factory=lambda: MailSettings(),
                               description="How monitoring mail becomes alerts.")
