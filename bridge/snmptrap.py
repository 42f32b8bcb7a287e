"""SNMP traps as alerts: what snmptrapd hands its `traphandle`, and the alert a trap becomes.

`read_traphandle(text)` reads what snmptrapd writes to a trap handler's standard input: the
agent's host name, the transport line (`UDP: [192.0.2.7]:161->[127.0.0.1]:162`), then one
`OID value` per variable binding. A quoted string value keeps `\\"` and `\\\\` escapes and may
span lines; a string with bytes outside ASCII comes as quoted hex (`"E6 97 A5 "`, broken every
16 bytes). OIDs are numeric (`-On`: `.1.3.6.1…`, or `iso.3.6.1…`) or MIB names when snmptrapd
resolved them (`IF-MIB::linkDown`). `Trap.to_json()` is what `switchboard sendevt --format
snmptrap` sends to the bot's `/alerts/snmp` route.

`parse_snmptrap(body, rules)` turns that JSON into an `Alert`. The title is the trap's name (the
MIB name snmptrapd gave, a standard trap's name, or its OID) and the agent; the severity comes
from `rules.severities` by trap OID or name; the key is the agent, the trap OID and the values of
the variables `rules.key_variables` names for that trap, so a repeat edits the same post; a trap
that is the clear of a configured pair (`linkUp` for `linkDown`, same `ifIndex`, out of the box)
resolves its problem's post. Nothing here knows Mattermost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .alerts import Alert, AlertParseError, AlertStatus, Severity

SOURCE = "snmp"

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
#: What snmptrapd adds to a converted SNMPv1 trap: the agent's address, the community, the
#: enterprise.
V1_AGENT_ADDRESS = "1.3.6.1.6.3.18.1.3.0"
V1_COMMUNITY = "1.3.6.1.6.3.18.1.4.0"
V1_ENTERPRISE = "1.3.6.1.6.3.1.1.4.3.0"
IF_INDEX = "1.3.6.1.2.1.2.2.1.1"

#: The generic traps (RFC 3418), by OID.
STANDARD_TRAPS = {
    "1.3.6.1.6.3.1.1.5.1": "coldStart", "1.3.6.1.6.3.1.1.5.2": "warmStart",
    "1.3.6.1.6.3.1.1.5.3": "linkDown", "1.3.6.1.6.3.1.1.5.4": "linkUp",
    "1.3.6.1.6.3.1.1.5.5": "authenticationFailure", "1.3.6.1.6.3.1.1.5.6": "egpNeighborLoss"}
_BY_NAME = {name: oid for oid, name in STANDARD_TRAPS.items()}

#: Most variables read from one trap; longest text kept of one value.
MAX_VARIABLES, MAX_VALUE = 100, 1000
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}\s+)*[0-9A-Fa-f]{2}\s*")
_ADDRESS = re.compile(r"\[([^\]]+)\]")


@dataclass(frozen=True)
class Trap:
    """One trap as snmptrapd reported it."""

    host: str
    transport: str
    variables: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "transport": self.transport,
                "variables": [list(pair) for pair in self.variables]}


def _unquote(raw: str) -> str:
    """A value as snmptrapd printed it, as text: quotes and escapes gone, hex decoded."""
    if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
        return raw
    inner = raw[1:-1]
    if _HEX.fullmatch(inner) and inner.endswith((" ", "\n")):
        data = bytes.fromhex("".join(inner.split()))
        return data.decode("utf-8", errors="replace")
    return re.sub(r'\\(["\\])', r"\1", inner)


def _split_values(lines: list[str]) -> list[tuple[str, str]]:
    """`OID value` pairs; a quoted value runs on until its closing quote, across lines."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        oid, _, value = line.strip("\r").partition(" ")
        if value.startswith('"'):
            while not _closed(value) and i < len(lines):
                value += "\n" + lines[i].rstrip("\r")
                i += 1
        pairs.append((oid, value))
    return pairs


def _closed(value: str) -> bool:
    """Whether a value that opened a quote has closed it (escaped quotes do not close)."""
    body = value[1:]
    escaped = False
    for ch in body:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return True
    return False


def read_traphandle(text: str) -> Trap:
    """The trap in what snmptrapd wrote to a trap handler; AlertParseError when it is not one."""
    lines = text.split("\n")
    if len(lines) < 3 or not lines[0].strip() or not lines[1].strip():
        raise AlertParseError("not a trap from snmptrapd: the host and transport lines are "
                              "missing")
    variables = [(oid.strip(), _unquote(value.strip())[:MAX_VALUE])
                 for oid, value in _split_values(lines[2:])]
    if not variables:
        raise AlertParseError("not a trap from snmptrapd: no variables")
    return Trap(host=lines[0].strip()[:255], transport=lines[1].strip()[:255],
                variables=tuple(variables[:MAX_VARIABLES]))


def normal_oid(oid: str) -> str:
    """A numeric OID without its leading dot (`iso.` read as `1.`); names stay as they are."""
    oid = oid.strip()
    if oid.startswith("iso."):
        oid = "1." + oid[4:]
    return oid[1:] if oid.startswith(".") else oid


