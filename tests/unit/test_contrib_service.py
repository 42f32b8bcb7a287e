"""contrib/systemd and contrib/container: the unit parses and runs what the package installs;
the container's health check really calls a route the listener serves, and tells 200 from 503."""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

from plugin.app import EXIT_AUTH
from plugin.listener import Listener, build
from plugin.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "switchboard.service"
CONTAINERFILE = ROOT / "contrib" / "container" / "Containerfile"
EXIT_CONFIG = 2  # `switchboard` exits 2 on a broken configuration (plugin/cli.py)


def _console_scripts() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    scripts: dict[str, str] = project["scripts"]
    return scripts


def _unit() -> configparser.RawConfigParser:
    # systemd repeats keys (Environment=); later values win here, which the checks allow for.
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",),
                                          comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def _environment_lines(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            found[key] = value
    return found


def test_unit_parses_with_the_expected_keys() -> None:
    unit = _unit()
    assert unit.sections() == ["Unit", "Service", "Install"]
    service = unit["Service"]
    assert service["User"] == "switchboard" and service["Group"] == "switchboard"
    assert service["EnvironmentFile"] == "/etc/switchboard/env"
    assert service["StateDirectory"] == "switchboard"
    assert service["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    # The command is the package's console script, running the bot.
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name in _console_scripts()
    assert argv[1:] == ["run"]
    # The state lives in the directory systemd creates for the service.
    env = _environment_lines(UNIT.read_text(encoding="utf-8"))
    assert env["SWITCHBOARD_DB"].startswith("/var/lib/" + service["StateDirectory"] + "/")
    assert env["SWITCHBOARD_CONFIG"].startswith("/etc/switchboard/")
    # Exits that a restart cannot mend are not restarted.
    assert set(service["RestartPreventExitStatus"].split()) == {str(EXIT_CONFIG), str(EXIT_AUTH)}
    assert service["NoNewPrivileges"] == "yes"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def test_containerfile_builds_from_files_that_exist_and_runs_the_bot() -> None:
    steps = _instructions(CONTAINERFILE.read_text(encoding="utf-8"))
    assert steps[0] == ("FROM", "python:3.11-slim")
    for word, args in steps:
        if word == "COPY":
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    env: dict[str, str] = {}
    for word, args in steps:
        if word == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    port = env["SWITCHBOARD_LISTEN"].rpartition(":")[2]
    assert ("EXPOSE", port) in steps
    volumes = [_exec_form(args) for word, args in steps if word == "VOLUME"]
    assert volumes == [[str(Path(env["SWITCHBOARD_DB"]).parent)]]
    cmd = _exec_form(next(args for word, args in steps if word == "CMD"))
    assert cmd[0] in _console_scripts() and cmd[1] == "run"


def _healthcheck() -> list[str]:
    steps = _instructions(CONTAINERFILE.read_text(encoding="utf-8"))
    args = next(args for word, args in steps if word == "HEALTHCHECK")
    command = args[args.index("CMD ") + 4:]
    return _exec_form(command)


class _Stub:
    """The listener's view of a bot whose health the test sets."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.healthy = True

    def health(self) -> tuple[bool, dict[str, Any]]:
        return self.healthy, {"websocket": "connected" if self.healthy else "disconnected"}

    def intake_prefixes(self) -> list[str]:
        return []


async def _run_check(argv: list[str], port: int) -> int:
    env = {**os.environ, "SWITCHBOARD_LISTEN": f"0.0.0.0:{port}"}
    proc = await asyncio.create_subprocess_exec(sys.executable, *argv[1:], env=env,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(proc.wait(), 30)


async def test_container_healthcheck_calls_the_listener_health_route() -> None:
    argv = _healthcheck()
    assert argv[0] == "python" and argv[1] == "-c"
    assert "/healthz" in argv[2]
    stub = _Stub()
    listener = Listener(build(stub, 1 << 20), "127.0.0.1", 0)  # type: ignore[arg-type]
    port = await listener.start()
    try:
        assert await _run_check(argv, port) == 0
        stub.healthy = False
        assert await _run_check(argv, port) != 0
    finally:
        await listener.stop()
