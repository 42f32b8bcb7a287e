"""A real Nagios Core 4 (Debian's `nagios4-core`) for the tests: a private instance in a folder of
its own, on 127.0.0.1.

`install_nagios()` installs the core and the basic plugins when they are missing (without the
`nagios4` metapackage's web server). `NagiosServer(notify)` writes a `nagios.cfg` and the objects
of one host (`web01`, address 127.0.0.1) with one service (`disk`) whose state the test sets
(`set_state(2, "DISK CRITICAL - 97% used")`), checked every second; a contact whose host and
service notifications run `notify` (a command line, given `--type Host` or `--type Service`;
the core's NAGIOS_* environment macros are on); an external command file; and the status file
the test reads (`service_status()`):

    with NagiosServer(["/path/to/notify", "--type", "Service"]) as nagios:
        nagios.set_state(2, "DISK CRITICAL")
        nagios.service_status()["problem_has_been_acknowledged"]

The core runs as root here (`nagios_user=root`), so the notification command may run anything
the test can; it is stopped, with its workers, at the end.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from tests.servers import common
from tests.servers.common import (
    ProcessServer,
    ServerSetupError,
    spawn,
)

PACKAGES = ["nagios4-core", "monitoring-plugins-basic"]
BINARY = Path("/usr/sbin/nagios4")
CHECK_DUMMY = Path("/usr/lib/nagios/plugins/check_dummy")
STATE_DIR = Path(os.environ.get("SWITCHBOARD_NAGIOS_STATE", "/var/tmp/switchboard-nagios"))
WORKDIR_PREFIX = "switchboard-nagios-"
HOST, SERVICE = "web01", "disk"


class NagiosSetupError(ServerSetupError):
    """Installing or starting Nagios failed; the message ends with the log's tail."""


_fail = NagiosSetupError.with_log


def install_nagios(log_path: Path | None = None) -> float:
    """Installs Nagios Core 4 and the basic plugins unless they are there; the seconds spent."""
    return common.install_packages("Nagios", PACKAGES, [BINARY, CHECK_DUMMY],
                                   state_dir=STATE_DIR, log_path=log_path,
                                   error=NagiosSetupError, services=["nagios4"])


def _objects(workdir: Path, notify: Sequence[str]) -> str:
    check = workdir / "check-disk"
    return f"""
define timeperiod {{
  timeperiod_name 24x7
  alias           always
  sunday 00:00-24:00
  monday 00:00-24:00
  tuesday 00:00-24:00
  wednesday 00:00-24:00
  thursday 00:00-24:00
  friday 00:00-24:00
  saturday 00:00-24:00
}}
define command {{
  command_name check-up
  command_line {CHECK_DUMMY} 0 up
}}
define command {{
  command_name check-disk
  command_line /bin/sh {check}
}}
define command {{
  command_name notify-host-switchboard
  command_line {shlex.join([*notify, "--type", "Host"])}
}}
define command {{
  command_name notify-service-switchboard
  command_line {shlex.join([*notify, "--type", "Service"])}
}}
define contact {{
  contact_name                  switchboard
  host_notifications_enabled    1
  service_notifications_enabled 1
  host_notification_period      24x7
  service_notification_period   24x7
  host_notification_options     d,u,r,f,s
  service_notification_options  w,u,c,r,f,s
  host_notification_commands    notify-host-switchboard
  service_notification_commands notify-service-switchboard
}}
define host {{
  host_name             {HOST}
  address               127.0.0.1
  check_command         check-up
  max_check_attempts    1
  check_interval        60
  check_period          24x7
  contacts              switchboard
  notification_interval 0
  notification_period   24x7
}}
define service {{
  host_name             {HOST}
  service_description   {SERVICE}
  check_command         check-disk
  max_check_attempts    2
  check_interval        1
  retry_interval        1
  check_period          24x7
  contacts              switchboard
  notification_interval 0
  notification_period   24x7
  notification_options  w,u,c,r,f,s
}}
"""


