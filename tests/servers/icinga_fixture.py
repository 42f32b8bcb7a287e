"""pytest fixtures for the real Icinga 2: load this module from a conftest.py (`pytest_plugins`)
or with `-p tests.servers.icinga_fixture`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.servers.common import server_factory
from tests.servers.icinga import IcingaServer, certificates, install_icinga2

#: Starts an Icinga 2 whose notifications go to `receiver_url` with `token`:
#: `factory(receiver_url, token)`.
IcingaFactory = Callable[[str, str], IcingaServer]


@pytest.fixture(scope="session")
def icinga_install() -> float:
    """Installs Debian's icinga2 and makes the API certificates once per session; the seconds
    it took (0.0 when both were there)."""
    seconds = install_icinga2()
    certificates()
    if seconds:
        print(f"\nicinga2 installed in {seconds:.1f} s")
    return seconds


@pytest.fixture
def icinga_factory(icinga_install: float) -> Iterator[IcingaFactory]:
    """Starts private Icinga 2 instances for one test (each with its own folder and port); all
    are stopped when the test ends."""
    with server_factory(IcingaServer) as factory:
        yield factory


__all__ = ["IcingaFactory", "icinga_factory", "icinga_install"]
