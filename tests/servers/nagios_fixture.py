"""pytest fixtures for the real Nagios Core 4: load this module from a conftest.py
(`pytest_plugins`) or with `-p tests.servers.nagios_fixture`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.servers.common import server_factory
from tests.servers.nagios import NagiosServer, install_nagios

#: Starts a Nagios: `factory(notify, **options)`.
NagiosFactory = Callable[..., NagiosServer]


@pytest.fixture(scope="session")
def nagios_install() -> float:
    """Installs Nagios Core 4 once per session; the seconds it took (0.0 if present)."""
    seconds = install_nagios()
    if seconds:
        print(f"\nNagios installed in {seconds:.1f} s")
    return seconds


@pytest.fixture
def nagios_factory(nagios_install: float) -> Iterator[NagiosFactory]:
    """Starts private Nagios instances for one test; all are stopped when the test ends."""
    with server_factory(NagiosServer) as factory:
        yield factory


__all__ = ["NagiosFactory", "nagios_factory", "nagios_install"]
