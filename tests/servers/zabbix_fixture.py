"""pytest fixture for the real Zabbix 6.0: register it in a conftest.py
(`pytest_plugins = [..., "tests.servers.zabbix_fixture"]`) or load it with
`-p tests.servers.zabbix_fixture`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.zabbix import ZabbixServer


@pytest.fixture(scope="session")
def zabbix_server() -> Iterator[ZabbixServer]:
    """One provisioned Zabbix for the whole session, installed on first use, stopped at the
    end. Tests point its webhook at their own receiver with `set_receiver(url, token)` and
    leave the trigger in the OK state."""
    with ZabbixServer() as server:
        print(f"\nZabbix {server.version} on {server.url}: install "
              f"{server.install_seconds:.1f} s, database {server.database_seconds:.1f} s, "
              f"start {server.start_seconds:.1f} s")
        yield server


__all__ = ["zabbix_server"]
