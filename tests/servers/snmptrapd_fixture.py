"""pytest fixtures for the real snmptrapd: load this module from a conftest.py
(`pytest_plugins`) or with `-p tests.servers.snmptrapd_fixture`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.servers.common import server_factory
from tests.servers.snmptrapd import SnmptrapdServer, install_snmptrapd

#: Starts an snmptrapd: `factory(handler, *, env=None, **options)`.
SnmptrapdFactory = Callable[..., SnmptrapdServer]


@pytest.fixture(scope="session")
def snmptrapd_install() -> float:
    """Installs snmptrapd and snmptrap once per session; the seconds it took (0.0 if present)."""
    seconds = install_snmptrapd()
    if seconds:
        print(f"\nsnmptrapd installed in {seconds:.1f} s")
    return seconds


@pytest.fixture
def snmptrapd_factory(snmptrapd_install: float) -> Iterator[SnmptrapdFactory]:
    """Starts snmptrapds for one test; all are stopped when the test ends."""
    with server_factory(SnmptrapdServer) as factory:
        yield factory


__all__ = ["SnmptrapdFactory", "snmptrapd_factory", "snmptrapd_install"]
