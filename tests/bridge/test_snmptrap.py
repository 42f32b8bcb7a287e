"""SNMP traps: reading what snmptrapd hands its trap handler (in the formats net-snmp 5.9 prints),
and the alert each trap becomes."""

from __future__ import annotations

import pytest

from bridge.alerts import AlertParseError, AlertStatus, Severity
from bridge.snmptrap import SnmpRules, Trap, parse_snmptrap, read_traphandle

V2C_LINK_DOWN = (
    "localhost\n"
    "UDP: [127.0.0.1]:48464->[127.0.0.1]:16162\n"
    ".1.3.6.1.2.1.1.3.0 0:1:33:06.04\n"
    ".1.3.6.1.6.3.1.1.4.1.0 .1.3.6.1.6.3.1.1.5.3\n"
    ".1.3.6.1.2.1.2.2.1.1.2 2\n"
    ".1.3.6.1.2.1.2.2.1.2.2 \"eth1 \\\"uplink\\\"\nsecond line\"\n")

V1_ENTERPRISE = (
    "localhost\n"
    "UDP: [127.0.0.1]:51000->[127.0.0.1]:16162\n"
    "iso.3.6.1.2.1.1.3.0 0:0:02:03.45\n"
    "iso.3.6.1.6.3.1.1.4.1.0 iso.3.6.1.4.1.8072.2.3.0.17\n"
    "iso.3.6.1.4.1.8072.2.3.2.1 \"E6 97 A5 E6 9C AC \"\n"
    "iso.3.6.1.6.3.18.1.3.0 192.0.2.10\n"
    "iso.3.6.1.6.3.18.1.4.0 \"public\"\n"
    "iso.3.6.1.6.3.1.1.4.3.0 iso.3.6.1.4.1.8072.2.3\n")


def test_a_v2c_trap_is_read_with_quoted_values_across_lines() -> None:
    trap = read_traphandle(V2C_LINK_DOWN)
    assert trap.host == "localhost"
    assert trap.transport == "UDP: [127.0.0.1]:48464->[127.0.0.1]:16162"
    assert dict(trap.variables)[".1.3.6.1.2.1.2.2.1.2.2"] == 'eth1 "uplink"\nsecond line'
    assert [oid for oid, _ in trap.variables] == [
        ".1.3.6.1.2.1.1.3.0", ".1.3.6.1.6.3.1.1.4.1.0", ".1.3.6.1.2.1.2.2.1.1.2",
        ".1.3.6.1.2.1.2.2.1.2.2"]


def test_a_converted_v1_trap_names_its_agent_and_hex_strings_are_decoded() -> None:
    trap = read_traphandle(V1_ENTERPRISE)
    assert dict(trap.variables)["iso.3.6.1.4.1.8072.2.3.2.1"] == "日本"
    [alert] = parse_snmptrap(trap.to_json())
    assert alert.host == "192.0.2.10"  # the agent, not the UDP sender
    assert alert.title == "1.3.6.1.4.1.8072.2.3.0.17 from 192.0.2.10"
    assert alert.severity is Severity.WARNING  # an unknown trap: the default
    assert "1.3.6.1.4.1.8072.2.3.2.1 = 日本" in alert.text
    assert "public" not in alert.text  # the community is not shown


@pytest.mark.parametrize("text", ["", "localhost\n", "localhost\nUDP: x\n\n"])
def test_what_is_not_a_trap_is_refused(text: str) -> None:
    with pytest.raises(AlertParseError):
        read_traphandle(text)


def test_link_down_is_named_keyed_by_agent_and_if_index_and_link_up_resolves_it() -> None:
    [down] = parse_snmptrap(read_traphandle(V2C_LINK_DOWN).to_json())
    assert down.source == "snmp" and down.status is AlertStatus.FIRING
    assert down.title == "linkDown from 127.0.0.1 (ifIndex=2)" and down.name == "linkDown"
    assert down.severity is Severity.WARNING
    assert down.key == "127.0.0.1|1.3.6.1.6.3.1.1.5.3|ifIndex=2"
    up_text = V2C_LINK_DOWN.replace(".1.3.6.1.6.3.1.1.5.3", ".1.3.6.1.6.3.1.1.5.4")
    [up] = parse_snmptrap(read_traphandle(up_text).to_json())
    assert up.status is AlertStatus.RESOLVED and up.key == down.key
    assert up.title == down.title
    other_port = V2C_LINK_DOWN.replace(".1.3.6.1.2.1.2.2.1.1.2 2", ".1.3.6.1.2.1.2.2.1.1.3 3")
    assert parse_snmptrap(read_traphandle(other_port).to_json())[0].key != down.key
    # A name snmptrapd resolved reads as the standard trap it is.
    named = V2C_LINK_DOWN.replace(".1.3.6.1.6.3.1.1.5.3", "IF-MIB::linkDown")
    assert parse_snmptrap(read_traphandle(named).to_json())[0].key == down.key


def test_rules_set_severities_and_key_variables() -> None:
    rules = SnmpRules(severities={"1.3.6.1.4.1.8072.2.3.0.17": Severity.CRITICAL},
                      key_variables={"1.3.6.1.4.1.8072.2.3.0.17": ("1.3.6.1.4.1.8072.2.3.2.1",)})
    [alert] = parse_snmptrap(read_traphandle(V1_ENTERPRISE).to_json(), rules)
    assert alert.severity is Severity.CRITICAL
    assert alert.key == "192.0.2.10|1.3.6.1.4.1.8072.2.3.0.17|1.3.6.1.4.1.8072.2.3.2.1=日本"


@pytest.mark.parametrize("body", [
    [], {"variables": []}, {"variables": "x"}, {"variables": [["1.2", 3]]},
    {"variables": [["1.3.6.1.2.1.1.3.0", "0"]]},  # no trap OID
    {"variables": [["1.3.6.1.6.3.1.1.4.1.0", "1.3.6.1.6.3.1.1.5.1"]], "host": 5},
    {"variables": [["1.2", "3"]] * 101}])
def test_malformed_bodies_are_refused(body: object) -> None:
    with pytest.raises(AlertParseError):
        parse_snmptrap(body)


def test_a_trap_round_trips_through_json() -> None:
    trap = read_traphandle(V2C_LINK_DOWN)
    assert Trap(**{**trap.to_json(), "variables": tuple(
        tuple(v) for v in trap.to_json()["variables"])}) == trap