class NagiosServer(ProcessServer):
    """A private Nagios Core 4 whose notifications run `notify`.

    After `start()`: `command_file` (the external command FIFO), `status_file`, `log_path`,
    `nagios_log` (the core's own log)."""

    label = "Nagios"
    error = NagiosSetupError
    leader_only = True

    def __init__(self, notify: Sequence[str], *, workdir: Path | None = None,
                 start_timeout: float = 30.0, keep_workdir: bool = False) -> None:
        super().__init__(workdir, prefix=WORKDIR_PREFIX, log_name="nagios.out",
                         start_timeout=start_timeout, keep_workdir=keep_workdir)
        self.notify = list(notify)
        self.config_path = self.workdir / "nagios.cfg"
        self.command_file = self.workdir / "rw" / "nagios.cmd"
        self.status_file = self.workdir / "status.dat"
        self.nagios_log = self.workdir / "nagios.log"
        self._state_file = self.workdir / "disk.state"

    def _write_config(self) -> None:
        w = self.workdir
        for folder in ("rw", "spool", "tmp"):
            (w / folder).mkdir(exist_ok=True)
        (w / "objects.cfg").write_text(_objects(w, self.notify))
        (w / "check-disk").write_text(
            f'state=$(cat {shlex.quote(str(self._state_file))})\n'
            f'cat {shlex.quote(str(self._state_file))}.text\nexit "$state"\n')
        (w / "resource.cfg").write_text("$USER1$=/usr/lib/nagios/plugins\n")
        lines = {
            "cfg_file": w / "objects.cfg", "resource_file": w / "resource.cfg",
            "log_file": self.nagios_log, "object_cache_file": w / "objects.cache",
            "precached_object_file": w / "objects.precache", "temp_file": w / "nagios.tmp",
            "temp_path": w / "tmp", "lock_file": w / "nagios.lock",
            "state_retention_file": w / "retention.dat", "retain_state_information": 0,
            "status_file": self.status_file, "status_update_interval": 1,
            "check_result_path": w / "spool", "command_file": self.command_file,
            "check_external_commands": 1, "query_socket": w / "rw" / "nagios.qh",
            "interval_length": 1, "enable_notifications": 1, "enable_flap_detection": 0,
            "enable_environment_macros": 1, "use_syslog": 0, "log_rotation_method": "n",
            "nagios_user": "root", "nagios_group": "root", "max_service_check_spread": 1,
            "max_host_check_spread": 1, "execute_service_checks": 1,
            "accept_passive_service_checks": 1, "illegal_macro_output_chars": "`~$&|'\"<>"}
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))

    def set_state(self, state: int, output: str) -> None:
        """What the service's next check says: 0 OK, 1 WARNING, 2 CRITICAL."""
        Path(str(self._state_file) + ".text").write_text(output + "\n")
        self._state_file.write_text(f"{state}\n")

    def start(self) -> Self:
        if self._proc is not None:
            raise NagiosSetupError("this Nagios is already running")
        self.install_seconds = install_nagios(STATE_DIR / "install.log")
        began = time.monotonic()
        self.set_state(0, "DISK OK - 40% used")
        self._write_config()
        with open(self.log_path, "a") as log:
            verify = common.run_logged([str(BINARY), "-v", str(self.config_path)], log,
                                       env={"PATH": "/usr/bin:/bin"}, timeout=60)
        if verify != 0:
            raise _fail("nagios4 -v refused the configuration", self.log_path)
        self.url = "nagios"  # no port: the core is reached through its command file
        self._spawn()
        self._wait_ready()
        self.start_seconds = time.monotonic() - began
        return self

    def _spawn(self) -> None:
        with open(self.log_path, "a") as log:
            self._proc = spawn([str(BINARY), str(self.config_path)], log, cwd=self.workdir,
                               env={"PATH": "/usr/bin:/bin", "HOME": str(self.workdir)},
                               long_lived_thread=True)

    def _ready(self) -> bool:
        return self.command_file.exists() and self.status_file.exists()

    def service_status(self) -> dict[str, str]:
        """The `servicestatus` block of the service in the status file (as strings)."""
        text = self.status_file.read_text(errors="replace") if self.status_file.exists() else ""
        for block in text.split("servicestatus {")[1:]:
            fields = dict(line.strip().partition("=")[::2]
                          for line in block.split("}")[0].splitlines() if "=" in line)
            if fields.get("service_description") == SERVICE:
                return fields
        return {}

    def downtimes(self) -> int:
        """How many service downtimes the status file lists."""
        if not self.status_file.exists():
            return 0
        return self.status_file.read_text(errors="replace").count("servicedowntime {")

    def log_tail(self, lines: int = 60) -> str:
        return common.tail(self.nagios_log, lines) + "\n" + common.tail(self.log_path, lines)


def sweep_orphans() -> None:
    common.sweep_orphans(WORKDIR_PREFIX)


__all__ = ["HOST", "SERVICE", "NagiosServer", "NagiosSetupError", "install_nagios",
           "sweep_orphans"]
