"""Decisions written to a Nagios/Naemon external command file (a real FIFO read here the way the
core reads it): the commands and their arguments, hostile text, a core that is not running."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.alerts import Alert, AlertStatus, Severity, SourceError, SourceUnavailable
from bridge.nagios_cmd import NagiosCommandFile


class Core:
    """Reads the FIFO as the core does, keeping each command line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self._stop = False
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffered = b""
        while not self._stop:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                chunk = b""
            if not chunk:
                time.sleep(0.01)
                continue
            buffered += chunk
            *done, buffered = buffered.split(b"\n")
            self.lines += [line.decode() for line in done]

    def wait(self, count: int) -> list[str]:
        deadline = time.monotonic() + 5
        while len(self.lines) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.lines

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        os.close(self._fd)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "nagios.cmd"
    os.mkfifo(path, 0o660)
    return path


@pytest.fixture
def core(fifo: Path) -> Iterator[Core]:
    reader = Core(fifo)
    yield reader
    reader.close()


def alert(host: str = "web01", service: str = "disk") -> Alert:
    return Alert(source="nagios", key="k", status=AlertStatus.FIRING, severity=Severity.CRITICAL,
                 title="t", host=host, service=service,
                 ref={"type": "Service" if service else "Host", "host": host,
                      "service": service})


def commands(lines: list[str]) -> list[str]:
    """The commands without their `[epoch] ` stamps (checked to be now)."""
    out = []
    for line in lines:
        stamp, _, command = line.partition("] ")
        assert stamp.startswith("[") and abs(int(stamp[1:]) - time.time()) < 60
        out.append(command)
    return out


async def test_service_decisions_become_external_commands(fifo: Path, core: Core) -> None:
    client = NagiosCommandFile(str(fifo))
    assert await client.acknowledge(alert(), "alice", "on it") == ""
    await client.unacknowledge(alert(), "", "bob")
    handle = await client.silence(alert(), 3600, "carol")
    await client.unsilence(alert(), handle, "carol")
    got = commands(core.wait(4))
    assert got[0] == "ACKNOWLEDGE_SVC_PROBLEM;web01;disk;2;1;0;alice;on it"
    assert got[1] == "REMOVE_SVC_ACKNOWLEDGEMENT;web01;disk"
    start = int(handle)
    assert got[2] == (f"SCHEDULE_SVC_DOWNTIME;web01;disk;{start};{start + 3600};1;0;3600;carol;"
                      "Silenced by carol from the chat")
    assert got[3] == f"DEL_DOWNTIME_BY_HOST_NAME;web01;disk;{start}"
    with pytest.raises(SourceError):
        await client.resolve(alert(), "dave")
    assert (await client.check())[0][0] == "ok"


async def test_host_decisions_and_hostile_text(fifo: Path, core: Core) -> None:
    client = NagiosCommandFile(str(fifo))
    await client.acknowledge(alert(service=""), "eve;x", "a;b\n[0] SHUTDOWN_PROGRAM")
    await client.silence(alert(service=""), 60, "eve")
    got = commands(core.wait(2))
    assert got[0] == "ACKNOWLEDGE_HOST_PROBLEM;web01;2;1;0;eve,x;a,b [0] SHUTDOWN_PROGRAM"
    assert got[1].startswith("SCHEDULE_HOST_DOWNTIME;web01;")
    assert len(core.lines) == 2  # nothing smuggled onto a line of its own


async def test_a_core_that_does_not_read_is_unavailable(fifo: Path, tmp_path: Path) -> None:
    client = NagiosCommandFile(str(fifo))
    with pytest.raises(SourceUnavailable, match="does not read"):
        await client.acknowledge(alert(), "alice", "")
    gone = NagiosCommandFile(str(tmp_path / "missing.cmd"))
    with pytest.raises(SourceUnavailable):
        await gone.acknowledge(alert(), "alice", "")
    with pytest.raises(SourceError, match="cannot be found"):
        await gone.check()
    plain = tmp_path / "plain.cmd"
    plain.write_text("")
    with pytest.raises(SourceError, match="not a FIFO"):
        await NagiosCommandFile(str(plain)).check()
    with pytest.raises(SourceError):
        await client.silence(alert(), -5, "x")
