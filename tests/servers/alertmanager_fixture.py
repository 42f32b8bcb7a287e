"""pytest fixtures for the real Alertmanager: load this module from a conftest.py
(`pytest_plugins`) or with `-p tests.servers.alertmanager_fixture`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.servers.alertmanager import AlertmanagerServer, install_alertmanager
from tests.servers.common import server_factory

#: Starts an Alertmanager: `factory(receiver_url="", *, bearer="", **options)`.
AlertmanagerFactory = Callable[..., AlertmanagerServer]


@pytest.fixture(scope="session")
def alertmanager_install() -> float:
    """Installs Debian's Alertmanager once per session; the seconds it took (0.0 if present)."""
    seconds = install_alertmanager()
    if seconds:
        print(f"\nAlertmanager installed in {seconds:.1f} s")
    return seconds


@pytest.fixture
def alertmanager_factory(alertmanager_install: float) -> Iterator[AlertmanagerFactory]:
    """Starts Alertmanagers for one test (each on its own port and storage); all are stopped
    when the test ends."""
    with server_factory(AlertmanagerServer) as factory:
        yield factory


__all__ = ["AlertmanagerFactory", "alertmanager_factory", "alertmanager_install"]
