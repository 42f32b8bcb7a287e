"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plugin.sandbox.glpi import GLPISimulatorThread
from plugin.sandbox.mattermost import SimulatorThread

from .harness import BOT_TOKEN
from .test_helpdesk import GLPI_TOKEN, World


@pytest.fixture
def mm() -> Iterator[SimulatorThread]:
    """A Mattermost simulator on its own thread."""
    thread = SimulatorThread(bot_token=BOT_TOKEN)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A Mattermost simulator and a GLPI simulator, each on its own thread."""
    mm = SimulatorThread(bot_token=BOT_TOKEN)
    glpi = GLPISimulatorThread(user_token=GLPI_TOKEN)
    mm.start()
    glpi.start()
    try:
        yield World(mm, glpi, tmp_path)
    finally:
        glpi.stop()
        mm.stop()
