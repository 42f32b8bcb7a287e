"""Shared fixtures: the real servers (installed and started once per test run), and the markers
that tell the fast tests from the slow ones.

* `servers`: the test uses a real Redmine, PostgreSQL, Alertmanager, Zabbix, Icinga 2, Nagios 4,
  snmptrapd or postfix (installed with apt-get on first use); given to every test that asks,
  directly or through another fixture, for one of SERVER_FIXTURES.
* `e2e`: the test runs the real `switchboard` process; every test under tests/e2e/ has it (the
  modules say so themselves, and this makes sure a new one cannot forget).

`make unit` runs what has neither.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.servers.fixtures", "tests.servers.alertmanager_fixture",
                  "tests.servers.zabbix_fixture", "tests.servers.icinga_fixture",
                  "tests.servers.snmptrapd_fixture", "tests.servers.nagios_fixture",
                  "tests.servers.postfix_fixture"]

#: The fixtures that install or start a real server.
SERVER_FIXTURES = frozenset({"redmine_server", "postgres_server", "zabbix_server",
                             "alertmanager_install", "alertmanager_factory", "icinga_install",
                             "icinga_factory", "snmptrapd_install", "snmptrapd_factory",
                             "nagios_install", "nagios_factory", "postfix_install",
                             "postfix_factory"})
E2E_DIR = Path(__file__).resolve().parent / "e2e"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tryfirst: the markers must be on the items before `-m` deselects by them.
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)
        if E2E_DIR in item.path.parents and item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.e2e)
