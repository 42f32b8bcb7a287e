"""A real snmptrapd (Debian's `snmptrapd`, with `snmp` for `snmptrap`) for the tests, on
127.0.0.1.

`install_snmptrapd()` installs both packages when they are missing, without letting the
package's own service start. `SnmptrapdServer(handler)` writes a configuration that accepts
every community and hands each trap to `handler` (a command line, run by snmptrapd with the
trap on its standard input), starts the daemon in the foreground on a free loopback UDP port
with no MIBs loaded (Debian main ships none of the standard ones) and numeric OIDs, and stops it
on exit. `send_v2c(oid, *varbinds)` sends a trap with the real `snmptrap`:

    with SnmptrapdServer(["/path/to/handler", "arg"], env={"TOKEN": "..."}) as trapd:
        trapd.send_v2c(".1.3.6.1.6.3.1.1.5.3", (".1.3.6.1.2.1.2.2.1.1.2", "i", "2"))
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from tests.servers import common
from tests.servers.common import (
    LOOPBACK,
    ProcessServer,
    ServerSetupError,
    note,
    spawn,
)

PACKAGES = ["snmptrapd", "snmp"]
DAEMON = Path("/usr/sbin/snmptrapd")
SENDER = Path("/usr/bin/snmptrap")
STATE_DIR = Path(os.environ.get("SWITCHBOARD_SNMP_STATE", "/var/tmp/switchboard-snmp"))
WORKDIR_PREFIX = "switchboard-snmptrapd-"


class SnmptrapdSetupError(ServerSetupError):
    """Installing or starting snmptrapd failed; the message ends with the log's tail."""


_fail = SnmptrapdSetupError.with_log


def install_snmptrapd(log_path: Path | None = None) -> float:
    """Installs snmptrapd and snmptrap unless they are there; the seconds spent (0.0 when
    nothing was needed)."""
    return common.install_packages("snmptrapd", PACKAGES, [DAEMON, SENDER],
                                   state_dir=STATE_DIR, log_path=log_path,
                                   error=SnmptrapdSetupError, services=["snmptrapd"])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class SnmptrapdServer(ProcessServer):
    """snmptrapd on a loopback UDP port, handing every trap to `handler`.

    After `start()`: `port`, `address` (`udp:127.0.0.1:PORT`), `log_path`, `config_path`."""

    label = "snmptrapd"
    error = SnmptrapdSetupError

    def __init__(self, handler: Sequence[str], *, env: Mapping[str, str] | None = None,
                 workdir: Path | None = None, start_timeout: float = 20.0,
                 keep_workdir: bool = False) -> None:
        super().__init__(workdir, prefix=WORKDIR_PREFIX, log_name="snmptrapd.log",
                         start_timeout=start_timeout, keep_workdir=keep_workdir)
        self.handler = list(handler)
        self.env = dict(env or {})
        self.config_path = self.workdir / "snmptrapd.conf"
        self.address = ""

    def start(self) -> Self:
        if self._proc is not None:
            raise SnmptrapdSetupError("this snmptrapd is already running")
        self.install_seconds = install_snmptrapd(STATE_DIR / "install.log")
        began = time.monotonic()
        self.config_path.write_text(
            "disableAuthorization yes\n"
            f"traphandle default {shlex.join(self.handler)}\n")
        self._start_on_free_port()
        self.start_seconds = time.monotonic() - began
        return self

    def _prepare_port(self) -> None:
        self.port = free_udp_port()
        self.address = f"udp:{LOOPBACK}:{self.port}"

    def _spawn(self) -> None:
        cmd = [str(DAEMON), "-f", "-Lo", "-C", "-c", str(self.config_path), "-m", "", "-On",
               "-n", self.address]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.workdir), **self.env}
        with open(self.log_path, "a") as log:
            self._proc = spawn(cmd, log, cwd=self.workdir, env=env, long_lived_thread=True)

    def _ready(self) -> bool:
        return "NET-SNMP version" in common.tail(self.log_path, 50)

    def _port_clash(self, exited: bool) -> bool:
        return exited and "couldn't open" in common.tail(self.log_path, 50).lower()

    def send_v2c(self, trap_oid: str, *varbinds: tuple[str, str, str],
                 community: str = "public") -> None:
        """`snmptrap -v 2c` of `trap_oid` with `(oid, type, value)` varbinds (types as
        snmptrap takes them: `i`, `s`, `a`, ...)."""
        cmd = [str(SENDER), "-v", "2c", "-c", community, "-m", "", f"{LOOPBACK}:{self.port}",
               "", trap_oid]
        for oid, kind, value in varbinds:
            cmd += [oid, kind, value]
        with open(self.log_path, "a") as log:
            note(log, "$ " + shlex.join(cmd))
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                                  check=False, env={"PATH": "/usr/bin:/bin",
                                                    "HOME": str(self.workdir)})
            log.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise _fail(f"snmptrap failed ({proc.returncode}): {proc.stderr.strip()[-300:]}",
                        self.log_path)


def sweep_orphans() -> None:
    common.sweep_orphans(WORKDIR_PREFIX)


__all__ = ["SnmptrapdServer", "SnmptrapdSetupError", "install_snmptrapd", "sweep_orphans"]
