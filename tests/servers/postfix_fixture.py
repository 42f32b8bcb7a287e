"""pytest fixtures for the real postfix: load this module from a conftest.py (`pytest_plugins`)
or with `-p tests.servers.postfix_fixture`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.servers.common import server_factory
from tests.servers.postfix import PostfixServer, install_postfix

#: Starts postfix with the alias piped to a script: `factory(script)`.
PostfixFactory = Callable[..., PostfixServer]


@pytest.fixture(scope="session")
def postfix_install() -> float:
    """Installs postfix once per session; the seconds it took (0.0 if present)."""
    seconds = install_postfix()
    if seconds:
        print(f"\npostfix installed in {seconds:.1f} s")
    return seconds


@pytest.fixture
def postfix_factory(postfix_install: float) -> Iterator[PostfixFactory]:
    """Starts postfix for one test; it is stopped when the test ends."""
    with server_factory(PostfixServer) as factory:
        yield factory


__all__ = ["PostfixFactory", "postfix_factory", "postfix_install"]
