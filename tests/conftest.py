"""Shared fixtures: the real servers (installed and started once per test run)."""

pytest_plugins = ["tests.servers.fixtures", "tests.servers.alertmanager_fixture",
                  "tests.servers.zabbix_fixture", "tests.servers.icinga_fixture"]