def trap_name(oid: str) -> str:
    """A trap's name: a standard trap's, the part after `::` of a MIB name, else the OID."""
    if oid in STANDARD_TRAPS:
        return STANDARD_TRAPS[oid]
    return oid.rpartition("::")[2] or oid


def _standard(oid: str) -> str:
    """The numeric OID of a standard trap given by name (`IF-MIB::linkDown`), else `oid`."""
    return _BY_NAME.get(oid.rpartition("::")[2], oid) if "::" in oid else oid


@dataclass(frozen=True)
class TrapPair:
    """`clear` resolves the post `problem` made for the same agent and the same values of
    `match` (variables named by OID prefix)."""

    problem: str
    clear: str
    match: tuple[str, ...] = ()


@dataclass(frozen=True)
class SnmpRules:
    """How traps become alerts."""

    #: Severity by trap OID (numeric, or a name as snmptrapd printed it).
    severities: dict[str, Severity] = field(default_factory=lambda: {
        "1.3.6.1.6.3.1.1.5.3": Severity.WARNING,  # linkDown
        "1.3.6.1.6.3.1.1.5.5": Severity.WARNING,  # authenticationFailure
        "1.3.6.1.6.3.1.1.5.1": Severity.INFO, "1.3.6.1.6.3.1.1.5.2": Severity.INFO,
        "1.3.6.1.6.3.1.1.5.4": Severity.INFO})
    #: Of traps not in `severities`.
    default_severity: Severity = Severity.WARNING
    #: Variables (OID prefixes) whose values tell one incident from another, by trap OID.
    key_variables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pairs: tuple[TrapPair, ...] = (
        TrapPair("1.3.6.1.6.3.1.1.5.3", "1.3.6.1.6.3.1.1.5.4", (IF_INDEX,)),)


def _agent(trap: dict[str, str], host: str, transport: str) -> str:
    """Who sent the trap: a v1 trap's agent address, else the transport's source address,
    else the host line."""
    if trap.get(V1_AGENT_ADDRESS):
        return trap[V1_AGENT_ADDRESS]
    found = _ADDRESS.search(transport)
    if found:
        return found.group(1)
    return host


#: Names of the variables a key is usually made of, for titles.
VARIABLE_NAMES = {IF_INDEX: "ifIndex"}


def _values(variables: list[tuple[str, str]], prefixes: tuple[str, ...]) -> list[str]:
    """`name=value` of the variables under each prefix, in the prefixes' order."""
    out = []
    for prefix in prefixes:
        label = VARIABLE_NAMES.get(prefix, prefix)
        out += [f"{label}={value}" for oid, value in variables
                if oid == prefix or oid.startswith(prefix + ".")]
    return out


def parse_snmptrap(body: Any, rules: SnmpRules | None = None) -> list[Alert]:
    """The alert for one trap as `Trap.to_json()` sends it."""
    rules = rules or SnmpRules()
    if not isinstance(body, dict):
        raise AlertParseError("a trap must be a JSON object")
    raw = body.get("variables")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_VARIABLES:
        raise AlertParseError(f"variables must be a list of 1 to {MAX_VARIABLES} [oid, value]")
    variables: list[tuple[str, str]] = []
    for item in raw:
        if (not isinstance(item, list) or len(item) != 2
                or not all(isinstance(x, str) for x in item)):
            raise AlertParseError("each variable must be [oid, value], both strings")
        variables.append((normal_oid(item[0])[:200], item[1][:MAX_VALUE]))
    host, transport = body.get("host", ""), body.get("transport", "")
    if not isinstance(host, str) or not isinstance(transport, str):
        raise AlertParseError("host and transport must be strings")
    by_oid = dict(variables)
    oid = _standard(normal_oid(by_oid.get(TRAP_OID, "")))
    if not oid:
        raise AlertParseError("the trap has no snmpTrapOID variable")
    agent = _agent(by_oid, host.strip()[:255], transport)
    status = AlertStatus.FIRING
    problem = oid
    pair = next((p for p in rules.pairs if oid == p.clear), None)
    if pair is not None:
        status, problem = AlertStatus.RESOLVED, pair.problem
    key_prefixes = next((p.match for p in rules.pairs if problem == p.problem), ()) or \
        rules.key_variables.get(problem, ())
    identity = _values(variables, key_prefixes)
    key = "|".join([agent, problem, *identity])
    shown = [(o, v) for o, v in variables
             if o not in (SYS_UPTIME, TRAP_OID, V1_AGENT_ADDRESS, V1_COMMUNITY)]
    # A clear shows as its problem resolved: the post keeps the problem's title and severity.
    title = f"{trap_name(problem)} from {agent}" + (f" ({', '.join(identity)})"
                                                     if identity else "")
    return [Alert(
        source=SOURCE, key=key[:200], status=status,
        severity=rules.severities.get(problem, rules.default_severity),
        title=title[:500], name=trap_name(problem), host=agent,
        text="\n".join(f"{o} = {v}" for o, v in shown)[:3000],
        labels={"agent": agent, "trap": problem,
                # The host line names the sender when snmptrapd resolved it (with `-n`, it
                # repeats the transport).
                **({"sender": host} if host and host != agent and "[" not in host else {})},
        started_at=datetime.now(UTC), ref={"trap": oid, "agent": agent})]
