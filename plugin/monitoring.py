"""Builds the alert parsers (one per `/alerts/<source>` route) and the clients that act on
alerts, from settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge.alerts import Alert, AlertSource
from bridge.generic import GenericCallback, parse_generic

from .config import AlertSettings, AlertSourceSettings
from .metrics import watch_upstream
from .trackers import tls_transport

Parser = Callable[[Any], list[Alert]]

#: The most requests a source's client keeps on the wire at once; below it, each client's
#: limiter finds how many its system serves without making them wait (`bridge.limiter`).
SOURCE_MAX_IN_FLIGHT = 32


def build_parsers(settings: AlertSettings | None = None) -> dict[str, Parser]:
    from bridge.alertmanager import parse_alertmanager
    from bridge.icinga import parse_nagios
    from bridge.mail import parse_mail
    from bridge.snmptrap import parse_snmptrap
    from bridge.zabbix import parse_zabbix
    settings = settings or AlertSettings()
    traps, mail = settings.snmp.rules(), settings.mail.rules()
    return {"generic": parse_generic, "alertmanager": parse_alertmanager,
            "zabbix": parse_zabbix, "nagios": parse_nagios,
            "openitcockpit": lambda body: parse_nagios(body, source="openitcockpit"),
            "snmp": lambda body: parse_snmptrap(body, traps),
            "mail": lambda body: parse_mail(body, mail)}


def build_sources(settings: AlertSettings) -> dict[str, AlertSource]:
    """A client per source whose API is configured; generic alerts use their callback URL
    (with `sources.generic`'s `tls` and `timeout`, when given)."""
    conf = settings.sources
    most = SOURCE_MAX_IN_FLIGHT
    generic = conf.get("generic") or AlertSourceSettings()
    callback = GenericCallback(timeout=generic.timeout, max_in_flight=most,
                               transport=tls_transport(generic.tls, most))
    watch_upstream("source", "generic", callback.limiter)
    out: dict[str, AlertSource] = {"generic": callback}
    am = conf.get("alertmanager")
    if am is not None and am.url:
        from bridge.alertmanager import AlertmanagerClient
        alertmanager = AlertmanagerClient(
            url=am.url, username=am.api_username, password=am.api_password.get_secret_value(),
            bearer=am.api_token.get_secret_value(), timeout=am.timeout, max_in_flight=most,
            transport=tls_transport(am.tls, most), ack_duration=settings.ack_duration)
        watch_upstream("source", "alertmanager", alertmanager.limiter)
        out["alertmanager"] = alertmanager
    zb = conf.get("zabbix")
    if zb is not None and zb.url and zb.api_token.get_secret_value():
        from bridge.zabbix import ZabbixClient
        zabbix = ZabbixClient(url=zb.url, api_token=zb.api_token.get_secret_value(),
                              timeout=zb.timeout, max_in_flight=most,
                              transport=tls_transport(zb.tls, most))
        watch_upstream("source", "zabbix", zabbix.limiter)
        out["zabbix"] = zabbix
    ic = conf.get("nagios")
    if ic is not None and ic.command_file:
        from bridge.nagios_cmd import NagiosCommandFile
        out["nagios"] = NagiosCommandFile(ic.command_file, name="nagios",
                                          sticky=ic.ack_sticky, notify=ic.ack_notify)
    elif ic is not None and ic.url and ic.api_username:
        from bridge.icinga import IcingaClient
        icinga = IcingaClient(url=ic.url, username=ic.api_username,
                              password=ic.api_password.get_secret_value(),
                              timeout=ic.timeout, max_in_flight=most,
                              transport=tls_transport(ic.tls, most), name="nagios")
        watch_upstream("source", "nagios", icinga.limiter)
        out["nagios"] = icinga
    oitc = conf.get("openitcockpit")
    if oitc is not None and oitc.url and oitc.api_token.get_secret_value():
        from bridge.openitcockpit import OpenITCockpitClient
        client = OpenITCockpitClient(
            url=oitc.url, api_key=oitc.api_token.get_secret_value(), sticky=oitc.ack_sticky,
            notify=oitc.ack_notify, timeout=oitc.timeout, max_in_flight=most,
            transport=tls_transport(oitc.tls, most))
        watch_upstream("source", "openitcockpit", client.limiter)
        out["openitcockpit"] = client
    return out
