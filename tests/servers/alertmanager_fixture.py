"""pytest fixtures for the real Alertmanager: load this module from a conftest.py
(`pytest_plugins`) or with `-p tests.servers.alertmanager_fixture`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.servers.alertmanager import AlertmanagerServer, install_alertmanager

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
    started: list[AlertmanagerServer] = []

    def factory(receiver_url: str = "", *, bearer: str = "", **options: Any
                ) -> AlertmanagerServer:
        server = AlertmanagerServer(receiver_url, bearer=bearer, **options)
        started.append(server)
        return server.__enter__()

    yield factory
    for server in reversed(started):
        server.stop()


__all__ = ["AlertmanagerFactory", "alertmanager_factory", "alertmanager_install"]
