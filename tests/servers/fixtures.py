"""pytest fixtures for the real servers: import them into a conftest.py or load this module
with `-p tests.servers.fixtures`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.postgres import PostgresServer
from tests.servers.redmine import RedmineServer


@pytest.fixture(scope="session")
def redmine_server() -> Iterator[RedmineServer]:
    """One Redmine for the whole session, installed on first use, stopped at the end."""
    with RedmineServer() as server:
        print(f"\nRedmine {server.version} on {server.url}: install "
              f"{server.install_seconds:.1f} s, start {server.start_seconds:.1f} s")
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the whole session (Debian's, installed on first use), stopped at
    the end; each test that uses it starts from an empty schema."""
    with PostgresServer() as server:
        yield server


__all__ = ["postgres_server", "redmine_server"]
