"""A real postfix (Debian's, "Local only") for the tests: mail to a local alias piped to a
command, on 127.0.0.1.

`install_postfix()` installs postfix non-interactively as a local-only mail system (it listens
on the loopback addresses only) and Debian's `python3-httpx`, which the piped command needs:
postfix runs a pipe of a root-owned alias map as `nobody`, who cannot read this project's
virtual environment, so the command runs `switchboard sendevt` from a world-readable copy of
the project's code (`plugin.sendevt` needs only httpx).

`PostfixServer(command)` points the alias `sbalerts` at `command` (a script it writes, run as
`nobody`), starts postfix and stops it at the end; `send(message)` delivers one message to
`sbalerts@localhost` over SMTP on 127.0.0.1:25. The configuration it sets (`postconf -e`) is
postfix's own, in /etc/postfix: postfix is one per machine.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
from pathlib import Path
from typing import Self

from tests.servers import common
from tests.servers.common import ServerContext, ServerSetupError

PACKAGES = ["postfix", "python3-httpx"]
STATE_DIR = Path(os.environ.get("SWITCHBOARD_POSTFIX_STATE", "/var/tmp/switchboard-postfix"))
ALIAS = "sbalerts"
ROOT = Path(__file__).resolve().parents[2]


class PostfixSetupError(ServerSetupError):
    """Installing or starting postfix failed; the message ends with the log's tail."""


def _debconf(log_path: Path) -> None:
    selections = ("postfix postfix/main_mailer_type select Local only\n"
                  "postfix postfix/mailname string localhost\n")
    with open(log_path, "a") as log:
        subprocess.run(["debconf-set-selections"], input=selections.encode(), stdout=log,
                       stderr=subprocess.STDOUT, check=False, timeout=60)


def install_postfix(log_path: Path | None = None) -> float:
    """Installs postfix (local only) and python3-httpx unless they are there."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    _debconf(log_path or STATE_DIR / "install.log")
    return common.install_packages("postfix", PACKAGES, [Path("/usr/sbin/postfix")],
                                   state_dir=STATE_DIR, log_path=log_path,
                                   error=PostfixSetupError, services=["postfix"])


def _run(cmd: list[str], log_path: Path) -> int:
    with open(log_path, "a") as log:
        return common.run_logged(cmd, log, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                                 timeout=60)


def _listening() -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", 25)) == 0


class PostfixServer(ServerContext):
    """postfix with the alias `sbalerts` piped to `script` (the text of a shell script, run as
    `nobody`, with `$CODE` the world-readable copy of this project's code and `$LOG` a file it
    may write)."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.dir = STATE_DIR / "run"
        self.log_path = STATE_DIR / "postfix-tests.log"
        self.mail_log = Path("/var/log/postfix.log")
        self.pipe_log = self.dir / "pipe.log"

    def start(self) -> Self:
        install_postfix(STATE_DIR / "install.log")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.dir.chmod(0o755)
        code = self.dir / "code"
        for package in ("plugin", "bridge"):
            shutil.copytree(ROOT / package, code / package,
                            ignore=shutil.ignore_patterns("__pycache__", "sandbox", "i18n"))
        for folder, _dirs, files in os.walk(self.dir):
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        self.pipe_log.write_text("")
        self.pipe_log.chmod(0o666)
        pipe = self.dir / "pipe"
        pipe.write_text(f"#!/bin/sh\nCODE={code}\nLOG={self.pipe_log}\n{self.script}")
        pipe.chmod(0o755)
        aliases = self.dir / "aliases"
        aliases.write_text(f'{ALIAS}: "|{pipe}"\n')
        settings = ["mydestination = localhost, localhost.localdomain",
                    "inet_interfaces = loopback-only", "inet_protocols = ipv4",
                    f"alias_maps = hash:/etc/aliases, hash:{aliases}",
                    "maillog_file = /var/log/postfix.log", "default_transport = error",
                    "relayhost =", "smtputf8_enable = no"]
        if not Path("/etc/aliases").exists():
            Path("/etc/aliases").write_text("postmaster: root\n")
        steps = [["postconf", "-e", *settings], ["newaliases"], ["postalias", str(aliases)]]
        for cmd in steps:
            if _run(cmd, self.log_path) != 0:
                raise PostfixSetupError.with_log(f"{cmd[0]} failed", self.log_path)
        _run(["postfix", "stop"], self.log_path)  # one left running by an earlier run
        if _run(["postfix", "start"], self.log_path) != 0:
            raise PostfixSetupError.with_log("postfix start failed", self.log_path)
        common.poll_until(_listening, timeout=30, interval=0.1,
                          timed_out=lambda: PostfixSetupError.with_log(
                              "postfix did not listen on 127.0.0.1:25", self.log_path))
        return self

    def stop(self) -> None:
        _run(["postfix", "stop"], self.log_path)

    def send(self, message: bytes, sender: str = "monitor@localhost") -> None:
        with smtplib.SMTP("127.0.0.1", 25, timeout=30) as smtp:
            smtp.sendmail(sender, [f"{ALIAS}@localhost"], message)

    def log_tail(self, lines: int = 40) -> str:
        return (common.tail(self.mail_log, lines) + "\n--- pipe ---\n"
                + common.tail(self.pipe_log, lines))


__all__ = ["PostfixServer", "PostfixSetupError", "install_postfix"]
